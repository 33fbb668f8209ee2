//! The watch hub: every watcher of the node, indexed by key range, and the revisions waiting
//! for each. The store hands it each applied revision once; the hub queues the revision only
//! for the watchers one of its keys matches and wakes their sets. A watcher no write concerns
//! costs a write nothing.
//!
//! A watcher whose queue is full or old (its client reads slower than its keys change, or
//! not at all), and every watcher when a snapshot replaces the state, is marked lagged: its
//! queue is dropped, and its set re-reads history from disk up to the revision the hub has
//! dispatched when the set next takes from it, after which its queue holds exactly the
//! revisions that follow.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::range_index::RangeIndex;
use crate::mvcc::key_value::{KeyRange, RevisionEvents};

/// Revisions queued for one watcher before it is sent to read history instead.
pub const WATCHER_QUEUE: usize = 256;

/// How far behind the newest revision a queued revision may be before its watcher is sent
/// to read history instead. Each queued revision holds all of that revision's events in
/// memory, so this bounds what watchers whose clients stopped reading can pin to the last
/// this many revisions, however many watchers there are.
pub const QUEUE_SPAN: i64 = 4096;

#[derive(Debug)]
struct Member {
    set: u64,
    range: KeyRange,
    queue: VecDeque<Arc<RevisionEvents>>,
    /// Revisions were dropped: the set must read history before using the queue again.
    lagged: bool,
    /// The last revision queued, so a revision that matches several times is queued once.
    last_queued: i64,
    /// Already on its set's ready list.
    announced: bool,
}

#[derive(Debug)]
struct SetState {
    /// Members with something to take, oldest first; may name members since removed.
    ready: VecDeque<u64>,
    notify: Arc<Notify>,
}

#[derive(Debug)]
struct HubState {
    /// Every revision up to this one has been queued for the watchers it concerns.
    dispatched: i64,
    next_id: u64,
    members: HashMap<u64, Member>,
    sets: HashMap<u64, SetState>,
    index: RangeIndex,
    /// `(first queued revision, member)` of every member with a non-empty queue, oldest
    /// first, for [`QUEUE_SPAN`].
    waiting: BTreeSet<(i64, u64)>,
}

impl HubState {
    fn announce(&mut self, id: u64) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if member.announced {
            return;
        }
        member.announced = true;
        if let Some(set) = self.sets.get_mut(&member.set) {
            set.ready.push_back(id);
            set.notify.notify_one();
        }
    }

    fn lag(&mut self, id: u64) {
        if let Some(member) = self.members.get_mut(&id) {
            if let Some(first) = member.queue.front() {
                self.waiting.remove(&(first.revision, id));
            }
            member.queue = VecDeque::new();
            member.lagged = true;
        }
        self.announce(id);
    }

    /// Queues `batch` for a member (which has not been lagged), or lags it if its queue is full.
    fn queue(&mut self, id: u64, batch: &Arc<RevisionEvents>) {
        let Some(member) = self.members.get_mut(&id) else {
            return;
        };
        if member.queue.len() >= WATCHER_QUEUE {
            self.lag(id);
            return;
        }
        if member.queue.is_empty() {
            self.waiting.insert((batch.revision, id));
        }
        member.queue.push_back(batch.clone());
        self.announce(id);
    }
}

/// What a set takes for one of its members.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Revisions in order, each with at least one event the member's range contains.
    Revisions(VecDeque<Arc<RevisionEvents>>),
    /// Revisions were dropped: read history through this revision, then take again.
    Lagged { through: i64 },
}

#[derive(Debug)]
pub(crate) struct WatchHub {
    state: Mutex<HubState>,
}

impl WatchHub {
    pub fn new(revision: i64) -> WatchHub {
        WatchHub {
            state: Mutex::new(HubState {
                dispatched: revision,
                next_id: 0,
                members: HashMap::new(),
                sets: HashMap::new(),
                index: RangeIndex::default(),
                waiting: BTreeSet::new(),
            }),
        }
    }

