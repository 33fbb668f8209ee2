//! The web UI in a real browser: `tests/browser/console.mjs` drives Debian's chromium (headless,
//! through playwright-core) against a node with an initial admin, and this test checks what the
//! browser made: the proxy serves the domain created in the console. Screenshots go to
//! `docs/screenshots/` when `SCREENSHOTS=1` (`scripts/screenshots`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[test]
fn the_console_manages_a_domain_that_the_proxy_then_serves() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "{}/node_modules is missing: run scripts/test, which installs it (npm ci)",
        dir.display()
    );
    let up = crate::upstream::Upstream::start("from-the-console");
    let mut c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let password_file = node.data_dir.join("initial-admin-password");
    let password = wait_for("the initial admin", Duration::from_secs(20), || {
        std::fs::read_to_string(&password_file).ok()
    });
    let shots = std::env::var_os("SCREENSHOTS")
        .map(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots"));
    if let Some(shots) = &shots {
        std::fs::create_dir_all(shots).unwrap();
    }
    let out = Command::new("node")
        .arg(dir.join("console.mjs"))
        .env("HERMES_ADMIN", node.admin())
        .env("HERMES_PASSWORD", password.trim())
        .env("UPSTREAM_PORT", up.port.to_string())
        .env(
            "SHOTS",
            shots.as_deref().unwrap_or(std::path::Path::new("")),
        )
        .output()
        .expect("spawn node (Node.js)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        c.node(1).print_log();
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("every step passed"), "{stdout}");
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
