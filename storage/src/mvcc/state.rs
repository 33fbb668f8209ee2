//! The in-memory MVCC index: for every key its current value and the history rows that are
//! still retained, plus the lease table and the store revision. Applying a [`Command`] mutates
//! this index and yields a `Changes` set for the disk and the watch hub; a rejected command
//! leaves the index exactly as it was (what every touched entry was is noted before its first
//! change).
//!
//! Nothing here does I/O: values of past revisions are fetched through a resolver closure.

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use super::error::KvError;
use super::key_value::{Event, EventType, KeyRange, KeyValue};
use super::request::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, SortOrder, SortTarget, TxnRequest,
};
use super::response::{
    CommandResponse, DeleteRangeResponse, LeaseGrantResponse, PutResponse, RangeResponse,
    ResponseOp, RevisionResponse, TxnResponse,
};
use super::rows::{HistoryRow, LeaseRow, RowId};

/// One retained history row of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub id: RowId,
    pub tombstone: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct KeyEntry {
    pub current: Option<Arc<KeyValue>>,
    /// Ascending by row id.
    pub marks: Vec<Mark>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseEntry {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// What one applied command changed.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pub rows: Vec<(RowId, HistoryRow)>,
    pub removed_rows: Vec<RowId>,
    pub lease_puts: Vec<LeaseRow>,
    pub lease_deletes: Vec<i64>,
    /// Watch events, in row order, each with the previous value.
    pub events: Vec<Event>,
    pub compacted_to: Option<i64>,
}

/// A value of a range read: in memory already, or a past version to fetch by row id.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Ready(Arc<KeyValue>),
    Stored(RowId),
}

/// The keys a range read selected, before values of past revisions are fetched.
#[derive(Debug)]
pub(crate) struct RangePlan {
    pub revision: i64,
    pub count: i64,
    pub slots: Vec<Slot>,
}

impl RangePlan {
    pub fn needs_disk(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Stored(_)))
    }
}

/// Fetches the value written at a row id (a past revision), from pending writes or disk.
pub(crate) type Resolver<'a> = &'a dyn Fn(RowId) -> Result<KeyValue, ResolveError>;

/// A past value could not be read: storage is broken (not a client error).
#[derive(Debug, thiserror::Error)]
#[error("reading history row {rev}/{sub}: {message}")]
pub struct ResolveError {
    pub rev: i64,
    pub sub: u32,
    pub message: String,
}

/// Why applying a command failed: a client error leaves state untouched; a resolve error means
/// the disk is unreadable.
#[derive(Debug)]
pub(crate) enum ApplyError {
    Kv(KvError),
    Resolve(ResolveError),
}

impl From<KvError> for ApplyError {
    fn from(e: KvError) -> Self {
        ApplyError::Kv(e)
    }
}

impl From<ResolveError> for ApplyError {
    fn from(e: ResolveError) -> Self {
        ApplyError::Resolve(e)
    }
}

#[derive(Debug)]
pub struct MvccState {
    pub(crate) keys: BTreeMap<Vec<u8>, KeyEntry>,
    pub(crate) leases: BTreeMap<i64, LeaseEntry>,
    pub(crate) revision: i64,
    pub(crate) compact_revision: i64,
}

/// The revision of an empty store. As in etcd, the first write is revision 2, and a read of an
/// empty store reports revision 1.
pub const INITIAL_REVISION: i64 = 1;

impl Default for MvccState {
    fn default() -> Self {
        MvccState {
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            revision: INITIAL_REVISION,
            compact_revision: 0,
        }
    }
}

fn range_bounds(range: &KeyRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    if range.is_single() {
        return (
            Bound::Included(range.key.clone()),
            Bound::Included(range.key.clone()),
        );
    }
    let upper = match range.upper() {
        None => Bound::Unbounded,
        Some(end) => Bound::Excluded(end.to_vec()),
    };
    (Bound::Included(range.key.clone()), upper)
}

