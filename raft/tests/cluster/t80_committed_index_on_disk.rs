//! The committed index each node keeps in its log's metadata: raft reports it per proposal
//! without waking the log's writer, which records it with its next metadata write. After a
//! clean stop every node's disk holds a committed index at least as far as what it applied
//! (this fails if the stop does not wait for that write), and within its log. That it is
//! never ahead of the log while entries are still on their way (a follower can hear of a
//! commit before it has the entry) is the clamp's unit test in `hermes_storage::log_store`.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t80_committed_index_is_on_disk_after_a_stop_and_never_past_the_log() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader(&cluster.ids()).await;

    phase(1, "60 writes through the leader, applied everywhere");
    for i in 0..60 {
        put(cluster.node(leader), &format!("/k/{i}"), "v")
            .await
            .unwrap();
    }
    let index = cluster.node(leader).commit_index();
    cluster.applied_everywhere(index).await;

    phase(2, "every node stops cleanly");
    for id in cluster.ids() {
        cluster.stop(id).await;
    }

    phase(3, "each disk: applied <= committed <= last entry");
    for id in 1..=3 {
        let dir = cluster.dir(id);
        let opened = tokio::task::spawn_blocking(move || hermes_storage::open(&dir, id))
            .await
            .unwrap()
            .unwrap();
        let committed = opened.log.committed().map(|c| c.index);
        let last = opened.log.durable().upto();
        assert!(
            committed.is_some_and(|c| c >= index && c <= last),
            "node {id}: committed {committed:?}, applied {index}, log ends at {last}"
        );
        tokio::task::spawn_blocking(move || opened.log.close())
            .await
            .unwrap();
    }
}
