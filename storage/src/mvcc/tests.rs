//! MVCC behaviour against real storage: revisions, transactions, leases, history, compaction,
//! watches and reopening.

use std::sync::Arc;

use super::error::KvError;
use super::key_value::{EventType, KeyRange};
use super::request::*;
use super::response::*;
use crate::store::{apply_command_for_test, KvStore};
use crate::watch::{WatchItem, WatchOptions, Watcher};

/// A store written directly, as the state machine would: shared with the watch tests.
pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    pub(crate) store: Arc<KvStore>,
    index: u64,
}

/// The state machine's store alone, without a raft log: these tests apply commands directly,
/// which a full data directory would rightly refuse as a state machine ahead of its log.
fn state_only(dir: &std::path::Path) -> Arc<KvStore> {
    let engine = Arc::new(crate::engine::SledEngine::open(&dir.join("state"), None).unwrap());
    KvStore::open(
        engine,
        crate::fatal::Fatal::default(),
        std::sync::Arc::new(crate::durable::Durable::always()),
    )
    .unwrap()
}

impl Harness {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = state_only(dir.path());
        Harness {
            _dir: dir,
            store,
            index: 0,
        }
    }

    pub(crate) fn apply(&mut self, cmd: Command) -> CommandResponse {
        self.index += 1;
        apply_command_for_test(&self.store, self.index, cmd)
    }

    pub(crate) fn put(&mut self, key: &str, value: &str) -> PutResponse {
        match self.apply(Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            prev_kv: true,
            ..Default::default()
        })) {
            CommandResponse::Put(r) => r,
            other => panic!("put: {other:?}"),
        }
    }

    fn put_lease(&mut self, key: &str, lease: i64) -> CommandResponse {
        self.apply(Command::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        }))
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, crate::StoreError> {
        self.store.range(req).await
    }

    async fn get(&self, key: &str) -> Option<super::key_value::KeyValue> {
        self.range(RangeRequest {
            range: KeyRange::new(key, ""),
            ..Default::default()
        })
        .await
        .unwrap()
        .kvs
        .pop()
    }
}

fn rejected(resp: CommandResponse) -> KvError {
    match resp {
        CommandResponse::Rejected(e) => e,
        other => panic!("expected rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn revisions_versions_and_prev_kv() {
    let mut h = Harness::new();
    assert_eq!(h.put("a", "1").revision, 2);
    let second = h.put("a", "2");
    assert_eq!(second.revision, 3);
    assert_eq!(second.prev_kv.unwrap().value, b"1");
    h.put("b", "x");
    let a = h.get("a").await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));
    // A delete bumps the revision once and resets the version of a re-created key.
    let del = h.apply(Command::DeleteRange(DeleteRangeRequest {
        range: KeyRange::new("a", ""),
        prev_kv: true,
    }));
    let CommandResponse::DeleteRange(del) = del else {
        panic!()
    };
    assert_eq!((del.revision, del.deleted, del.prev_kvs.len()), (5, 1, 1));
    // Deleting nothing does not create a revision.
    let CommandResponse::DeleteRange(none) = h.apply(Command::DeleteRange(DeleteRangeRequest {
        range: KeyRange::new("zz", ""),
        prev_kv: false,
    })) else {
        panic!()
    };
    assert_eq!((none.revision, none.deleted), (5, 0));
    h.put("a", "3");
    let a = h.get("a").await.unwrap();
    assert_eq!((a.create_revision, a.version), (6, 1));
}

#[tokio::test]
async fn historical_reads_and_compaction() {
    let mut h = Harness::new();
    h.put("k", "v1"); // 2
    h.put("k", "v2"); // 3
    h.put("other", "o"); // 4
    h.apply(Command::DeleteRange(DeleteRangeRequest {
        range: KeyRange::new("k", ""),
        prev_kv: false,
    })); // 5
    let at = |rev| RangeRequest {
        range: KeyRange::new("k", ""),
        revision: rev,
        ..Default::default()
    };
    assert_eq!(h.range(at(2)).await.unwrap().kvs[0].value, b"v1");
    assert_eq!(h.range(at(4)).await.unwrap().kvs[0].value, b"v2");
    assert!(h.range(at(5)).await.unwrap().kvs.is_empty());
    assert!(matches!(
        h.range(at(10)).await.unwrap_err().as_kv(),
        Some(KvError::FutureRevision)
    ));
    assert!(matches!(
        h.apply(Command::Compact { revision: 4 }),
        CommandResponse::Compact(_)
    ));
    assert!(matches!(
        h.range(at(3)).await.unwrap_err().as_kv(),
        Some(KvError::Compacted {
            compact_revision: 4
        })
    ));
    assert_eq!(h.range(at(4)).await.unwrap().kvs[0].value, b"v2");
    assert_eq!(
        rejected(h.apply(Command::Compact { revision: 3 })),
        KvError::Compacted {
            compact_revision: 4
        }
    );
    assert_eq!(
        rejected(h.apply(Command::Compact { revision: 50 })),
        KvError::FutureRevision
    );
}

