//! The node as an operator meets it: configuration errors stop it before anything is bound,
//! SIGTERM drains it cleanly (also on one thread each for the control plane and the proxy),
//! proxy threads share their port with nobody else, peers must prove the cluster secret,
//! and readiness tells the truth when quorum is lost.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn run_node(args: &[&str]) -> std::process::Output {
    Command::new(hermes_bin())
        .arg("node")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bad_configuration_exits_78_naming_the_setting_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let port = free_port();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--id".into(), "zero".into()], "--id"),
        (
            vec!["--admin-listen".into(), "localhost".into()],
            "--admin-listen",
        ),
        (
            vec!["--initial-cluster".into(), "1=ftp://x".into()],
            "--initial-cluster",
        ),
        (
            vec![
                "--peer-listen".into(),
                "0.0.0.0:9081".into(),
                "--advertise-peer".into(),
                "http://10.0.0.1:9081".into(),
            ],
            "--cluster-secret",
        ),
        (vec!["--cluster-secret".into(), "short".into()], "16 bytes"),
        (
            vec!["--namespace".into(), "Not_Valid".into()],
            "--namespace",
        ),
        (vec!["--no-such-flag".into()], "--no-such-flag"),
    ];
    for (args, expect) in cases {
        let mut full: Vec<&str> = vec!["--data-dir", data, "--admin-listen", ""];
        let admin = format!("127.0.0.1:{port}");
        full[3] = &admin;
        full.extend(args.iter().map(String::as_str));
        let out = run_node(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(
            !std::path::Path::new(data).exists(),
            "{args:?}: the data dir was created"
        );
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "{args:?}: a port stayed bound"
        );
    }
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[node]\nid = 1\n[peer]\nlisen = \"x\"\n").unwrap();
    let out = Command::new(hermes_bin())
        .args(["config", "validate", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer.lisen"));
    // The environment counts too, and names itself.
    let out = Command::new(hermes_bin())
        .args(["node", "--data-dir", data])
        .env("HERMES_ETCD_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERMES_ETCD_LISTEN"));
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut c = Cluster::start(1);
    c.node(1).put("/before-stop", "x").unwrap();
    let status = c.node_mut(1).terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = c.node(1).log();
    assert!(log.contains("shutting down: draining"), "{log}");
    assert!(
        log.contains("drained_in_time=true") && log.contains("stopped"),
        "{log}"
    );
    c.node_mut(1).start();
    c.node(1).wait_ready(Duration::from_secs(30));
    assert_eq!(c.node(1).range_prefix("/before-stop", false).len(), 1);
}

/// Routes `host` on `node`'s proxy to one upstream node at 127.0.0.1:`port`.
fn route_to(node: &Node, host: &str, port: u16) {
    node.put_key(
        "/hermes/clusters/c",
        &serde_json::json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": port}]})
            .to_string(),
    );
    node.put_key(
        "/hermes/domains/d",
        &serde_json::json!({"name": "d", "hosts": [host],
                "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": "c"}]}]})
        .to_string(),
    );
}

#[test]
fn one_thread_for_the_control_plane_and_one_for_the_proxy() {
    // `--worker-threads 1` is tokio's current-thread scheduler for store, admin API and etcd
    // endpoint; `--proxy-threads 1` one proxy thread; and a clean drain at the end.
    let up = crate::upstream::Upstream::start("one-thread");
    let mut c = Cluster::start_with(1, &["--worker-threads", "1", "--proxy-threads", "1"]);
    let node = c.node(1);
    route_to(node, "one.test", up.port);
    let answer = wait_for("the route", Duration::from_secs(10), || {
        let a = node.proxy_get("one.test", "/hello");
        (a.status == 200).then_some(a)
    });
    assert_eq!(answer.upstream(), "one-thread", "{:?}", answer.json());
    assert_eq!(node.range_prefix("/hermes/domains/", false).len(), 1);
    let status = c.node_mut(1).terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = c.node(1).log();
    assert!(
        log.contains("drained_in_time=true") && log.contains("stopped"),
        "{log}"
    );
}

/// The names of the proxy threads of process `pid`.
fn proxy_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("hermes-proxy-"))
        .collect();
    names.sort();
    names
}

