//! Watches. The store hands every applied revision once to the watch hub (`hub.rs`), which
//! queues it only for the watchers whose key ranges it touches. A watcher that starts in the
//! past, falls behind its queue, or sees the store replaced by a snapshot reads history from
//! disk until it is level again, so it delivers every event after its start exactly once, in
//! revision order, and never splits a revision. If the history it needs was compacted it
//! reports so and stops.
//!
//! Watchers are read in [`WatchSet`]s (one per client stream), or alone as a [`Watcher`].

use std::sync::Arc;

use crate::error::StoreError;
use crate::mvcc::key_value::{Event, KeyRange};
use crate::store::KvStore;

pub(crate) mod hub;
mod range_index;
mod set;
#[cfg(test)]
mod tests;

pub use hub::WATCHER_QUEUE;
pub use set::{WatchSet, WatcherKey};

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

/// A single watcher: a [`WatchSet`] of one.
#[derive(Debug)]
pub struct Watcher {
    set: WatchSet,
    key: WatcherKey,
}

impl Watcher {
    pub fn new(store: Arc<KvStore>, opts: WatchOptions) -> Watcher {
        let mut set = WatchSet::new(store);
        let key = set.add(opts);
        Watcher { set, key }
    }

    /// All revisions up to this one have been delivered or did not match.
    pub fn progress_revision(&self) -> i64 {
        self.set.progress_revision(self.key)
    }

    /// Whether the watcher is level with the live feed (only then is progress meaningful).
    pub fn is_synced(&self) -> bool {
        self.set.is_synced(self.key)
    }

    /// The next batch of matching events; after [`WatchItem::Compacted`], waits forever.
    /// Cancel-safe.
    pub async fn next(&mut self) -> Result<WatchItem, StoreError> {
        self.set.next().await.1
    }
}
