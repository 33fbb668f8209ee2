//! The raft log on the engine, with group commit.
//!
//! All writes (appends, truncation, purge, vote, committed index) go in order to one dedicated
//! thread, which applies whatever has queued up to the `raft_log` tree, makes it durable with a
//! single [`Engine::sync`], and only then reports the appends as flushed. Under load many
//! appends share one fsync, which is where the write throughput comes from.
//!
//! Entries are readable as soon as `append` returns: they wait in a memory cache that also keeps
//! the most recent flushed entries, so replication reads new entries without touching disk.
//!
//! Tree layout: `e` + index (u64 BE) → entry; `v` → vote; `p` → last purged log id;
//! `c` → committed log id. Keeping them in one tree makes a purge (delete entries, record the
//! purged id) one atomic batch.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId as RaftLogId, OptionalSend, RaftLogId as _, RaftLogReader, StorageIOError};
use tokio::sync::oneshot;

use crate::codec;
use crate::engine::{Engine, EngineError, Tree, WriteBatch};
use crate::error::StoreError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// Flushed entries kept in memory for replication reads.
const CACHE_FLUSHED_ENTRIES: usize = 1024;
/// Most queued operations the writer thread takes into one sync.
const MAX_GROUP: usize = 4096;

const KEY_VOTE: &[u8] = b"v";
const KEY_PURGED: &[u8] = b"p";
const KEY_COMMITTED: &[u8] = b"c";

fn entry_key(index: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(b'e');
    key.extend_from_slice(&index.to_be_bytes());
    key
}

fn entry_index(key: &[u8]) -> Option<u64> {
    if key.len() == 9 && key[0] == b'e' {
        key[1..].try_into().ok().map(u64::from_be_bytes)
    } else {
        None
    }
}

enum LogOp {
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        last: LogId,
        callback: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), EngineError>>,
    },
    Purge {
        upto: LogId,
        done: oneshot::Sender<Result<(), EngineError>>,
    },
    Put {
        key: &'static [u8],
        value: Vec<u8>,
        done: Option<oneshot::Sender<Result<(), EngineError>>>,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct Bounds {
    last_purged: Option<LogId>,
    last: Option<LogId>,
}

struct Shared {
    tree: Arc<dyn Tree>,
    /// Appended entries not yet flushed, plus the newest flushed ones.
    cache: RwLock<BTreeMap<u64, Entry>>,
    bounds: Mutex<Bounds>,
    vote: Mutex<Option<Vote>>,
    committed: Mutex<Option<LogId>>,
}

/// The raft log storage. Cheap to clone; clones share the writer thread.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    tx: mpsc::Sender<LogOp>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning means a panic elsewhere; these values are plain copies, always consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_logs(&e),
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_logs(&e),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the raft log writer thread has stopped")]
struct WriterGone;

impl LogStore {
    /// Opens the log and starts its writer thread (which stops when the last clone is dropped).
    /// Blocking.
    pub fn open(engine: Arc<dyn Engine>) -> Result<LogStore, crate::error::StoreError> {
        let tree = engine.tree("raft_log")?;
        let decode_opt = |key: &[u8]| -> Result<Option<Vec<u8>>, crate::error::StoreError> {
            Ok(tree.get(key)?)
        };
        let vote: Option<Vote> = match decode_opt(KEY_VOTE)? {
            Some(b) => Some(codec::decode(&b)?),
            None => None,
        };
        let committed: Option<LogId> = match decode_opt(KEY_COMMITTED)? {
            Some(b) => codec::decode(&b)?,
            None => None,
        };
        let last_purged: Option<LogId> = match decode_opt(KEY_PURGED)? {
            Some(b) => codec::decode(&b)?,
            None => None,
        };
        let mut last = last_purged;
        let tail = tree
            .range(
                Bound::Included(entry_key(0)),
                Bound::Included(entry_key(u64::MAX)),
                true,
            )
            .next();
        if let Some(row) = tail {
            let (_, bytes) = row?;
            let entry: Entry = codec::decode(&bytes)?;
            last = Some(entry.log_id);
        }
        let shared = Arc::new(Shared {
            tree,
            cache: RwLock::new(BTreeMap::new()),
            bounds: Mutex::new(Bounds { last_purged, last }),
            vote: Mutex::new(vote),
            committed: Mutex::new(committed),
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(writer_shared, engine, rx))
            .map_err(|source| {
                crate::error::StoreError::Engine(EngineError::Io {
                    op: "starting the raft log writer thread",
                    source,
                })
            })?;
        Ok(LogStore { shared, tx })
    }

    /// The highest log id known committed (as last reported by raft).
    pub fn committed(&self) -> Option<LogId> {
        *lock(&self.shared.committed)
    }

    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), EngineError>>) -> LogOp,
    ) -> Result<(), StorageError> {
        let (done, rx) = oneshot::channel();
        self.tx.send(make(done)).map_err(|_| io_err(WriterGone))?;
        rx.await.map_err(|_| io_err(WriterGone))?.map_err(io_err)
    }
}

