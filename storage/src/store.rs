//! [`KvStore`]: the node's MVCC key-value store as every other component sees it. It owns the
//! in-memory index, the state-machine tree on disk, the rows written but not yet on disk, and
//! the watch hub. Reads are served here; writes arrive only through the raft state machine.
//!
//! Write path (one applied batch): mutate the index under the write lock (pure memory), park
//! new rows in `pending`, release the lock, hand the engine batch to the writer thread, then
//! publish the revision as readable and hand its events to the watch hub. A watcher
//! therefore always finds in `pending` or on disk every revision up to
//! [`KvStore::readable_revision`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::codec;
use crate::engine::{Engine, EngineError, Tree, WriteBatch};
use crate::error::StoreError;
use crate::mvcc::error::KvError;
use crate::mvcc::key_value::{KeyValue, RevisionEvents};
use crate::mvcc::request::{Command, RangeRequest};
use crate::mvcc::response::{CommandResponse, RangeResponse, RevisionResponse};
use crate::mvcc::rows::{lease_key, meta_key, HistoryRow, LeaseRow, RowId, LEASE_PREFIX};
use crate::mvcc::state::{
    finish_range, Changes, KeyEntry, LeaseEntry, Mark, MvccState, ResolveError, Slot,
};
use crate::snapshot::SnapshotContents;
use crate::state_writer::{Pending, StateWriter};
use crate::types::{Entry, LogId, StoredMembership};
use crate::watch::hub::WatchHub;

const META_APPLIED: &str = "applied";
const META_MEMBERSHIP: &str = "membership";
const META_REVISION: &str = "revision";
const META_COMPACT: &str = "compact";
const META_CLUSTER_ID: &str = "cluster_id";

/// Everything behind the state lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub mvcc: MvccState,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub cluster_id: u64,
}

pub struct KvStore {
    state: RwLock<State>,
    tree: Arc<dyn Tree>,
    engine: Arc<dyn Engine>,
    /// Rows applied in memory and not yet written to the tree by the writer thread.
    pending: Arc<Pending>,
    /// Every revision up to this one is readable from `pending` or the tree.
    readable_revision: AtomicI64,
    hub: WatchHub,
    /// Held (shared) while a snapshot or a watcher catching up reads history rows; the
    /// writer's batches that delete rows (compaction, lease revokes) and a snapshot's import
    /// take it exclusively, so a read never misses a row it selected nor takes a short read
    /// for the end of history.
    history_guard: Arc<RwLock<()>>,
    writer: StateWriter,
    /// One whole-store read (a backup, a hash) at a time: see [`KvStore::read_whole`].
    whole_reads: tokio::sync::Semaphore,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("revision", &self.readable_revision)
            .finish()
    }
}

fn engine_err(e: EngineError) -> StoreError {
    StoreError::Engine(e)
}

