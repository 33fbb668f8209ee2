//! Watches: every applied revision is broadcast once by the store; a [`Watcher`] filters it
//! for its key range. A watcher that starts in the past, falls behind the broadcast buffer, or
//! sees the store replaced by a snapshot reads history from disk until it is level again, so it
//! delivers every event after its start exactly once, in revision order, and never splits a
//! revision. If the history it needs was compacted it reports so and stops.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::StoreError;
use crate::mvcc::key_value::{Event, EventType, KeyRange, RevisionEvents};
use crate::store::KvStore;

/// Revisions buffered for live watchers before a slow one falls back to reading history.
pub const WATCH_HUB_CAPACITY: usize = 4096;

/// Rows read from history per step while catching up.
const CATCH_UP_ROWS: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) enum HubMessage {
    Revision(Arc<RevisionEvents>),
    /// The state was replaced wholesale (snapshot installed): re-read history.
    Reset,
}

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub range: KeyRange,
    /// First revision to deliver; 0 means "after the current revision".
    pub start_revision: i64,
    pub prev_kv: bool,
    pub filter_put: bool,
    pub filter_delete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    /// Events of one or more whole revisions, in order (never empty).
    Events(Vec<Event>),
    /// The next revision this watcher needs was compacted away; it is finished.
    Compacted { compact_revision: i64 },
}

pub struct Watcher {
    store: Arc<KvStore>,
    rx: broadcast::Receiver<HubMessage>,
    opts: WatchOptions,
    /// The first revision not yet delivered (or skipped as not matching).
    next_rev: i64,
    live: bool,
    finished: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("range", &self.opts.range)
            .field("next_rev", &self.next_rev)
            .field("live", &self.live)
            .finish()
    }
}

impl Watcher {
    /// Starts a watch. Subscribing before reading the persisted revision means no revision
    /// can fall between history and the live feed.
    pub fn new(store: Arc<KvStore>, opts: WatchOptions) -> Watcher {
        let rx = store.subscribe();
        let readable = store.readable_revision();
        let next_rev = if opts.start_revision <= 0 {
            readable + 1
        } else {
            opts.start_revision
        };
        Watcher {
            live: next_rev > readable,
            store,
            rx,
            opts,
            next_rev,
            finished: false,
        }
    }

    /// All revisions before this one have been delivered or did not match: the revision a
    /// progress notification may certify.
    pub fn progress_revision(&self) -> i64 {
        self.next_rev - 1
    }

    /// Whether the watcher is level with the live feed (only then is progress meaningful).
    pub fn is_synced(&self) -> bool {
        self.live
    }

    /// The next batch of matching events. Cancel-safe: state changes only after every await.
    pub async fn next(&mut self) -> Result<WatchItem, StoreError> {
        loop {
            if self.finished {
                // A finished watcher has nothing more to say; wait forever like an idle one.
                std::future::pending::<()>().await;
            }
            if !self.live {
                if let Some(item) = self.catch_up().await? {
                    return Ok(item);
                }
                continue;
            }
            match self.rx.recv().await {
                Ok(HubMessage::Revision(batch)) => {
                    if batch.revision < self.next_rev {
                        continue;
                    }
                    if batch.revision > self.next_rev {
                        // Every write revision is broadcast, so a gap means we missed one:
                        // read it from history (which includes this batch, already persisted).
                        self.live = false;
                        continue;
                    }
                    self.next_rev = batch.revision + 1;
                    let events = self.filter(batch.events.iter().cloned());
                    if !events.is_empty() {
                        return Ok(WatchItem::Events(events));
                    }
                }
                Err(RecvError::Lagged(_)) | Ok(HubMessage::Reset) => self.live = false,
                Err(RecvError::Closed) => {
                    self.finished = true;
                }
            }
        }
    }

    /// One step of reading history. `None` means "nothing matched in this step".
    async fn catch_up(&mut self) -> Result<Option<WatchItem>, StoreError> {
        let compacted = self.store.compact_revision();
        if self.next_rev <= compacted {
            self.finished = true;
            return Ok(Some(WatchItem::Compacted {
                compact_revision: compacted,
            }));
        }
        let upto = self.store.readable_revision();
        if self.next_rev > upto {
            self.live = true;
            return Ok(None);
        }
        let store = self.store.clone();
        let from = self.next_rev;
        let with_prev = self.opts.prev_kv;
        let rows = tokio::task::spawn_blocking(move || {
            store.history(from, upto, CATCH_UP_ROWS, with_prev)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let last_rev = rows.last().map_or(upto, |(id, _, _)| id.rev);
        // If this step read everything up to `upto`, the next revision is `upto + 1` even if
        // the last revisions touched no rows of ours.
        self.next_rev = if rows.len() < CATCH_UP_ROWS {
            upto + 1
        } else {
            last_rev + 1
        };
        // Level with what was persisted when we looked: the live feed has everything after.
        self.live = self.next_rev > upto;
        let events = self.filter(rows.into_iter().map(|(_, row, prev)| row.into_event(prev)));
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(WatchItem::Events(events)))
    }

    fn filter(&self, events: impl Iterator<Item = Event>) -> Vec<Event> {
        events
            .filter(|e| self.opts.range.contains(&e.kv.key))
            .filter(|e| match e.kind {
                EventType::Put => !self.opts.filter_put,
                EventType::Delete => !self.opts.filter_delete,
            })
            .map(|mut e| {
                if !self.opts.prev_kv {
                    e.prev_kv = None;
                }
                e
            })
            .collect()
    }
}
