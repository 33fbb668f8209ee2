//! Compat mode with real programs: Debian's PostgreSQL 15 and etcd 3.4, each started by the
//! test on free loopback ports, and `hermes` nodes in single roles. A node serves a database
//! the original server filled, writes back in its layout and rides out a database restart;
//! and the original flow runs end to end: API on node A (PostgreSQL) → controller on node B
//! (two of them, one leading, the other taking over when it is killed) → etcd (restarted
//! midway) → gateway on node C.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{Api, Auth};
use crate::harness::*;
use crate::upstream::Upstream;
use hermes_compat::testing::etcd::TestEtcd;
use hermes_compat::testing::postgres::TestPg;

/// Whether a controller leads, as its `/metrics` says.
const LEADER: &str = "hermes_controller_leader{namespace=\"default\"}";

/// A node with external stores, started with `args`.
fn compat_node(root: &std::path::Path, id: u64, args: &[&str]) -> Node {
    let mut node = Node::new(root, id);
    node.embedded_store = false;
    node.proxies = args
        .windows(2)
        .any(|w| w[0] == "--roles" && w[1].contains("gateway"));
    node.extra_args = args.iter().map(|a| a.to_string()).collect();
    node.start();
    node
}

/// `key`'s value in the etcd at `endpoint`, read with etcdctl.
fn etcd_value(endpoint: &str, key: &str) -> Option<String> {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &format!("http://{endpoint}")])
        .args(["get", key, "--print-value-only"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    (!text.is_empty()).then_some(text)
}

const GO_SECRET: &str = "5f2b9c0e7a1d4e8f9b3c6a2d1e0f4b7c8d9e2a1b3c4d5e6f7a8b9c0d1e2f3a4b";

#[test]
fn a_server_node_serves_an_original_database_and_rides_out_its_restart() {
    let pg = TestPg::start();
    // The database as an original server left it: its schema, and rows as it writes them.
    pg.psql(hermes_compat::postgres::ORIGINAL_SCHEMA);
    let hash = hermes_control::auth::password::hash_as(
        hermes_control::auth::password::Scheme::Bcrypt,
        "ops-password",
    )
    .unwrap();
    pg.psql(&format!(
        r#"
        INSERT INTO api_credentials (namespace, access_key, secret_key, description, scopes)
          VALUES ('default', 'AKGO', '{GO_SECRET}', 'go controller',
                  '{{config:read,config:write,config:watch,status:read,status:write}}');
        INSERT INTO users (sub, username, email, name, is_admin, password_hash)
          VALUES ('builtin:ops@example.com', 'ops', 'ops@example.com', 'ops', TRUE, '{hash}');
        INSERT INTO clusters (namespace, name, config) VALUES ('default', 'be',
          '{{"name":"be","lb_type":"roundrobin","nodes":[{{"host":"127.0.0.1","port":8081,"weight":1}}]}}');
        INSERT INTO domains (namespace, name, config) VALUES ('default', 'web',
          '{{"name":"web","hosts":["web.example.com"],"routes":[{{"name":"all","uri":"/*","clusters":[{{"name":"be","weight":100}}]}}]}}');
        INSERT INTO config_history (namespace, kind, name, version, action, operator, config, created_at)
          SELECT 'default', 'cluster', 'be', 1, 'create', 'alice', config, '2024-05-01 10:00:00+00' FROM clusters;
        INSERT INTO config_history (namespace, kind, name, version, action, operator, config, created_at)
          SELECT 'default', 'domain', 'web', 1, 'create', 'alice', config, '2024-05-01 10:01:00+00' FROM domains;
        INSERT INTO change_log (namespace, kind, name, action, operator, config)
          SELECT 'default', 'cluster', 'be', 'create', 'alice', config FROM clusters;
        INSERT INTO change_log (namespace, kind, name, action, operator, config)
          SELECT 'default', 'domain', 'web', 'create', 'alice', config FROM domains;
        "#
    ));
    let dir = tempfile::tempdir().unwrap();
    let dsn = pg.dsn();
    let node = compat_node(
        dir.path(),
        1,
        &["--roles", "server", "--control-store", &dsn],
    );
    node.wait_ready(Duration::from_secs(30));
    // The original controller's credential, signed the original's way.
    let api = Api::anonymous(&node.admin()).with(Auth::HmacV1 {
        access_key: "AKGO".into(),
        secret_key: GO_SECRET.into(),
    });

    phase(
        1,
        "What the original wrote, served as the original API answers.",
    );
    let (s, b) = api.get("/api/v1/domains");
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["total"], 1);
    assert_eq!(b["domains"][0]["name"], "web");
    assert_eq!(b["domains"][0]["hosts"], json!(["web.example.com"]));
    let (s, b) = api.get("/api/v1/domains/web");
    assert_eq!((s, b["resource_version"].as_i64()), (200, Some(1)), "{b}");
    let (_, b) = api.get("/api/v1/domains/web/history");
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(
        (
            &b["history"][0]["version"],
            &b["history"][0]["action"],
            &b["history"][0]["operator"],
            &b["history"][0]["timestamp"]
        ),
        (
            &json!(1),
            &json!("create"),
            &json!("alice"),
            &json!("2024-05-01T10:01:00Z")
        )
    );
    let (s, b) = api.get("/api/v1/config/revision");
    let revision: i64 = pg
        .psql("SELECT MAX(revision) FROM change_log WHERE namespace = 'default'")
        .parse()
        .unwrap();
    assert_eq!((s, b["revision"].as_i64()), (200, Some(revision)), "{b}");
    let (s, b) = api.get("/api/v1/config/watch?revision=0");
    assert_eq!(s, 200, "{b}");
    let events = b["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{b}");
    assert_eq!(events[1]["domain"]["name"], "web");
    // The original's user signs in with the bcrypt hash the original stored.
    let ops = Api::anonymous(&node.admin()).sign_in("ops@example.com", "ops-password");
    assert_eq!(ops.get("/api/v1/users").0, 200);
    // Still bcrypt after the sign-in: original servers on this database verify it too.
    assert!(pg
        .psql("SELECT password_hash FROM users WHERE sub = 'builtin:ops@example.com'")
        .starts_with("$2a$10$"));

    phase(2, "Writes through the node, read back by plain SQL.");
    let update = json!({"resource_version": 1, "name": "web", "hosts": ["web2.example.com"],
        "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be", "weight": 100}]}]});
    let (s, b) = api.put("/api/v1/domains/web", &update);
    assert_eq!(
        (s, b["version"].as_i64(), b["resource_version"].as_i64()),
        (200, Some(2), Some(2)),
        "{b}"
    );
    assert_eq!(
        pg.psql("SELECT resource_version, config->'hosts'->>0 FROM domains WHERE name = 'web'"),
        "2|web2.example.com"
    );
    assert_eq!(
        pg.psql(
            "SELECT version || ' ' || action || ' ' || operator FROM config_history \
             WHERE kind = 'domain' AND name = 'web' ORDER BY version"
        ),
        "1 create alice\n2 update credential:AKGO"
    );
    assert_eq!(
        pg.psql(
            "SELECT action || ' ' || (config->'hosts'->>0) FROM change_log \
             WHERE kind = 'domain' ORDER BY revision DESC LIMIT 1"
        ),
        "update web2.example.com"
    );

    phase(
        3,
        "The database restarts; the node says so, then recovers by itself.",
    );
    pg.stop();
    let (s, b) = api.get("/api/v1/domains");
    assert_eq!(s, 503, "{b}");
    let message = b.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", pg.port)),
        "names the server: {message}"
    );
    assert!(!message.contains("pw-never-shown"), "{message}");
    pg.start_again();
    let domains = wait_for("the node serving again", Duration::from_secs(30), || {
        let (s, b) = api.get("/api/v1/domains");
        (s == 200).then_some(b)
    });
    assert_eq!(domains["domains"][0]["hosts"], json!(["web2.example.com"]));
    assert_eq!(
        pg.psql("SELECT count(*) FROM config_history WHERE name = 'web'"),
        "2"
    );
    // And it writes again.
    let (s, b) = api.post(
        "/api/v1/clusters",
        &json!({"name": "be2", "nodes": [{"host": "127.0.0.1", "port": 8082}]}),
    );
    assert_eq!(s, 201, "{b}");
    // This node runs no raft store: its cluster API says so.
    let (s, b) = get(&format!("{}/api/v1/cluster/status", node.admin())).unwrap();
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("no raft store"), "{b}");
}

