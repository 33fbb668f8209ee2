//! Where the gateway's configuration comes from. A [`ConfigSource`] delivers a full listing,
//! then changes in revision order, and a fresh full listing whenever it cannot continue from
//! where it was (history compacted away). [`StoreSource`] reads the node's own replicated store;
//! an external etcd is the other implementation (compat).

use std::sync::Arc;

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::RangeRequest;
use hermes_storage::watch::{WatchItem, WatchOptions, Watcher};
use hermes_storage::{EventType, KvStore, StoreError};

/// The key prefixes of one namespace's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefixes {
    pub domains: String,
    pub clusters: String,
}

impl Prefixes {
    /// `default` uses the original Hermes prefixes; other namespaces live under `/hermes/ns/<ns>/`.
    pub fn for_namespace(namespace: &str) -> Prefixes {
        if namespace == "default" {
            Prefixes {
                domains: "/hermes/domains/".into(),
                clusters: "/hermes/clusters/".into(),
            }
        } else {
            Prefixes {
                domains: format!("/hermes/ns/{namespace}/domains/"),
                clusters: format!("/hermes/ns/{namespace}/clusters/"),
            }
        }
    }

    /// The shortest prefix covering both.
    pub fn common(&self) -> String {
        self.domains
            .chars()
            .zip(self.clusters.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    }

    pub fn relevant(&self, key: &str) -> bool {
        key.starts_with(&self.domains) || key.starts_with(&self.clusters)
    }
}

/// One key's new value, or its deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Everything, as of `revision`: replaces what was known.
    Full {
        revision: i64,
        items: Vec<(String, Vec<u8>)>,
    },
    /// Changes up to and including `revision`, in order.
    Changes { revision: i64, changes: Vec<Change> },
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading configuration from the store: {0}")]
    Store(#[from] StoreError),
    #[error("the configuration source has stopped")]
    Closed,
    /// An external store (etcd) failed; the source resumes where it was on the next call.
    #[error("reading configuration from {0}")]
    External(String),
}

pub trait ConfigSource: Send + 'static {
    /// The next update; the first is always [`Update::Full`].
    fn next(&mut self) -> impl std::future::Future<Output = Result<Update, SourceError>> + Send;
}

/// Configuration from the node's local store: consistent listing at one revision, then a watch
/// from the next revision. Serves what this node has applied (it keeps serving the last
/// configuration when the node loses its peers).
pub struct StoreSource {
    store: Arc<KvStore>,
    prefixes: Prefixes,
    watcher: Option<Watcher>,
}

impl StoreSource {
    pub fn new(store: Arc<KvStore>, prefixes: Prefixes) -> Self {
        StoreSource {
            store,
            prefixes,
            watcher: None,
        }
    }

