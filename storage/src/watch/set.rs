//! [`WatchSet`]: the watchers one task reads, such as one client's watch stream. The hub wakes
//! the set when one of its watchers has revisions queued, and names that watcher, so a set's
//! cost follows the events its watchers receive, not how many watchers it holds.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::hub::Taken;
use super::{WatchItem, WatchOptions};
use crate::error::StoreError;
use crate::mvcc::key_value::{Event, EventType, KeyValue};
use crate::mvcc::rows::{HistoryRow, RowId};
use crate::store::KvStore;

/// Rows read from history per step while a watcher catches up.
const CATCH_UP_ROWS: usize = 1000;

/// One watcher of a [`WatchSet`]; unique in the node while the watcher lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatcherKey(u64);

#[derive(Debug)]
struct View {
    opts: WatchOptions,
    /// The first revision not yet delivered (or skipped as not matching).
    next_rev: i64,
    /// Set while the watcher must read history through this revision before taking from
    /// the hub again (it started in the past, fell behind, or a snapshot replaced the state).
    disk_until: Option<i64>,
    /// Its history was compacted away: it delivers nothing more.
    finished: bool,
}

/// History rows as [`KvStore::history`] returns them.
type Rows = Vec<(RowId, HistoryRow, Option<KeyValue>)>;

/// A history read under way, kept across calls of [`WatchSet::next`]: a caller that drops
/// `next` (for a request on its stream) finds it again instead of starting another.
struct Read {
    id: u64,
    from: i64,
    through: i64,
    rows: JoinHandle<Result<Rows, StoreError>>,
}

pub struct WatchSet {
    store: Arc<KvStore>,
    id: u64,
    notify: Arc<Notify>,
    views: HashMap<u64, View>,
    /// Watchers reading history, served in turn.
    catching: VecDeque<u64>,
    /// Watchers just level with the hub, whose queues must be looked at.
    recheck: VecDeque<u64>,
    /// Alternates a history step with live deliveries so that neither starves the other.
    disk_turn: bool,
    in_flight: Option<Read>,
}

impl std::fmt::Debug for WatchSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchSet")
            .field("watchers", &self.views.len())
            .field("catching", &self.catching.len())
            .finish()
    }
}

impl Drop for WatchSet {
    fn drop(&mut self) {
        self.store
            .hub()
            .close_set(self.id, self.views.keys().copied());
    }
}

impl WatchSet {
    pub fn new(store: Arc<KvStore>) -> WatchSet {
        let (id, notify) = store.hub().open_set();
        WatchSet {
            store,
            id,
            notify,
            views: HashMap::new(),
            catching: VecDeque::new(),
            recheck: VecDeque::new(),
            disk_turn: false,
            in_flight: None,
        }
    }

    /// Starts a watcher. One that starts at or before the revision the hub has dispatched
    /// reads history up to it first; the hub queues every later revision that concerns it,
    /// so no revision falls between the two.
    pub fn add(&mut self, opts: WatchOptions) -> WatcherKey {
        let (id, dispatched) = self.store.hub().add(self.id, &opts.range);
        let next_rev = if opts.start_revision <= 0 {
            dispatched + 1
        } else {
            opts.start_revision
        };
        let disk_until = (next_rev <= dispatched).then_some(dispatched);
        if disk_until.is_some() {
            self.catching.push_back(id);
        }
        self.views.insert(
            id,
            View {
                opts,
                next_rev,
                disk_until,
                finished: false,
            },
        );
        WatcherKey(id)
    }

    pub fn remove(&mut self, key: WatcherKey) {
        if self.views.remove(&key.0).is_some() {
            self.store.hub().remove(key.0);
            self.catching.retain(|&id| id != key.0);
            self.recheck.retain(|&id| id != key.0);
            self.drop_read_of(key.0);
        }
    }

    /// All revisions up to this one have been delivered or did not match: the revision a
    /// progress notification may certify once what [`WatchSet::next`] returned is sent.
    pub fn progress_revision(&self, key: WatcherKey) -> i64 {
        let Some(view) = self.views.get(&key.0) else {
            return 0;
        };
        let delivered = view.next_rev - 1;
        let (seen, dispatched) = self.store.hub().progress(key.0);
        let seen = match seen {
            Some(seen) if !view.finished && view.disk_until.is_none() => seen.max(delivered),
            _ => delivered,
        };
        // A watcher from a revision still to come has not seen it.
        seen.min(dispatched)
    }

    /// The revision up to which a watcher has delivered its events: the header revision of
    /// what [`WatchSet::next`] just returned for it.
    pub fn delivered_revision(&self, key: WatcherKey) -> i64 {
        self.views.get(&key.0).map_or(0, |v| v.next_rev - 1)
    }

    /// Whether the watcher is level with the live feed (only then is progress meaningful).
    pub fn is_synced(&self, key: WatcherKey) -> bool {
        self.views
            .get(&key.0)
            .is_some_and(|v| !v.finished && v.disk_until.is_none())
    }

    /// The next batch of matching events of one watcher, or the news that its history is
    /// gone. Waits forever while no watcher has anything. Cancel-safe: before an await only
    /// the turn and the history read under way change (the read is kept for the next call).
    pub async fn next(&mut self) -> (WatcherKey, Result<WatchItem, StoreError>) {
        loop {
            self.disk_turn = !self.disk_turn;
            if !self.disk_turn || self.catching.is_empty() {
                if let Some(out) = self.deliver_ready() {
                    return out;
                }
            }
            if let Some(&id) = self.catching.front() {
                if let Some(out) = self.catch_up(id).await {
                    return out;
                }
                continue;
            }
            self.notify.notified().await;
        }
    }

