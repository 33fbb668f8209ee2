//! A follower that was down while the leader snapshotted and purged its log catches up by
//! installing a snapshot, and then holds the same data, revision and history as the others.
//!
//! The nodes run without the instance registry (`--instance-registry off`): these tests
//! count store revisions, which its leased keys would move.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;

#[test]
fn lagging_follower_installs_a_snapshot_with_history() {
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-every",
            "200",
            "--initial-admin",
            "off",
            "--instance-registry",
            "off",
        ],
    );
    let leader = c.leader();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.node(leader).put("/snap/first", "0").unwrap();
    c.node_mut(follower).kill9();

    // More entries than the leader keeps after a snapshot (1000), one write per entry.
    let writer = c.node(leader);
    for i in 0..1300 {
        let (status, body) = writer
            .put(&format!("/snap/k{:02}", i % 50), &i.to_string())
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let revision = writer.revision(false);

    c.node_mut(follower).start();
    c.node(follower).wait_ready(Duration::from_secs(30));
    wait_for("the follower to catch up", Duration::from_secs(30), || {
        (c.node(follower).revision(true) == revision).then_some(())
    });
    assert!(
        c.node(follower)
            .log()
            .contains("installed snapshot from leader"),
        "the follower caught up without a snapshot; the test did not exercise one"
    );
    assert_eq!(
        c.node(follower).range_prefix("/snap/", true),
        c.node(leader).range_prefix("/snap/", true)
    );
    // History came with the snapshot: an old revision still reads on the follower.
    let (status, body) = post(
        &format!("{}/v3/kv/range", c.node(follower).etcd()),
        &json!({"key": b64("/snap/first"), "revision": "2", "serializable": true}),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(unb64(&body["kvs"][0]["value"]), "0");
}
