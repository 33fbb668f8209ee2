//! Watches over the etcd JSON API: resuming from a revision delivers every later event exactly
//! once and in order, on any node; asking for compacted history is answered with a cancel that
//! carries `compact_revision`.
//!
//! The nodes run without the instance registry (`--instance-registry off`): these tests
//! count store revisions, which its leased keys would move.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

fn create(key: &str, range_end: &str, start: i64) -> String {
    json!({"create_request": {"key": b64(key), "range_end": b64(range_end), "start_revision": start.to_string()}})
        .to_string()
}

/// Collects (revision, key, value) of events until `want` have arrived.
fn collect(stream: &LineStream, want: usize) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    while out.len() < want {
        let line: Value = stream
            .next(Duration::from_secs(10))
            .unwrap_or_else(|| panic!("stream ended after {} of {want} events", out.len()));
        for e in line["result"]["events"].as_array().into_iter().flatten() {
            let rev = e["kv"]["mod_revision"].as_str().unwrap().parse().unwrap();
            out.push((rev, unb64(&e["kv"]["key"]), unb64(&e["kv"]["value"])));
        }
    }
    out
}

#[test]
fn resume_from_revision_delivers_each_later_event_once_in_order() {
    let c = Cluster::start_with(3, &["--initial-admin", "off", "--instance-registry", "off"]);
    let writer = c.node(1);
    let mut revisions = Vec::new();
    for i in 0..40 {
        let (_, body) = writer
            .put(&format!("/w/k{}", i % 7), &format!("v{i}"))
            .unwrap();
        revisions.push(
            body["header"]["revision"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
        );
        writer.put("/elsewhere", "noise").unwrap();
    }
    // A watcher that saw everything up to the 20th write reconnects from the next revision.
    let resume_at = revisions[19] + 1;
    let mut next_live = 40;
    for node in &c.nodes {
        let expected: Vec<i64> = revisions
            .iter()
            .copied()
            .filter(|r| *r >= resume_at)
            .collect();
        let stream = LineStream::open(
            &format!("{}/v3/watch", node.etcd()),
            &create("/w/", "/w0", resume_at),
        );
        let created = stream.next(Duration::from_secs(10)).unwrap();
        assert_eq!(created["result"]["created"], true, "{created}");
        let events = collect(&stream, expected.len());
        let got: Vec<i64> = events.iter().map(|e| e.0).collect();
        assert_eq!(got, expected, "node {} history replay", node.id);
        // Live events follow, still once each and in order, whoever writes them.
        let batch = next_live..next_live + 10;
        next_live += 10;
        for i in batch.clone() {
            let (_, body) = c
                .node(2)
                .put(&format!("/w/k{i}"), &format!("v{i}"))
                .unwrap();
            revisions.push(
                body["header"]["revision"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap(),
            );
        }
        let live = collect(&stream, 10);
        let keys: Vec<String> = live.iter().map(|e| e.1.clone()).collect();
        let want: Vec<String> = batch.map(|i| format!("/w/k{i}")).collect();
        assert_eq!(keys, want, "node {} live events", node.id);
        assert!(live.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            stream.next(Duration::from_millis(300)).is_none(),
            "no duplicates"
        );
    }
}

#[test]
fn watch_on_compacted_history_is_cancelled_with_compact_revision() {
    let c = Cluster::start_with(1, &["--initial-admin", "off", "--instance-registry", "off"]);
    let node = c.node(1);
    for i in 0..10 {
        node.put("/c/key", &i.to_string()).unwrap();
    }
    let (status, body) = post(
        &format!("{}/v3/kv/compaction", node.etcd()),
        &json!({"revision": "6"}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let stream = LineStream::open(
        &format!("{}/v3/watch", node.etcd()),
        &create("/c/key", "", 3),
    );
    let created = stream.next(Duration::from_secs(10)).unwrap();
    assert_eq!(created["result"]["created"], true);
    let cancel = stream.next(Duration::from_secs(10)).unwrap();
    assert_eq!(cancel["result"]["canceled"], true, "{cancel}");
    assert_eq!(cancel["result"]["compact_revision"], "6", "{cancel}");
    // From just above the floor, history is there.
    let ok = LineStream::open(
        &format!("{}/v3/watch", node.etcd()),
        &create("/c/key", "", 7),
    );
    ok.next(Duration::from_secs(10)).unwrap();
    // Ten puts on a fresh store are revisions 2..=11.
    let events = collect(&ok, 5);
    assert_eq!(
        events.iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![7, 8, 9, 10, 11]
    );
}

#[test]
fn automatic_compaction_keeps_the_configured_history() {
    let c = Cluster::start_with(
        1,
        &[
            "--history-retention",
            "20",
            "--initial-admin",
            "off",
            "--instance-registry",
            "off",
        ],
    );
    let node = c.node(1);
    for i in 0..100 {
        node.put("/auto/key", &i.to_string()).unwrap();
    }
    let head = node.revision(false);
    let at = |rev: i64| {
        post(
            &format!("{}/v3/kv/range", node.etcd()),
            &json!({"key": b64("/auto/key"), "revision": rev.to_string()}),
        )
        .unwrap()
    };
    let (status, body) = wait_for("automatic compaction", Duration::from_secs(15), || {
        Some(at(2)).filter(|(s, _)| *s != 200)
    });
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("compacted"),
        "{body}"
    );
    // The most recent 20 revisions stay readable.
    let (status, body) = at(head - 19);
    assert_eq!(status, 200, "{body}");
    // A watcher asking for compacted history is told where history starts.
    let stream = LineStream::open(
        &format!("{}/v3/watch", node.etcd()),
        &create("/auto/key", "", 2),
    );
    stream.next(Duration::from_secs(10)).unwrap();
    let cancel = stream.next(Duration::from_secs(10)).unwrap();
    let floor: i64 = cancel["result"]["compact_revision"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        floor >= head - 22 && floor <= head - 20,
        "floor {floor}, head {head}"
    );
}
