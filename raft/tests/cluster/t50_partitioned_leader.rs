//! A leader cut off from the rest must not acknowledge a write: writes sent to it fail (and
//! promptly, once it knows it lost its quorum), the majority elects a new leader and goes on,
//! and after the partition heals none of the refused writes appears anywhere.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_a_partitioned_leader_acknowledges_nothing() {
    let cluster = TestCluster::start(3).await;
    let old_leader = cluster.leader(&cluster.ids()).await;
    put(cluster.node(old_leader), "/before", "x").await.unwrap();

    phase(1, "the leader is cut off from both followers");
    cluster.router.isolate(old_leader);
    let majority: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|i| *i != old_leader)
        .collect();

    phase(2, "writes sent to it for 4 s all fail");
    let started = Instant::now();
    let mut refused = Vec::new();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let key = format!("/isolated/{i}");
        i += 1;
        let outcome = tokio::time::timeout(
            Duration::from_secs(10),
            put(cluster.node(old_leader), &key, "x"),
        )
        .await
        .expect("a write to a partitioned leader must end, not hang");
        assert!(
            outcome.is_err(),
            "the partitioned leader acknowledged {key}: {outcome:?}"
        );
        refused.push(key);
    }
    assert!(!refused.is_empty());

    phase(3, "the majority elects a leader and takes writes");
    let new_leader = cluster.leader(&majority).await;
    assert_ne!(new_leader, old_leader);
    put(cluster.node(new_leader), "/after", "y").await.unwrap();

    phase(
        4,
        "healed: the old leader follows, and no refused write exists anywhere",
    );
    cluster.router.heal_all();
    cluster.leader(&cluster.ids()).await;
    let index = cluster.node(new_leader).commit_index();
    cluster.applied_everywhere(index).await;
    for id in cluster.ids() {
        let node = cluster.node(id);
        assert_eq!(
            local_value(node, "/after").as_deref(),
            Some("y"),
            "node {id}"
        );
        for key in &refused {
            assert!(
                local_value(node, key).is_none(),
                "node {id} holds {key}, which was never acknowledged"
            );
        }
    }
    cluster.shutdown().await;
}