#[tokio::test]
async fn range_limit_sort_count_and_filters() {
    let mut h = Harness::new();
    for (k, v) in [("p/c", "1"), ("p/a", "3"), ("p/b", "2"), ("q", "0")] {
        h.put(k, v);
    }
    let base = RangeRequest {
        range: KeyRange::prefix("p/"),
        ..Default::default()
    };
    let all = h.range(base.clone()).await.unwrap();
    assert_eq!(all.count, 3);
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        keys,
        vec![b"p/a".to_vec(), b"p/b".to_vec(), b"p/c".to_vec()]
    );
    let limited = h
        .range(RangeRequest {
            limit: 2,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (limited.kvs.len(), limited.more, limited.count),
        (2, true, 3)
    );
    let by_value_desc = h
        .range(RangeRequest {
            sort_target: SortTarget::Value,
            sort_order: SortOrder::Descend,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(by_value_desc.kvs[0].value, b"3");
    let newest_create = h
        .range(RangeRequest {
            sort_target: SortTarget::Create,
            sort_order: SortOrder::Descend,
            limit: 1,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(newest_create.kvs[0].key, b"p/b");
    let count_only = h
        .range(RangeRequest {
            count_only: true,
            ..base.clone()
        })
        .await
        .unwrap();
    assert!(count_only.kvs.is_empty() && count_only.count == 3);
    let keys_only = h
        .range(RangeRequest {
            keys_only: true,
            ..base.clone()
        })
        .await
        .unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    let filtered = h
        .range(RangeRequest {
            min_mod_revision: 3,
            max_create_revision: 3,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(filtered.kvs.len(), 1);
    assert_eq!(
        filtered.count, 3,
        "count ignores revision filters, as etcd does"
    );
    let from_key = h
        .range(RangeRequest {
            range: KeyRange::new("p/b", vec![0]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(from_key.count, 3);
    let reversed_bounds = h
        .range(RangeRequest {
            range: KeyRange::new("z", "a"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reversed_bounds.count, 0);
}

#[tokio::test]
async fn txn_compares_branches_and_rollback() {
    let mut h = Harness::new();
    h.put("lock", "owner-1");
    let txn = |cmp_value: &str| TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Value(cmp_value.into()),
            range: KeyRange::new("lock", ""),
        }],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"data".to_vec(),
                value: b"yes".to_vec(),
                ..Default::default()
            }),
            RequestOp::Range(RangeRequest {
                range: KeyRange::new("data", ""),
                ..Default::default()
            }),
        ],
        failure: vec![RequestOp::Range(RangeRequest {
            range: KeyRange::new("lock", ""),
            ..Default::default()
        })],
    };
    let CommandResponse::Txn(ok) = h.apply(Command::Txn(txn("owner-1"))) else {
        panic!()
    };
    assert!(ok.succeeded);
    assert_eq!(ok.revision, 3);
    let ResponseOp::Range(read_own_write) = &ok.responses[1] else {
        panic!()
    };
    assert_eq!(
        read_own_write.kvs[0].value, b"yes",
        "a txn reads its own writes"
    );
    let CommandResponse::Txn(fail) = h.apply(Command::Txn(txn("someone-else"))) else {
        panic!()
    };
    assert!(!fail.succeeded);
    assert_eq!(
        fail.revision, 3,
        "a read-only branch does not create a revision"
    );

    // A missing key compares as zero versions; a value compare on it is false.
    let create_if_absent = Command::Txn(TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
            range: KeyRange::new("new", ""),
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: b"new".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })],
        failure: vec![],
    });
    let CommandResponse::Txn(first) = h.apply(create_if_absent.clone()) else {
        panic!()
    };
    let CommandResponse::Txn(second) = h.apply(create_if_absent) else {
        panic!()
    };
    assert!(first.succeeded && !second.succeeded);

    // A failing op (unknown lease) rolls back the earlier puts of the same txn.
    let revision_before = h.store.revision();
    let bad = h.apply(Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b"rolled".to_vec(),
                value: b"back".to_vec(),
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: b"leased".to_vec(),
                lease: 777,
                ..Default::default()
            }),
        ],
        failure: vec![],
    }));
    assert_eq!(rejected(bad), KvError::LeaseNotFound);
    assert!(h.get("rolled").await.is_none());
    assert_eq!(h.store.revision(), revision_before);
}