#[test]
fn proxy_threads_share_one_port_that_no_other_node_can_take() {
    let up = crate::upstream::Upstream::start("threads");
    let mut c = Cluster::start_with(1, &["--proxy-threads", "3"]);
    let node = c.node(1);
    assert_eq!(
        proxy_threads(node.pid().unwrap()),
        ["hermes-proxy-0", "hermes-proxy-1", "hermes-proxy-2"]
    );
    route_to(node, "threads.test", up.port);
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("threads.test", "/").status == 200).then_some(())
    });
    // Many connections, spread by the kernel over the three sockets: every one is served.
    for i in 0..60 {
        let a = proxy_request(&node.proxy(), "GET", "threads.test", &format!("/{i}"), &[]);
        assert_eq!(a.status, 200, "request {i}");
        assert_eq!(a.upstream(), "threads");
    }

    // A second node on the same proxy port is refused, naming the flag, although the group's
    // sockets allow port sharing among themselves.
    let dir = tempfile::tempdir().unwrap();
    let taken = format!("127.0.0.1:{}", node.proxy_port);
    for threads in ["1", "4"] {
        let out = run_node(&[
            "--data-dir",
            dir.path().join(threads).to_str().unwrap(),
            "--proxy-listen",
            &taken,
            "--proxy-threads",
            threads,
            "--admin-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--peer-listen",
            &format!("127.0.0.1:{}", free_port()),
            "--etcd-listen",
            &format!("127.0.0.1:{}", free_port()),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{threads} threads: {err}");
        assert!(err.contains("--proxy-listen"), "{threads} threads: {err}");
    }

    let status = c.node_mut(1).terminate();
    assert!(status.success(), "exit status {status:?}");
    let log = c.node(1).log();
    assert!(
        log.contains("drained_in_time=true") && log.contains("stopped"),
        "{log}"
    );
    assert!(log.contains("threads=3"), "{log}");
}

#[test]
fn peers_must_sign_with_the_cluster_secret() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "correct-horse-battery-staple\n").unwrap();
    let c = Cluster::start_with(3, &["--cluster-secret-file", secret.to_str().unwrap()]);
    c.node(1).put("/signed", "ok").unwrap();
    assert_eq!(c.node(3).range_prefix("/signed", false).len(), 1);
    // An unsigned raft vote and an unsigned forwarded write are both refused.
    for path in ["/raft/vote", "/peer/write", "/peer/info"] {
        let resp = agent()
            .post(&format!("{}{path}", c.node(2).peer_url()))
            .send_bytes(b"\x01\x00");
        match resp {
            Err(ureq::Error::Status(401, r)) => {
                let text = r.into_string().unwrap();
                assert!(text.contains("cluster secret"), "{path}: {text}");
            }
            other => panic!("{path}: expected 401, got {other:?}"),
        }
    }
    // A forged signature of the right shape, declaring a large body, is refused from the
    // header alone: the node answers without waiting for a byte of the body.
    let peer_port: u16 = c
        .node(2)
        .peer_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut forger = crate::support::raw_http::Client::to_port(peer_port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = format!(
        "{now}.{}.{}.{}.{}",
        "11".repeat(16),
        16 << 20,
        "22".repeat(32),
        "33".repeat(32)
    );
    forger.send(format!(
        "POST /raft/append HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nx-hermes-peer-auth: {forged}\r\n\r\n",
        16 << 20
    ));
    let answer = forger.read(false);
    assert_eq!(answer.status, 401, "{}", answer.text());
    assert!(answer.text().contains("signature"), "{}", answer.text());
    // Membership changes through the admin API need the secret too.
    let out = Command::new(hermes_bin())
        .args(["member", "remove", "3", "--endpoint", &c.node(1).admin()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = Command::new(hermes_bin())
        .args([
            "member",
            "list",
            "--endpoint",
            &c.node(1).admin(),
            "--cluster-secret-file",
        ])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(list.status.success());
}

#[test]
fn readiness_reports_a_lost_quorum() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for id in &others {
        c.node_mut(*id).kill9();
    }
    let (status, body) = wait_for(
        "the leader to report lost quorum",
        Duration::from_secs(15),
        || c.node(leader).readyz().filter(|(s, _)| *s == 503),
    );
    assert_eq!(status, 503);
    let failing = body["failing"].as_str().unwrap();
    assert!(failing == "quorum" || failing == "leader", "{body}");
    let (_, metrics) = get(&format!("{}/metrics", c.node(leader).admin())).unwrap();
    assert!(
        metrics.contains("hermes_raft_leader_has_quorum 0"),
        "{metrics}"
    );
    // Writes fail with etcd's unavailable answer instead of hanging.
    let (status, body) = c.node(leader).put("/no-quorum", "x").unwrap();
    assert_eq!(status, 503, "{body}");
}

/// `hermes version` names the commit it was built from when built in a git checkout (as this
/// suite is, in CI's clean clone), so a report can be matched to its source.
#[test]
fn version_names_the_git_commit_it_was_built_from() {
    let out = Command::new(hermes_bin()).arg("version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(sha) => assert!(text.contains(&format!("git {sha}")), "{text}"),
        // Built outside a checkout and without HERMES_GIT_SHA.
        None => assert!(text.contains("git unknown"), "{text}"),
    }
}

/// One format per stream: with `--log-format auto` and stderr not a terminal (a file, as under
/// systemd or a container runtime), the node's own lines are JSON like the access log merged
/// with them, so every line of the stream parses; `text` keeps them human-readable.
#[test]
fn log_format_gives_one_format_per_stream() {
    for format in ["auto", "json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::new(dir.path(), 1);
        node.extra_args = vec!["--log-format".into(), format.into()];
        node.start();
        node.wait_ready(Duration::from_secs(30));
        node.put("/logged", "x").unwrap();
        assert!(node.terminate().success());
        let log = node.log();
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
        let start = lines
            .iter()
            .find(|l| l.contains("starting hermes node"))
            .unwrap_or_else(|| panic!("{format}: no start line in {log}"));
        let parsed = serde_json::from_str::<serde_json::Value>(start);
        if format == "text" {
            assert!(parsed.is_err(), "text format wrote JSON: {start}");
            assert!(start.contains("INFO"), "{start}");
        } else {
            for line in &lines {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{format}: a line that is not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
            }
            let start: serde_json::Value = parsed.unwrap();
            assert_eq!(start["level"], "INFO", "{start}");
            assert_eq!(start["target"], "hermes_node::run", "{start}");
            assert_eq!(start["node_id"], 1, "{start}");
        }
    }
    let bad = Command::new(hermes_bin())
        .args(["node", "--log-format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--log-format"));
}