/// A range whose end sorts before its start selects nothing (BTreeMap would panic on it).
fn is_empty_range(range: &KeyRange) -> bool {
    !range.is_single() && range.upper().is_some_and(|end| end <= range.key.as_slice())
}

impl MvccState {
    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn compact_revision(&self) -> i64 {
        self.compact_revision
    }

    pub fn key_count(&self) -> usize {
        self.keys.values().filter(|e| e.current.is_some()).count()
    }

    pub(crate) fn entries_in<'a>(
        &'a self,
        range: &KeyRange,
    ) -> Box<dyn Iterator<Item = (&'a Vec<u8>, &'a KeyEntry)> + 'a> {
        if is_empty_range(range) {
            return Box::new(std::iter::empty());
        }
        Box::new(self.keys.range(range_bounds(range)))
    }

    /// Current value of one key.
    pub fn get(&self, key: &[u8]) -> Option<Arc<KeyValue>> {
        self.keys.get(key).and_then(|e| e.current.clone())
    }

    /// Lease ids with their granted TTLs.
    pub fn leases(&self) -> Vec<(i64, i64)> {
        self.leases.iter().map(|(id, l)| (*id, l.ttl)).collect()
    }

    /// Granted TTL and attached keys of one lease.
    pub fn lease(&self, id: i64) -> Option<(i64, Vec<Vec<u8>>)> {
        self.leases
            .get(&id)
            .map(|l| (l.ttl, l.keys.iter().cloned().collect()))
    }

    /// The row holding `key`'s value just before `id`, if the key existed then.
    pub(crate) fn prev_row(&self, key: &[u8], id: RowId) -> Option<RowId> {
        let entry = self.keys.get(key)?;
        let idx = entry.marks.partition_point(|m| m.id < id);
        let prev = entry.marks.get(idx.checked_sub(1)?)?;
        (!prev.tombstone).then_some(prev.id)
    }

    /// Selects the keys of a read. Checks the requested revision against history.
    pub(crate) fn plan_range(&self, req: &RangeRequest) -> Result<RangePlan, KvError> {
        let at = if req.revision <= 0 {
            self.revision
        } else {
            req.revision
        };
        if at > self.revision {
            return Err(KvError::FutureRevision);
        }
        if at < self.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.compact_revision,
            });
        }
        let mut slots = Vec::new();
        for (_, entry) in self.entries_in(&req.range) {
            if at == self.revision {
                if let Some(kv) = &entry.current {
                    slots.push(Slot::Ready(kv.clone()));
                }
                continue;
            }
            let idx = entry.marks.partition_point(|m| m.id.rev <= at);
            let Some(mark) = idx.checked_sub(1).and_then(|i| entry.marks.get(i)) else {
                continue;
            };
            if mark.tombstone {
                continue;
            }
            match &entry.current {
                Some(kv) if kv.mod_revision == mark.id.rev => slots.push(Slot::Ready(kv.clone())),
                _ => slots.push(Slot::Stored(mark.id)),
            }
        }
        Ok(RangePlan {
            revision: self.revision,
            count: slots.len() as i64,
            slots,
        })
    }

    fn apply_compare(&self, cmp: &Compare) -> bool {
        let mut matched = false;
        for (_, entry) in self.entries_in(&cmp.range) {
            let Some(kv) = &entry.current else { continue };
            matched = true;
            if !compare_kv(cmp, kv) {
                return false;
            }
        }
        if matched {
            return true;
        }
        // A missing key compares as zeros, except that a value compare on it is always false.
        !matches!(cmp.target, CompareTarget::Value(_)) && compare_kv(cmp, &KeyValue::default())
    }

    /// Applies one command. Client errors are returned as [`CommandResponse::Rejected`] and
    /// leave the state untouched.
    pub(crate) fn apply(
        &mut self,
        cmd: &Command,
        resolve: Resolver<'_>,
    ) -> Result<(CommandResponse, Changes), ResolveError> {
        let mut w = Writer::new(self, resolve);
        let outcome = w.command(cmd);
        match outcome {
            Ok(resp) => Ok(w.commit(resp)),
            Err(ApplyError::Kv(e)) => {
                w.rollback();
                Ok((CommandResponse::Rejected(e), Changes::default()))
            }
            Err(ApplyError::Resolve(e)) => {
                w.rollback();
                Err(e)
            }
        }
    }

    /// Drops history at or below `rev`, keeping each live key's newest row. Returns the rows
    /// to delete from disk.
    pub(crate) fn compact(&mut self, rev: i64) -> Vec<RowId> {
        let mut removed = Vec::new();
        self.keys.retain(|_, entry| {
            let upto = entry.marks.partition_point(|m| m.id.rev <= rev);
            let keep_from = match upto.checked_sub(1).map(|i| entry.marks[i]) {
                Some(last) if !last.tombstone => upto - 1,
                Some(_) => upto,
                None => 0,
            };
            removed.extend(entry.marks.drain(..keep_from).map(|m| m.id));
            entry.current.is_some() || !entry.marks.is_empty()
        });
        self.compact_revision = rev;
        removed
    }
}

