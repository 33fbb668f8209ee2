//! The raft log storage on the [`crate::wal`], with group commit.
//!
//! All writes (appends, truncation, purge, vote) go in order to one dedicated thread, which
//! applies whatever has queued up to the log, makes it durable with a single
//! `fdatasync`, and only then reports the appends as flushed. Under load many appends share
//! one sync, which is where the write throughput comes from. A write that fails is fatal: the
//! thread stops taking writes and says so on [`crate::fatal::Fatal`].
//!
//! Entries are readable as soon as `append` returns: they wait in a memory cache that also keeps
//! the most recent flushed entries, so replication reads new entries without touching disk.
//! [`LogStore::durable`] tells the state machine's writer how far the log is on disk, so that
//! the state machine never persists an entry this node could lose in a crash.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId as RaftLogId, OptionalSend, RaftLogId as _, RaftLogReader, StorageIOError};
use tokio::sync::oneshot;

use crate::codec;
use crate::durable::Durable;
use crate::error::StoreError;
use crate::fatal::Fatal;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::wal::{self, Wal, WalError, WalReader};

/// Flushed entries kept in memory for replication reads.
const CACHE_FLUSHED_ENTRIES: usize = 1024;
/// Most queued operations the writer thread takes into one sync.
const MAX_GROUP: usize = 4096;

enum LogOp {
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        last: LogId,
        callback: LogFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<Result<(), String>>,
    },
    Purge {
        upto: LogId,
        done: oneshot::Sender<Result<(), String>>,
    },
    Vote {
        vote: Vote,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Write the metadata now (a clean stop).
    Close(oneshot::Sender<()>),
}

#[derive(Debug, Default, Clone, Copy)]
struct Bounds {
    last_purged: Option<LogId>,
    last: Option<LogId>,
}

struct Shared {
    reader: WalReader,
    /// Appended entries not yet flushed, plus the newest flushed ones.
    cache: RwLock<BTreeMap<u64, Entry>>,
    bounds: Mutex<Bounds>,
    vote: Mutex<Option<Vote>>,
    committed: Mutex<Option<LogId>>,
    /// The index up to which entries are on disk.
    durable: Arc<Durable>,
    fatal: Fatal,
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
#[error("the raft log writer has stopped: {0}")]
struct WriterGone(String);

impl LogStore {
    /// Opens the log in `dir` (see [`wal::recover`]) and starts its writer thread, which stops
    /// when the last clone is dropped. Blocking.
    pub fn open(dir: &Path, must_exist: bool, fatal: Fatal) -> Result<LogStore, StoreError> {
        let (wal, recovered) = wal::recover(dir, must_exist)?;
        let durable_index = recovered.last.map_or(0, |l| l.index);
        let cache: BTreeMap<u64, Entry> = recovered
            .tail
            .into_iter()
            .map(|e| (e.log_id.index, e))
            .collect();
        let durable = Arc::new(Durable::new(durable_index));
        let shared = Arc::new(Shared {
            reader: wal.reader(),
            cache: RwLock::new(cache),
            bounds: Mutex::new(Bounds {
                last_purged: recovered.purged,
                last: recovered.last,
            }),
            vote: Mutex::new(recovered.vote),
            committed: Mutex::new(recovered.committed),
            durable,
            fatal,
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(writer_shared, wal, rx))
            .map_err(|source| {
                StoreError::Wal(WalError::Io {
                    op: "starting the raft log writer thread",
                    path: dir.to_path_buf(),
                    source,
                })
            })?;
        Ok(LogStore { shared, tx })
    }

    /// The index of the last entry (or the purge point).
    pub fn last_index(&self) -> u64 {
        let b = *lock(&self.shared.bounds);
        b.last.or(b.last_purged).map_or(0, |l| l.index)
    }

    /// The highest log id known committed (as last reported by raft).
    pub fn committed(&self) -> Option<LogId> {
        *lock(&self.shared.committed)
    }

    /// How far the log is on disk: the state machine persists nothing beyond it.
    pub fn durable(&self) -> Arc<Durable> {
        self.shared.durable.clone()
    }

    /// Writes the log's metadata (its exact durable watermark) and waits for it: the last step
    /// of a clean stop. Blocking.
    pub fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(LogOp::Close(done)).is_ok() {
            let _ = wait.blocking_recv();
        }
    }

    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> LogOp,
    ) -> Result<(), StorageError> {
        let (done, rx) = oneshot::channel();
        let gone = || io_err(WriterGone("its thread ended".into()));
        self.tx.send(make(done)).map_err(|_| gone())?;
        rx.await
            .map_err(|_| gone())?
            .map_err(|e| io_err(WriterGone(e)))
    }
}

