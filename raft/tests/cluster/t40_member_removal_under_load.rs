//! A member is removed while writes go on: writers on the other nodes see no failure, the
//! membership shrinks to two voters, and the remaining nodes hold every acknowledged write.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use hermes_raft::peer_proto::MembershipChange;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t40_removing_a_member_under_load_loses_nothing() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(&cluster.ids()).await;
    let removed = cluster.follower(leader);
    let staying: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|i| *i != removed)
        .collect();

    phase(1, "16 writers through the nodes that stay");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16u64 {
        let node = cluster.node(staying[(w % 2) as usize]).clone();
        let (stop, count) = (stop.clone(), count.clone());
        writers.spawn(async move {
            let mut acked = BTreeMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("/w{w}/{i}");
                i += 1;
                let revision = put(&node, &key, &key).await.unwrap_or_else(|e| {
                    panic!("a write through a staying node failed during the removal: {e}")
                });
                acked.insert(key, revision);
                count.fetch_add(1, Ordering::Relaxed);
            }
            acked
        });
    }
    wait_until("300 writes", || count.load(Ordering::Relaxed) >= 300).await;

    phase(2, "remove a follower through the leader while they run");
    cluster
        .node(leader)
        .change_membership(MembershipChange::Remove { id: removed }, false)
        .await
        .unwrap();
    let before = count.load(Ordering::Relaxed);
    wait_until("300 more writes", || {
        count.load(Ordering::Relaxed) >= before + 300
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeMap::new();
    while let Some(done) = writers.join_next().await {
        acked.extend(done.unwrap());
    }

    phase(3, "two voters remain, holding every acknowledged write");
    let members = cluster.node(leader).members().await;
    let voters: Vec<u64> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    assert_eq!(voters, staying, "{members:?}");
    let index = cluster.node(leader).commit_index();
    for id in &staying {
        cluster
            .node(*id)
            .raft()
            .wait(Some(std::time::Duration::from_secs(10)))
            .applied_index_at_least(Some(index), "caught up")
            .await
            .unwrap();
        for (key, revision) in &acked {
            let kv = cluster.node(*id).store().get(key.as_bytes());
            assert_eq!(
                kv.map(|kv| kv.mod_revision),
                Some(*revision),
                "node {id}, {key}"
            );
        }
    }
    cluster.shutdown().await;
}
