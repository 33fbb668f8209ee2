//! hermes-storage: everything a Hermes node keeps on disk and how it changes.
//!
//! - [`store::KvStore`]: the etcd-style MVCC key-value store (revisions, leases, compaction,
//!   historical reads) with its watch hub ([`watch::Watcher`]);
//! - [`log_store::LogStore`] and [`state_machine::StateMachine`]: openraft's storage traits on
//!   top of it, with group-committed, fsynced log appends;
//! - [`engine`]: the small trait pair that hides sled.
//!
//! This crate knows nothing of networking or HTTP.

pub mod codec;
pub mod engine;
pub mod error;
pub mod log_store;
pub mod mvcc;
pub mod snapshot;
mod snapshot_file;
pub mod state_machine;
mod state_writer;
pub mod store;
pub mod types;
pub mod watch;

#[cfg(test)]
mod raft_suite_test;

use std::path::Path;
use std::sync::Arc;

pub use error::StoreError;
pub use mvcc::error::KvError;
pub use mvcc::key_value::{Event, EventType, KeyRange, KeyValue};
pub use store::KvStore;

/// Opens the engine in `dir` and the three pieces built on it. Blocking.
pub fn open(
    dir: &Path,
) -> Result<
    (
        log_store::LogStore,
        state_machine::StateMachine,
        Arc<KvStore>,
    ),
    StoreError,
> {
    // Two engines, so that the sync on every log append writes only the log: the state
    // machine can always be rebuilt from the log, so its own writes need to be durable only
    // when a snapshot lets raft purge the log (the snapshot build syncs it) or at shutdown.
    let raft: Arc<dyn engine::Engine> =
        Arc::new(engine::SledEngine::open(&dir.join("raft"), None)?);
    let state: Arc<dyn engine::Engine> = Arc::new(engine::SledEngine::open(
        &dir.join("state"),
        Some(std::time::Duration::from_secs(1)),
    )?);
    let log = log_store::LogStore::open(raft)?;
    let store = KvStore::open(state)?;
    let sm = state_machine::StateMachine::new(store.clone(), &dir.join("snapshots"))?;
    Ok((log, sm, store))
}
