//! Leadership transfer: the leader hands over to a chosen voter, asked from any member,
//! while writers keep writing through every node; none of their writes is refused or lost.
//! Transfers to a non-member or to the leader itself are answered without a change; a leader
//! about to stop hands over to the voter furthest along.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hermes_raft::TransferError;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t70_leadership_moves_to_the_chosen_voter_without_refusing_writes() {
    let cluster = TestCluster::start(3).await;
    let first = cluster.leader(&cluster.ids()).await;

    phase(1, "writers on every node, all through the transfers");
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for id in cluster.ids() {
        let node = cluster.node(id).clone();
        let stop = stop.clone();
        writers.spawn(async move {
            let mut written = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/transfer/{id}/{i}");
                match put(&node, &key, "v").await {
                    Ok(_) => written.push(key),
                    Err(e) => panic!("write {key} through node {id} failed: {e}"),
                }
                i += 1;
            }
            written
        });
    }
    wait_until("the writers are under way", || {
        cluster.node(first).store().revision() > 50
    })
    .await;

    phase(2, "asked on a follower, move to the other follower");
    let asked = cluster.follower(first);
    let target = cluster
        .ids()
        .into_iter()
        .find(|id| *id != first && *id != asked)
        .unwrap();
    cluster.node(asked).transfer_leader(target).await.unwrap();
    assert_eq!(cluster.leader(&cluster.ids()).await, target);

    phase(3, "asked on the leader, move back to the first leader");
    cluster.node(target).transfer_leader(first).await.unwrap();
    assert_eq!(cluster.leader(&cluster.ids()).await, first);

    phase(4, "the leader itself and a stranger");
    cluster.node(asked).transfer_leader(first).await.unwrap();
    assert_eq!(cluster.leader(&cluster.ids()).await, first);
    match cluster.node(asked).transfer_leader(99).await {
        Err(TransferError::UnknownNode(99)) => {}
        other => panic!("a transfer to a non-member answered {other:?}"),
    }

    phase(5, "the leader hands over before a planned stop");
    let to = cluster.node(first).hand_off_leadership().await.unwrap();
    assert_ne!(to, first);
    assert_eq!(cluster.leader(&cluster.ids()).await, to);
    assert_eq!(
        cluster.node(first).hand_off_leadership().await,
        None,
        "a follower has nothing to hand over"
    );

    phase(6, "every acknowledged write is on every node");
    stop.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    while let Some(done) = writers.join_next().await {
        written.extend(done.unwrap());
    }
    assert!(written.len() >= 50, "only {} writes", written.len());
    // The leader's commit index covers every acknowledged write; wait until all have applied it.
    let leader = cluster.leader(&cluster.ids()).await;
    let index = cluster.node(leader).commit_index();
    cluster.applied_everywhere(index).await;
    for id in cluster.ids() {
        let missing = written
            .iter()
            .filter(|k| local_value(cluster.node(id), k).is_none())
            .count();
        assert_eq!(missing, 0, "node {id} lacks {missing} acknowledged writes");
    }
    cluster.shutdown().await;
}