    /// Delivers what the hub queued for the first ready watcher that has a matching event.
    fn deliver_ready(&mut self) -> Option<(WatcherKey, Result<WatchItem, StoreError>)> {
        let hub = self.store.hub();
        loop {
            let id = match self.recheck.pop_front() {
                Some(id) => id,
                None => hub.pop_ready(self.id)?,
            };
            let Some(view) = self.views.get_mut(&id) else {
                continue;
            };
            if view.finished || view.disk_until.is_some() {
                // Its queue waits in the hub until it is level with history.
                continue;
            }
            match hub.take(id) {
                Taken::Lagged { through } => {
                    view.disk_until = Some(through);
                    self.catching.push_back(id);
                }
                Taken::Revisions(queue) => {
                    let mut events = Vec::new();
                    for batch in queue {
                        if batch.revision < view.next_rev {
                            continue;
                        }
                        view.next_rev = batch.revision + 1;
                        events.extend(filter(&view.opts, batch.events.iter().cloned()));
                    }
                    if !events.is_empty() {
                        return Some((WatcherKey(id), Ok(WatchItem::Events(events))));
                    }
                }
            }
        }
    }

    /// One step of reading history for a watcher. `None` means "nothing matched in this step".
    async fn catch_up(&mut self, id: u64) -> Option<(WatcherKey, Result<WatchItem, StoreError>)> {
        let key = WatcherKey(id);
        let Some((from, through, prev_within)) = self.views.get(&id).and_then(|v| {
            let prev_within = v.opts.prev_kv.then(|| v.opts.range.clone());
            Some((v.next_rev, v.disk_until?, prev_within))
        }) else {
            self.catching.retain(|&c| c != id);
            return None;
        };
        if let Some(gone) = self.compacted_from(id, from) {
            return Some(gone);
        }
        if from > through {
            self.level(id);
            return None;
        }
        let resumed = self
            .in_flight
            .as_ref()
            .is_some_and(|r| (r.id, r.from, r.through) == (id, from, through));
        if !resumed {
            let store = self.store.clone();
            self.in_flight = Some(Read {
                id,
                from,
                through,
                rows: tokio::task::spawn_blocking(move || {
                    store.history(from, through, CATCH_UP_ROWS, prev_within.as_ref())
                }),
            });
        }
        let read = self.in_flight.as_mut()?;
        let joined = (&mut read.rows).await;
        self.in_flight = None;
        let rows = match joined.map_err(|e| StoreError::Task(e.to_string())) {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) | Err(e) => {
                self.catching.rotate_left(1);
                return Some((key, Err(e)));
            }
        };
        // Compacted between the check above and the read (or, for a read kept from an
        // earlier call, since it started): rows it needed may be missing from what it got.
        if let Some(gone) = self.compacted_from(id, from) {
            return Some(gone);
        }
        let view = self.views.get_mut(&id)?;
        // A short read reached `through`, even if its last revisions touched no rows.
        view.next_rev = match rows.last() {
            Some((last, _, _)) if rows.len() >= CATCH_UP_ROWS => last.rev + 1,
            _ => through + 1,
        };
        let events = filter(
            &view.opts,
            rows.into_iter().map(|(_, row, prev)| row.into_event(prev)),
        );
        if view.next_rev > through {
            self.level(id);
        } else {
            self.catching.rotate_left(1);
        }
        if events.is_empty() {
            return None;
        }
        Some((key, Ok(WatchItem::Events(events))))
    }

    /// Finishes a watcher whose next revision `from` is compacted away, with the news.
    fn compacted_from(
        &mut self,
        id: u64,
        from: i64,
    ) -> Option<(WatcherKey, Result<WatchItem, StoreError>)> {
        let compacted = self.store.compact_revision();
        if from > compacted {
            return None;
        }
        self.finish(id);
        Some((
            WatcherKey(id),
            Ok(WatchItem::Compacted {
                compact_revision: compacted,
            }),
        ))
    }

    /// Every revision up to this one has been queued for the watchers it concerns: what a
    /// stream with no watchers may certify.
    pub fn dispatched_revision(&self) -> i64 {
        self.store.hub().dispatched()
    }

    fn drop_read_of(&mut self, id: u64) {
        if self.in_flight.as_ref().is_some_and(|r| r.id == id) {
            self.in_flight = None;
        }
    }

    /// History is read: the watcher takes from the hub again.
    fn level(&mut self, id: u64) {
        self.drop_read_of(id);
        if let Some(view) = self.views.get_mut(&id) {
            view.disk_until = None;
        }
        self.catching.retain(|&c| c != id);
        self.recheck.push_back(id);
    }

    fn finish(&mut self, id: u64) {
        self.drop_read_of(id);
        if let Some(view) = self.views.get_mut(&id) {
            view.finished = true;
            view.disk_until = None;
        }
        self.store.hub().remove(id);
        self.catching.retain(|&c| c != id);
    }
}

fn filter(opts: &WatchOptions, events: impl Iterator<Item = Event>) -> Vec<Event> {
    events
        .filter(|e| opts.range.contains(&e.kv.key))
        .filter(|e| match e.kind {
            EventType::Put => !opts.filter_put,
            EventType::Delete => !opts.filter_delete,
        })
        .map(|mut e| {
            if !opts.prev_kv {
                e.prev_kv = None;
            }
            e
        })
        .collect()
}
