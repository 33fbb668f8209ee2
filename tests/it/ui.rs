//! The web UI in a real browser: the scripts under `tests/browser/` drive Debian's chromium
//! (headless, through playwright-core) against nodes with an initial admin. `console.mjs`
//! manages domains and clusters on one node, and the test checks what it made: the proxy
//! serves it. `cluster.mjs` watches the cluster page of a three-node cluster through the loss of
//! its leader. Screenshots go to `docs/screenshots/` when `SCREENSHOTS=1`
//! (`scripts/screenshots`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// Runs `tests/browser/<script>` with `env` (and `SHOTS` when screenshots are asked for), and
/// fails with its output, and the logs of `nodes`, unless it passed every step.
pub fn run_browser(script: &str, env: &[(&str, String)], nodes: &[&Node]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "{}/node_modules is missing: run scripts/test, which installs it (npm ci)",
        dir.display()
    );
    let shots = std::env::var_os("SCREENSHOTS")
        .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
    if let Some(shots) = &shots {
        std::fs::create_dir_all(shots).unwrap();
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script));
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(shots) = &shots {
        cmd.env("SHOTS", shots);
    }
    let out = cmd.output().expect("spawn node (Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What the script measured (the first load's bytes, say), for `--nocapture`.
    println!("{script}: {stdout}");
    if !out.status.success() {
        for node in nodes {
            node.print_log();
        }
    }
    assert!(out.status.success(), "{script}: {stdout}\n{stderr}");
    assert!(stdout.contains("every step passed"), "{stdout}");
}

/// The initial admin's password, from whichever node's data directory holds it.
fn initial_password(c: &Cluster) -> String {
    wait_for("the initial admin", Duration::from_secs(20), || {
        (1..=c.nodes.len() as u64).find_map(|id| {
            std::fs::read_to_string(c.node(id).data_dir.join("initial-admin-password")).ok()
        })
    })
    .trim()
    .to_string()
}

#[test]
fn the_console_manages_a_domain_that_the_proxy_then_serves() {
    let up = crate::upstream::Upstream::start("from-the-console");
    let mut c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let env = [
        ("HERMES_ADMIN", c.node(1).admin()),
        ("HERMES_PASSWORD", initial_password(&c)),
        ("UPSTREAM_PORT", up.port.to_string()),
        ("HERMES_PROXY", c.node(1).proxy()),
    ];
    run_browser("console.mjs", &env, &[c.node(1)]);
    // What the browser made is served: the domain as rolled back to the second context's
    // version, whose hosts were shop.test and their.test.
    let answer = wait_for(
        "the domain made in the console",
        Duration::from_secs(10),
        || {
            let a = c.node(1).proxy_get("their.test", "/");
            (a.status == 200).then_some(a)
        },
    );
    assert_eq!(answer.upstream(), "from-the-console");
    assert_eq!(c.node(1).proxy_get("mine.test", "/").status, 404);
    c.node_mut(1).terminate();
}

#[test]
fn the_cluster_page_follows_a_leader_change_without_a_reload() {
    let mut c = Cluster::start_with(3, &["--initial-admin", "admin@hermes.local"]);
    let leader = c.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let env = [
        ("HERMES_ADMIN", c.node(follower).admin()),
        ("HERMES_PASSWORD", initial_password(&c)),
        ("LEADER_ID", leader.to_string()),
        ("LEADER_PID", c.node(leader).pid().unwrap().to_string()),
    ];
    run_browser("cluster.mjs", &env, &c.nodes.iter().collect::<Vec<_>>());
    // The script killed the leader: the harness must not wait for it.
    c.node_mut(leader).kill9();
}