    /// Poisoning means a panic while the lock was held; every method leaves the state whole
    /// between its statements' effects that matter (a member is indexed and listed together).
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues each revision for the watchers it concerns. `revision` is the store's revision
    /// after them (at least the last one's: a command may move it without events).
    pub fn publish(&self, batches: &[Arc<RevisionEvents>], revision: i64) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let mut matched = Vec::new();
        for batch in batches {
            // Each member once per revision, however many of its events it matches (a range
            // delete of many keys under a watched prefix).
            let HubState { index, members, .. } = &mut *st;
            for event in &batch.events {
                index.matching(&event.kv.key, |id| {
                    if let Some(m) = members.get_mut(&id) {
                        if !m.lagged && m.last_queued < batch.revision {
                            m.last_queued = batch.revision;
                            matched.push(id);
                        }
                    }
                });
            }
            for id in matched.drain(..) {
                st.queue(id, batch);
            }
            st.dispatched = st.dispatched.max(batch.revision);
        }
        st.dispatched = st.dispatched.max(revision);
        // Popped first, so the loop ends even if an entry outlived its queue.
        while let Some((first, id)) = st.waiting.pop_first() {
            if first > st.dispatched - QUEUE_SPAN {
                st.waiting.insert((first, id));
                break;
            }
            st.lag(id);
        }
    }

    /// The state was replaced by a snapshot at `revision`: every watcher re-reads history.
    pub fn reset(&self, revision: i64) {
        let mut st = self.lock();
        st.dispatched = revision;
        let ids: Vec<u64> = st.members.keys().copied().collect();
        for id in ids {
            st.lag(id);
        }
    }

    pub fn open_set(&self) -> (u64, Arc<Notify>) {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        let notify = Arc::new(Notify::new());
        st.sets.insert(
            id,
            SetState {
                ready: VecDeque::new(),
                notify: notify.clone(),
            },
        );
        (id, notify)
    }

    /// Removes a set and the members it names.
    pub fn close_set(&self, set: u64, members: impl Iterator<Item = u64>) {
        let mut st = self.lock();
        for id in members {
            remove(&mut st, id);
        }
        st.sets.remove(&set);
    }

    /// Adds a watcher of `range` to `set`; answers its id and the revision dispatched so far
    /// (its queue gets every later revision that concerns it).
    pub fn add(&self, set: u64, range: &KeyRange) -> (u64, i64) {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.index.insert(id, range);
        let dispatched = st.dispatched;
        st.members.insert(
            id,
            Member {
                set,
                range: range.clone(),
                queue: VecDeque::new(),
                lagged: false,
                last_queued: dispatched,
                announced: false,
            },
        );
        (id, dispatched)
    }

    /// Every revision up to this one has been queued for the watchers it concerns.
    pub fn dispatched(&self) -> i64 {
        self.lock().dispatched
    }

    pub fn remove(&self, id: u64) {
        remove(&mut self.lock(), id);
    }

    /// The next member of `set` with something to take.
    pub fn pop_ready(&self, set: u64) -> Option<u64> {
        let mut st = self.lock();
        loop {
            let id = st.sets.get_mut(&set)?.ready.pop_front()?;
            if let Some(member) = st.members.get_mut(&id) {
                member.announced = false;
                return Some(id);
            }
        }
    }

    /// Takes what is queued for a member.
    pub fn take(&self, id: u64) -> Taken {
        let mut st = self.lock();
        let dispatched = st.dispatched;
        let Some(member) = st.members.get_mut(&id) else {
            return Taken::Revisions(VecDeque::new());
        };
        if member.lagged {
            member.lagged = false;
            member.last_queued = dispatched;
            return Taken::Lagged {
                through: dispatched,
            };
        }
        let queue = std::mem::take(&mut member.queue);
        if let Some(first) = queue.front() {
            st.waiting.remove(&(first.revision, id));
        }
        Taken::Revisions(queue)
    }

    /// The revision up to which a member that has delivered all it took has seen every event
    /// of its range (just before its first queued revision, or everything dispatched; `None`
    /// while it is lagged), and the revision dispatched.
    pub fn progress(&self, id: u64) -> (Option<i64>, i64) {
        let st = self.lock();
        let seen = st.members.get(&id).filter(|m| !m.lagged).map(|m| {
            m.queue
                .front()
                .map_or(st.dispatched, |first| first.revision - 1)
        });
        (seen, st.dispatched)
    }
}

fn remove(st: &mut HubState, id: u64) {
    if let Some(member) = st.members.remove(&id) {
        st.index.remove(id, &member.range);
        if let Some(first) = member.queue.front() {
            st.waiting.remove(&(first.revision, id));
        }
    }
}