fn writer_loop(shared: Arc<Shared>, mut wal: Wal, rx: mpsc::Receiver<LogOp>) {
    let mut failed: Option<String> = None;
    // An op taken off the queue while checking that none waits, before a zero-fill.
    let mut carried: Option<LogOp> = None;
    loop {
        let received = match carried.take() {
            Some(op) => Ok(op),
            None => rx.recv_timeout(wal::META_EVERY),
        };
        let first = match received {
            Ok(op) => op,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // Appends have paused: bring the watermark on disk up to date.
                if failed.is_none() {
                    record_committed(&shared, &mut wal);
                    if let Err(e) = wal.write_meta_if_due(false) {
                        failed = Some(fail(&shared, &e));
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut ops = vec![first];
        while ops.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut result: Result<(), String> = failed.clone().map_or(Ok(()), Err);
        let mut appended = false;
        for op in &ops {
            if result.is_err() {
                break;
            }
            result = apply_op(&mut wal, op, &mut appended).map_err(|e| e.to_string());
        }
        if result.is_ok() && appended {
            result = wal.sync().map_err(|e| e.to_string());
        }
        if failed.is_none() {
            if let Err(e) = &result {
                shared.durable.fail();
                shared
                    .fatal
                    .raise(format!("writing the raft log failed: {e}"));
                tracing::error!(error = %e, "raft log write failed; this node stops");
                failed = Some(e.clone());
            }
        }
        // The durable mark moves, and the cache is trimmed, before anyone hears of this group:
        // raft's task, woken by an acknowledgement, reads the entries it applies from the
        // cache, and would otherwise wait on the trim's write lock.
        let mut flushed_upto = None;
        for op in &ops {
            match op {
                LogOp::Append { last, .. } => flushed_upto = Some(*last),
                LogOp::Truncate { from, .. } => {
                    // Appends of this group that the cut removed are not durable, and the
                    // mark drops before raft hears the cut is done.
                    flushed_upto = flushed_upto.filter(|l| l.index < *from);
                    if result.is_ok() {
                        let durable = &shared.durable;
                        durable.set(durable.upto().min(from.saturating_sub(1)));
                    }
                }
                LogOp::Purge { .. } | LogOp::Vote { .. } | LogOp::Close(_) => {}
            }
        }
        if let (Ok(()), Some(upto)) = (&result, flushed_upto) {
            shared.durable.set(upto.index);
            trim_cache(&shared, upto.index);
        }
        let mut close = Vec::new();
        for op in ops {
            match op {
                LogOp::Append { callback, .. } => {
                    let outcome = result.clone().map_err(std::io::Error::other);
                    callback.log_io_completed(outcome);
                }
                LogOp::Truncate { done, .. }
                | LogOp::Purge { done, .. }
                | LogOp::Vote { done, .. } => {
                    let _ = done.send(result.clone());
                }
                LogOp::Close(done) => close.push(done),
            }
        }
        // The watermark, after the acknowledgements (on the metadata thread). A stop writes
        // it below and waits for it: a write queued here would clear the dirty flag and leave
        // the stop nothing to wait for.
        if failed.is_none() && close.is_empty() {
            record_committed(&shared, &mut wal);
            if let Err(e) = wal.write_meta_if_due(false) {
                failed = Some(fail(&shared, &e));
            }
        }
        // Idle: keep zero-filled space ahead of the records, a chunk at a time, for as long
        // as nothing is waiting to be written.
        while failed.is_none() && close.is_empty() {
            match rx.try_recv() {
                Ok(op) => {
                    carried = Some(op);
                    break;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            match wal.fill_ahead() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => failed = Some(fail(&shared, &e)),
            }
        }
        if !close.is_empty() {
            if failed.is_none() {
                record_committed(&shared, &mut wal);
                if let Err(e) = wal.write_meta_if_due(true) {
                    tracing::error!(error = %e, "writing the raft log's metadata at stop failed");
                }
            }
            for done in close {
                let _ = done.send(());
            }
        }
    }
    if failed.is_none() {
        record_committed(&shared, &mut wal);
        let _ = wal.write_meta_if_due(true);
    }
}

/// Hands the committed id raft last reported to the metadata, once the entry it names is on
/// this node's disk (a follower may hear of a commit before it has the entry; a restart then
/// replays only what the log holds). Raft reports a commit per proposal; the writer picks it
/// up here rather than being woken for each one.
fn record_committed(shared: &Shared, wal: &mut Wal) {
    let committed = *lock(&shared.committed);
    if on_disk(committed, wal.durable_next()) {
        wal.set_committed(committed);
    }
}

/// Whether a committed id may go to the metadata: its entry is below `durable_next`, the
/// writer's own mark (which only this thread moves, so no other thread's view of it can run
/// ahead of a truncation still being acknowledged).
fn on_disk(committed: Option<LogId>, durable_next: u64) -> bool {
    committed.is_none_or(|c| c.index < durable_next)
}

fn fail(shared: &Shared, e: &WalError) -> String {
    let message = e.to_string();
    shared.durable.fail();
    shared
        .fatal
        .raise(format!("writing the raft log failed: {message}"));
    tracing::error!(error = %message, "raft log write failed; this node stops");
    message
}

fn apply_op(wal: &mut Wal, op: &LogOp, appended: &mut bool) -> Result<(), WalError> {
    match op {
        LogOp::Append { rows, .. } => {
            for (index, bytes) in rows {
                wal.append(*index, bytes)?;
            }
            *appended = true;
            Ok(())
        }
        LogOp::Truncate { from, .. } => wal.truncate(*from),
        LogOp::Purge { upto, .. } => wal.purge(*upto),
        LogOp::Vote { vote, .. } => {
            // Entries appended before the vote change are made durable first, in order.
            if *appended {
                wal.sync()?;
                *appended = false;
            }
            wal.save_vote(vote)
        }
        LogOp::Close(_) => Ok(()),
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
        // Cache first: an entry leaves the cache only after it is on disk.
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
        let reader = self.shared.reader.clone();
        let until = end
            .unwrap_or(u64::MAX)
            .min(cached.keys().next().copied().unwrap_or(u64::MAX));
        let from_disk = tokio::task::spawn_blocking(move || -> Result<Vec<Entry>, StoreError> {
            reader
                .read(first_needed, until)?
                .iter()
                .map(|bytes| codec::decode::<Entry>(bytes).map_err(StoreError::from))
                .collect()
        })
        .await
        .map_err(read_err)?
        .map_err(read_err)?;
        let mut merged: BTreeMap<u64, Entry> =
            from_disk.into_iter().map(|e| (e.log_id.index, e)).collect();
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
        let vote = *vote;
        self.submit(|done| LogOp::Vote { vote, done }).await?;
        *lock(&self.shared.vote) = Some(vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(*lock(&self.shared.vote))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not waited for, nor sent to the writer: it reads this with the next metadata write,
        // and a lost committed index is only re-learned from the leader.
        *lock(&self.shared.committed) = committed;
        Ok(())
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
        // Entries a snapshot already covers are never read again: raft does not send them,
        // and openraft's storage suite does (it appends below the purge point).
        let purged = lock(&self.shared.bounds).last_purged.map(|p| p.index);
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.log_id.index > p))
            .collect();
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
            .map_err(|_| io_err(WriterGone("its thread ended".into())))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let prev = self.prev_log_id(log_id.index).await?;
        {
            let mut cache = self.shared.cache.write().unwrap_or_else(|p| p.into_inner());
            cache.split_off(&log_id.index);
        }
        {
            let mut b = lock(&self.shared.bounds);
            // The entry before `log_id` is now the last one (or the purge point).
            b.last = prev.or(b.last_purged);
        }
        let from = log_id.index;
        // The writer lowers the durable mark before it acknowledges the cut.
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
            .await?;
        // A snapshot holds what was purged: it counts as durable.
        let durable = &self.shared.durable;
        durable.set(durable.upto().max(log_id.index));
        Ok(())
    }
}

impl LogStore {
    /// The log id of the entry just before `index`, from the cache or the disk.
    async fn prev_log_id(&self, index: u64) -> Result<Option<RaftLogId<u64>>, StorageError> {
        let Some(prev) = index.checked_sub(1) else {
            return Ok(None);
        };
        if let Some(e) = self
            .shared
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&prev)
        {
            return Ok(Some(e.log_id));
        }
        let purged = lock(&self.shared.bounds).last_purged;
        if purged.is_some_and(|p| p.index == prev) {
            return Ok(purged);
        }
        // Truncation is rare (a follower dropping a stale tail): a disk read is fine here.
        let reader = self.shared.reader.clone();
        let bytes = tokio::task::spawn_blocking(move || reader.read(prev, prev + 1))
            .await
            .map_err(read_err)?
            .map_err(read_err)?;
        match bytes.first() {
            Some(b) => Ok(Some(codec::decode::<Entry>(b).map_err(read_err)?.log_id)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(index: u64) -> Option<LogId> {
        Some(openraft::LogId::new(
            openraft::CommittedLeaderId::new(1, 1),
            index,
        ))
    }

    #[test]
    fn a_committed_id_reaches_the_metadata_only_once_its_entry_is_on_disk() {
        // Entries below `durable_next` are on disk.
        assert!(on_disk(None, 0));
        assert!(on_disk(id(9), 10));
        assert!(!on_disk(id(10), 10), "the entry after the last durable one");
        // After a cut at 50 the mark is 50 again, whatever was synced beyond it.
        assert!(!on_disk(id(55), 50));
        assert!(on_disk(id(49), 50));
    }
}
