//! The leader is lost while batches of writes are in flight: every write acknowledged before,
//! during and after the loss is kept by the surviving nodes, with the revision it was
//! acknowledged with; writes that failed are reported as failed, never as done.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_acknowledged_writes_survive_losing_the_leader_mid_batch() {
    let mut cluster = TestCluster::start(3).await;
    let old_leader = cluster.leader(&cluster.ids()).await;
    // 2 ms each way keeps batches in flight (replicating, forwarded) at any moment.
    cluster.router.delay_all(Duration::from_millis(2));

    phase(1, "32 writers through every node, batched by the leader");
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..32u64 {
        let via = cluster.ids()[(w % 3) as usize];
        let node = cluster.node(via).clone();
        let stop = stop.clone();
        let count = acked_count.clone();
        writers.spawn(async move {
            let mut acked = BTreeMap::new();
            let mut failed = 0;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/w{w}/{i}");
                i += 1;
                match put(&node, &key, &key).await {
                    Ok(revision) => {
                        acked.insert(key, revision);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // The node may be the one lost; its writers just see failures.
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            (acked, failed)
        });
    }
    wait_until("500 writes acknowledged", || {
        acked_count.load(Ordering::Relaxed) >= 500
    })
    .await;

    phase(2, "the leader crashes with batches in flight");
    cluster.stop(old_leader).await;
    let survivors = cluster.ids();
    let new_leader = cluster.leader(&survivors).await;
    assert_ne!(new_leader, old_leader);
    let before = acked_count.load(Ordering::Relaxed);
    wait_until("writes acknowledged by the new leader", || {
        acked_count.load(Ordering::Relaxed) >= before + 300
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeMap::new();
    let mut failed = 0;
    while let Some(done) = writers.join_next().await {
        let (a, f) = done.unwrap();
        acked.extend(a);
        failed += f;
    }
    eprintln!("{} writes acknowledged, {failed} failed", acked.len());

    phase(
        3,
        "every acknowledged write is on every survivor, at its revision",
    );
    let index = cluster.node(new_leader).commit_index();
    cluster.applied_everywhere(index).await;
    for id in survivors {
        let store = cluster.node(id).store();
        for (key, revision) in &acked {
            let kv = store
                .get(key.as_bytes())
                .unwrap_or_else(|| panic!("node {id} lost the acknowledged {key}"));
            assert_eq!(kv.mod_revision, *revision, "node {id}, {key}");
        }
    }
    cluster.shutdown().await;
}