/// A deleted key keeps its history until compaction; a rejected transaction that put it must
/// leave that history, not drop the key's entry with it.
#[tokio::test]
async fn a_rejected_txn_keeps_the_history_of_a_deleted_key() {
    let mut h = Harness::new();
    let first = h.put("was", "1").revision;
    h.apply(Command::DeleteRange(DeleteRangeRequest {
        range: KeyRange::new("was", ""),
        prev_kv: false,
    }));
    let bad = h.apply(Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutRequest {
                key: "was".into(),
                value: "2".into(),
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: "leased".into(),
                value: "v".into(),
                lease: 777,
                ..Default::default()
            }),
        ],
        failure: vec![],
    }));
    assert_eq!(rejected(bad), KvError::LeaseNotFound);
    assert!(h.get("was").await.is_none());
    let at_first = h
        .range(RangeRequest {
            range: KeyRange::new("was", ""),
            revision: first,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at_first.kvs.len(), 1, "the deleted key's history stays");
    assert_eq!(at_first.kvs[0].value, b"1");
}

/// A rejected transaction leaves keys that existed before it as they were: their value,
/// version and history, so that the next write continues from them.
#[tokio::test]
async fn a_rejected_txn_restores_the_keys_it_changed_with_their_history() {
    let mut h = Harness::new();
    h.put("kept", "1");
    h.put("kept", "2");
    h.put("gone", "x");
    let revision_before = h.store.revision();
    let put = |key: &str, value: &str, lease: i64| {
        RequestOp::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            lease,
            ..Default::default()
        })
    };
    let bad = h.apply(Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            put("kept", "3", 0),
            RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::new("gone", ""),
                prev_kv: false,
            }),
            put("leased", "v", 777),
        ],
        failure: vec![],
    }));
    assert_eq!(rejected(bad), KvError::LeaseNotFound);
    assert_eq!(h.store.revision(), revision_before);
    let kept = h.get("kept").await.unwrap();
    assert_eq!((kept.value.as_slice(), kept.version), (&b"2"[..], 2));
    assert_eq!(h.get("gone").await.unwrap().value, b"x");
    let at_first = h
        .range(RangeRequest {
            range: KeyRange::new("kept", ""),
            revision: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(at_first.kvs[0].value, b"1", "history before the txn stays");

    // The revision the txn would have written goes to another key; reads at it must not
    // find rows of the rejected txn.
    let next = h.put("other", "o").revision;
    assert_eq!(next, revision_before + 1);
    h.put("other", "p");
    for (key, value) in [("kept", "2"), ("gone", "x")] {
        let at_next = h
            .range(RangeRequest {
                range: KeyRange::new(key, ""),
                revision: next,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(at_next.kvs.len(), 1, "{key} at revision {next}");
        assert_eq!(at_next.kvs[0].value, value.as_bytes(), "{key}");
    }
    let put = h.put("kept", "5");
    assert_eq!(put.prev_kv.unwrap().value, b"2");
    let kept = h.get("kept").await.unwrap();
    assert_eq!((kept.version, kept.create_revision), (3, 2));
}

#[test]
fn txn_validation_matches_etcd() {
    let put = |k: &str| {
        RequestOp::Put(PutRequest {
            key: k.into(),
            ..Default::default()
        })
    };
    let dup = TxnRequest {
        success: vec![put("a"), put("a")],
        ..Default::default()
    };
    assert_eq!(super::state::validate_txn(&dup), Err(KvError::DuplicateKey));
    let put_in_deleted_range = TxnRequest {
        success: vec![
            put("a/1"),
            RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::prefix("a/"),
                prev_kv: false,
            }),
        ],
        ..Default::default()
    };
    assert_eq!(
        super::state::validate_txn(&put_in_deleted_range),
        Err(KvError::DuplicateKey)
    );
    let same_key_in_both_branches = TxnRequest {
        success: vec![put("a")],
        failure: vec![put("a")],
        ..Default::default()
    };
    assert_eq!(
        super::state::validate_txn(&same_key_in_both_branches),
        Ok(())
    );
    let too_many = TxnRequest {
        success: (0..129).map(|i| put(&format!("k{i}"))).collect(),
        ..Default::default()
    };
    assert_eq!(
        super::state::validate_txn(&too_many),
        Err(KvError::TooManyOps)
    );
    let empty_key = TxnRequest {
        success: vec![put("")],
        ..Default::default()
    };
    assert_eq!(
        super::state::validate_txn(&empty_key),
        Err(KvError::EmptyKey)
    );
}

/// A rejected transaction leaves the leases' keys as they were: keys it attached are detached
/// again and keys it moved to another lease (or off any lease) are back on theirs.
#[tokio::test]
async fn a_rejected_txn_restores_the_keys_of_leases() {
    let mut h = Harness::new();
    h.apply(Command::LeaseGrant { id: 7, ttl: 10 });
    h.apply(Command::LeaseGrant { id: 8, ttl: 10 });
    h.put_lease("on7", 7);
    h.put_lease("moved", 7);
    h.put_lease("freed", 8);
    let put = |key: &str, lease: i64| {
        RequestOp::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
    };
    let bad = h.apply(Command::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            put("new", 7),
            put("moved", 8),
            put("freed", 0),
            put("leased", 777),
        ],
        failure: vec![],
    }));
    assert_eq!(rejected(bad), KvError::LeaseNotFound);
    let keys = |id| h.store.lease(id).unwrap().1;
    assert_eq!(keys(7), vec![b"moved".to_vec(), b"on7".to_vec()]);
    assert_eq!(keys(8), vec![b"freed".to_vec()]);
    assert!(h.get("new").await.is_none());
    assert_eq!(h.get("moved").await.unwrap().lease, 7);
    assert_eq!(h.get("freed").await.unwrap().lease, 8);
}

