//! Programs on the `etcd-client` crate (0.21) use a three-node cluster as their etcd, over the
//! gRPC API of the `--etcd-listen` port: KV and transactions, a watch and a lease kept alive
//! across a `kill -9` of the raft leader, and elections and locks between two clients.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, LeaderKey,
    LeaseTimeToLiveOptions, LockOptions, Permission, ProclaimOptions, PutOptions, ResignOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde_json::json;

use crate::api_client::Api;
use crate::harness::*;

/// How long one call may take before the test calls it hung.
const CALL: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The etcd endpoints of nodes `ids`, as `host:port` (the crate adds `http://`).
fn endpoints(c: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|id| c.node(*id).etcd().trim_start_matches("http://").to_string())
        .collect()
}

/// A client balancing over `endpoints`. Calls that wait (campaigns, locks) may take 30 s.
async fn connect(endpoints: &[String]) -> Client {
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(30));
    bounded("connecting", Client::connect(endpoints, Some(opts)))
        .await
        .unwrap()
}

/// `f`, failing the test if it takes longer than [`CALL`].
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(CALL, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {CALL:?}"),
    }
}

fn keys(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect()
}

fn values(kvs: &[etcd_client::KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| kv.value_str().unwrap().to_string())
        .collect()
}

/// The gRPC code of an error (`None` if it is not a gRPC status).
fn grpc_code(e: &etcd_client::Error) -> Option<String> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(format!("{:?}", s.code())),
        _ => None,
    }
}