fn compare_kv(cmp: &Compare, kv: &KeyValue) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &cmp.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match cmp.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Turns selected values into etcd's range response: revision filters, sort, limit, keys_only.
pub(crate) fn finish_range(
    req: &RangeRequest,
    revision: i64,
    count: i64,
    mut kvs: Vec<Arc<KeyValue>>,
) -> RangeResponse {
    if req.count_only {
        return RangeResponse {
            revision,
            kvs: Vec::new(),
            more: false,
            count,
        };
    }
    let keep = |kv: &KeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    kvs.retain(|kv| keep(kv));
    let mut order = req.sort_order;
    // etcd: results come sorted by key; a non-key target without an order means ascending.
    if req.sort_target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    if order != SortOrder::None
        && !(req.sort_target == SortTarget::Key && order == SortOrder::Ascend)
    {
        kvs.sort_by(|a, b| {
            let ord = match req.sort_target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            };
            if order == SortOrder::Descend {
                ord.reverse()
            } else {
                ord
            }
        });
    }
    let mut more = false;
    if req.limit > 0 && kvs.len() as i64 > req.limit {
        kvs.truncate(req.limit as usize);
        more = true;
    }
    let kvs = kvs
        .into_iter()
        .map(|kv| {
            let mut kv = Arc::unwrap_or_clone(kv);
            if req.keys_only {
                kv.value.clear();
            }
            kv
        })
        .collect();
    RangeResponse {
        revision,
        kvs,
        more,
        count,
    }
}

/// One command being applied: mutations, the rows they produce, and how to undo them.
struct Writer<'a> {
    st: &'a mut MvccState,
    resolve: Resolver<'a>,
    /// The revision this command writes at if it writes anything.
    rev: i64,
    sub: u32,
    changes: Changes,
    /// What each key this command changed was before its first change; `None`: absent.
    saved_keys: HashMap<Vec<u8>, Option<KeyUndo>>,
    /// This command's changes to the lease table, in order, to undo in reverse.
    lease_steps: Vec<LeaseStep>,
}

/// One change to the lease table. Recording the change rather than the lease as it was keeps a
/// put that attaches a key to a lease from copying every key the lease already holds.
enum LeaseStep {
    Granted(i64),
    /// A revoked lease, as it was when removed (its keys detached already).
    Removed(i64, LeaseEntry),
    Attached(i64, Vec<u8>),
    Detached(i64, Vec<u8>),
}

/// Enough to restore a key's entry after a rejected command. A command only replaces a key's
/// current value and appends marks (compaction, which removes marks, is a command of its own
/// that fails only before it changes anything), so the value and the count of marks are the
/// whole of it. Copying the marks instead would make each put on a key with a long history
/// cost time in proportion to that history.
struct KeyUndo {
    current: Option<Arc<KeyValue>>,
    marks: usize,
}

