//! Backups: `hermes snapshot save` (the whole store) and `etcdctl snapshot save` (what the
//! etcd endpoint shows) taken from a running cluster; `hermes snapshot restore` founds a new
//! single-node cluster from either, with the same keys, revisions, history and leases; a
//! second node joins it and receives the same; a damaged backup is refused.
//!
//! The nodes run without the instance registry (`--instance-registry off`): the test compares
//! revisions, which its leased keys would move.

use std::process::Command;
use std::time::Duration;

use crate::api_client::Api;
use crate::harness::*;

fn hermes(args: &[&str]) -> std::process::Output {
    Command::new(hermes_bin()).args(args).output().unwrap()
}

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoint.replace("http://", "")))
        .args(args)
        .output()
        .expect("etcdctl is not installed: scripts/test installs etcd-client");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(endpoint: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&etcdctl(endpoint, args)).unwrap()
}

/// Restores `file` as node `id` under `root`, starts it, waits until it is ready.
fn restored_node(root: &std::path::Path, id: u64, file: &std::path::Path) -> Node {
    let mut node = Node::new(root, id);
    node.extra_args = vec!["--instance-registry".into(), "off".into()];
    let out = hermes(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        node.data_dir.to_str().unwrap(),
        "--id",
        &id.to_string(),
        "--advertise-peer",
        &node.peer_url(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("a new single-node cluster"));
    node.start();
    node.wait_ready(Duration::from_secs(30));
    node
}

#[test]
fn a_backup_founds_a_new_cluster_with_the_same_history() {
    let c = Cluster::start_with(
        3,
        &[
            "--instance-registry",
            "off",
            "--initial-admin",
            "admin@hermes.local",
        ],
    );
    let source = c.node(2).etcd();

    phase(
        1,
        "history, a lease and the control plane on a three-node cluster",
    );
    // The leader makes the initial admin once elected; its data directory holds the password.
    let admin_dir = wait_for("the initial admin", Duration::from_secs(20), || {
        c.nodes
            .iter()
            .find(|n| n.data_dir.join("initial-admin-password").exists())
            .map(|n| n.data_dir.clone())
    });
    let password = std::fs::read_to_string(admin_dir.join("initial-admin-password")).unwrap();
    // The file may be there before the admin's record reaches node 1.
    wait_for(
        "the initial admin to sign in",
        Duration::from_secs(20),
        || {
            let (s, _) = Api::anonymous(&c.node(1).admin()).post(
                "/api/auth/login",
                &serde_json::json!({"email": "admin@hermes.local", "password": password.trim()}),
            );
            (s == 200).then_some(())
        },
    );
    etcdctl(&source, &["put", "/b/a", "v1"]);
    let first = json(&source, &["get", "/b/a", "-w", "json"])["kvs"][0]["mod_revision"]
        .as_i64()
        .unwrap();
    etcdctl(&source, &["put", "/b/a", "v2"]);
    etcdctl(&source, &["put", "/b/gone", "x"]);
    etcdctl(&source, &["del", "/b/gone"]);
    let granted = etcdctl(&source, &["lease", "grant", "600"]);
    let lease = granted.split_whitespace().nth(1).unwrap().to_string();
    etcdctl(&source, &["put", "/b/leased", "l", "--lease", &lease]);
    let revision = json(&source, &["get", "/b/a", "-w", "json"])["header"]["revision"]
        .as_i64()
        .unwrap();

    phase(
        2,
        "hermes snapshot save (whole store) and etcdctl snapshot save",
    );
    let full = c.dir.path().join("full.backup");
    let out = hermes(&[
        "snapshot",
        "save",
        full.to_str().unwrap(),
        "--endpoint",
        &c.node(3).admin(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("revision {revision}")));
    let visible = c.dir.path().join("etcd.backup");
    let saved = etcdctl(&source, &["snapshot", "save", visible.to_str().unwrap()]);
    assert!(saved.contains("Snapshot saved"), "{saved}");
    for file in [&full, &visible] {
        assert!(std::fs::read(file).unwrap().starts_with(b"HERMBKUP"));
    }
    // The JSON gateway streams the same backup, in etcd's chunks.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-d", "{}"])
        .arg(format!("{source}/v3/maintenance/snapshot"))
        .output()
        .unwrap();
    let mut streamed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        use base64::Engine as _;
        let blob = v["result"]["blob"].as_str().unwrap();
        streamed.extend(
            base64::engine::general_purpose::STANDARD
                .decode(blob)
                .unwrap(),
        );
    }
    assert!(streamed.starts_with(b"HERMBKUP"));
    assert_eq!(streamed.len() % 512, 32, "512-byte pages and their SHA-256");
    // It holds password hashes and the etcd token key: its owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&full).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup is mode {mode:o}");
    // Who is refused a backup: tests/it/authorization.rs, with the membership changes.

    phase(
        3,
        "restore the whole-store backup as a new cluster: same keys, history, lease",
    );
    let root = tempfile::tempdir().unwrap();
    let mut restored = restored_node(root.path(), 7, &full);
    let at = restored.etcd();
    let now = json(&at, &["get", "/b/", "--prefix", "-w", "json"]);
    assert_eq!(now["header"]["revision"].as_i64(), Some(revision), "{now}");
    let keys: Vec<String> = now["kvs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| unb64(&kv["key"]))
        .collect();
    assert_eq!(keys, ["/b/a", "/b/leased"]);
    let old = json(
        &at,
        &["get", "/b/a", "--rev", &first.to_string(), "-w", "json"],
    );
    assert_eq!(unb64(&old["kvs"][0]["value"]), "v1", "{old}");
    let ttl = etcdctl(&at, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("/b/leased"), "{ttl}");
    let member = json(&at, &["member", "list", "-w", "json"]);
    assert_eq!(member["members"].as_array().unwrap().len(), 1, "{member}");
    // The control plane came along: the admin signs in with the same password.
    Api::anonymous(&restored.admin()).sign_in("admin@hermes.local", password.trim());
    // It takes writes, and revisions go on from the backup's.
    etcdctl(&at, &["put", "/b/after", "y"]);
    let after = json(&at, &["get", "/b/after", "-w", "json"]);
    assert!(
        after["kvs"][0]["mod_revision"].as_i64().unwrap() > revision,
        "{after}"
    );

    phase(
        4,
        "a second node joins the restored one and receives the same",
    );
    let mut joiner = Node::new(root.path(), 8);
    joiner.extra_args = vec![
        "--instance-registry".into(),
        "off".into(),
        "--join".into(),
        restored.admin(),
    ];
    joiner.start();
    joiner.wait_ready(Duration::from_secs(30));
    let seen = wait_for(
        "node 8 to hold the restored keys",
        Duration::from_secs(30),
        || {
            let got = joiner.range_prefix("/b/", true);
            (got.len() == 3).then_some(got)
        },
    );
    assert_eq!(seen.get("/b/a").map(String::as_str), Some("v2"));
    let old = json(
        &joiner.etcd(),
        &[
            "get",
            "/b/a",
            "--rev",
            &first.to_string(),
            "-w",
            "json",
            "--consistency",
            "s",
        ],
    );
    assert_eq!(unb64(&old["kvs"][0]["value"]), "v1", "{old}");
    joiner.kill9();
    restored.kill9();

    phase(5, "the etcd endpoint's backup leaves the control plane out");
    let root2 = tempfile::tempdir().unwrap();
    let mut from_etcd = restored_node(root2.path(), 1, &visible);
    let (s, b) = Api::anonymous(&from_etcd.admin()).post(
        "/api/auth/login",
        &serde_json::json!({"email": "admin@hermes.local", "password": password.trim()}),
    );
    assert_ne!(s, 200, "the etcd endpoint's backup carried the users: {b}");
    // And in the files themselves: the whole-store backup holds control-plane rows, the etcd
    // endpoint's none.
    let control_rows = |file: &std::path::Path| {
        let backup = hermes_storage::backup::decode(&std::fs::read(file).unwrap()).unwrap();
        backup
            .rows
            .iter()
            .filter(|(_, row)| row.kv.key.starts_with(b"/hermes/_cp/"))
            .count()
    };
    assert!(control_rows(&full) > 0);
    assert_eq!(control_rows(&visible), 0);
    let got = from_etcd.range_prefix("/b/", false);
    assert_eq!(got.len(), 2);
    from_etcd.kill9();

    phase(
        6,
        "a damaged backup and a used directory are refused, naming why",
    );
    let mut bytes = std::fs::read(&full).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let damaged = c.dir.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let fresh = root2.path().join("fresh");
    let out = hermes(&[
        "snapshot",
        "restore",
        damaged.to_str().unwrap(),
        "--data-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SHA-256"));
    let out = hermes(&[
        "snapshot",
        "restore",
        full.to_str().unwrap(),
        "--data-dir",
        from_etcd.data_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
}
