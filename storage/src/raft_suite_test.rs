//! openraft's storage conformance suite against the log store (on the WAL) and the state
//! machine (on sled).

use openraft::testing::{StoreBuilder, Suite};

use crate::log_store::LogStore;
use crate::state_machine::StateMachine;
use crate::types::{StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        // The suite applies entries it never appended: the state writer's wait for the log's
        // durability (exercised by the cluster tests) is satisfied up front here.
        let layout = crate::layout::Layout::new(dir.path());
        let fatal = crate::fatal::Fatal::default();
        let log = crate::log_store::LogStore::open(&layout.raft(), false, fatal.clone())
            .expect("open log");
        let state = std::sync::Arc::new(
            crate::engine::SledEngine::open(&layout.state(), None).expect("open state"),
        );
        let always = std::sync::Arc::new(crate::durable::Durable::always());
        let store = crate::KvStore::open(state, fatal, always).expect("open store");
        let sm = StateMachine::new(store, &layout.snapshots()).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("storage suite");
}