/// Notes what `key`'s entry was before this command's first change to it: `None` when it had
/// none. A deleted key keeps its entry (no current value, its history marks) until
/// compaction, so undoing a change to it restores that entry rather than removing it.
fn remember(
    saved: &mut HashMap<Vec<u8>, Option<KeyUndo>>,
    key: &[u8],
    slot: &btree_map::Entry<'_, Vec<u8>, KeyEntry>,
) {
    if saved.contains_key(key) {
        return;
    }
    let undo = match slot {
        btree_map::Entry::Occupied(o) => Some(KeyUndo {
            current: o.get().current.clone(),
            marks: o.get().marks.len(),
        }),
        btree_map::Entry::Vacant(_) => None,
    };
    saved.insert(key.to_vec(), undo);
}

impl<'a> Writer<'a> {
    fn new(st: &'a mut MvccState, resolve: Resolver<'a>) -> Self {
        let rev = st.revision + 1;
        Writer {
            st,
            resolve,
            rev,
            sub: 0,
            changes: Changes::default(),
            saved_keys: HashMap::new(),
            lease_steps: Vec::new(),
        }
    }

    /// The entry of `key`, made if absent, noting first what it was so a rejected command can
    /// restore it. One lookup in the key index.
    fn entry_to_change(&mut self, key: &[u8]) -> &mut KeyEntry {
        let slot = self.st.keys.entry(key.to_vec());
        remember(&mut self.saved_keys, key, &slot);
        match slot {
            btree_map::Entry::Occupied(slot) => slot.into_mut(),
            btree_map::Entry::Vacant(slot) => slot.insert(KeyEntry::default()),
        }
    }

    fn rollback(self) {
        for (key, original) in self.saved_keys {
            match original {
                Some(undo) => {
                    // A command never removes an entry or a mark (see `KeyUndo`).
                    let entry = self.st.keys.get_mut(&key);
                    debug_assert!(entry.as_ref().is_some_and(|e| e.marks.len() >= undo.marks));
                    if let Some(entry) = entry {
                        entry.current = undo.current;
                        entry.marks.truncate(undo.marks);
                    }
                }
                None => {
                    self.st.keys.remove(&key);
                }
            }
        }
        for step in self.lease_steps.into_iter().rev() {
            match step {
                LeaseStep::Granted(id) => {
                    self.st.leases.remove(&id);
                }
                LeaseStep::Removed(id, lease) => {
                    self.st.leases.insert(id, lease);
                }
                LeaseStep::Attached(id, key) => {
                    if let Some(l) = self.st.leases.get_mut(&id) {
                        l.keys.remove(&key);
                    }
                }
                LeaseStep::Detached(id, key) => {
                    if let Some(l) = self.st.leases.get_mut(&id) {
                        l.keys.insert(key);
                    }
                }
            }
        }
    }

    fn commit(self, mut resp: CommandResponse) -> (CommandResponse, Changes) {
        if !self.changes.rows.is_empty() {
            self.st.revision = self.rev;
        }
        set_revision(&mut resp, self.st.revision);
        (resp, self.changes)
    }

    fn next_row(&mut self) -> RowId {
        let id = RowId {
            rev: self.rev,
            sub: self.sub,
        };
        self.sub += 1;
        id
    }

