//! Writes taken by followers are forwarded to the leader (batched), each answered with its own
//! revision, and every node ends up with all of them.

use std::collections::BTreeSet;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t10_writes_through_followers_reach_every_node() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(&cluster.ids()).await;
    let followers: Vec<u64> = cluster.ids().into_iter().filter(|i| *i != leader).collect();

    phase(1, "16 writers on each follower, 40 writes each");
    let mut writers = tokio::task::JoinSet::new();
    for &via in &followers {
        for w in 0..16 {
            let node = cluster.node(via).clone();
            writers.spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..40 {
                    let key = format!("/f{via}/w{w}/{i}");
                    revisions.push((key.clone(), put(&node, &key, &key).await.unwrap()));
                }
                revisions
            });
        }
    }
    let mut acked = Vec::new();
    while let Some(done) = writers.join_next().await {
        acked.extend(done.unwrap());
    }
    assert_eq!(acked.len(), 2 * 16 * 40);

    phase(2, "each write has a revision of its own");
    let revisions: BTreeSet<i64> = acked.iter().map(|(_, r)| *r).collect();
    assert_eq!(revisions.len(), acked.len(), "a revision was given twice");

    phase(3, "every node holds every acknowledged write");
    let index = cluster.node(leader).commit_index();
    cluster.applied_everywhere(index).await;
    for id in cluster.ids() {
        for (key, revision) in &acked {
            let kv = cluster.node(id).store().get(key.as_bytes());
            let kv = kv.unwrap_or_else(|| panic!("node {id} lacks {key}"));
            assert_eq!(kv.mod_revision, *revision, "node {id}, {key}");
        }
    }
    cluster.shutdown().await;
}