fn writer_loop(shared: Arc<Shared>, engine: Arc<dyn Engine>, rx: mpsc::Receiver<LogOp>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut result = Ok(());
        for op in &ops {
            if result.is_err() {
                break;
            }
            result = apply_op(&shared, op);
        }
        // A lone committed-index update needs no sync of its own: it is advisory, and the next
        // durable write carries it to disk anyway.
        let needs_sync = ops
            .iter()
            .any(|op| !matches!(op, LogOp::Put { done: None, .. }));
        if result.is_ok() && needs_sync {
            result = engine.sync();
        }
        let mut flushed_upto = None;
        for op in ops {
            let outcome = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(EngineError::Engine {
                    op: "writing the raft log",
                    message: e.to_string(),
                }),
            };
            match op {
                LogOp::Append { callback, last, .. } => {
                    flushed_upto = Some(last);
                    callback.log_io_completed(outcome.map_err(std::io::Error::other));
                }
                LogOp::Truncate { done, .. } | LogOp::Purge { done, .. } => {
                    let _ = done.send(outcome);
                }
                LogOp::Put { done, .. } => {
                    if let Some(done) = done {
                        let _ = done.send(outcome);
                    }
                }
            }
        }
        if let (Ok(()), Some(upto)) = (&result, flushed_upto) {
            trim_cache(&shared, upto.index);
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "raft log write failed; this node stops accepting writes");
        }
    }
}

fn apply_op(shared: &Shared, op: &LogOp) -> Result<(), EngineError> {
    match op {
        LogOp::Append { rows, .. } => {
            let mut batch = WriteBatch::default();
            for (index, bytes) in rows {
                batch.put(entry_key(*index), bytes.clone());
            }
            shared.tree.apply(batch)
        }
        LogOp::Truncate { from, .. } => {
            let mut batch = WriteBatch::default();
            for row in shared.tree.range(
                Bound::Included(entry_key(*from)),
                Bound::Included(entry_key(u64::MAX)),
                false,
            ) {
                batch.delete(row?.0);
            }
            shared.tree.apply(batch)
        }
        LogOp::Purge { upto, .. } => {
            let mut batch = WriteBatch::default();
            for row in shared.tree.range(
                Bound::Included(entry_key(0)),
                Bound::Included(entry_key(upto.index)),
                false,
            ) {
                batch.delete(row?.0);
            }
            let purged = codec::encode(&Some(*upto)).map_err(|e| EngineError::Engine {
                op: "encoding the purged log id",
                message: e.to_string(),
            })?;
            batch.put(KEY_PURGED.to_vec(), purged);
            shared.tree.apply(batch)
        }
        LogOp::Put { key, value, .. } => shared.tree.insert(key, value),
    }
}

/// Drops flushed entries from the cache, keeping the newest few for replication reads.
fn trim_cache(shared: &Shared, flushed_upto: u64) {
    let mut cache = shared.cache.write().unwrap_or_else(|p| p.into_inner());
    let flushed = cache.range(..=flushed_upto).count();
    let excess = flushed.saturating_sub(CACHE_FLUSHED_ENTRIES);
    if excess == 0 {
        return;
    }
    let cut: Vec<u64> = cache
        .range(..=flushed_upto)
        .take(excess)
        .map(|(i, _)| *i)
        .collect();
    for index in cut {
        cache.remove(&index);
    }
}