    fn command(&mut self, cmd: &Command) -> Result<CommandResponse, ApplyError> {
        Ok(match cmd {
            Command::Put(req) => {
                validate_put(req)?;
                CommandResponse::Put(self.put(req)?)
            }
            Command::DeleteRange(req) => {
                if req.range.key.is_empty() {
                    return Err(KvError::EmptyKey.into());
                }
                CommandResponse::DeleteRange(self.delete_range(req))
            }
            Command::Txn(req) => {
                validate_txn_shape(req)?;
                CommandResponse::Txn(self.txn(req)?)
            }
            Command::LeaseGrant { id, ttl } => {
                CommandResponse::LeaseGrant(self.lease_grant(*id, *ttl)?)
            }
            Command::LeaseRevoke { id } => {
                self.lease_revoke(*id)?;
                CommandResponse::LeaseRevoke(RevisionResponse::default())
            }
            Command::Compact { revision } => {
                self.compact(*revision)?;
                CommandResponse::Compact(RevisionResponse::default())
            }
            // The store applies a batch's commands one by one; one never reaches a writer.
            Command::Batch(_) => return Err(KvError::NestedBatch.into()),
        })
    }

    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, ApplyError> {
        if req.range.key.is_empty() {
            return Err(KvError::EmptyKey.into());
        }
        let plan = self.st.plan_range(req)?;
        let mut kvs = Vec::with_capacity(plan.slots.len());
        if !req.count_only {
            for slot in plan.slots {
                kvs.push(match slot {
                    Slot::Ready(kv) => kv,
                    Slot::Stored(id) => Arc::new((self.resolve)(id)?),
                });
            }
        }
        // Inside a transaction that already wrote, reads see this transaction's revision.
        let revision = if self.changes.rows.is_empty() {
            plan.revision
        } else {
            self.rev
        };
        Ok(finish_range(req, revision, plan.count, kvs))
    }

