//! hermes-storage: everything a Hermes node keeps on disk and how it changes.
//!
//! - [`store::KvStore`]: the etcd-style MVCC key-value store (revisions, leases, compaction,
//!   historical reads) with its watch hub ([`watch::Watcher`]);
//! - [`log_store::LogStore`] on the [`wal`] (a checksummed, segmented write-ahead log made for
//!   the raft log) and [`state_machine::StateMachine`]: openraft's storage traits, with
//!   group-committed, fsynced log appends;
//! - [`engine`]: the small trait pair that hides sled, which keeps the state machine;
//! - [`layout`]: what lives where in a data directory; [`fatal`]: a storage failure the node
//!   stops for;
//! - [`keys`]: the key layout of the replicated store (the original Hermes's `/hermes/...`
//!   resource keys, and the control plane's records under the hidden `/hermes/_cp/` prefix).
//!
//! This crate knows nothing of networking or HTTP.

pub mod backup;
pub mod codec;
pub mod durable;
pub mod engine;
pub mod error;
pub mod fatal;
pub mod hash;
pub mod keys;
pub mod layout;
pub mod log_store;
pub mod mvcc;
pub mod single_node;
pub mod snapshot;
mod snapshot_file;
pub mod state_machine;
mod state_writer;
pub mod store;
pub mod types;
pub mod wal;
pub mod watch;

#[cfg(test)]
mod raft_suite_test;

use std::path::Path;
use std::sync::Arc;

pub use error::StoreError;
pub use mvcc::error::KvError;
pub use mvcc::key_value::{Event, EventType, KeyRange, KeyValue};
pub use store::KvStore;

/// What [`open`] returns: the three pieces openraft and the node use, and the signal of a
/// storage failure the node cannot continue after.
pub struct Opened {
    pub log: log_store::LogStore,
    pub state_machine: state_machine::StateMachine,
    pub store: Arc<KvStore>,
    pub fatal: fatal::Fatal,
}

/// Why the state machine and the log disagree in a way only damage explains.
#[derive(Debug, thiserror::Error)]
#[error(
    "the state machine in {state} has applied entry {applied}, but the raft log in {log} ends \
     at entry {last} and no snapshot covers the rest: {}",
    wal::RECOVERY
)]
pub struct AheadOfLog {
    pub state: std::path::PathBuf,
    pub log: std::path::PathBuf,
    pub applied: u64,
    pub last: u64,
}

/// Opens the data directory `dir` of node `id`: the raft log, the state machine and the store
/// built on it. A directory that has held a member must have its log, intact, and a state
/// machine no further than its log (or its latest snapshot). Blocking.
pub fn open(dir: &Path, id: u64) -> Result<Opened, StoreError> {
    let layout = layout::Layout::new(dir);
    let was_member = layout.claim(id)?;
    let fatal = fatal::Fatal::default();
    // The state machine is synced only when a snapshot lets raft purge the log (the snapshot
    // build syncs it) or at shutdown: the log is the durable record, and the state machine's
    // rows reach sled only once their entries are on disk (`durable`).
    let state: Arc<dyn engine::Engine> = Arc::new(engine::SledEngine::open(
        &layout.state(),
        Some(std::time::Duration::from_secs(1)),
    )?);
    let log = log_store::LogStore::open(&layout.raft(), was_member, fatal.clone())?;
    let store = KvStore::open(state, fatal.clone(), log.durable())?;
    let sm = state_machine::StateMachine::new(store.clone(), &layout.snapshots())?;
    let applied = store.applied().map_or(0, |l| l.index);
    let last = log.last_index();
    if applied > last {
        let covered = sm.snapshot_last_index()?.unwrap_or(0);
        if covered < applied {
            return Err(StoreError::Ahead(AheadOfLog {
                state: layout.state(),
                log: layout.raft(),
                applied,
                last,
            }));
        }
    }
    Ok(Opened {
        log,
        state_machine: sm,
        store,
        fatal,
    })
}