#[tokio::test]
async fn put_options_and_leases() {
    let mut h = Harness::new();
    assert!(matches!(
        h.apply(Command::LeaseGrant { id: 7, ttl: 10 }),
        CommandResponse::LeaseGrant(LeaseGrantResponse { id: 7, ttl: 10, .. })
    ));
    assert_eq!(
        rejected(h.apply(Command::LeaseGrant { id: 7, ttl: 10 })),
        KvError::LeaseExists
    );
    assert_eq!(rejected(h.put_lease("x", 8)), KvError::LeaseNotFound);
    h.put_lease("x", 7);
    h.put_lease("y", 7);
    assert_eq!(h.store.lease(7).unwrap().1.len(), 2);
    // ignore_lease keeps the lease; ignore_value keeps the value.
    h.apply(Command::Put(PutRequest {
        key: b"x".to_vec(),
        value: b"new".to_vec(),
        ignore_lease: true,
        ..Default::default()
    }));
    assert_eq!(h.get("x").await.unwrap().lease, 7);
    assert_eq!(
        rejected(h.apply(Command::Put(PutRequest {
            key: b"missing".to_vec(),
            ignore_value: true,
            ..Default::default()
        }))),
        KvError::KeyNotFound
    );
    // Re-putting y without a lease detaches it.
    h.put("y", "free");
    assert_eq!(h.store.lease(7).unwrap().1, vec![b"x".to_vec()]);
    let before = h.store.revision();
    assert!(matches!(
        h.apply(Command::LeaseRevoke { id: 7 }),
        CommandResponse::LeaseRevoke(_)
    ));
    assert_eq!(
        h.store.revision(),
        before + 1,
        "revoking deletes attached keys in one revision"
    );
    assert!(h.get("x").await.is_none());
    assert!(h.get("y").await.is_some());
    assert_eq!(
        rejected(h.apply(Command::LeaseRevoke { id: 7 })),
        KvError::LeaseNotFound
    );
}