#[test]
fn the_original_flow_end_to_end_through_postgres_and_etcd() {
    let up = Upstream::start("chain");
    let pg = TestPg::start();
    let mut etcd = TestEtcd::start();
    let dir = tempfile::tempdir().unwrap();
    let dsn = pg.dsn();
    let config_store = format!("etcd://{}", etcd.endpoint());
    let controller_args = [
        "--roles",
        "controller",
        "--control-store",
        &dsn,
        "--config-store",
        &config_store,
        "--controller-lease-ttl-secs",
        "3",
    ];
    let a = compat_node(
        dir.path(),
        1,
        &["--roles", "server", "--control-store", &dsn],
    );
    let mut controllers = [
        compat_node(dir.path(), 2, &controller_args),
        compat_node(dir.path(), 3, &controller_args),
    ];
    let c = compat_node(
        dir.path(),
        4,
        &["--roles", "gateway", "--config-store", &config_store],
    );
    for node in [&a, &controllers[0], &controllers[1], &c] {
        node.wait_ready(Duration::from_secs(30));
    }
    // C has no control store: its operator views refuse every caller, even a loopback one
    // (no first-time setup there); health and metrics stay open.
    let (s, b) = get(&format!("{}/api/v1/gateway/domains", c.admin())).unwrap();
    assert_eq!(s, 401, "{b}");
    assert_eq!(get(&format!("{}/metrics", c.admin())).unwrap().0, 200);
    // A fresh database: first-time setup from loopback makes the first credential, in
    // `default` (original servers sharing the database count it there).
    let api = Api::anonymous(&a.admin()).credential(&crate::api_client::ALL_SCOPES);

    phase(1, "Created on A, served by C.");
    let (s, b) = api.post(
        "/api/v1/clusters",
        &json!({"name": "be", "nodes": [{"host": "127.0.0.1", "port": up.port}]}),
    );
    assert_eq!(s, 201, "{b}");
    let domain = |host: &str, rv: Option<i64>| {
        let mut d = json!({"name": "web", "hosts": [host],
            "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]});
        if let Some(rv) = rv {
            d["resource_version"] = json!(rv);
        }
        d
    };
    let (s, b) = api.post("/api/v1/domains", &domain("chain.test", None));
    assert_eq!(s, 201, "{b}");
    wait_for("C serving the route", Duration::from_secs(20), || {
        let answer = c.proxy_get("chain.test", "/x");
        (answer.status == 200 && answer.header("x-upstream") == Some("chain")).then_some(())
    });
    let (_, b) = api.get("/api/v1/config/revision");
    let revision = b["revision"].as_i64().unwrap();
    wait_for("the meta revision in etcd", Duration::from_secs(10), || {
        (etcd_value(&etcd.endpoint(), "/hermes/meta/config_revision")? == revision.to_string())
            .then_some(())
    });
    let stored: Value =
        serde_json::from_str(&etcd_value(&etcd.endpoint(), "/hermes/domains/web").unwrap())
            .unwrap();
    assert_eq!(stored["hosts"], json!(["chain.test"]));

    phase(2, "One controller leads; killed, the other takes over.");
    let leader = wait_for(
        "a leading controller's heartbeat",
        Duration::from_secs(20),
        || {
            let (s, b) = api.get("/api/v1/status/controller");
            let c = &b["controller"];
            (s == 200 && c["is_leader"] == true && c["status"] == "running")
                .then(|| c["id"].as_str().unwrap().to_string())
        },
    );
    let leading = if leader.ends_with("-00000002") { 0 } else { 1 };
    assert!(
        leader.ends_with(&format!("-{:08x}", leading + 2)),
        "{leader}"
    );
    // Each controller says on its /metrics whether it leads, and the leader how far its copy
    // has got: all of the control store's changes, once the feed is through.
    assert_eq!(controllers[leading].metric(LEADER), Some(1.0));
    assert_eq!(controllers[1 - leading].metric(LEADER), Some(0.0));
    wait_for(
        "the leader's synced revision",
        Duration::from_secs(10),
        || {
            let synced = controllers[leading]
                .metric("hermes_controller_synced_revision{namespace=\"default\"}")?;
            (synced == revision as f64
                && controllers[leading]
                    .metric("hermes_controller_control_revision{namespace=\"default\"}")?
                    == synced)
                .then_some(())
        },
    );
    let successor = 1 - leading;
    let terms = |c: &Node| c.metric("hermes_controller_terms_total{namespace=\"default\"}");
    let terms_before = terms(&controllers[successor]).unwrap();
    controllers[leading].kill9();
    let (s, b) = api.put("/api/v1/domains/web", &domain("chain2.test", Some(1)));
    assert_eq!(s, 200, "{b}");
    wait_for(
        "the update, through the other controller",
        Duration::from_secs(20),
        || (c.proxy_get("chain2.test", "/x").status == 200).then_some(()),
    );
    assert_eq!(c.proxy_get("chain.test", "/x").status, 404);
    let (_, b) = api.get("/api/v1/status/controller");
    assert_ne!(b["controller"]["id"], json!(leader), "{b}");
    let successor = &controllers[successor];
    assert_eq!(successor.metric(LEADER), Some(1.0));
    assert!(terms(successor).unwrap() > terms_before);

    phase(
        3,
        "etcd restarts: C serves what it had, then what changed meanwhile.",
    );
    let failures = |c: &Node| -> f64 {
        ["campaign", "start", "feed", "apply", "reconcile", "report"]
            .iter()
            .filter_map(|stage| {
                c.metric(&format!(
                    "hermes_controller_errors_total{{namespace=\"default\",stage=\"{stage}\"}}"
                ))
            })
            .sum()
    };
    let failed_before = failures(successor);
    etcd.kill();
    assert_eq!(c.proxy_get("chain2.test", "/x").status, 200);
    let (s, b) = api.put("/api/v1/domains/web", &domain("chain3.test", Some(2)));
    assert_eq!(s, 200, "{b}");
    // The controller cannot write the change: its failures show, by stage.
    wait_for(
        "the controller's failures counted",
        Duration::from_secs(20),
        || (failures(successor) > failed_before).then_some(()),
    );
    etcd.start_again();
    wait_for(
        "the update made while etcd was down",
        Duration::from_secs(30),
        || (c.proxy_get("chain3.test", "/x").status == 200).then_some(()),
    );

    phase(4, "Deleted on A, gone from C.");
    assert_eq!(api.delete("/api/v1/domains/web").0, 200);
    wait_for("the delete", Duration::from_secs(20), || {
        (c.proxy_get("chain3.test", "/x").status == 404).then_some(())
    });
    assert_eq!(etcd_value(&etcd.endpoint(), "/hermes/domains/web"), None);
    // C registered itself in etcd, and the controller reported it to A.
    wait_for("C reported as an instance", Duration::from_secs(20), || {
        let (_, b) = api.get("/api/v1/status/instances");
        b["instances"]
            .as_array()?
            .iter()
            .any(|i| i["id"].as_str().is_some_and(|id| id.ends_with("-00000004")))
            .then_some(())
    });
}