    fn put(&mut self, req: &PutRequest) -> Result<PutResponse, ApplyError> {
        // One lookup in the key index: the key's entry, or its place, is found once, read,
        // checked, and then written. Nothing changes before the last check passes.
        let st = &mut *self.st;
        let slot = st.keys.entry(req.key.clone());
        let existing = match &slot {
            btree_map::Entry::Occupied(o) => o.get().current.clone(),
            btree_map::Entry::Vacant(_) => None,
        };
        if (req.ignore_value || req.ignore_lease) && existing.is_none() {
            return Err(KvError::KeyNotFound.into());
        }
        let value = match (&existing, req.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&existing, req.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => req.lease,
        };
        if lease != 0 && !st.leases.contains_key(&lease) {
            return Err(KvError::LeaseNotFound.into());
        }
        remember(&mut self.saved_keys, &req.key, &slot);
        // `next_row`, which would borrow all of `self` while `slot` holds the index.
        let id = RowId {
            rev: self.rev,
            sub: self.sub,
        };
        self.sub += 1;
        let kv = Arc::new(KeyValue {
            key: req.key.clone(),
            create_revision: existing.as_ref().map_or(id.rev, |kv| kv.create_revision),
            mod_revision: id.rev,
            version: existing.as_ref().map_or(1, |kv| kv.version + 1),
            value,
            lease,
        });
        let entry = match slot {
            btree_map::Entry::Occupied(o) => o.into_mut(),
            btree_map::Entry::Vacant(v) => v.insert(KeyEntry::default()),
        };
        entry.current = Some(kv.clone());
        entry.marks.push(Mark {
            id,
            tombstone: false,
        });
        let old_lease = existing.as_ref().map_or(0, |kv| kv.lease);
        if old_lease != 0 && old_lease != lease {
            self.detach(old_lease, &req.key);
        }
        if lease != 0 && old_lease != lease {
            self.attach(lease, &req.key);
        }
        let prev = existing.map(Arc::unwrap_or_clone);
        self.record(id, EventType::Put, Arc::unwrap_or_clone(kv), prev.clone());
        Ok(PutResponse {
            revision: 0,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn attach(&mut self, lease: i64, key: &[u8]) {
        if let Some(l) = self.st.leases.get_mut(&lease) {
            if l.keys.insert(key.to_vec()) {
                self.lease_steps
                    .push(LeaseStep::Attached(lease, key.to_vec()));
            }
        }
    }

    fn detach(&mut self, lease: i64, key: &[u8]) {
        if let Some(l) = self.st.leases.get_mut(&lease) {
            if l.keys.remove(key) {
                self.lease_steps
                    .push(LeaseStep::Detached(lease, key.to_vec()));
            }
        }
    }

    fn record(&mut self, id: RowId, kind: EventType, kv: KeyValue, prev_kv: Option<KeyValue>) {
        self.changes.rows.push((
            id,
            HistoryRow {
                kind,
                kv: kv.clone(),
            },
        ));
        self.changes.events.push(Event { kind, kv, prev_kv });
    }

    fn delete_key(&mut self, key: &[u8]) -> Option<KeyValue> {
        let existing = self.st.get(key)?;
        if existing.lease != 0 {
            self.detach(existing.lease, key);
        }
        let id = self.next_row();
        let entry = self.entry_to_change(key);
        entry.current = None;
        entry.marks.push(Mark {
            id,
            tombstone: true,
        });
        let tombstone = KeyValue {
            key: key.to_vec(),
            mod_revision: id.rev,
            ..KeyValue::default()
        };
        let prev = Arc::unwrap_or_clone(existing);
        self.record(id, EventType::Delete, tombstone, Some(prev.clone()));
        Some(prev)
    }

    fn delete_range(&mut self, req: &DeleteRangeRequest) -> DeleteRangeResponse {
        let keys: Vec<Vec<u8>> = self
            .st
            .entries_in(&req.range)
            .filter(|(_, e)| e.current.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let mut prev_kvs = Vec::new();
        for key in &keys {
            if let Some(prev) = self.delete_key(key) {
                if req.prev_kv {
                    prev_kvs.push(prev);
                }
            }
        }
        DeleteRangeResponse {
            revision: 0,
            deleted: keys.len() as i64,
            prev_kvs,
        }
    }

    fn txn(&mut self, req: &TxnRequest) -> Result<TxnResponse, ApplyError> {
        let succeeded = req.compare.iter().all(|c| self.st.apply_compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Put(r) => {
                    validate_put(r)?;
                    ResponseOp::Put(self.put(r)?)
                }
                RequestOp::DeleteRange(r) => {
                    if r.range.key.is_empty() {
                        return Err(KvError::EmptyKey.into());
                    }
                    ResponseOp::DeleteRange(self.delete_range(r))
                }
                RequestOp::Txn(r) => ResponseOp::Txn(self.txn(r)?),
            });
        }
        Ok(TxnResponse {
            revision: 0,
            succeeded,
            responses,
        })
    }

    fn lease_grant(&mut self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, ApplyError> {
        if self.st.leases.contains_key(&id) {
            return Err(KvError::LeaseExists.into());
        }
        self.st.leases.insert(
            id,
            LeaseEntry {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        self.lease_steps.push(LeaseStep::Granted(id));
        self.changes.lease_puts.push(LeaseRow { id, ttl });
        Ok(LeaseGrantResponse {
            revision: 0,
            id,
            ttl,
        })
    }

    fn lease_revoke(&mut self, id: i64) -> Result<(), ApplyError> {
        let Some(lease) = self.st.leases.get(&id) else {
            return Err(KvError::LeaseNotFound.into());
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        for key in keys {
            self.delete_key(&key);
        }
        if let Some(lease) = self.st.leases.remove(&id) {
            self.lease_steps.push(LeaseStep::Removed(id, lease));
        }
        self.changes.lease_deletes.push(id);
        Ok(())
    }

    fn compact(&mut self, rev: i64) -> Result<(), ApplyError> {
        if rev > self.st.revision {
            return Err(KvError::FutureRevision.into());
        }
        if rev <= self.st.compact_revision {
            return Err(KvError::Compacted {
                compact_revision: self.st.compact_revision,
            }
            .into());
        }
        // Compaction is never part of a transaction, so there is nothing to roll back after it.
        self.changes.removed_rows = self.st.compact(rev);
        self.changes.compacted_to = Some(rev);
        Ok(())
    }
}

fn set_revision(resp: &mut CommandResponse, revision: i64) {
    match resp {
        CommandResponse::Put(r) => r.revision = revision,
        CommandResponse::DeleteRange(r) => r.revision = revision,
        CommandResponse::Txn(r) => set_txn_revision(r, revision),
        CommandResponse::LeaseGrant(r) => r.revision = revision,
        CommandResponse::LeaseRevoke(r)
        | CommandResponse::Compact(r)
        | CommandResponse::Internal(r) => r.revision = revision,
        CommandResponse::Rejected(_) | CommandResponse::Batch(_) => {}
    }
}

fn set_txn_revision(txn: &mut TxnResponse, revision: i64) {
    txn.revision = revision;
    for op in &mut txn.responses {
        match op {
            ResponseOp::Put(r) => r.revision = revision,
            ResponseOp::DeleteRange(r) => r.revision = revision,
            ResponseOp::Txn(r) => set_txn_revision(r, revision),
            // A range keeps the revision it read at.
            ResponseOp::Range(_) => {}
        }
    }
}

/// Maximum operations in one branch of a transaction (etcd's `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

pub(crate) fn validate_put(req: &PutRequest) -> Result<(), KvError> {
    if req.key.is_empty() {
        return Err(KvError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(KvError::LeaseProvided);
    }
    Ok(())
}

/// etcd's request checks for a transaction: op counts, empty keys, and no key written twice
/// (two puts, or a put inside a deleted range) within one branch.
/// What the etcd API checks before proposing a transaction: its shape, and at most
/// [`MAX_TXN_OPS`] operations per branch (etcd's `--max-txn-ops`).
pub fn validate_txn(req: &TxnRequest) -> Result<(), KvError> {
    check_txn(req, Some(MAX_TXN_OPS))
}

/// What applying a transaction requires: its shape only. The operation limit is a policy of
/// the etcd API; the control plane writes larger transactions (a bulk import is one).
pub(crate) fn validate_txn_shape(req: &TxnRequest) -> Result<(), KvError> {
    check_txn(req, None)
}

fn check_txn(req: &TxnRequest, max_ops: Option<usize>) -> Result<(), KvError> {
    if let Some(max) = max_ops {
        if req.compare.len() > max || req.success.len() > max || req.failure.len() > max {
            return Err(KvError::TooManyOps);
        }
    }
    for cmp in &req.compare {
        if cmp.range.key.is_empty() {
            return Err(KvError::EmptyKey);
        }
    }
    for ops in [&req.success, &req.failure] {
        for op in ops {
            match op {
                RequestOp::Range(r) if r.range.key.is_empty() => return Err(KvError::EmptyKey),
                RequestOp::Put(r) => validate_put(r)?,
                RequestOp::DeleteRange(r) if r.range.key.is_empty() => {
                    return Err(KvError::EmptyKey)
                }
                RequestOp::Txn(t) => check_txn(t, max_ops)?,
                _ => {}
            }
        }
        written_keys(ops)?;
    }
    Ok(())
}

/// The deleted ranges and put keys of a branch, failing on a key written twice.
fn written_keys(ops: &[RequestOp]) -> Result<(Vec<KeyRange>, BTreeSet<Vec<u8>>), KvError> {
    let mut dels = Vec::new();
    let mut puts = BTreeSet::new();
    for op in ops {
        match op {
            RequestOp::Put(p) => {
                if !puts.insert(p.key.clone()) {
                    return Err(KvError::DuplicateKey);
                }
            }
            RequestOp::DeleteRange(d) => dels.push(d.range.clone()),
            RequestOp::Txn(t) => {
                let (sd, sp) = written_keys(&t.success)?;
                let (fd, fp) = written_keys(&t.failure)?;
                // The two branches of a nested transaction exclude each other, so a key may
                // appear in both; it must not also be written by this branch.
                for key in sp.union(&fp) {
                    if !puts.insert(key.clone()) {
                        return Err(KvError::DuplicateKey);
                    }
                }
                dels.extend(sd);
                dels.extend(fd);
            }
            RequestOp::Range(_) => {}
        }
    }
    for key in &puts {
        if dels.iter().any(|d| d.contains(key)) {
            return Err(KvError::DuplicateKey);
        }
    }
    Ok((dels, puts))
}