fn range_limits<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(e.saturating_add(1)),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let (start, end) = range_limits(&range);
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        // Cache first: an entry leaves the cache only after it is in the tree.
        let cached: BTreeMap<u64, Entry> = {
            let cache = self.shared.cache.read().unwrap_or_else(|p| p.into_inner());
            cache
                .range((Bound::Included(start), upper))
                .map(|(i, e)| (*i, e.clone()))
                .collect()
        };
        let purged = lock(&self.shared.bounds).last_purged.map(|l| l.index);
        let first_needed = purged.map_or(start, |p| start.max(p + 1));
        let complete = cached.keys().next() == Some(&first_needed)
            && cached.len() as u64 == cached.keys().last().map_or(0, |l| l - first_needed + 1);
        if complete {
            return Ok(cached.into_values().collect());
        }
        let shared = self.shared.clone();
        let from_tree = tokio::task::spawn_blocking(move || -> Result<Vec<Entry>, StoreError> {
            let to = end.map_or(Bound::Included(entry_key(u64::MAX)), |e| {
                Bound::Excluded(entry_key(e))
            });
            let mut out = Vec::new();
            for row in shared
                .tree
                .range(Bound::Included(entry_key(start)), to, false)
            {
                let (key, bytes) = row?;
                if entry_index(&key).is_some() {
                    out.push(codec::decode::<Entry>(&bytes)?);
                }
            }
            Ok(out)
        })
        .await
        .map_err(read_err)?
        .map_err(read_err)?;
        let mut merged: BTreeMap<u64, Entry> =
            from_tree.into_iter().map(|e| (e.log_id.index, e)).collect();
        merged.extend(cached);
        // Only a contiguous run from the start is meaningful.
        let mut out = Vec::with_capacity(merged.len());
        let mut expect = None;
        for (index, entry) in merged {
            if expect.is_some_and(|e| e != index) {
                break;
            }
            expect = Some(index + 1);
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let b = *lock(&self.shared.bounds);
        Ok(LogState {
            last_purged_log_id: b.last_purged,
            last_log_id: b.last.or(b.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let value = codec::encode(vote).map_err(|e| StorageError::IO {
            source: StorageIOError::write_vote(&e),
        })?;
        self.submit(|done| LogOp::Put {
            key: KEY_VOTE,
            value,
            done: Some(done),
        })
        .await?;
        *lock(&self.shared.vote) = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(*lock(&self.shared.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let value = codec::encode(&committed).map_err(io_err)?;
        *lock(&self.shared.committed) = committed;
        // Not waited for: a lost committed index is only re-learned from the leader.
        self.tx
            .send(LogOp::Put {
                key: KEY_COMMITTED,
                value,
                done: None,
            })
            .map_err(|_| io_err(WriterGone))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(*lock(&self.shared.committed))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| *e.get_log_id()) else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        let mut rows = Vec::with_capacity(entries.len());
        for e in &entries {
            rows.push((e.log_id.index, codec::encode(e).map_err(io_err)?));
        }
        {
            let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                cache.insert(e.log_id.index, e);
            }
        }
        lock(&self.shared.bounds).last = Some(last);
        self.tx
            .send(LogOp::Append {
                rows,
                last,
                callback,
            })
            .map_err(|_| io_err(WriterGone))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
            cache.split_off(&log_id.index);
        }
        {
            let mut b = lock(&self.shared.bounds);
            // The entry before `log_id` is now the last one (or the purge point).
            b.last = prev_log_id(&self.shared, log_id.index).or(b.last_purged);
        }
        let from = log_id.index;
        self.submit(|done| LogOp::Truncate { from, done }).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
            let keep = cache.split_off(&(log_id.index + 1));
            *cache = keep;
        }
        {
            let mut b = lock(&self.shared.bounds);
            b.last_purged = Some(log_id);
            if b.last.is_none_or(|l| l.index < log_id.index) {
                b.last = Some(log_id);
            }
        }
        self.submit(|done| LogOp::Purge { upto: log_id, done })
            .await
    }
}

/// The log id of the entry just before `index`, from cache or tree.
fn prev_log_id(shared: &Shared, index: u64) -> Option<RaftLogId<u64>> {
    let prev = index.checked_sub(1)?;
    if let Some(e) = shared
        .cache
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&prev)
    {
        return Some(e.log_id);
    }
    // Truncation is rare (a follower dropping a stale tail): a direct read is acceptable here.
    let bytes = shared.tree.get(&entry_key(prev)).ok()??;
    codec::decode::<Entry>(&bytes).ok().map(|e| e.log_id)
}
