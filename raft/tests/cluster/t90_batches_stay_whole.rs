//! Two groups of writers share proposals instead of taking turns. When one group's writes
//! queue while the other's proposal is out, the batcher must not settle into proposing each
//! group alone (half the writes per entry, twice the fsyncs and replication rounds): once the
//! proposal out comes back, the next one waits for its writers as well. Measured before the
//! fix through a follower with two client connections: 8 writes per entry instead of 16 in two
//! runs of three, and a third fewer writes per second.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::*;

const GROUP: usize = 8;
const ROUNDS: usize = 60;

// One thread: the order in which woken tasks run is the order they were woken in, so that a
// writer's next write comes after the batcher has formed its next proposal, as a client's
// does over the network.
#[tokio::test(flavor = "current_thread")]
async fn t90_two_groups_of_writers_share_proposals() {
    let cluster = TestCluster::start(1).await;
    let node = cluster.node(1).clone();
    let written = Arc::new(AtomicUsize::new(0));

    phase(1, "group A writes alone, one proposal after another");
    let stop = Arc::new(AtomicBool::new(false));
    let mut group_a = tokio::task::JoinSet::new();
    for w in 0..GROUP {
        let (node, written, stop) = (node.clone(), written.clone(), stop.clone());
        group_a.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                write(&node, &written, "a", w, i).await;
                i += 1;
            }
        });
    }
    wait_until("group A's writes to flow", || node.commit_index() > 20).await;

    phase(
        2,
        "group B joins (its writes queue behind A's proposal); both write",
    );
    let (from, written_before) = (node.commit_index(), written.load(Ordering::Relaxed));
    let mut group_b = tokio::task::JoinSet::new();
    for w in 0..GROUP {
        let (node, written) = (node.clone(), written.clone());
        group_b.spawn(async move {
            for i in 0..ROUNDS {
                write(&node, &written, "b", w, i).await;
            }
        });
    }
    while let Some(done) = group_b.join_next().await {
        done.unwrap();
    }
    let entries = node.commit_index() - from;
    let writes = written.load(Ordering::Relaxed) - written_before;
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = group_a.join_next().await {
        done.unwrap();
    }

    phase(3, "the groups shared proposals");
    let per_entry = writes as f64 / entries as f64;
    eprintln!("{writes} writes in {entries} entries, {per_entry:.1} each");
    assert!(
        per_entry > 1.5 * GROUP as f64,
        "the groups took turns: {per_entry:.1} writes per entry, expected close to {}",
        2 * GROUP
    );
    cluster.shutdown().await;
}

/// One write, then the client's turn: a few scheduler rounds before it sends the next.
async fn write(
    node: &hermes_raft::RaftNode,
    written: &AtomicUsize,
    group: &str,
    w: usize,
    i: usize,
) {
    let key = format!("/t90/{group}/{w}/{i}");
    put(node, &key, "v").await.unwrap();
    written.fetch_add(1, Ordering::Relaxed);
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
}
