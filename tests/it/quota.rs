//! A storage quota (etcd's `--quota-backend-bytes`): once the state machine passes it, writes
//! that would grow the store are refused with etcd's NOSPACE answer while reads and deletes go
//! on; the control plane refuses with 507; and no document over the per-resource limit is stored.

use std::time::Duration;

use serde_json::json;

use crate::api_client::Api;
use crate::harness::*;

#[test]
fn a_full_store_refuses_growth_but_serves_reads_and_deletes() {
    let quota = 6u64 << 20;
    let c = Cluster::start_with(
        1,
        &[
            "--quota-backend-bytes",
            &quota.to_string(),
            "--max-document-bytes",
            "4096",
        ],
    );
    let node = c.node(1);
    let admin = Api::anonymous(&node.admin()).admin_credential();
    // Per resource: a document over the limit is refused, whatever the quota.
    let big_host: Vec<String> = (0..400).map(|i| format!("h{i}.example")).collect();
    let (s, b) = admin.post(
        "/api/v1/domains",
        &json!({"name": "huge", "hosts": big_host, "routes": []}),
    );
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("--max-document-bytes"), "{b}");

    // Fill the store with 64 KiB values until it refuses.
    let value = "x".repeat(64 << 10);
    let mut refused = None;
    for i in 0..2000 {
        let (s, b) = node.put(&format!("/fill/{i:05}"), &value).unwrap();
        if s != 200 {
            refused = Some((i, s, b));
            break;
        }
    }
    let (written, status, body) = refused.expect("the quota was never reached");
    assert!(written > 10, "refused after only {written} writes: {body}");
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["message"], "etcdserver: mvcc: database space exceeded");
    // Reads go on.
    assert_eq!(node.range_prefix("/fill/00000", false).len(), 1);
    // The alarm is listed, and the metric says so.
    let (s, alarms) = post(
        &format!("{}/v3/maintenance/alarm", node.etcd()),
        &json!({"action": "GET"}),
    )
    .unwrap();
    assert_eq!(s, 200);
    assert_eq!(alarms["alarms"][0]["alarm"], "NOSPACE", "{alarms}");
    let metrics = get(&format!("{}/metrics", node.admin())).unwrap().1;
    assert!(
        metrics.contains("hermes_store_alarm_nospace 1"),
        "{metrics}"
    );
    // The control plane refuses growth with 507.
    let cluster = json!({"name": "c", "nodes": [{"host": "10.0.0.1", "port": 80, "weight": 1}]});
    let (s, b) = admin.post("/api/v1/clusters", &cluster);
    assert_eq!(s, 507, "{b}");
    // Deletes, which free space, are taken.
    let (s, b) = post(
        &format!("{}/v3/kv/deleterange", node.etcd()),
        &json!({"key": b64("/fill/"), "range_end": b64(&prefix_end("/fill/"))}),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    wait_for("the deletes to be visible", Duration::from_secs(5), || {
        node.range_prefix("/fill/", false).is_empty().then_some(())
    });
}