#[tokio::test]
async fn watch_replays_history_then_follows_live() {
    let mut h = Harness::new();
    h.put("w/1", "a"); // 2
    h.put("x", "ignored"); // 3
    h.put("w/1", "b"); // 4
    let mut watcher = Watcher::new(
        h.store.clone(),
        WatchOptions {
            range: KeyRange::prefix("w/"),
            start_revision: 2,
            prev_kv: true,
            ..Default::default()
        },
    );
    let WatchItem::Events(history) = watcher.next().await.unwrap() else {
        panic!()
    };
    let revs: Vec<i64> = history.iter().map(|e| e.kv.mod_revision).collect();
    assert_eq!(revs, vec![2, 4]);
    assert_eq!(history[1].prev_kv.as_ref().unwrap().value, b"a");
    h.apply(Command::DeleteRange(DeleteRangeRequest {
        range: KeyRange::prefix("w/"),
        prev_kv: false,
    })); // 5
    let WatchItem::Events(live) = watcher.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].kind, EventType::Delete);
    assert_eq!(live[0].prev_kv.as_ref().unwrap().value, b"b");
    assert!(watcher.is_synced());
    assert_eq!(watcher.progress_revision(), 5);
}

#[tokio::test]
async fn watch_from_compacted_revision_reports_the_floor() {
    let mut h = Harness::new();
    for i in 0..5 {
        h.put("k", &i.to_string());
    }
    h.apply(Command::Compact { revision: 5 });
    let mut watcher = Watcher::new(
        h.store.clone(),
        WatchOptions {
            range: KeyRange::new("k", ""),
            start_revision: 3,
            ..Default::default()
        },
    );
    assert_eq!(
        watcher.next().await.unwrap(),
        WatchItem::Compacted {
            compact_revision: 5
        }
    );
    // From the floor + 1 it works.
    let mut ok = Watcher::new(
        h.store.clone(),
        WatchOptions {
            range: KeyRange::new("k", ""),
            start_revision: 6,
            ..Default::default()
        },
    );
    let WatchItem::Events(events) = ok.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(events[0].kv.mod_revision, 6);
}

#[tokio::test]
async fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = state_only(dir.path());
        apply_command_for_test(&store, 1, Command::LeaseGrant { id: 5, ttl: 30 });
        for (i, k) in ["a", "b", "a"].iter().enumerate() {
            apply_command_for_test(
                &store,
                i as u64 + 2,
                Command::Put(PutRequest {
                    key: k.as_bytes().to_vec(),
                    value: vec![i as u8],
                    lease: if *k == "b" { 5 } else { 0 },
                    ..Default::default()
                }),
            );
        }
        store.persist().unwrap();
    }
    let store = state_only(dir.path());
    assert_eq!(store.revision(), 4);
    assert_eq!(store.get(b"a").unwrap().version, 2);
    assert_eq!(store.lease(5).unwrap().1, vec![b"b".to_vec()]);
    assert_eq!(store.applied().unwrap().index, 4);
    let old = store
        .range(RangeRequest {
            range: KeyRange::new("a", ""),
            revision: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, vec![0]);
}

#[tokio::test]
async fn a_batch_applies_each_command_as_if_alone() {
    let mut h = Harness::new();
    let put = |k: &str, lease: i64| {
        Command::Put(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            lease,
            ..Default::default()
        })
    };
    let resp = h.apply(Command::Batch(vec![put("a", 0), put("b", 99), put("c", 0)]));
    let CommandResponse::Batch(answers) = resp else {
        panic!("{resp:?}")
    };
    assert!(matches!(
        answers[0],
        CommandResponse::Put(PutResponse { revision: 2, .. })
    ));
    assert_eq!(
        answers[1],
        CommandResponse::Rejected(KvError::LeaseNotFound)
    );
    assert!(matches!(
        answers[2],
        CommandResponse::Put(PutResponse { revision: 3, .. })
    ));
    assert_eq!(h.store.revision(), 3);
    assert!(h.get("b").await.is_none());
    let nested = h.apply(Command::Batch(vec![Command::Batch(vec![put("d", 0)])]));
    assert_eq!(
        nested,
        CommandResponse::Batch(vec![CommandResponse::Rejected(KvError::NestedBatch)])
    );
}

#[tokio::test]
async fn history_sees_rows_whether_or_not_the_writer_has_stored_them() {
    let mut h = Harness::new();
    for round in 0..20 {
        for i in 0..10 {
            h.put(&format!("k{i}"), &format!("{round}"));
        }
        // Immediately after applying, some rows are still only in memory.
        let to = h.store.readable_revision();
        let rows = h.store.history(2, to, usize::MAX, None).unwrap();
        let revs: Vec<i64> = rows.iter().map(|(id, _, _)| id.rev).collect();
        let want: Vec<i64> = (2..=to).collect();
        assert_eq!(revs, want, "round {round}");
    }
    // A limit stops at a revision boundary.
    let limited = h.store.history(2, 50, 5, None).unwrap();
    assert_eq!(limited.len(), 5);
    h.store.persist().unwrap();
    assert_eq!(
        h.store.history(2, 201, usize::MAX, None).unwrap().len(),
        200
    );
}

