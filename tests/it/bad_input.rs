//! Bad input to the etcd endpoint gets a 4xx with a clear message, never a panic or a hang, and
//! nothing already stored is lost.

use serde_json::{json, Value};

use crate::harness::*;

fn big(len: usize) -> String {
    b64(&"x".repeat(len))
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let c = Cluster::start(1);
    let node = c.node(1);
    let etcd = node.etcd();
    for i in 0..5 {
        node.put(&format!("/keep/{i}"), &format!("value-{i}"))
            .unwrap();
    }
    let before = node.range_prefix("/keep/", false);
    let revision_before = node.revision(false);

    let too_many: Vec<Value> = (0..129)
        .map(|i| json!({"request_put": {"key": b64(&format!("/t/{i}")), "value": b64("v")}}))
        .collect();
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("broken JSON", "/v3/kv/put", "{\"key\": ".into(), "invalid JSON"),
        ("not an object", "/v3/kv/range", "[1,2]".into(), "expected a JSON object"),
        ("bad base64", "/v3/kv/put", json!({"key": "!!!", "value": "eA=="}).to_string(), "base64"),
        ("unknown field", "/v3/kv/put", json!({"key": b64("/k"), "valeu": b64("v")}).to_string(), "unknown field \"valeu\""),
        ("wrong type", "/v3/kv/range", json!({"key": b64("/k"), "limit": "ten"}).to_string(), "limit"),
        ("wrong type bool", "/v3/kv/put", json!({"key": b64("/k"), "prev_kv": "yes"}).to_string(), "prev_kv"),
        ("bad enum", "/v3/kv/range", json!({"key": b64("/k"), "sort_order": "UP"}).to_string(), "SortOrder"),
        ("empty key", "/v3/kv/put", json!({"key": "", "value": b64("v")}).to_string(), "key is not provided"),
        ("value over 1.5 MiB", "/v3/kv/put", json!({"key": b64("/big"), "value": big(1536 * 1024)}).to_string(), "request is too large"),
        ("body far over the limit", "/v3/kv/put", json!({"key": b64("/big"), "value": big(8 * 1024 * 1024)}).to_string(), "request is too large"),
        ("txn over 128 ops", "/v3/kv/txn", json!({"success": too_many}).to_string(), "too many operations"),
        (
            "txn duplicate key",
            "/v3/kv/txn",
            json!({"success": [{"request_put": {"key": b64("/keep/0"), "value": b64("a")}}, {"request_put": {"key": b64("/keep/0"), "value": b64("b")}}]}).to_string(),
            "duplicate key",
        ),
        (
            "txn op with two requests",
            "/v3/kv/txn",
            json!({"success": [{"request_put": {"key": b64("/keep/0")}, "request_range": {"key": b64("/keep/0")}}]}).to_string(),
            "more than one request",
        ),
        ("unknown lease", "/v3/kv/put", json!({"key": b64("/keep/0"), "value": b64("z"), "lease": "12345"}).to_string(), "lease not found"),
        ("delete everything without a key", "/v3/kv/deleterange", json!({"range_end": b64("\u{0}")}).to_string(), "key is not provided"),
        ("negative lease id", "/v3/lease/grant", json!({"TTL": 10, "ID": -5}).to_string(), "negative"),
        ("lease TTL too large", "/v3/lease/grant", json!({"TTL": 9_000_000_001i64}).to_string(), "too large lease TTL"),
        ("future revision", "/v3/kv/range", json!({"key": b64("/keep/0"), "revision": "999999"}).to_string(), "future revision"),
        ("watch with garbage", "/v3/watch", "{\"create_request\": 5}".into(), "expected a JSON object"),
    ];
    for (name, path, body, expect) in cases {
        let (status, answer) = post_raw(&format!("{etcd}{path}"), &body)
            .unwrap_or_else(|e| panic!("{name}: no answer ({e})"));
        let text = answer.to_string();
        if path == "/v3/watch" {
            // A stream reports errors in-band, like etcd.
            assert!(text.contains(expect), "{name}: {text}");
            continue;
        }
        assert!(
            (400..500).contains(&status),
            "{name}: status {status}, body {text}"
        );
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(expect),
            "{name}: message {message:?} should mention {expect:?}"
        );
        assert_eq!(
            answer["error"].as_str(),
            Some(message),
            "{name}: etcd's error shape"
        );
    }
    assert_eq!(
        node.range_prefix("/keep/", false),
        before,
        "stored keys changed"
    );
    assert_eq!(
        node.revision(false),
        revision_before,
        "a refused request created a revision"
    );
    assert!(
        node.readyz().is_some_and(|(s, _)| s == 200),
        "node still healthy"
    );
}