    async fn list(&mut self) -> Result<Update, SourceError> {
        loop {
            let revision = self.store.readable_revision();
            let mut items = Vec::new();
            let mut compacted = false;
            for prefix in [&self.prefixes.clusters, &self.prefixes.domains] {
                let req = RangeRequest {
                    range: KeyRange::prefix(prefix.as_bytes().to_vec()),
                    revision,
                    serializable: true,
                    ..Default::default()
                };
                match self.store.range(req).await {
                    Ok(resp) => items.extend(
                        resp.kvs
                            .into_iter()
                            .map(|kv| (String::from_utf8_lossy(&kv.key).into_owned(), kv.value)),
                    ),
                    // Compacted between reading the revision and listing: list again.
                    Err(StoreError::Kv(hermes_storage::KvError::Compacted { .. })) => {
                        compacted = true
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if compacted {
                continue;
            }
            self.watcher = Some(Watcher::new(
                self.store.clone(),
                WatchOptions {
                    range: KeyRange::prefix(self.prefixes.common().into_bytes()),
                    start_revision: revision + 1,
                    ..Default::default()
                },
            ));
            return Ok(Update::Full { revision, items });
        }
    }
}

impl ConfigSource for StoreSource {
    async fn next(&mut self) -> Result<Update, SourceError> {
        loop {
            let Some(watcher) = self.watcher.as_mut() else {
                return self.list().await;
            };
            match watcher.next().await? {
                WatchItem::Compacted { compact_revision } => {
                    tracing::warn!(
                        compact_revision,
                        "configuration watch fell behind compaction; listing again"
                    );
                    self.watcher = None;
                }
                WatchItem::Events(events) => {
                    let revision = events.last().map_or(0, |e| e.kv.mod_revision);
                    let changes: Vec<Change> = events
                        .into_iter()
                        .filter_map(|e| {
                            let key = String::from_utf8_lossy(&e.kv.key).into_owned();
                            self.prefixes.relevant(&key).then(|| Change {
                                key,
                                value: (e.kind == EventType::Put).then_some(e.kv.value),
                            })
                        })
                        .collect();
                    return Ok(Update::Changes { revision, changes });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_storage::mvcc::request::{Command, DeleteRangeRequest, PutRequest};
    use hermes_storage::state_machine::StateMachine;
    use hermes_storage::types::Entry;
    use hermes_storage::watch::WATCHER_QUEUE;
    use openraft::storage::RaftStateMachine;

    /// A real store, written through its state machine as raft would.
    struct Store {
        _dir: tempfile::TempDir,
        sm: StateMachine,
        store: Arc<KvStore>,
        index: u64,
    }

    impl Store {
        fn open() -> Store {
            // The state machine alone: these tests apply entries themselves, so its writer's wait for
            // the raft log's durability is satisfied up front.
            let dir = tempfile::tempdir().unwrap();
            let state = Arc::new(
                hermes_storage::engine::SledEngine::open(&dir.path().join("state"), None).unwrap(),
            );
            let always = Arc::new(hermes_storage::durable::Durable::always());
            let store =
                KvStore::open(state, hermes_storage::fatal::Fatal::default(), always).unwrap();
            let sm = StateMachine::new(store.clone(), &dir.path().join("snapshots")).unwrap();
            Store {
                _dir: dir,
                sm,
                store,
                index: 0,
            }
        }

        async fn apply(&mut self, cmd: Command) {
            self.index += 1;
            let entry = Entry {
                log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), self.index),
                payload: openraft::EntryPayload::Normal(cmd),
            };
            self.sm.apply(vec![entry]).await.unwrap();
        }
    }

    fn put(key: &str, value: &str) -> Command {
        Command::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
    }

    /// The update's kind and revision.
    fn at(update: &Update) -> (&'static str, i64) {
        match update {
            Update::Full { revision, .. } => ("full", *revision),
            Update::Changes { revision, .. } => ("changes", *revision),
        }
    }

    fn keys(update: &Update) -> Vec<(&str, &[u8])> {
        match update {
            Update::Full { items, .. } => items
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect(),
            Update::Changes { changes, .. } => changes
                .iter()
                .map(|c| (c.key.as_str(), c.value.as_deref().unwrap_or(b"<deleted>")))
                .collect(),
        }
    }

    #[tokio::test]
    async fn lists_then_follows_changes_in_order() {
        let mut s = Store::open();
        s.apply(put("/hermes/clusters/a", "a1")).await;
        s.apply(put("/hermes/meta/other", "x")).await;
        let listed_at = s.store.revision();
        let mut source = StoreSource::new(s.store.clone(), Prefixes::for_namespace("default"));
        let first = source.next().await.unwrap();
        assert_eq!(at(&first), ("full", listed_at));
        assert_eq!(keys(&first), [("/hermes/clusters/a", &b"a1"[..])]);
        s.apply(put("/hermes/domains/d", "d1")).await;
        s.apply(Command::DeleteRange(DeleteRangeRequest {
            range: KeyRange::new("/hermes/clusters/a", ""),
            prev_kv: false,
        }))
        .await;
        // Both revisions were queued before the source looked: one update carries them, in
        // order, at the later revision.
        let next = source.next().await.unwrap();
        assert_eq!(at(&next), ("changes", listed_at + 2));
        assert_eq!(
            keys(&next),
            [
                ("/hermes/domains/d", &b"d1"[..]),
                ("/hermes/clusters/a", &b"<deleted>"[..])
            ]
        );
        s.apply(put("/hermes/domains/e", "e1")).await;
        let next = source.next().await.unwrap();
        assert_eq!(at(&next), ("changes", listed_at + 3));
        assert_eq!(keys(&next), [("/hermes/domains/e", &b"e1"[..])]);
    }

    #[tokio::test]
    async fn a_watch_overtaken_by_compaction_lists_again() {
        let mut s = Store::open();
        s.apply(put("/hermes/clusters/a", "a0")).await;
        let mut source = StoreSource::new(s.store.clone(), Prefixes::for_namespace("default"));
        assert_eq!(at(&source.next().await.unwrap()).0, "full");
        // More revisions than a watcher's queue holds, before the source reads any of them, then
        // a compaction past all of them: the changes are gone from history too.
        let burst = WATCHER_QUEUE + 10;
        let puts = (0..burst)
            .map(|i| put("/hermes/clusters/a", &format!("a{}", i + 1)))
            .collect();
        s.apply(Command::Batch(puts)).await;
        s.apply(put("/hermes/domains/d", "d1")).await;
        let last = s.store.revision();
        s.apply(Command::Compact { revision: last }).await;
        let relisted = source.next().await.unwrap();
        assert_eq!(at(&relisted), ("full", last));
        let mut listed = keys(&relisted);
        listed.sort();
        let newest = format!("a{burst}");
        assert_eq!(
            listed,
            [
                ("/hermes/clusters/a", newest.as_bytes()),
                ("/hermes/domains/d", &b"d1"[..])
            ]
        );
        // And it follows on from the new listing.
        s.apply(put("/hermes/clusters/b", "b1")).await;
        let next = source.next().await.unwrap();
        assert_eq!(keys(&next), [("/hermes/clusters/b", &b"b1"[..])]);
    }

    #[test]
    fn prefixes() {
        let d = Prefixes::for_namespace("default");
        assert_eq!(d.common(), "/hermes/");
        assert!(d.relevant("/hermes/domains/web") && !d.relevant("/hermes/meta/config_revision"));
        let s = Prefixes::for_namespace("staging");
        assert_eq!(s.domains, "/hermes/ns/staging/domains/");
        assert_eq!(s.common(), "/hermes/ns/staging/");
    }
}