/// Previous values are resolved only for the rows the reader keeps: a watcher on one key
/// catching up through other keys' writes must not pay a lookup (maybe a disk read) for each.
#[tokio::test]
async fn history_resolves_previous_values_only_within_the_range_asked() {
    let mut h = Harness::new();
    for round in 0..3 {
        for i in 0..4 {
            h.put(&format!("k{i}"), &format!("{round}"));
        }
    }
    h.store.persist().unwrap();
    let to = h.store.readable_revision();
    let only_k1 = crate::KeyRange::new(b"k1".to_vec(), Vec::new());
    let rows = h.store.history(2, to, usize::MAX, Some(&only_k1)).unwrap();
    assert_eq!(rows.len(), 12);
    let with_prev: Vec<(String, String)> = rows
        .iter()
        .filter_map(|(_, row, prev)| {
            let prev = prev.as_ref()?;
            Some((
                String::from_utf8(row.kv.key.clone()).unwrap(),
                String::from_utf8(prev.value.clone()).unwrap(),
            ))
        })
        .collect();
    // k1's first write has no previous value; its next two carry rounds 0 and 1.
    assert_eq!(
        with_prev,
        [("k1".into(), "0".into()), ("k1".into(), "1".into())]
    );
    let everything = crate::KeyRange::new(Vec::new(), vec![0]);
    let all = h
        .store
        .history(2, to, usize::MAX, Some(&everything))
        .unwrap();
    assert_eq!(all.iter().filter(|(_, _, p)| p.is_some()).count(), 8);
}

/// A limited history read whose oldest rows are in the tree and newest still in `pending`
/// returns the oldest rows: a watcher catching up in steps must not skip the tree's part.
#[test]
fn limited_history_starts_at_the_oldest_row_wherever_it_lies() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(crate::engine::SledEngine::open(&dir.path().join("state"), None).unwrap());
    let durable = Arc::new(crate::durable::Durable::new(0));
    let store = KvStore::open(engine, crate::fatal::Fatal::default(), durable.clone()).unwrap();
    let put = |index: u64| {
        let cmd = Command::Put(PutRequest {
            key: format!("k{index}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        apply_command_for_test(&store, index, cmd);
    };
    (1..=10).for_each(put);
    durable.set(10);
    store.persist().unwrap();
    // Revisions 2..=11 are in the tree; 12..=21 wait in `pending` for the log.
    (11..=20).for_each(put);
    let rows = store.history(2, 21, 5, None).unwrap();
    let revs: Vec<i64> = rows.iter().map(|(id, _, _)| id.rev).collect();
    assert_eq!(revs, vec![2, 3, 4, 5, 6]);
    durable.set(20);
}

/// The tree (persisted by sled on its own schedule) must never get ahead of the raft log on
/// this node's disk: rows wait for the log, while reads see them at once.
#[test]
fn rows_reach_the_tree_only_once_their_entries_are_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(crate::engine::SledEngine::open(&dir.path().join("state"), None).unwrap());
    let durable = Arc::new(crate::durable::Durable::new(0));
    let store = KvStore::open(engine, crate::fatal::Fatal::default(), durable.clone()).unwrap();
    let tree = store.engine().tree("sm").unwrap();
    let applied_in_tree = || {
        let raw = tree
            .get(&super::rows::meta_key("applied"))
            .unwrap()
            .expect("applied mark");
        crate::codec::decode::<Option<crate::types::LogId>>(&raw)
            .unwrap()
            .map(|l| l.index)
    };
    let put = |key: &str| {
        Command::Put(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    };

    apply_command_for_test(&store, 1, put("a"));
    assert!(
        store.get(b"a").is_some(),
        "reads see an applied entry at once"
    );
    durable.set(1);
    store.persist().unwrap();
    assert_eq!(applied_in_tree(), Some(1));

    apply_command_for_test(&store, 2, put("b"));
    assert!(store.get(b"b").is_some());
    // The log fails before entry 2 is on disk: its rows must never reach the tree.
    durable.fail();
    assert!(store.persist().is_err());
    assert_eq!(applied_in_tree(), Some(1));
}
