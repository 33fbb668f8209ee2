//! Leases through the etcd JSON API on a three-node cluster: expiry removes attached keys on
//! every node, keep-alives hold them, and a leader change does not expire a live lease.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

fn grant(node: &Node, ttl: i64) -> String {
    let (status, body) = post(
        &format!("{}/v3/lease/grant", node.etcd()),
        &json!({"TTL": ttl}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["TTL"], ttl.to_string(), "{body}");
    body["ID"].as_str().unwrap().to_string()
}

fn put_leased(node: &Node, key: &str, lease: &str) {
    let (status, body) = post(
        &format!("{}/v3/kv/put", node.etcd()),
        &json!({"key": b64(key), "value": b64("v"), "lease": lease}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
}

fn keepalive(node: &Node, lease: &str) -> Option<i64> {
    let (status, body) = post(
        &format!("{}/v3/lease/keepalive", node.etcd()),
        &json!({"ID": lease}),
    )
    .ok()?;
    if status != 200 {
        return None;
    }
    // The body is one streamed line: {"result": {...}}.
    let line: serde_json::Value = match body {
        serde_json::Value::String(s) => serde_json::from_str(s.trim()).ok()?,
        v => v,
    };
    Some(
        line["result"]["TTL"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap(),
    )
}

fn present_everywhere(c: &Cluster, key: &str) -> Vec<bool> {
    c.nodes
        .iter()
        .map(|n| !n.range_prefix(key, true).is_empty())
        .collect()
}

#[test]
fn expiry_keepalive_and_leader_change() {
    let mut c = Cluster::start(3);

    phase(
        1,
        "a key on a 3 s lease disappears from every node after its TTL",
    );
    let short = grant(c.node(2), 3);
    put_leased(c.node(2), "/lease/short", &short);
    wait_for("the key on every node", Duration::from_secs(5), || {
        present_everywhere(&c, "/lease/short")
            .iter()
            .all(|p| *p)
            .then_some(())
    });
    let granted = Instant::now();
    wait_for("expiry on every node", Duration::from_secs(10), || {
        present_everywhere(&c, "/lease/short")
            .iter()
            .all(|p| !p)
            .then_some(())
    });
    assert!(
        granted.elapsed() >= Duration::from_secs(2),
        "expired early: {:?}",
        granted.elapsed()
    );
    let (_, ttl) = post(
        &format!("{}/v3/lease/timetolive", c.node(3).etcd()),
        &json!({"ID": short}),
    )
    .unwrap();
    assert_eq!(ttl["TTL"], "-1", "an expired lease reports TTL -1: {ttl}");

    phase(
        2,
        "keep-alives through any node hold a 3 s lease for 8 s, across a leader kill",
    );
    let held = grant(c.node(1), 3);
    put_leased(c.node(1), "/lease/held", &held);
    // The loop below reads serializably on every node: a node other than the one that took the
    // put may apply it a moment later (as in etcd), so start once every node has it.
    wait_for("the held key on every node", Duration::from_secs(5), || {
        present_everywhere(&c, "/lease/held")
            .iter()
            .all(|p| *p)
            .then_some(())
    });
    let leader = c.leader();
    let start = Instant::now();
    let mut killed = false;
    while start.elapsed() < Duration::from_secs(8) {
        if !killed && start.elapsed() > Duration::from_secs(2) {
            c.node_mut(leader).kill9();
            killed = true;
        }
        let alive: Vec<&Node> = c
            .nodes
            .iter()
            .filter(|n| n.id != leader || !killed)
            .collect();
        for node in &alive {
            if let Some(ttl) = keepalive(node, &held) {
                assert_eq!(ttl, 3, "keep-alive answers the granted TTL");
                break;
            }
        }
        for node in alive {
            assert!(
                !node.range_prefix("/lease/held", true).is_empty(),
                "live lease expired on node {} after {:?}",
                node.id,
                start.elapsed()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, ttl) = post(
        &format!(
            "{}/v3/lease/timetolive",
            c.nodes.iter().find(|n| n.id != leader).unwrap().etcd()
        ),
        &json!({"ID": held, "keys": true}),
    )
    .unwrap();
    assert_eq!(ttl["grantedTTL"], "3", "{ttl}");
    assert_eq!(ttl["keys"][0], b64("/lease/held"), "{ttl}");

    phase(
        3,
        "revoking deletes the key; keep-alive of a gone lease answers TTL 0",
    );
    let survivor = c.nodes.iter().find(|n| n.id != leader).unwrap();
    let (status, _) = post(
        &format!("{}/v3/lease/revoke", survivor.etcd()),
        &json!({"ID": held}),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(survivor.range_prefix("/lease/held", false).is_empty());
    assert_eq!(keepalive(survivor, &held), Some(0));
}
