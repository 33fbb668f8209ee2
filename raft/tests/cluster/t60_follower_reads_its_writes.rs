//! Read your writes on the node that answered: a write taken by a follower is answered only
//! once that follower has applied it, so a serializable read there right after the answer
//! sees it. Thousands of times, from several writers at once, with zero misses.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_a_follower_reads_its_own_writes_at_once() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader(&cluster.ids()).await;
    let follower = cluster.follower(leader);

    phase(
        1,
        "4 writers × 600 writes through one follower, each read back there at once",
    );
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let node = cluster.node(follower).clone();
        writers.spawn(async move {
            let mut misses = Vec::new();
            for i in 0..600 {
                let key = format!("/ryw/{w}/{i}");
                let value = format!("v{i}");
                put(&node, &key, &value).await.unwrap();
                if local_value(&node, &key).as_deref() != Some(value.as_str()) {
                    misses.push(key);
                }
            }
            misses
        });
    }
    let mut misses = Vec::new();
    while let Some(done) = writers.join_next().await {
        misses.extend(done.unwrap());
    }
    assert!(
        misses.is_empty(),
        "{} of 2400 writes were not visible on the follower that acknowledged them: {:?}",
        misses.len(),
        &misses[..misses.len().min(5)]
    );
    cluster.shutdown().await;
}
