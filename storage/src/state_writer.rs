//! The thread that writes state-machine changes to the engine, off the apply path.
//!
//! Applying an entry only changes memory and parks the new history rows in `pending`; the
//! writer then puts whole batches into the tree, in order, and only afterwards drops the rows
//! from `pending`, so a row is always readable from one or the other. Nothing here syncs: the
//! raft log is the durable record, and [`StateWriter::barrier`] lets a snapshot (before raft
//! purges the log) or a shutdown wait for every queued write and then sync the engine.
//!
//! A leader may commit an entry on its followers' disks before its own, so a batch waits here
//! until its entries are in this node's log on disk ([`Durable`]): the tree, which sled
//! persists on its own schedule, is then never ahead of the log it must be replayed from.
//! Applying in memory (what reads and answers see) waits for nothing: the entry is committed,
//! so a quorum holds it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};

use crate::durable::Durable;
use crate::engine::{EngineError, Tree, WriteBatch};
use crate::error::StoreError;
use crate::mvcc::rows::{HistoryRow, RowId};

/// How long the writer gathers writes before putting them in the tree.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(5);

enum Job {
    Write {
        batch: WriteBatch,
        rows: Vec<RowId>,
        /// The last raft entry the batch comes from.
        upto: u64,
    },
    Barrier(mpsc::SyncSender<()>),
}

/// Rows applied in memory but maybe not yet in the tree.
pub(crate) type Pending = Mutex<BTreeMap<RowId, HistoryRow>>;

pub(crate) struct StateWriter {
    tx: Mutex<mpsc::Sender<Job>>,
    /// The writer thread, unparked by a barrier (writes never wake it while it gathers).
    thread: std::thread::Thread,
    failed: Arc<AtomicBool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning means a panic elsewhere while holding it; the data stays usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl StateWriter {
    /// Starts the writer thread; it stops when the writer is dropped.
    pub fn start(
        tree: Arc<dyn Tree>,
        pending: Arc<Pending>,
        history_guard: Arc<RwLock<()>>,
        fatal: crate::fatal::Fatal,
        durable: Arc<Durable>,
    ) -> Result<StateWriter, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let handle = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                run(
                    rx,
                    Sinks {
                        tree,
                        pending,
                        history_guard,
                        failed: flag,
                        fatal,
                        durable,
                    },
                )
            })
            .map_err(|source| {
                StoreError::Engine(EngineError::Io {
                    op: "starting the state writer thread",
                    source,
                })
            })?;
        Ok(StateWriter {
            tx: Mutex::new(tx),
            thread: handle.thread().clone(),
            failed,
        })
    }

    fn gone() -> StoreError {
        StoreError::Task("the state writer has stopped".into())
    }

    /// Queues a batch made from raft entries up to `upto`; `rows` leave `pending` once it is
    /// in the tree.
    pub fn write(&self, batch: WriteBatch, rows: Vec<RowId>, upto: u64) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Task(
                "writing the state machine failed earlier; see the log".into(),
            ));
        }
        lock(&self.tx)
            .send(Job::Write { batch, rows, upto })
            .map_err(|_| Self::gone())
    }

    /// Waits until every batch queued before the call is in the tree. Blocking.
    pub fn barrier(&self) -> Result<(), StoreError> {
        let (done, wait) = mpsc::sync_channel(1);
        lock(&self.tx)
            .send(Job::Barrier(done))
            .map_err(|_| Self::gone())?;
        self.thread.unpark();
        wait.recv().map_err(|_| Self::gone())?;
        if self.failed.load(Ordering::Acquire) {
            return Err(StoreError::Task(
                "writing the state machine failed; see the log".into(),
            ));
        }
        Ok(())
    }
}

/// What the writer thread writes to and reports through.
struct Sinks {
    tree: Arc<dyn Tree>,
    pending: Arc<Pending>,
    history_guard: Arc<RwLock<()>>,
    failed: Arc<AtomicBool>,
    fatal: crate::fatal::Fatal,
    durable: Arc<Durable>,
}

impl Sinks {
    fn fail(&self, why: String) {
        // Rows stay in `pending` (still readable); applies stop, and so does the node.
        tracing::error!(error = %why, "writing the state machine failed; this node stops");
        self.fatal
            .raise(format!("writing the state machine failed: {why}"));
        self.failed.store(true, Ordering::Release);
    }
}

fn run(rx: mpsc::Receiver<Job>, sinks: Sinks) {
    while let Ok(job) = rx.recv() {
        // Merge the writes of the next few milliseconds into one engine batch; stop at a
        // barrier, which someone waits for. Nothing reads the tree for rows still pending,
        // so the wait costs no latency, and each engine batch has a fixed cost (sled writes
        // out its log buffer before and after one, on its I/O threads): under load this
        // turns one batch per raft entry into one per interval.
        //
        // The thread sleeps through the interval rather than waiting on the channel: a
        // channel wait would be woken by every write (one per applied entry, a futex wake on
        // the apply path and a context switch here each time). Only a barrier unparks it.
        let mut barrier = matches!(job, Job::Barrier(_));
        let mut jobs = vec![job];
        let until = tokio::time::Instant::now() + COALESCE;
        while !barrier {
            while let Ok(job) = rx.try_recv() {
                barrier |= matches!(job, Job::Barrier(_));
                jobs.push(job);
            }
            if barrier {
                break;
            }
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
        }
        let mut merged = WriteBatch::default();
        let mut rows = Vec::new();
        let mut barriers = Vec::new();
        let mut upto = 0;
        for job in jobs {
            match job {
                Job::Write {
                    batch,
                    rows: r,
                    upto: u,
                } => {
                    merged.ops.extend(batch.ops);
                    rows.extend(r);
                    upto = upto.max(u);
                }
                Job::Barrier(done) => barriers.push(done),
            }
        }
        if !merged.is_empty() && !sinks.failed.load(Ordering::Acquire) {
            if !sinks.durable.wait(upto) {
                sinks.fail(format!(
                    "the raft log failed before entry {upto} reached the disk"
                ));
            } else {
                // Deletes (compaction, lease revokes) remove rows: wait for any snapshot or
                // watcher catch-up that is reading history.
                let deletes = merged.has_deletes();
                let guard = deletes.then(|| {
                    sinks
                        .history_guard
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                });
                let result = sinks.tree.apply(merged);
                drop(guard);
                match result {
                    Ok(()) => {
                        let mut pending = lock(&sinks.pending);
                        for id in &rows {
                            pending.remove(id);
                        }
                    }
                    Err(e) => sinks.fail(e.to_string()),
                }
            }
        }
        for done in barriers {
            let _ = done.send(());
        }
    }
}
