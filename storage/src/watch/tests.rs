use std::sync::Arc;
use std::time::Duration;

use super::hub::{Taken, WatchHub, QUEUE_SPAN, WATCHER_QUEUE};
use super::*;
use crate::mvcc::key_value::{EventType, KeyValue, RevisionEvents};
use crate::mvcc::tests::Harness;

/// A watch step that must come: a missing event fails the test instead of hanging it.
async fn next(set: &mut WatchSet) -> (WatcherKey, WatchItem) {
    let (key, item) = tokio::time::timeout(Duration::from_secs(10), set.next())
        .await
        .expect("a watch item within 10 s");
    (key, item.expect("no storage error"))
}

fn revisions(item: &WatchItem) -> Vec<i64> {
    match item {
        WatchItem::Events(events) => events.iter().map(|e| e.kv.mod_revision).collect(),
        other => panic!("expected events, got {other:?}"),
    }
}

/// One revision putting `keys`.
fn puts_at(revision: i64, keys: &[&str]) -> Arc<RevisionEvents> {
    let put = |key: &str| Event {
        kind: EventType::Put,
        kv: KeyValue {
            key: key.into(),
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            value: b"v".to_vec(),
            lease: 0,
        },
        prev_kv: None,
    };
    Arc::new(RevisionEvents {
        revision,
        events: keys.iter().map(|k| put(k)).collect(),
    })
}

/// What makes idle watchers free: a revision is queued for, and wakes the set of, only the
/// watchers one of its keys falls in.
#[test]
fn a_revision_is_queued_only_for_the_watchers_it_touches() {
    let hub = WatchHub::new(1);
    let (set, _notify) = hub.open_set();
    let idle: Vec<u64> = (0..1000)
        .map(|i| hub.add(set, &KeyRange::new(format!("idle/{i}"), "")).0)
        .collect();
    let (exact, _) = hub.add(set, &KeyRange::new("hot", ""));
    let (prefix, _) = hub.add(set, &KeyRange::prefix("ho"));
    for revision in 2..=100 {
        hub.publish(&[puts_at(revision, &["hot"])], revision);
    }
    // A revision matching a watcher many times is queued for it once.
    hub.publish(&[puts_at(101, &["hot", "hoa", "hob"])], 101);
    let mut ready = vec![hub.pop_ready(set).unwrap(), hub.pop_ready(set).unwrap()];
    ready.sort_unstable();
    assert_eq!(ready, vec![exact, prefix]);
    assert_eq!(hub.pop_ready(set), None, "no idle watcher was woken");
    for id in [exact, prefix] {
        let Taken::Revisions(queued) = hub.take(id) else {
            panic!("not lagged")
        };
        let revisions: Vec<i64> = queued.iter().map(|r| r.revision).collect();
        assert_eq!(revisions, (2..=101).collect::<Vec<_>>());
    }
    for id in idle {
        let Taken::Revisions(queued) = hub.take(id) else {
            panic!("not lagged")
        };
        assert!(queued.is_empty());
        // And it has seen everything: nothing it watches changed.
        assert_eq!(hub.progress(id), (Some(101), 101));
    }
}

/// A watcher whose client stopped reading pins no revision older than [`QUEUE_SPAN`]: its
/// queue is dropped and it will read history instead, even if its own key changes rarely.
#[test]
fn a_queued_revision_older_than_the_span_sends_its_watcher_to_history() {
    let hub = WatchHub::new(1);
    let (set, _notify) = hub.open_set();
    let (rare, _) = hub.add(set, &KeyRange::new("rare", ""));
    hub.publish(&[puts_at(2, &["rare"])], 2);
    for revision in 3..=QUEUE_SPAN + 1 {
        hub.publish(&[puts_at(revision, &["busy"])], revision);
    }
    assert_eq!(
        hub.progress(rare).0,
        Some(1),
        "still queued at the span's edge"
    );
    hub.publish(&[puts_at(QUEUE_SPAN + 2, &["busy"])], QUEUE_SPAN + 2);
    assert_eq!(hub.progress(rare).0, None, "lagged");
    assert!(matches!(
        hub.take(rare),
        Taken::Lagged { through } if through == QUEUE_SPAN + 2
    ));
}

/// A watcher whose client stops reading for more revisions than its queue holds falls back
/// to history and still delivers every revision once, in order, while writes go on.
#[tokio::test]
async fn a_watcher_behind_its_queue_reads_history_and_misses_nothing() {
    let mut h = Harness::new();
    let mut set = WatchSet::new(h.store.clone());
    let key = set.add(WatchOptions {
        range: KeyRange::prefix("k/"),
        ..Default::default()
    });
    let mut want = Vec::new();
    for i in 0..WATCHER_QUEUE + 100 {
        want.push(h.put(&format!("k/{}", i % 7), "v").revision);
        h.put("other", "v");
    }
    let mut seen = Vec::new();
    while seen.len() < want.len() {
        let (got, item) = next(&mut set).await;
        assert_eq!(got, key);
        seen.extend(revisions(&item));
        // Writes arrive while it catches up.
        if want.len() < WATCHER_QUEUE + 150 {
            want.push(h.put("k/x", "v").revision);
        }
    }
    assert_eq!(seen, want);
    assert!(set.is_synced(key));
}

/// Progress: an idle watcher certifies every revision written, and one with revisions
/// waiting certifies only what precedes them.
#[tokio::test]
async fn progress_stops_before_the_first_revision_not_yet_delivered() {
    let mut h = Harness::new();
    let mut set = WatchSet::new(h.store.clone());
    let a = set.add(WatchOptions {
        range: KeyRange::new("a", ""),
        ..Default::default()
    });
    h.put("b", "1");
    h.put("b", "2");
    assert_eq!(set.progress_revision(a), h.store.revision());
    let at = h.put("a", "1").revision;
    h.put("b", "3");
    assert_eq!(set.progress_revision(a), at - 1);
    let (_, item) = next(&mut set).await;
    assert_eq!(revisions(&item), vec![at]);
    assert_eq!(set.delivered_revision(a), at);
    assert_eq!(set.progress_revision(a), h.store.revision());
    // A watcher from a revision still to come certifies nothing past the store's.
    let later = set.add(WatchOptions {
        range: KeyRange::new("a", ""),
        start_revision: h.store.revision() + 10,
        ..Default::default()
    });
    assert_eq!(set.progress_revision(later), h.store.revision());
}

/// A snapshot replacing the state sends every watcher back to read history from where it
/// was: it delivers the snapshot's changes in its range, then follows live writes.
#[tokio::test]
async fn a_snapshot_sends_watchers_to_history_from_where_they_were() {
    let mut leader = Harness::new();
    let follower = Harness::new();
    let mut set = WatchSet::new(follower.store.clone());
    let key = set.add(WatchOptions {
        range: KeyRange::prefix("k/"),
        ..Default::default()
    });
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(leader.put(&format!("k/{i}"), "v").revision);
        leader.put("other", "v");
    }
    follower
        .store
        .import(leader.store.export().unwrap())
        .unwrap();
    let (got, item) = next(&mut set).await;
    assert_eq!(got, key);
    assert_eq!(revisions(&item), written);
    // The follower applies on from the leader's log position.
    let mut h = leader;
    h.store = follower.store.clone();
    let live = h.put("k/9", "v").revision;
    let (got, item) = next(&mut set).await;
    assert_eq!((got, revisions(&item)), (key, vec![live]));
}