/// Poisoning means a panic while the lock was held; the data under these locks is only
/// replaced whole or mutated through `Writer`, which rolls back on every error path.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KvStore {
    /// Loads the store from the engine's `sm` tree; a failed write later raises `fatal`, and
    /// rows reach the tree only once `durable` says their entries are in the raft log on disk.
    /// Blocking.
    pub fn open(
        engine: Arc<dyn Engine>,
        fatal: crate::fatal::Fatal,
        durable: Arc<crate::durable::Durable>,
    ) -> Result<Arc<KvStore>, StoreError> {
        let tree = engine.tree("sm").map_err(engine_err)?;
        let state = load_state(tree.as_ref())?;
        let revision = state.mvcc.revision;
        let pending: Arc<Pending> = Arc::default();
        let history_guard = Arc::new(RwLock::new(()));
        let writer = StateWriter::start(
            tree.clone(),
            pending.clone(),
            history_guard.clone(),
            fatal,
            durable,
        )?;
        Ok(Arc::new(KvStore {
            state: RwLock::new(state),
            tree,
            engine,
            pending,
            readable_revision: AtomicI64::new(revision),
            hub: WatchHub::new(revision),
            history_guard,
            writer,
            whole_reads: tokio::sync::Semaphore::new(1),
        }))
    }

    /// Runs `f`, which reads every row (a backup, a hash), off the runtime and one at a time
    /// on this node: each holds a copy of the whole store, and they are root's diagnostics and
    /// backups, not worth several copies in memory, nor several stalls of compaction's
    /// deletes (which wait for the read), at once.
    pub async fn read_whole<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&KvStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let _one = self
            .whole_reads
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn revision(&self) -> i64 {
        read(&self.state).mvcc.revision()
    }

    pub fn compact_revision(&self) -> i64 {
        read(&self.state).mvcc.compact_revision()
    }

    /// Every revision up to this one is readable from history.
    pub fn readable_revision(&self) -> i64 {
        self.readable_revision.load(Ordering::Acquire)
    }

    /// Waits for every applied change to reach the engine and makes it durable. Blocking.
    pub fn persist(&self) -> Result<(), StoreError> {
        self.writer.barrier()?;
        Ok(self.engine.sync()?)
    }

    pub fn cluster_id(&self) -> u64 {
        read(&self.state).cluster_id
    }

    pub fn applied(&self) -> Option<LogId> {
        read(&self.state).applied
    }

    pub fn membership(&self) -> StoredMembership {
        read(&self.state).membership.clone()
    }

    pub fn key_count(&self) -> usize {
        read(&self.state).mvcc.key_count()
    }

    /// The current value of one key.
    pub fn get(&self, key: &[u8]) -> Option<Arc<KeyValue>> {
        read(&self.state).mvcc.get(key)
    }

    /// Lease ids and granted TTLs.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        read(&self.state).mvcc.leases()
    }

    /// Granted TTL and attached keys of a lease, if it exists.
    pub fn lease(&self, id: i64) -> Option<(i64, Vec<Vec<u8>>)> {
        read(&self.state).mvcc.lease(id)
    }

    pub(crate) fn hub(&self) -> &WatchHub {
        &self.hub
    }

    /// A range read on local state (the caller decides whether it is linearizable).
    pub async fn range(self: &Arc<Self>, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        if req.range.key.is_empty() {
            return Err(StoreError::Kv(KvError::EmptyKey));
        }
        let plan = read(&self.state)
            .mvcc
            .plan_range(&req)
            .map_err(StoreError::Kv)?;
        if req.count_only || !plan.needs_disk() {
            let kvs = if req.count_only {
                Vec::new()
            } else {
                plan.slots
                    .into_iter()
                    .filter_map(|s| match s {
                        Slot::Ready(kv) => Some(kv),
                        Slot::Stored(_) => None,
                    })
                    .collect()
            };
            return Ok(finish_range(&req, plan.revision, plan.count, kvs));
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut kvs = Vec::with_capacity(plan.slots.len());
            for slot in plan.slots {
                kvs.push(match slot {
                    Slot::Ready(kv) => kv,
                    Slot::Stored(id) => Arc::new(store.resolve(id)?.kv),
                });
            }
            Ok(finish_range(&req, plan.revision, plan.count, kvs))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The row written at `id`, from the batch in flight or from disk. Blocking.
    pub(crate) fn resolve(&self, id: RowId) -> Result<HistoryRow, ResolveError> {
        if let Some(row) = lock(&self.pending).get(&id) {
            return Ok(row.clone());
        }
        let missing = |message: String| ResolveError {
            rev: id.rev,
            sub: id.sub,
            message,
        };
        match self.tree.get(&id.to_key()) {
            Ok(Some(bytes)) => codec::decode(&bytes).map_err(|e| missing(e.to_string())),
            Ok(None) => Err(missing("row is missing".into())),
            Err(e) => Err(missing(e.to_string())),
        }
    }

    /// History rows of revisions `[from, to]`, at most about `limit` rows (never splitting a
    /// revision). Rows whose key lies in `prev_within` carry their previous value; the others
    /// none (a watcher drops them, and resolving a previous value may read the disk). Blocking.
    pub(crate) fn history(
        &self,
        from: i64,
        to: i64,
        limit: usize,
        prev_within: Option<&crate::KeyRange>,
    ) -> Result<Vec<(RowId, HistoryRow, Option<KeyValue>)>, StoreError> {
        // Neither compaction's deletes nor a snapshot's import (which clears the tree) may
        // run under the read: a short read would pass for the end of history.
        let _guard = read(&self.history_guard);
        // `pending` first: a row leaves it only after it is in the tree, so reading the tree
        // afterwards cannot miss a row that moved in between.
        let mut rows: BTreeMap<RowId, HistoryRow> = lock(&self.pending)
            .range(
                RowId { rev: from, sub: 0 }..RowId {
                    rev: to.saturating_add(1),
                    sub: 0,
                },
            )
            .map(|(id, row)| (*id, row.clone()))
            .collect();
        let lower = std::ops::Bound::Included(RowId::first_key_of(from));
        let upper = std::ops::Bound::Excluded(RowId::first_key_of(to.saturating_add(1)));
        let mut last_rev = None;
        let mut from_tree = 0;
        for item in self.tree.range(lower, upper, false) {
            let (key, bytes) = item.map_err(engine_err)?;
            let Some(id) = RowId::from_key(&key) else {
                continue;
            };
            // Stop at a revision boundary once the tree alone has given enough rows: every
            // later tree row sorts after them. (Counting the rows from `pending` would stop
            // early when they are the newest, leaving a gap of tree rows below them.)
            if from_tree >= limit && last_rev.is_some_and(|r| r != id.rev) {
                break;
            }
            from_tree += 1;
            last_rev = Some(id.rev);
            if let std::collections::btree_map::Entry::Vacant(slot) = rows.entry(id) {
                slot.insert(codec::decode(&bytes).map_err(StoreError::Codec)?);
            }
        }
        // Never return a partial revision: cut after the last complete one if over the limit.
        let mut out: Vec<(RowId, HistoryRow, Option<KeyValue>)> = Vec::with_capacity(rows.len());
        for (id, row) in rows {
            if out.len() >= limit && out.last().is_some_and(|(last, _, _)| last.rev != id.rev) {
                break;
            }
            out.push((id, row, None));
        }
        if let Some(range) = prev_within {
            for (id, row, prev) in &mut out {
                if !range.contains(&row.kv.key) {
                    continue;
                }
                let prev_id = read(&self.state).mvcc.prev_row(&row.kv.key, *id);
                if let Some(prev_id) = prev_id {
                    *prev = Some(self.resolve(prev_id).map_err(StoreError::Resolve)?.kv);
                }
            }
        }
        Ok(out)
    }

    /// Applies raft entries in order: memory at once, the engine through the writer thread once
    /// the entries are in this node's log on disk (no fsync: the raft log is the durable record
    /// until a snapshot). Touches the tree only to
    /// resolve historical reads inside transactions (see [`needs_history`]).
    pub(crate) fn apply_entries(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Vec<CommandResponse>, StoreError> {
        let mut responses = Vec::with_capacity(entries.len());
        let mut published = Vec::new();
        let mut batch = WriteBatch::default();
        let mut pending_rows: Vec<RowId> = Vec::new();
        let revision;
        let applied_index;
        {
            let mut st = write(&self.state);
            for entry in entries {
                let resp = match entry.payload {
                    openraft::EntryPayload::Blank => CommandResponse::Internal(RevisionResponse {
                        revision: st.mvcc.revision(),
                    }),
                    openraft::EntryPayload::Membership(m) => {
                        if st.cluster_id == 0 {
                            st.cluster_id = derive_cluster_id(&entry.log_id, &m);
                            batch.put(
                                meta_key(META_CLUSTER_ID),
                                st.cluster_id.to_be_bytes().to_vec(),
                            );
                        }
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        CommandResponse::Internal(RevisionResponse {
                            revision: st.mvcc.revision(),
                        })
                    }
                    openraft::EntryPayload::Normal(Command::Batch(cmds)) => {
                        let mut answers = Vec::with_capacity(cmds.len());
                        for cmd in &cmds {
                            answers.push(self.apply_one(
                                &mut st,
                                cmd,
                                &mut batch,
                                &mut pending_rows,
                                &mut published,
                            )?);
                        }
                        CommandResponse::Batch(answers)
                    }
                    openraft::EntryPayload::Normal(cmd) => self.apply_one(
                        &mut st,
                        &cmd,
                        &mut batch,
                        &mut pending_rows,
                        &mut published,
                    )?,
                };
                st.applied = Some(entry.log_id);
                responses.push(resp);
            }
            revision = st.mvcc.revision();
            applied_index = st.applied.map_or(0, |l| l.index);
            batch.put(meta_key(META_APPLIED), codec::encode(&st.applied)?);
            batch.put(meta_key(META_MEMBERSHIP), codec::encode(&st.membership)?);
            batch.put(meta_key(META_REVISION), revision.to_be_bytes().to_vec());
            batch.put(
                meta_key(META_COMPACT),
                st.mvcc.compact_revision().to_be_bytes().to_vec(),
            );
        }
        self.writer.write(batch, pending_rows, applied_index)?;
        self.readable_revision.store(revision, Ordering::Release);
        self.hub.publish(&published, revision);
        Ok(responses)
    }

    /// Applies one client command under the state lock, adding its rows to `batch`, parking
    /// them in `pending` for readers, and queueing its events for the watch hub.
    fn apply_one(
        &self,
        st: &mut State,
        cmd: &Command,
        batch: &mut WriteBatch,
        pending_rows: &mut Vec<RowId>,
        published: &mut Vec<Arc<RevisionEvents>>,
    ) -> Result<CommandResponse, StoreError> {
        let resolve = |id: RowId| self.resolve(id).map(|row| row.kv);
        let (resp, changes) = st.mvcc.apply(cmd, &resolve).map_err(StoreError::Resolve)?;
        write_changes(batch, &changes)?;
        // Later commands of this batch (and readers, once the lock is released) may need these
        // rows before the batch reaches the tree.
        let mut pending = lock(&self.pending);
        for (id, row) in changes.rows {
            pending.insert(id, row);
            pending_rows.push(id);
        }
        drop(pending);
        if !changes.events.is_empty() {
            published.push(Arc::new(RevisionEvents {
                revision: st.mvcc.revision(),
                events: changes.events,
            }));
        }
        Ok(resp)
    }

    /// Copies the complete state for a snapshot. Blocking.
    pub(crate) fn export(&self) -> Result<SnapshotContents, StoreError> {
        let _guard = read(&self.history_guard);
        let (mut contents, ids) = {
            let st = read(&self.state);
            let ids: Vec<RowId> = st
                .mvcc
                .keys
                .values()
                .flat_map(|e| e.marks.iter().map(|m| m.id))
                .collect();
            let leases = st
                .mvcc
                .leases
                .iter()
                .map(|(id, l)| LeaseRow {
                    id: *id,
                    ttl: l.ttl,
                })
                .collect();
            (
                SnapshotContents {
                    applied: st.applied,
                    membership: st.membership.clone(),
                    cluster_id: st.cluster_id,
                    revision: st.mvcc.revision(),
                    compact_revision: st.mvcc.compact_revision(),
                    rows: Vec::with_capacity(ids.len()),
                    leases,
                },
                ids,
            )
        };
        for id in ids {
            let row = self.resolve(id).map_err(StoreError::Resolve)?;
            contents.rows.push((id, row));
        }
        contents.rows.sort_by_key(|(id, _)| *id);
        Ok(contents)
    }

    /// Replaces the whole state with a snapshot's, on disk and in memory. Blocking.
    pub(crate) fn import(&self, contents: SnapshotContents) -> Result<(), StoreError> {
        // Nothing may still be on its way to the tree we are about to replace.
        self.writer.barrier()?;
        let _guard = write(&self.history_guard);
        let mut st = write(&self.state);
        self.tree.clear().map_err(engine_err)?;
        let mut batch = WriteBatch::default();
        for (id, row) in &contents.rows {
            batch.put(id.to_key(), codec::encode(row)?);
        }
        for lease in &contents.leases {
            batch.put(lease_key(lease.id), codec::encode(lease)?);
        }
        batch.put(meta_key(META_APPLIED), codec::encode(&contents.applied)?);
        batch.put(
            meta_key(META_MEMBERSHIP),
            codec::encode(&contents.membership)?,
        );
        batch.put(
            meta_key(META_REVISION),
            contents.revision.to_be_bytes().to_vec(),
        );
        batch.put(
            meta_key(META_COMPACT),
            contents.compact_revision.to_be_bytes().to_vec(),
        );
        batch.put(
            meta_key(META_CLUSTER_ID),
            contents.cluster_id.to_be_bytes().to_vec(),
        );
        self.tree.apply(batch).map_err(engine_err)?;
        self.engine.sync().map_err(engine_err)?;
        *st = state_from_rows(
            contents.rows,
            contents.leases,
            contents.revision,
            contents.compact_revision,
        );
        st.applied = contents.applied;
        st.membership = contents.membership;
        st.cluster_id = contents.cluster_id;
        self.readable_revision
            .store(st.mvcc.revision(), Ordering::Release);
        drop(st);
        // Watchers re-read history from their position: the snapshot carries it.
        self.hub.reset(self.readable_revision());
        Ok(())
    }
}

fn write_changes(batch: &mut WriteBatch, changes: &Changes) -> Result<(), StoreError> {
    for (id, row) in &changes.rows {
        batch.put(id.to_key(), codec::encode(row)?);
    }
    for id in &changes.removed_rows {
        batch.delete(id.to_key());
    }
    for lease in &changes.lease_puts {
        batch.put(lease_key(lease.id), codec::encode(lease)?);
    }
    for id in &changes.lease_deletes {
        batch.delete(lease_key(*id));
    }
    Ok(())
}

/// A cluster id every member computes alike: a hash of the first membership it applied.
fn derive_cluster_id(
    log_id: &LogId,
    membership: &openraft::Membership<u64, crate::types::Member>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    // DefaultHasher's algorithm may change between Rust releases, but the id is computed once
    // and then stored, so only members applying the same entry with different builds could
    // disagree, and then only in a cosmetic header field.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    log_id.leader_id.term.hash(&mut h);
    log_id.index.hash(&mut h);
    for (id, node) in membership.nodes() {
        id.hash(&mut h);
        node.peer_url.hash(&mut h);
    }
    // etcd ids are u64 but printed as strings; keep it non-zero.
    h.finish().max(1)
}

fn be_i64(bytes: Option<Vec<u8>>) -> i64 {
    bytes
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0)
}

fn load_state(tree: &dyn Tree) -> Result<State, StoreError> {
    let get = |name: &str| tree.get(&meta_key(name)).map_err(engine_err);
    let applied = match get(META_APPLIED)? {
        Some(b) => codec::decode(&b)?,
        None => None,
    };
    let membership = match get(META_MEMBERSHIP)? {
        Some(b) => codec::decode(&b)?,
        None => StoredMembership::default(),
    };
    let revision = match get(META_REVISION)? {
        None => crate::mvcc::state::INITIAL_REVISION,
        some => be_i64(some),
    };
    let compact = be_i64(get(META_COMPACT)?);
    let cluster_id = be_i64(get(META_CLUSTER_ID)?) as u64;
    let mut rows = Vec::new();
    let from = std::ops::Bound::Included(vec![RowId::PREFIX]);
    let to = std::ops::Bound::Excluded(vec![RowId::PREFIX + 1]);
    for item in tree.range(from, to, false) {
        let (key, bytes) = item.map_err(engine_err)?;
        if let Some(id) = RowId::from_key(&key) {
            rows.push((id, codec::decode::<HistoryRow>(&bytes)?));
        }
    }
    let mut leases = Vec::new();
    let from = std::ops::Bound::Included(vec![LEASE_PREFIX]);
    let to = std::ops::Bound::Excluded(vec![LEASE_PREFIX + 1]);
    for item in tree.range(from, to, false) {
        let (_, bytes) = item.map_err(engine_err)?;
        leases.push(codec::decode::<LeaseRow>(&bytes)?);
    }
    let mut state = state_from_rows(rows, leases, revision, compact);
    state.applied = applied;
    state.membership = membership;
    state.cluster_id = cluster_id;
    Ok(state)
}

/// Rebuilds the index from history rows in revision order.
fn state_from_rows(
    rows: Vec<(RowId, HistoryRow)>,
    leases: Vec<LeaseRow>,
    revision: i64,
    compact_revision: i64,
) -> State {
    let mut mvcc = MvccState {
        revision,
        compact_revision,
        ..MvccState::default()
    };
    for lease in leases {
        mvcc.leases.insert(
            lease.id,
            LeaseEntry {
                ttl: lease.ttl,
                keys: Default::default(),
            },
        );
    }
    for (id, row) in rows {
        let entry: &mut KeyEntry = mvcc.keys.entry(row.kv.key.clone()).or_default();
        let tombstone = row.kind == crate::mvcc::key_value::EventType::Delete;
        entry.marks.push(Mark { id, tombstone });
        entry.current = (!tombstone).then(|| Arc::new(row.kv));
    }
    for (key, entry) in &mvcc.keys {
        if let Some(kv) = &entry.current {
            if kv.lease != 0 {
                if let Some(l) = mvcc.leases.get_mut(&kv.lease) {
                    l.keys.insert(key.clone());
                }
            }
        }
    }
    State {
        mvcc,
        ..State::default()
    }
}

/// Applies a command outside raft, for tests of the MVCC logic with real storage.
#[cfg(test)]
pub(crate) fn apply_command_for_test(store: &KvStore, index: u64, cmd: Command) -> CommandResponse {
    let entry = Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(cmd),
    };
    store
        .apply_entries(vec![entry])
        .expect("apply")
        .pop()
        .expect("one response")
}
