//! The instance registry on a real cluster (contracts/hermes.md §2.4–§2.5): every node
//! registers as a gateway, the status API lists them, the count splits rate limits, and a node
//! that stops leaves at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::Api;
use crate::harness::*;
use crate::upstream::Upstream;

fn gateway_instances(node: &Node) -> Option<i64> {
    let (_, text) = get(&format!("{}/metrics", node.admin())).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("hermes_gateway_instances ")?
            .trim()
            .parse()
            .ok()
    })
}

fn listed(admin: &Api) -> Vec<Value> {
    let (status, body) = admin.get("/api/v1/status/instances");
    assert_eq!(status, 200, "{body}");
    body["instances"].as_array().cloned().unwrap_or_default()
}

/// How many of `n` requests to `node` get 200.
fn admitted(node: &Node, n: usize) -> usize {
    (0..n)
        .filter(|_| node.proxy_get("split.test", "/").status == 200)
        .count()
}

#[test]
fn nodes_register_as_gateways_share_limits_and_leave_when_stopped() {
    let up = Upstream::start("u");
    let mut c = Cluster::start(3);
    let admin = Api::anonymous(&c.node(1).admin()).admin_credential();

    phase(1, "every node registers, and every node counts three");
    let instances = wait_for("three instances", Duration::from_secs(20), || {
        Some(listed(&admin)).filter(|l| l.len() == 3)
    });
    for (n, i) in instances.iter().enumerate() {
        let id = i["id"].as_str().unwrap();
        assert!(id.ends_with(&format!("-{:08x}", n + 1)), "{i}");
        assert_eq!(i["status"], "running", "{i}");
        for field in ["started_at", "registered_at", "last_keepalive_at"] {
            assert!(
                i[field].as_str().is_some_and(|t| t.ends_with('Z')),
                "{field}: {i}"
            );
        }
    }
    for id in 1..=3 {
        let node = c.node(id);
        wait_for("a count of three", Duration::from_secs(10), || {
            (gateway_instances(node) == Some(3)).then_some(())
        });
    }

    // No external controller reports: the raft leader is the controller, and says so.
    let (status, body) = admin.get("/api/v1/status/controller");
    assert_eq!(status, 200, "{body}");
    let controller = &body["controller"];
    assert_eq!(controller["embedded"], true, "{body}");
    assert_eq!(controller["is_leader"], true, "{body}");
    let leader = controller["raft_member_id"].as_u64().unwrap();
    assert!((1..=3).contains(&leader), "{body}");
    assert!(controller["id"]
        .as_str()
        .unwrap()
        .ends_with(&format!("-{leader:08x}")));

    phase(
        2,
        "a limit of 30 a minute for the route: each node admits its third",
    );
    let n1 = c.node(1);
    n1.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    n1.put_key(
        "/hermes/domains/split",
        &json!({"name": "split", "hosts": ["split.test"], "routes": [{"name": "all", "uri": "/*",
            "clusters": [{"name": "u"}],
            "rate_limit": {"mode": "count", "count": 30, "time_window": 60, "key": "route"}}]})
        .to_string(),
    );
    wait_for("the route on node 1", Duration::from_secs(10), || {
        (n1.proxy_get("split.test", "/").status != 404).then_some(())
    });
    // One request was spent finding the route.
    assert_eq!(admitted(n1, 20), 9);

    phase(
        3,
        "node 3 stops: it leaves the registry and the others take half each",
    );
    c.node_mut(3).terminate();
    let n1 = c.node(1);
    wait_for("a count of two", Duration::from_secs(5), || {
        (gateway_instances(n1) == Some(2)).then_some(())
    });
    assert_eq!(listed(&admin).len(), 2);
    // Fifteen a minute now, ten of them spent.
    assert_eq!(admitted(n1, 20), 5);
}
