//! Rust programs on the `etcd-client` crate use a three-node cluster as their etcd: KV, a watch
//! and a lease kept alive across the loss of the leader, elections and locks between clients.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::time::timeout;

use crate::harness::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn endpoints(c: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|id| c.node(*id).etcd().replace("http://", ""))
        .collect()
}

/// A client of `endpoints`, retrying while none of them answers (for at most 20 s).
async fn connect(endpoints: Vec<String>) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(endpoints.clone(), Some(opts.clone())).await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() > deadline => panic!("connecting: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[test]
fn kv_counts_and_the_hidden_prefix() {
    let c = Cluster::start(3);
    let all = endpoints(&c, &[1, 2, 3]);
    runtime().block_on(async {
        let mut client = connect(all).await;
        for i in 0..5 {
            client
                .put(format!("/kv/{i}"), format!("v{i}"), None)
                .await
                .unwrap();
        }
        let count = client
            .get(
                "/kv/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap();
        assert_eq!((count.count(), count.kvs().len()), (5, 0));
        let page = client
            .get("/kv/", Some(GetOptions::new().with_prefix().with_limit(2)))
            .await
            .unwrap();
        assert_eq!((page.kvs().len(), page.more(), page.count()), (2, true, 5));
        let deleted = client
            .delete(
                "/kv/",
                Some(
                    etcd_client::DeleteOptions::new()
                        .with_prefix()
                        .with_prev_key(),
                ),
            )
            .await
            .unwrap();
        assert_eq!((deleted.deleted(), deleted.prev_kvs().len()), (5, 5));

        let everything = client
            .get(
                "/hermes/",
                Some(GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .unwrap();
        assert!(
            !everything.kvs().is_empty(),
            "the instance registry is visible"
        );
        for kv in everything.kvs() {
            assert!(!kv.key().starts_with(b"/hermes/_cp/"), "{:?}", kv.key_str());
        }
        let refused = client.put("/hermes/_cp/x", "1", None).await.unwrap_err();
        assert!(
            refused.to_string().contains("permission denied"),
            "{refused}"
        );
    });
}

#[test]
fn watch_resumes_across_a_leader_kill_without_gaps_or_duplicates() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let all = endpoints(&c, &[1, 2, 3]);
    let rt = runtime();
    // The revision of the last acknowledged put, once the writer is done.
    let last = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let done = last.clone();
    // The writer: sequential puts through every endpoint, retried until acknowledged (a put
    // whose answer was lost may then be applied twice: the watch sees both).
    let writer = rt.spawn(async move {
        let mut client = connect(all).await;
        let mut acked = Vec::new();
        for i in 0..150 {
            let key = format!("/w/{i:04}");
            loop {
                match client.put(key.as_str(), "v", None).await {
                    Ok(r) => {
                        acked.push(r.header().unwrap().revision());
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        done.store(
            *acked.iter().max().unwrap(),
            std::sync::atomic::Ordering::SeqCst,
        );
        acked
    });
    // The watcher starts on the leader, whose death cuts its stream; it re-creates its watch
    // on the followers from the revision after the last one it saw.
    let (on_leader, watch_at) = (endpoints(&c, &[leader]), endpoints(&c, &followers));
    let resumed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let resumes = resumed.clone();
    let watcher = rt.spawn(async move {
        let mut revisions: Vec<i64> = Vec::new();
        let mut client = connect(on_leader).await;
        let mut next = 0;
        let caught_up = |next: i64| {
            let last = last.load(std::sync::atomic::Ordering::SeqCst);
            last > 0 && next > last
        };
        while !caught_up(next) {
            let opts = WatchOptions::new().with_prefix().with_start_revision(next);
            let Ok(mut stream) = client.watch("/w/", Some(opts)).await else {
                client = connect(watch_at.clone()).await;
                resumes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                continue;
            };
            loop {
                // Wakes up now and then to see whether the writer is done and all was seen.
                let Ok(message) = timeout(Duration::from_millis(300), stream.message()).await
                else {
                    if caught_up(next) {
                        break;
                    }
                    continue;
                };
                let Ok(Some(resp)) = message else {
                    // The stream broke (its node died): resume elsewhere.
                    client = connect(watch_at.clone()).await;
                    resumes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    break;
                };
                for e in resp.events() {
                    assert_eq!(e.event_type(), EventType::Put);
                    let rev = e.kv().unwrap().mod_revision();
                    revisions.push(rev);
                    next = rev + 1;
                }
                if caught_up(next) {
                    break;
                }
            }
        }
        revisions
    });
    wait_for("the first writes", Duration::from_secs(20), || {
        let seen = c.node(followers[0]).range_prefix("/w/", true);
        (seen.len() >= 40).then_some(())
    });
    c.node_mut(leader).kill9();
    let (acked, seen) = rt.block_on(async {
        let acked = timeout(Duration::from_secs(60), writer)
            .await
            .unwrap()
            .unwrap();
        let seen = timeout(Duration::from_secs(60), watcher)
            .await
            .unwrap()
            .unwrap();
        (acked, seen)
    });
    assert!(
        resumed.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the watch never had to resume"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "events out of order or repeated: {seen:?}"
    );
    for rev in &acked {
        assert!(
            seen.contains(rev),
            "acknowledged put at revision {rev} was never delivered"
        );
    }
}

#[test]
fn lease_keepalive_survives_a_leader_kill() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    let all = endpoints(&c, &[1, 2, 3]);
    let rt = runtime();
    let mut client = rt.block_on(connect(all.clone()));
    let ttl = 3;
    let id = rt.block_on(async {
        let lease = client.lease_grant(ttl, None).await.unwrap();
        let opts = PutOptions::new().with_lease(lease.id());
        client.put("/leased/key", "v", Some(opts)).await.unwrap();
        lease.id()
    });
    // Renews every second on one stream, opening a new one (on any node) when it fails.
    let keeper = rt.spawn(async move {
        let mut client = connect(all.clone()).await;
        loop {
            let Ok((mut keeper, mut stream)) = client.lease_keep_alive(id).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                client = connect(all.clone()).await;
                continue;
            };
            loop {
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match stream.message().await {
                    Ok(Some(r)) => assert!(r.ttl() > 0, "the lease expired while kept alive"),
                    _ => break,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    c.node_mut(leader).kill9();
    let survivor_url = c.node(survivor).etcd().replace("http://", "");
    rt.block_on(async {
        let mut client = connect(vec![survivor_url]).await;
        // Three TTLs after the kill, the lease still lives and holds its key.
        let until = tokio::time::Instant::now() + Duration::from_secs(3 * ttl as u64);
        while tokio::time::Instant::now() < until {
            if let Ok(t) = client.lease_time_to_live(id, None).await {
                assert!(
                    t.ttl() > 0,
                    "lease {id} expired after the leader was killed"
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let got = client.get("/leased/key", None).await.unwrap();
        assert_eq!(got.kvs().len(), 1);
    });
    keeper.abort();
}

#[test]
fn election_and_lock_between_two_clients() {
    let c = Cluster::start(3);
    let rt = runtime();
    let (a_at, b_at) = (endpoints(&c, &[1]), endpoints(&c, &[2]));
    rt.block_on(async {
        let mut a = connect(a_at).await;
        let mut b = connect(b_at).await;
        let lease_a = a.lease_grant(30, None).await.unwrap().id();
        let lease_b = b.lease_grant(30, None).await.unwrap().id();

        // Election: A leads, B waits, an observer sees A then B.
        let won = a.campaign("e1", "a", lease_a).await.unwrap();
        let a_key = won.leader().unwrap().clone();
        let mut observer = b.observe("e1").await.unwrap();
        let first = timeout(Duration::from_secs(5), observer.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(first.kv().unwrap().value(), b"a");
        let mut b2 = b.clone();
        let campaign_b = tokio::spawn(async move { b2.campaign("e1", "b", lease_b).await });
        for _ in 0..5 {
            let leader = a.leader("e1").await.unwrap();
            assert_eq!(leader.kv().unwrap().value(), b"a");
            assert!(!campaign_b.is_finished(), "B was elected while A leads");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.resign(Some(etcd_client::ResignOptions::new().with_leader(a_key)))
            .await
            .unwrap();
        let won_b = timeout(Duration::from_secs(5), campaign_b)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(won_b.leader().unwrap().lease(), lease_b);
        let next = timeout(Duration::from_secs(5), observer.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(next.kv().unwrap().value(), b"b");
        assert_eq!(a.leader("e1").await.unwrap().kv().unwrap().value(), b"b");

        // Lock: A holds it, B waits until A unlocks.
        let opts = |lease| Some(etcd_client::LockOptions::new().with_lease(lease));
        let held = a.lock("l1", opts(lease_a)).await.unwrap();
        let mut b3 = b.clone();
        let lock_b = tokio::spawn(async move { b3.lock("l1", opts(lease_b)).await });
        for _ in 0..5 {
            assert!(!lock_b.is_finished(), "B locked while A holds the lock");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        a.unlock(held.key()).await.unwrap();
        let got = timeout(Duration::from_secs(5), lock_b)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        b.unlock(got.key()).await.unwrap();
    });
}
