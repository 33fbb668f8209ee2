//! Leases: keep-alives through a follower hold a lease across the loss of the leader (the new
//! leader starts every lease's clock afresh, as etcd's), and once keep-alives stop the lease
//! expires on every node, not before its TTL.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::*;

const TTL: i64 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t30_keepalives_hold_a_lease_across_failover_then_it_expires() {
    let mut cluster = TestCluster::start(3).await;
    let old_leader = cluster.leader(&cluster.ids()).await;
    // Keep-alives go through a node that survives.
    let via = cluster.follower(old_leader);

    phase(1, "a 2 s lease with a key, granted through a follower");
    let lease = cluster.node(via).lease_grant(0, TTL).await.unwrap();
    assert_eq!(lease.ttl, TTL);
    put_leased(cluster.node(via), "/leased", "x", lease.id)
        .await
        .unwrap();

    phase(
        2,
        "keep-alives every 300 ms for 6 s; the leader is lost after 2 s",
    );
    let started = Instant::now();
    let mut stopped_leader = false;
    while started.elapsed() < Duration::from_secs(6) {
        if !stopped_leader && started.elapsed() > Duration::from_secs(2) {
            cluster.stop(old_leader).await;
            stopped_leader = true;
        }
        // During the election a keep-alive may find no leader; the next one gets through.
        if let Ok(ttl) = cluster.node(via).lease_keepalive(lease.id).await {
            assert_eq!(ttl, TTL, "a keep-alive answers the granted TTL");
        }
        for id in cluster.ids() {
            assert!(
                local_value(cluster.node(id), "/leased").is_some(),
                "the kept-alive lease expired on node {id} after {:?}",
                started.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let survivors = cluster.ids();
    let new_leader = cluster.leader(&survivors).await;
    assert_ne!(new_leader, old_leader);

    phase(
        3,
        "keep-alives stop: the lease expires on every survivor, not before its TTL",
    );
    let last_keepalive = Instant::now();
    cluster.node(via).lease_keepalive(lease.id).await.unwrap();
    wait_until("the leased key gone from every survivor", || {
        survivors
            .iter()
            .all(|id| local_value(cluster.node(*id), "/leased").is_none())
    })
    .await;
    let lived = last_keepalive.elapsed();
    assert!(
        lived >= Duration::from_secs(TTL as u64) - Duration::from_millis(100),
        "expired {lived:?} after the last keep-alive, before its {TTL} s TTL"
    );
    assert_eq!(
        cluster.node(via).lease_keepalive(lease.id).await.unwrap(),
        0
    );
    cluster.shutdown().await;
}
