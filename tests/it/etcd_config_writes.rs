//! A domain or cluster written straight through a node's etcd endpoint (as an original
//! controller, or an operator with etcdctl, would) on a node whose control store is its own:
//! the write is a recorded change by operator `etcd` (history, change feed, revision, meta key)
//! and is served; a value the gateway would refuse, a lease, a transaction, the meta key and a
//! nested key are refused with the reason; a delete is recorded too.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::Api;
use crate::harness::*;
use crate::upstream::Upstream;

fn domain(name: &str, host: &str) -> String {
    json!({"name": name, "hosts": [host],
           "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]})
    .to_string()
}

fn etcd_post(node: &Node, path: &str, body: &Value) -> (u16, Value) {
    post(&format!("{}{path}", node.etcd()), body).unwrap()
}

#[test]
fn configuration_written_through_etcd_is_recorded_checked_and_served() {
    let up = Upstream::start("be");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.wait_ready(Duration::from_secs(10));
    let api = Api::anonymous(&node.admin());

    phase(
        1,
        "A put is a recorded change by operator etcd, and is served.",
    );
    node.put_key(
        "/hermes/clusters/be",
        &json!({"name": "be", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    node.put_key("/hermes/domains/web", &domain("web", "web.test"));
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("web.test", "/").status == 200).then_some(())
    });
    let (s, b) = api.get("/api/v1/domains/web/history");
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (&b["history"][0]["action"], &b["history"][0]["operator"]),
        (&json!("create"), &json!("etcd")),
        "{b}"
    );
    // Without a name, the key's is the document's.
    node.put_key(
        "/hermes/domains/web",
        &json!({"hosts": ["web2.test"],
                "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]})
        .to_string(),
    );
    let (_, b) = api.get("/api/v1/domains/web");
    assert_eq!(
        (b["resource_version"].as_i64(), &b["domain"]["name"]),
        (Some(2), &json!("web"))
    );
    let (_, b) = api.get("/api/v1/config/watch?revision=0");
    let actions: Vec<(String, String)> = b["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("be".to_string(), "create".to_string()),
            ("web".to_string(), "create".to_string()),
            ("web".to_string(), "update".to_string()),
        ]
    );
    let (_, b) = api.get("/api/v1/config/revision");
    let revision = b["revision"].as_i64().unwrap();
    assert_eq!(
        node.range_prefix("/hermes/meta/config_revision", false)
            .values()
            .next()
            .unwrap(),
        &revision.to_string()
    );

    phase(
        2,
        "What cannot be recorded, or would not be served, is refused with the reason.",
    );
    let put = |key: &str, value: &str, extra: Value| {
        let mut body = json!({"key": b64(key), "value": b64(value)});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        etcd_post(node, "/v3/kv/put", &body)
    };
    for (key, value, extra, code, says) in [
        (
            "/hermes/domains/web",
            "{not json",
            json!({}),
            3,
            "not a JSON document",
        ),
        (
            "/hermes/domains/web",
            &domain("other", "x.test"),
            json!({}),
            3,
            "is not the key's",
        ),
        (
            "/hermes/clusters/be",
            &json!({"name": "be", "nodes": [{"host": "127.0.0.1", "port": 70000}]}).to_string(),
            json!({}),
            3,
            "the gateway would refuse it",
        ),
        (
            "/hermes/domains/a/b",
            &domain("a", "a.test"),
            json!({}),
            3,
            "not a resource key",
        ),
        (
            "/hermes/meta/config_revision",
            "999",
            json!({}),
            9,
            "control plane",
        ),
        (
            "/hermes/domains/web",
            &domain("web", "w.test"),
            json!({"lease": "7587"}),
            3,
            "lease",
        ),
    ] {
        let (s, b) = put(key, value, extra);
        assert_eq!(b["code"], code, "{key}: {b}");
        assert!(s >= 400, "{key}: {s}");
        assert!(b["message"].as_str().unwrap().contains(says), "{key}: {b}");
    }
    let (_, b) = etcd_post(
        node,
        "/v3/kv/txn",
        &json!({"success": [{"request_put": {"key": b64("/hermes/domains/t"), "value": b64(&domain("t", "t.test"))}}]}),
    );
    assert_eq!(b["code"], 9, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("transaction"),
        "{b}"
    );
    // Nothing of that was written; the route still serves.
    let (_, b) = api.get("/api/v1/domains/web/history");
    assert_eq!(b["total"], 2, "{b}");
    assert_eq!(node.proxy_get("web2.test", "/").status, 200);
    // Keys that are not configuration are plain etcd keys, transactions included.
    node.put_key("/app/settings", "anything");
    let (s, b) = etcd_post(
        node,
        "/v3/kv/txn",
        &json!({"success": [{"request_put": {"key": b64("/app/t"), "value": b64("x")}}]}),
    );
    assert_eq!(s, 200, "{b}");

    phase(
        3,
        "A delete of a range records one delete per resource in it.",
    );
    let (s, b) = etcd_post(
        node,
        "/v3/kv/deleterange",
        &json!({"key": b64("/hermes/domains/"), "range_end": b64(&prefix_end("/hermes/domains/")), "prev_kv": true}),
    );
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["deleted"], "1", "{b}");
    assert_eq!(unb64(&b["prev_kvs"][0]["key"]), "/hermes/domains/web");
    wait_for("the route gone", Duration::from_secs(10), || {
        (node.proxy_get("web2.test", "/").status == 404).then_some(())
    });
    let (_, b) = api.get("/api/v1/domains/web/history");
    assert_eq!(
        (&b["history"][0]["action"], &b["history"][0]["operator"]),
        (&json!("delete"), &json!("etcd")),
        "{b}"
    );
    assert_eq!(api.get("/api/v1/domains/web").0, 404);
}