#[test]
fn kv_through_the_etcd_client_crate() {
    // The revision arithmetic below (one revision per write, none for a no-op) needs the test to
    // be the only writer: gateway instances rewrite their keys every few seconds.
    let c = Cluster::start_with(3, &["--instance-registry", "off"]);
    let all = endpoints(&c, &[1, 2, 3]);
    // A control-plane record to hide: a namespace, created through the admin API (anonymous
    // callers on loopback may set up a fresh system).
    let admin = Api::anonymous(&c.node(1).admin());
    let (status, body) = admin.post("/api/v1/namespaces", &json!({"name": "etcdc"}));
    assert_eq!(status, 201, "creating a namespace: {body}");
    let rt = runtime();
    rt.block_on(async {
        let mut client = connect(&all).await;

        phase(
            1,
            "puts, then ranges: prefix, limit, sort, keys-only, count-only",
        );
        let mut revs = BTreeMap::new();
        for (k, v) in [("/kv/a", "1"), ("/kv/b", "22"), ("/kv/c", "333")] {
            let r = bounded("put", client.put(k, v, None)).await.unwrap();
            revs.insert(k, r.header().unwrap().revision());
        }
        assert!(revs["/kv/a"] < revs["/kv/b"] && revs["/kv/b"] < revs["/kv/c"]);
        let prefix = || GetOptions::new().with_prefix();
        let got = bounded("get", client.get("/kv/", Some(prefix())))
            .await
            .unwrap();
        assert_eq!(keys(got.kvs()), ["/kv/a", "/kv/b", "/kv/c"]);
        assert_eq!(values(got.kvs()), ["1", "22", "333"]);
        assert_eq!((got.count(), got.more()), (3, false));
        assert_eq!(got.header().unwrap().revision(), revs["/kv/c"]);
        for kv in got.kvs() {
            let rev = revs[kv.key_str().unwrap()];
            assert_eq!((kv.create_revision(), kv.mod_revision()), (rev, rev));
            assert_eq!((kv.version(), kv.lease()), (1, 0));
        }
        let page = bounded("get", client.get("/kv/", Some(prefix().with_limit(2))))
            .await
            .unwrap();
        assert_eq!(keys(page.kvs()), ["/kv/a", "/kv/b"]);
        assert_eq!((page.count(), page.more()), (3, true));
        let sorted = prefix().with_sort(SortTarget::Create, SortOrder::Descend);
        let got = bounded("get", client.get("/kv/", Some(sorted.with_limit(2))))
            .await
            .unwrap();
        assert_eq!(keys(got.kvs()), ["/kv/c", "/kv/b"]);
        assert_eq!((got.count(), got.more()), (3, true));
        let by_value = prefix().with_sort(SortTarget::Value, SortOrder::Descend);
        let got = bounded("get", client.get("/kv/", Some(by_value)))
            .await
            .unwrap();
        assert_eq!(values(got.kvs()), ["333", "22", "1"]);
        let got = bounded("get", client.get("/kv/", Some(prefix().with_keys_only())))
            .await
            .unwrap();
        assert_eq!(keys(got.kvs()), ["/kv/a", "/kv/b", "/kv/c"]);
        assert!(got.kvs().iter().all(|kv| kv.value().is_empty()));
        let got = bounded("get", client.get("/kv/", Some(prefix().with_count_only())))
            .await
            .unwrap();
        assert_eq!((got.count(), got.kvs().len()), (3, 0));
        let missing = bounded("get", client.get("/kv/none", None)).await.unwrap();
        assert_eq!((missing.count(), missing.kvs().len()), (0, 0));

        phase(2, "an overwrite, and a get at the older revision");
        let put = bounded(
            "put",
            client.put("/kv/a", "1b", Some(PutOptions::new().with_prev_key())),
        )
        .await
        .unwrap();
        let a2 = put.header().unwrap().revision();
        assert_eq!(put.prev_key().map(|kv| kv.value()), Some(&b"1"[..]));
        let now = bounded("get", client.get("/kv/a", None)).await.unwrap();
        let kv = &now.kvs()[0];
        assert_eq!(kv.value(), b"1b");
        assert_eq!(
            (kv.version(), kv.create_revision(), kv.mod_revision()),
            (2, revs["/kv/a"], a2)
        );
        let old = GetOptions::new().with_revision(revs["/kv/a"]);
        let then = bounded("get", client.get("/kv/a", Some(old)))
            .await
            .unwrap();
        assert_eq!(values(then.kvs()), ["1"]);
        assert_eq!(then.kvs()[0].version(), 1);
        // The range is still served as of the current revision's header.
        assert_eq!(then.header().unwrap().revision(), a2);
        let old = prefix().with_revision(revs["/kv/b"]);
        let then = bounded("get", client.get("/kv/", Some(old))).await.unwrap();
        assert_eq!(
            keys(then.kvs()),
            ["/kv/a", "/kv/b"],
            "/kv/c did not exist yet"
        );

        phase(3, "a delete with prev_kv");
        let del = bounded(
            "delete",
            client.delete("/kv/b", Some(DeleteOptions::new().with_prev_key())),
        )
        .await
        .unwrap();
        assert_eq!(del.deleted(), 1);
        assert_eq!(keys(del.prev_kvs()), ["/kv/b"]);
        assert_eq!(values(del.prev_kvs()), ["22"]);
        let deleted_at = del.header().unwrap().revision();
        assert_eq!(deleted_at, a2 + 1);
        let none = bounded("delete", client.delete("/kv/b", None))
            .await
            .unwrap();
        assert_eq!(none.deleted(), 0);
        assert_eq!(
            none.header().unwrap().revision(),
            deleted_at,
            "a no-op delete"
        );

        phase(
            4,
            "transactions: compares of version, create, mod and value; nested ops",
        );
        let txn = Txn::new()
            .when([
                Compare::version("/kv/a", CompareOp::Equal, 2),
                Compare::create_revision("/kv/c", CompareOp::Equal, revs["/kv/c"]),
                Compare::mod_revision("/kv/a", CompareOp::Equal, a2),
                Compare::value("/kv/c", CompareOp::Equal, "333"),
                // A key that does not exist has create revision 0.
                Compare::create_revision("/kv/b", CompareOp::Equal, 0),
                Compare::version("/kv/c", CompareOp::Less, 2),
                Compare::mod_revision("/kv/a", CompareOp::Greater, revs["/kv/c"]),
                Compare::value("/kv/a", CompareOp::NotEqual, "1"),
            ])
            .and_then([
                TxnOp::put("/kv/d", "4", None),
                TxnOp::get("/kv/", Some(prefix())),
                TxnOp::txn(
                    Txn::new()
                        .when([Compare::value("/kv/a", CompareOp::Equal, "nope")])
                        .and_then([TxnOp::put("/kv/x", "never", None)])
                        .or_else([
                            TxnOp::put("/kv/e", "5", None),
                            TxnOp::delete("/kv/c", Some(DeleteOptions::new().with_prev_key())),
                        ]),
                ),
            ])
            .or_else([TxnOp::put("/kv/failed", "x", None)]);
        let done = bounded("txn", client.txn(txn)).await.unwrap();
        assert!(done.succeeded(), "every compare holds");
        let txn_rev = done.header().unwrap().revision();
        assert_eq!(txn_rev, deleted_at + 1, "one revision for the whole txn");
        let ops = done.op_responses();
        assert_eq!(ops.len(), 3);
        let TxnOpResponse::Put(_) = &ops[0] else {
            panic!("{:?}", ops[0])
        };
        let TxnOpResponse::Get(seen) = &ops[1] else {
            panic!("{:?}", ops[1])
        };
        assert_eq!(
            keys(seen.kvs()),
            ["/kv/a", "/kv/c", "/kv/d"],
            "the txn's range sees its own earlier put"
        );
        let TxnOpResponse::Txn(nested) = &ops[2] else {
            panic!("{:?}", ops[2])
        };
        assert!(!nested.succeeded());
        let nested_ops = nested.op_responses();
        assert_eq!(nested_ops.len(), 2);
        let TxnOpResponse::Delete(gone) = &nested_ops[1] else {
            panic!("{:?}", nested_ops[1])
        };
        assert_eq!(
            (gone.deleted(), values(gone.prev_kvs())),
            (1, vec!["333".to_string()])
        );
        let after = bounded("get", client.get("/kv/", Some(prefix())))
            .await
            .unwrap();
        assert_eq!(keys(after.kvs()), ["/kv/a", "/kv/d", "/kv/e"]);
        for kv in after.kvs().iter().filter(|kv| kv.key() != b"/kv/a") {
            assert_eq!(kv.mod_revision(), txn_rev);
        }
        let failing = Txn::new()
            .when([Compare::version("/kv/a", CompareOp::Equal, 1)])
            .and_then([TxnOp::put("/kv/a", "wrong", None)])
            .or_else([TxnOp::get("/kv/a", None)]);
        let done = bounded("txn", client.txn(failing)).await.unwrap();
        assert!(!done.succeeded());
        assert_eq!(
            done.header().unwrap().revision(),
            txn_rev,
            "a read-only txn"
        );
        let TxnOpResponse::Get(a) = &done.op_responses()[0] else {
            panic!("{:?}", done.op_responses())
        };
        assert_eq!(values(a.kvs()), ["1b"]);

        phase(
            5,
            "compaction: the compacted revision is gone, the one compacted at stays",
        );
        bounded("compact", client.compact(deleted_at, None))
            .await
            .unwrap();
        let err = bounded(
            "get",
            client.get(
                "/kv/a",
                Some(GetOptions::new().with_revision(revs["/kv/a"])),
            ),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("compacted"), "{err}");
        assert_eq!(grpc_code(&err).as_deref(), Some("OutOfRange"), "{err}");
        let at = GetOptions::new().with_prefix().with_revision(deleted_at);
        let kept = bounded("get", client.get("/kv/", Some(at))).await.unwrap();
        assert_eq!(keys(kept.kvs()), ["/kv/a", "/kv/c"]);
        let again = bounded("compact", client.compact(revs["/kv/c"], None))
            .await
            .unwrap_err();
        assert!(again.to_string().contains("compacted"), "{again}");

        phase(
            6,
            "the control plane's keys stay hidden and cannot be written",
        );
        let hidden_ns = "/hermes/_cp/namespaces/etcdc";
        let all_keys = GetOptions::new().with_all_keys().with_keys_only();
        let everything = bounded("get", client.get("", Some(all_keys)))
            .await
            .unwrap();
        let listed = keys(everything.kvs());
        assert!(
            listed.iter().all(|k| !k.starts_with("/hermes/_cp/")),
            "{listed:?}"
        );
        assert_eq!(everything.count(), listed.len() as i64, "{listed:?}");
        let under = GetOptions::new().with_prefix().with_keys_only();
        let hermes = bounded("get", client.get("/hermes/", Some(under)))
            .await
            .unwrap();
        let listed = keys(hermes.kvs());
        assert!(
            listed.iter().all(|k| !k.starts_with("/hermes/_cp/")),
            "{listed:?}"
        );
        let one = bounded("get", client.get(hidden_ns, None)).await.unwrap();
        assert_eq!((one.count(), one.kvs().len()), (0, 0));
        let denied = bounded("put", client.put("/hermes/_cp/x", "1", None))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_code(&denied).as_deref(),
            Some("PermissionDenied"),
            "{denied}"
        );
        assert!(denied.to_string().contains("permission denied"), "{denied}");
        let sneaky = Txn::new().and_then([TxnOp::put("/hermes/_cp/y", "1", None)]);
        let denied = bounded("txn", client.txn(sneaky)).await.unwrap_err();
        assert_eq!(
            grpc_code(&denied).as_deref(),
            Some("PermissionDenied"),
            "{denied}"
        );
        let wipe = Some(DeleteOptions::new().with_prefix());
        let denied = bounded("delete", client.delete("/hermes/", wipe))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_code(&denied).as_deref(),
            Some("PermissionDenied"),
            "{denied}"
        );
        // The namespace is still there for the control plane.
        let (status, body) = admin.get("/api/v1/namespaces");
        assert_eq!(status, 200, "{body}");
        assert!(body.to_string().contains("etcdc"), "{body}");

        phase(
            7,
            "HashKV: every member the same at one revision; history keeps its hash",
        );
        let rev = bounded("put", client.put("/kv/hash", "h", None))
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let mut hashes = Vec::new();
        for id in [1, 2, 3] {
            let mut one = connect(&endpoints(&c, &[id])).await;
            // A follower may not have applied the put yet: ask again until it has.
            let deadline = Instant::now() + Duration::from_secs(10);
            let hash = loop {
                if let Ok(h) = one.hash_kv(rev).await {
                    break h.hash();
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} gave no HashKV at {rev}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            hashes.push(hash);
        }
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
        bounded("put", client.put("/kv/hash", "h2", None))
            .await
            .unwrap();
        let again = bounded("hashkv", client.hash_kv(rev)).await.unwrap();
        assert_eq!(
            again.hash(),
            hashes[0],
            "the history up to {rev} changed its hash"
        );
        let now = bounded("hashkv", client.hash_kv(0)).await.unwrap();
        assert_ne!(now.hash(), hashes[0]);
        let future = bounded("hashkv", client.hash_kv(rev + 1000))
            .await
            .unwrap_err();
        assert_eq!(
            grpc_code(&future).as_deref(),
            Some("OutOfRange"),
            "{future}"
        );
        // Hash, of the whole store: the same on every member once all have applied the same
        // writes, and another after one more write.
        let mut members = Vec::new();
        for id in [1, 2, 3] {
            members.push(connect(&endpoints(&c, &[id])).await);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let settled = loop {
            let mut hashes = Vec::new();
            for one in &mut members {
                hashes.push(bounded("hash", one.hash()).await.unwrap().hash());
            }
            if hashes.windows(2).all(|w| w[0] == w[1]) {
                break hashes[0];
            }
            assert!(
                Instant::now() < deadline,
                "members' hashes differ: {hashes:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        bounded("put", client.put("/kv/hash", "h3", None))
            .await
            .unwrap();
        // Hash is answered by whichever member the call reaches, from what it has applied:
        // wait for every member to apply the write, and fail if one never moves.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut hashes = Vec::new();
            for one in &mut members {
                hashes.push(bounded("hash", one.hash()).await.unwrap().hash());
            }
            if hashes.iter().all(|h| *h != settled) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a write left the store's hash unchanged: {hashes:?}, before {settled}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn watch_resumes_across_a_leader_kill_without_gaps_or_duplicates() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let all = endpoints(&c, &[1, 2, 3]);
    let on_leader = endpoints(&c, &[leader]);
    let rt = runtime();
    let client = rt.block_on(connect(&all));
    let start = rt.block_on(async {
        let mut client = client.clone();
        let r = bounded("get", client.get("/w/", None)).await.unwrap();
        r.header().unwrap().revision() + 1
    });

    // The writer: sequential puts through every endpoint, each retried until acknowledged
    // (a put whose answer was lost may be applied twice: the watch then sees both).
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (mut client, count, stop) = (client.clone(), acked_count.clone(), stop.clone());
        rt.spawn(async move {
            let mut acked: Vec<(i64, String)> = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("/w/{i:04}");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let put = client.put(key.as_str(), format!("v{i}"), None);
                    match tokio::time::timeout(CALL, put).await {
                        Ok(Ok(r)) => {
                            acked.push((r.header().unwrap().revision(), key));
                            count.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        failed => {
                            assert!(
                                Instant::now() < deadline,
                                "put {key} failed for 30 s, last: {failed:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                i += 1;
            }
            acked
        })
    };

    // The watcher starts on the leader alone, so that its death cuts the stream; it resumes
    // through the client of every endpoint from the revision after the last one it saw.
    let last_acked = Arc::new(AtomicI64::new(0));
    let watched = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (all_client, last, watched) = (client.clone(), last_acked.clone(), watched.clone());
        rt.spawn(async move {
            let mut client = connect(&on_leader).await;
            let mut seen: Vec<(i64, String)> = Vec::new();
            let mut next = start;
            let mut resumes = 0;
            let mut progress = Instant::now();
            let done = |next: i64| {
                let last = last.load(Ordering::SeqCst);
                last > 0 && next > last
            };
            'watching: while !done(next) {
                assert!(
                    progress.elapsed() < Duration::from_secs(30),
                    "no event for 30 s; waiting for revision {next}"
                );
                let opts = WatchOptions::new().with_prefix().with_start_revision(next);
                let created = tokio::time::timeout(CALL, client.watch("/w/", Some(opts))).await;
                let Ok(Ok(mut stream)) = created else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    client = all_client.clone();
                    continue;
                };
                loop {
                    let message =
                        tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
                    match message {
                        Err(_) => {
                            if done(next) {
                                break 'watching;
                            }
                            assert!(
                                progress.elapsed() < Duration::from_secs(30),
                                "the watch went silent for 30 s; waiting for revision {next}"
                            );
                        }
                        Ok(Ok(Some(resp))) => {
                            assert!(
                                !resp.canceled(),
                                "watch from {next} canceled: {:?} (compact revision {})",
                                resp.cancel_reason(),
                                resp.compact_revision()
                            );
                            for e in resp.events() {
                                assert_eq!(e.event_type(), EventType::Put);
                                let kv = e.kv().unwrap();
                                seen.push((kv.mod_revision(), kv.key_str().unwrap().to_string()));
                                next = kv.mod_revision() + 1;
                                progress = Instant::now();
                                watched.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        // The stream broke or ended: resume on another node.
                        Ok(Ok(None)) | Ok(Err(_)) => {
                            resumes += 1;
                            client = all_client.clone();
                            continue 'watching;
                        }
                    }
                }
            }
            (seen, resumes)
        })
    };

    wait_for(
        "50 acknowledged puts, 20 of them watched",
        Duration::from_secs(30),
        || {
            let acked = acked_count.load(Ordering::SeqCst);
            (acked >= 50 && watched.load(Ordering::SeqCst) >= 20).then_some(())
        },
    );
    phase(1, format!("kill -9 the leader, node {leader}"));
    c.node_mut(leader).kill9();
    let at_kill = acked_count.load(Ordering::SeqCst);
    wait_for(
        "100 more acknowledged puts after the kill",
        Duration::from_secs(60),
        || (acked_count.load(Ordering::SeqCst) >= at_kill + 100).then_some(()),
    );
    stop.store(true, Ordering::SeqCst);
    let acked = rt.block_on(bounded("the writer", writer)).unwrap();
    last_acked.store(acked.last().unwrap().0, Ordering::SeqCst);
    let (seen, resumes) = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), watcher).await })
        .expect("the watcher did not catch up within 60 s")
        .unwrap();
    eprintln!(
        "{} puts acknowledged ({at_kill} before the kill), {} events seen, {resumes} resumes",
        acked.len(),
        seen.len()
    );

    phase(2, "every acknowledged put was seen, in order, once");
    assert!(resumes >= 1, "the watch on the killed leader never broke");
    for w in seen.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "events out of order or repeated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let by_revision: BTreeMap<i64, &str> = seen.iter().map(|(r, k)| (*r, k.as_str())).collect();
    for (rev, key) in &acked {
        assert_eq!(
            by_revision.get(rev),
            Some(&key.as_str()),
            "the put of {key} acknowledged at revision {rev} was not delivered"
        );
    }
    assert!(seen.first().unwrap().0 >= start);
}

#[test]
fn lease_keepalive_survives_a_leader_kill() {
    const TTL: i64 = 5;
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let all = endpoints(&c, &[1, 2, 3]);
    let rt = runtime();
    let client = rt.block_on(connect(&all));
    let (id, created) = rt.block_on(async {
        let mut client = client.clone();
        let lease = bounded("grant", client.lease_grant(TTL, None))
            .await
            .unwrap();
        assert_eq!(lease.ttl(), TTL);
        let opts = PutOptions::new().with_lease(lease.id());
        let put = bounded("put", client.put("/leased/key", "v", Some(opts)))
            .await
            .unwrap();
        (lease.id(), put.header().unwrap().revision())
    });

    // Renews every second on one stream, opening a new one when it breaks; records when each
    // renewal was answered and with what TTL.
    let answers: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let keeper = {
        let (mut client, answers) = (client.clone(), answers.clone());
        rt.spawn(async move {
            loop {
                let opened = tokio::time::timeout(CALL, client.lease_keep_alive(id)).await;
                let Ok(Ok((mut keeper, mut stream))) = opened else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                loop {
                    if keeper.keep_alive().await.is_err() {
                        break;
                    }
                    let answer = tokio::time::timeout(Duration::from_secs(3), stream.message());
                    match answer.await {
                        Ok(Ok(Some(r))) => answers.lock().unwrap().push((Instant::now(), r.ttl())),
                        _ => break,
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        })
    };
    wait_for("a first renewal", Duration::from_secs(10), || {
        (!answers.lock().unwrap().is_empty()).then_some(())
    });
    phase(1, format!("kill -9 the leader, node {leader}"));
    c.node_mut(leader).kill9();
    let killed = Instant::now();
    let ttl = Duration::from_secs(TTL as u64);
    wait_for(
        "renewals through twice the TTL after the kill",
        Duration::from_secs(40),
        || {
            let answers = answers.lock().unwrap();
            let late = answers
                .iter()
                .filter(|(at, _)| *at > killed + 2 * ttl)
                .count();
            (late >= 1).then_some(())
        },
    );
    keeper.abort();
    let answers = answers.lock().unwrap().clone();
    let after_kill: Vec<_> = answers.iter().filter(|(at, _)| *at > killed).collect();
    let gap = after_kill
        .first()
        .map(|(at, _)| at.duration_since(killed))
        .unwrap();
    eprintln!(
        "{} renewals, {} after the kill; the first {gap:?} after it",
        answers.len(),
        after_kill.len()
    );
    for (at, ttl) in &answers {
        assert_eq!(
            *ttl,
            TTL,
            "renewal {:?} after the kill answered TTL {ttl}",
            at.checked_duration_since(killed)
        );
    }

    phase(2, "the lease and its key are still there");
    let on_survivors = endpoints(&c, &survivors);
    rt.block_on(async {
        let mut client = connect(&on_survivors).await;
        let got = bounded("get", client.get("/leased/key", None))
            .await
            .unwrap();
        assert_eq!(got.kvs().len(), 1, "the leased key expired");
        let kv = &got.kvs()[0];
        assert_eq!((kv.create_revision(), kv.lease()), (created, id));
        let opts = LeaseTimeToLiveOptions::new().with_keys();
        let live = bounded("time to live", client.lease_time_to_live(id, Some(opts)))
            .await
            .unwrap();
        assert!(live.ttl() > 0, "lease {id} has TTL {}", live.ttl());
        assert_eq!(live.granted_ttl(), TTL);
        assert_eq!(live.keys(), [b"/leased/key".to_vec()]);
    });
}

#[test]
fn election_between_two_clients() {
    let c = Cluster::start(3);
    let (a_at, b_at) = (endpoints(&c, &[1]), endpoints(&c, &[2]));
    let rt = runtime();
    rt.block_on(async {
        let mut a = connect(&a_at).await;
        let mut b = connect(&b_at).await;
        let lease_a = bounded("grant", a.lease_grant(60, None))
            .await
            .unwrap()
            .id();
        let lease_b = bounded("grant", b.lease_grant(60, None))
            .await
            .unwrap()
            .id();

        phase(1, "A campaigns and wins");
        let won = bounded("A's campaign", a.campaign("e1", "a", lease_a))
            .await
            .unwrap();
        let a_key = won.leader().unwrap().clone();
        assert_eq!((a_key.name(), a_key.lease()), (&b"e1"[..], lease_a));
        assert!(a_key.key().starts_with(b"e1/"), "{:?}", a_key.key_str());

        phase(2, "B campaigns and waits while A leads");
        let mut b2 = b.clone();
        let campaign_b = tokio::spawn(async move { b2.campaign("e1", "b", lease_b).await });
        // B's candidacy is a key of its lease under the election's prefix.
        let contenders = GetOptions::new().with_prefix();
        let deadline = Instant::now() + CALL;
        loop {
            let got = bounded("get", a.get("e1/", Some(contenders.clone())))
                .await
                .unwrap();
            if got.kvs().iter().any(|kv| kv.lease() == lease_b) {
                assert_eq!(got.kvs().len(), 2, "{:?}", keys(got.kvs()));
                break;
            }
            assert!(Instant::now() < deadline, "B's candidacy never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..5 {
            let leader = bounded("leader", a.leader("e1")).await.unwrap();
            assert_eq!(leader.kv().unwrap().value(), b"a");
            assert!(!campaign_b.is_finished(), "B won while A leads");
        }
        let mut observer = bounded("observe", b.observe("e1")).await.unwrap();
        let first = bounded("observation", observer.message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.kv().unwrap().value(), b"a");
        assert_eq!(first.kv().unwrap().lease(), lease_a);
        assert!(!campaign_b.is_finished(), "B won while A leads");

        phase(3, "A resigns: B leads");
        bounded(
            "resign",
            a.resign(Some(ResignOptions::new().with_leader(a_key))),
        )
        .await
        .unwrap();
        let won_b = bounded("B's campaign", campaign_b).await.unwrap().unwrap();
        let b_key = won_b.leader().unwrap().clone();
        assert_eq!((b_key.name(), b_key.lease()), (&b"e1"[..], lease_b));
        let next = bounded("observation", observer.message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.kv().unwrap().value(), b"b");
        assert_eq!(next.kv().unwrap().key(), b_key.key());
        let leader = bounded("leader", a.leader("e1")).await.unwrap();
        assert_eq!(leader.kv().unwrap().value(), b"b");
        assert_eq!(leader.kv().unwrap().lease(), lease_b);

        phase(4, "B resigns: nobody leads");
        bounded(
            "resign",
            b.resign(Some(ResignOptions::new().with_leader(b_key))),
        )
        .await
        .unwrap();
        let err = bounded("leader", a.leader("e1")).await.unwrap_err();
        assert!(err.to_string().contains("election: no leader"), "{err}");

        phase(5, "a waiting campaign whose lease ends leads nothing");
        let won = bounded("A's campaign", a.campaign("e1", "a", lease_a))
            .await
            .unwrap();
        let a_key = won.leader().unwrap().clone();
        let lease_c = bounded("grant", b.lease_grant(60, None))
            .await
            .unwrap()
            .id();
        let mut b2 = b.clone();
        let campaign_c = tokio::spawn(async move { b2.campaign("e1", "c", lease_c).await });
        wait_for_lease_keys(&mut a, "e1/", lease_c, 1).await;
        bounded("revoke", b.lease_revoke(lease_c)).await.unwrap();
        wait_for_lease_keys(&mut a, "e1/", lease_c, 0).await;
        assert!(
            !campaign_c.is_finished(),
            "C's campaign ended while A leads"
        );
        bounded(
            "resign",
            a.resign(Some(ResignOptions::new().with_leader(a_key))),
        )
        .await
        .unwrap();
        let err = bounded("C's campaign", campaign_c)
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("session expired"), "{err}");
        let err = bounded("leader", a.leader("e1")).await.unwrap_err();
        assert!(err.to_string().contains("election: no leader"), "{err}");
    });
}

/// Waits until `count` keys under `prefix` belong to `lease`.
async fn wait_for_lease_keys(client: &mut Client, prefix: &str, lease: i64, count: usize) {
    let deadline = Instant::now() + CALL;
    loop {
        let got = bounded(
            "get",
            client.get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await
        .unwrap();
        if got.kvs().iter().filter(|kv| kv.lease() == lease).count() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{prefix}: never {count} keys of lease {lease}: {:?}",
            keys(got.kvs())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn lock_between_two_clients() {
    let c = Cluster::start(3);
    let (a_at, b_at) = (endpoints(&c, &[1]), endpoints(&c, &[3]));
    let rt = runtime();
    rt.block_on(async {
        let mut a = connect(&a_at).await;
        let mut b = connect(&b_at).await;
        let lease_a = bounded("grant", a.lease_grant(60, None))
            .await
            .unwrap()
            .id();
        let lease_b = bounded("grant", b.lease_grant(60, None))
            .await
            .unwrap()
            .id();
        let with = |lease| Some(LockOptions::new().with_lease(lease));

        phase(1, "A locks l1");
        let held = bounded("A's lock", a.lock("l1", with(lease_a)))
            .await
            .unwrap();
        let a_key = held.key().to_vec();
        assert!(
            a_key.starts_with(b"l1/"),
            "{:?}",
            String::from_utf8_lossy(&a_key)
        );

        phase(2, "B's lock waits while A holds l1");
        let mut b2 = b.clone();
        let lock_b = tokio::spawn(async move { b2.lock("l1", with(lease_b)).await });
        let waiters = GetOptions::new().with_prefix();
        let deadline = Instant::now() + CALL;
        loop {
            let got = bounded("get", a.get("l1/", Some(waiters.clone())))
                .await
                .unwrap();
            if got.kvs().iter().any(|kv| kv.lease() == lease_b) {
                assert_eq!(got.kvs().len(), 2, "{:?}", keys(got.kvs()));
                break;
            }
            assert!(Instant::now() < deadline, "B's lock request never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for _ in 0..5 {
            let got = bounded("get", a.get(a_key.clone(), None)).await.unwrap();
            assert_eq!(got.kvs().len(), 1, "A's lock key is gone");
            assert!(!lock_b.is_finished(), "B locked l1 while A holds it");
        }

        phase(3, "A unlocks: B gets l1");
        bounded("unlock", a.unlock(a_key.clone())).await.unwrap();
        let got = bounded("B's lock", lock_b).await.unwrap().unwrap();
        let b_key = got.key().to_vec();
        assert!(b_key.starts_with(b"l1/") && b_key != a_key);
        let holders = bounded("get", a.get("l1/", Some(waiters.clone())))
            .await
            .unwrap();
        assert_eq!(
            keys(holders.kvs()),
            [String::from_utf8(b_key.clone()).unwrap()]
        );
        assert_eq!(holders.kvs()[0].lease(), lease_b);

        phase(4, "B unlocks: l1 is free");
        bounded("unlock", b.unlock(b_key)).await.unwrap();
        let free = bounded("get", a.get("l1/", Some(waiters))).await.unwrap();
        assert_eq!(free.count(), 0);
        let again = bounded("A's second lock", a.lock("l1", with(lease_a)))
            .await
            .unwrap();

        phase(5, "a waiting lock whose lease ends is not held");
        let lease_c = bounded("grant", b.lease_grant(60, None))
            .await
            .unwrap()
            .id();
        let mut b2 = b.clone();
        let lock_c = tokio::spawn(async move { b2.lock("l1", with(lease_c)).await });
        wait_for_lease_keys(&mut a, "l1/", lease_c, 1).await;
        bounded("revoke", b.lease_revoke(lease_c)).await.unwrap();
        wait_for_lease_keys(&mut a, "l1/", lease_c, 0).await;
        assert!(!lock_c.is_finished(), "C's lock ended while A holds l1");
        bounded("unlock", a.unlock(again.key().to_vec()))
            .await
            .unwrap();
        let err = bounded("C's lock", lock_c).await.unwrap().unwrap_err();
        assert!(err.to_string().contains("session expired"), "{err}");
        let free = bounded("get", a.get("l1/", Some(GetOptions::new().with_prefix())))
            .await
            .unwrap();
        assert_eq!(free.count(), 0, "{:?}", keys(free.kvs()));
    });
}

/// A user whose role grants read and write on `/a/` only is held to it in the calls that
/// reach other keys indirectly: a lease's key list, a put's previous value inside a
/// transaction, a foreign key handed to Proclaim and Resign, and a watch stream created
/// before its role was taken away.
#[test]
fn a_limited_user_is_held_to_its_grant() {
    let c = Cluster::start(1);
    let all = endpoints(&c, &[1]);
    let rt = runtime();
    rt.block_on(async {
        phase(1, "root, role a-rw on /a/, user alice; auth on");
        let mut open = connect(&all).await;
        open.user_add("root", "root-pw", None).await.unwrap();
        open.role_add("root").await.unwrap();
        open.user_grant_role("root", "root").await.unwrap();
        open.role_add("a-rw").await.unwrap();
        open.role_grant_permission("a-rw", Permission::read_write("/a/").with_prefix())
            .await
            .unwrap();
        open.user_add("alice", "alice-pw", None).await.unwrap();
        open.user_grant_role("alice", "a-rw").await.unwrap();
        let lease = open.lease_grant(600, None).await.unwrap().id();
        open.put("/secret/k", "s", Some(PutOptions::new().with_lease(lease)))
            .await
            .unwrap();
        open.put("/a/elect/x", "victim", None).await.unwrap();
        open.auth_enable().await.unwrap();
        let as_user = |name: &str, password: &str| {
            ConnectOptions::new()
                .with_user(name, password)
                .with_timeout(Duration::from_secs(10))
        };
        let mut root = Client::connect(&all, Some(as_user("root", "root-pw")))
            .await
            .unwrap();
        let mut alice = Client::connect(&all, Some(as_user("alice", "alice-pw")))
            .await
            .unwrap();
        let denied = |e: etcd_client::Error| {
            assert_eq!(grpc_code(&e).as_deref(), Some("PermissionDenied"), "{e}");
        };

        phase(2, "what alice may do, and a lease's keys outside /a/");
        alice.put("/a/1", "mine", None).await.unwrap();
        // The root role's calls.
        denied(alice.snapshot().await.unwrap_err());
        denied(alice.hash_kv(0).await.unwrap_err());
        denied(alice.move_leader(1).await.unwrap_err());
        denied(alice.defragment().await.unwrap_err());
        denied(alice.member_remove(1).await.unwrap_err());
        denied(alice.user_list().await.unwrap_err());
        denied(alice.get("/secret/k", None).await.unwrap_err());
        let keys = Some(LeaseTimeToLiveOptions::new().with_keys());
        denied(
            alice
                .lease_time_to_live(lease, keys.clone())
                .await
                .unwrap_err(),
        );
        let ttl = root.lease_time_to_live(lease, keys).await.unwrap();
        assert_eq!(ttl.keys().len(), 1);

        phase(
            3,
            "a put in a transaction attaching a lease that holds a key outside /a/",
        );
        let txn = Txn::new().and_then([TxnOp::put(
            "/a/1",
            "again",
            Some(PutOptions::new().with_lease(lease)),
        )]);
        denied(alice.txn(txn).await.unwrap_err());

        phase(4, "Proclaim and Resign with a key outside the name");
        let foreign = LeaderKey::new()
            .with_name("/a/elect")
            .with_key("/secret/k")
            .with_rev(1);
        denied(
            alice
                .resign(Some(ResignOptions::new().with_leader(foreign.clone())))
                .await
                .unwrap_err(),
        );
        denied(
            alice
                .proclaim("x", Some(ProclaimOptions::new().with_leader(foreign)))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            values(root.get("/secret/k", None).await.unwrap().kvs()),
            ["s"]
        );

        phase(
            5,
            "a watch stream opened before the role is revoked creates no watcher after",
        );
        let mut stream = alice
            .watch("/a/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        let first = bounded("the first watcher", stream.message())
            .await
            .unwrap()
            .unwrap();
        assert!(first.created() && !first.canceled(), "{first:?}");
        // As etcd: permission is decided before the id, so a forbidden watcher asking for an
        // id in use learns that it is forbidden, and nothing about the stream's ids.
        let taken = 7;
        stream
            .watch(
                "/a/",
                Some(WatchOptions::new().with_prefix().with_watch_id(taken)),
            )
            .await
            .unwrap();
        let second = bounded("a watcher with its own id", stream.message())
            .await
            .unwrap()
            .unwrap();
        assert!(second.created() && !second.canceled(), "{second:?}");
        assert_eq!(second.watch_id(), taken);
        stream
            .watch(
                "/b/",
                Some(WatchOptions::new().with_prefix().with_watch_id(taken)),
            )
            .await
            .unwrap();
        let forbidden = bounded("a forbidden watcher", stream.message())
            .await
            .unwrap()
            .unwrap();
        assert!(
            forbidden.canceled() && forbidden.cancel_reason().contains("permission denied"),
            "{forbidden:?}"
        );
        assert_eq!(forbidden.watch_id(), taken);
        root.user_revoke_role("alice", "a-rw").await.unwrap();
        stream
            .watch("/a/", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        let refused = bounded("the second watcher", stream.message())
            .await
            .unwrap()
            .unwrap();
        assert!(refused.canceled(), "{refused:?}");
        assert!(refused.cancel_reason().contains("permission denied"));
    });
}

/// With `--etcd-user`, the endpoint needs a token from the start; the configured user is root,
/// cannot be removed or turned off through the API, and the users it adds sign in beside it.
#[test]
fn the_configured_user_is_root_and_stored_users_sign_in_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("etcd-password");
    std::fs::write(&password, "configured-secret-pw\n").unwrap();
    let c = Cluster::start_with(
        1,
        &[
            "--etcd-user",
            "ops",
            "--etcd-password-file",
            password.to_str().unwrap(),
        ],
    );
    let all = endpoints(&c, &[1]);
    let rt = runtime();
    rt.block_on(async {
        let as_user = |name: &str, password: &str| {
            ConnectOptions::new()
                .with_user(name, password)
                .with_timeout(Duration::from_secs(10))
        };
        phase(1, "no token, a wrong password, then the configured user");
        let mut anonymous = connect(&all).await;
        let e = anonymous.get("/x", None).await.unwrap_err();
        assert_eq!(grpc_code(&e).as_deref(), Some("InvalidArgument"), "{e}");
        assert!(Client::connect(&all, Some(as_user("ops", "wrong")))
            .await
            .is_err());
        let mut ops = Client::connect(&all, Some(as_user("ops", "configured-secret-pw")))
            .await
            .unwrap();
        ops.put("/x", "1", None).await.unwrap();

        phase(
            2,
            "the configured user cannot be removed, nor authentication turned off",
        );
        let e = ops.user_delete("ops").await.unwrap_err();
        assert_eq!(grpc_code(&e).as_deref(), Some("FailedPrecondition"), "{e}");
        let e = ops.auth_disable().await.unwrap_err();
        assert_eq!(grpc_code(&e).as_deref(), Some("FailedPrecondition"), "{e}");
        assert_eq!(ops.user_get("ops").await.unwrap().roles(), ["root"]);

        phase(
            3,
            "a stored user with read on /x signs in and is held to it",
        );
        ops.role_add("reader").await.unwrap();
        ops.role_grant_permission("reader", Permission::read("/x"))
            .await
            .unwrap();
        ops.user_add("bob", "bob-password", None).await.unwrap();
        ops.user_grant_role("bob", "reader").await.unwrap();
        let mut bob = Client::connect(&all, Some(as_user("bob", "bob-password")))
            .await
            .unwrap();
        assert_eq!(values(bob.get("/x", None).await.unwrap().kvs()), ["1"]);
        let e = bob.put("/x", "2", None).await.unwrap_err();
        assert_eq!(grpc_code(&e).as_deref(), Some("PermissionDenied"), "{e}");

        phase(
            4,
            "a password guesser is locked out, before any hashing, by the admin API's guard",
        );
        let refused = |r: Result<Client, etcd_client::Error>| match r {
            Ok(_) => panic!("a sign-in went through"),
            Err(e) => e,
        };
        // Five free failures, then each further one locks this user for this client.
        for _ in 0..6 {
            let e = refused(Client::connect(&all, Some(as_user("bob", "guess"))).await);
            assert!(e.to_string().contains("authentication failed"), "{e}");
        }
        let e = refused(Client::connect(&all, Some(as_user("bob", "bob-password"))).await);
        assert!(
            e.to_string().contains("too many failed sign-ins"),
            "the right password went through a lockout: {e}"
        );
        // Unknown users are counted too, and the configured user is not locked by them.
        for _ in 0..6 {
            let e = refused(Client::connect(&all, Some(as_user("nobody", "guess"))).await);
            assert!(e.to_string().contains("authentication failed"), "{e}");
        }
        let e = refused(Client::connect(&all, Some(as_user("nobody", "guess"))).await);
        assert!(e.to_string().contains("too many failed sign-ins"), "{e}");
        Client::connect(&all, Some(as_user("ops", "configured-secret-pw")))
            .await
            .unwrap();
    });
}
