//! The raft state machine: applies committed entries to the [`KvStore`], builds snapshots of
//! it, and installs snapshots received from the leader. The latest snapshot is kept in a file
//! so it can be sent to a lagging follower after a restart.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};

use crate::codec;
use crate::error::StoreError;
use crate::mvcc::response::CommandResponse;
use crate::snapshot::SnapshotContents;
use crate::snapshot_file::{SnapshotFile, StoredSnapshot};
use crate::store::KvStore;
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The state machine handed to openraft. Cheap to clone.
#[derive(Clone)]
pub struct StateMachine {
    store: Arc<KvStore>,
    snapshots: SnapshotFile,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("store", &self.store)
            .finish()
    }
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_state_machine(&e),
    }
}

fn snap_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read_snapshot(None, &e),
    }
}

fn snap_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write_snapshot(None, &e),
    }
}

/// Runs storage work off the runtime; `map` says which openraft error a failure becomes.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    map: fn(StoreError) -> StorageError,
) -> Result<T, StorageError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(map),
        Err(e) => Err(map(StoreError::Task(e.to_string()))),
    }
}

impl StateMachine {
    /// `snapshot_dir` holds the latest snapshot file.
    pub fn new(store: Arc<KvStore>, snapshot_dir: &Path) -> Result<StateMachine, StoreError> {
        Ok(StateMachine {
            store,
            snapshots: SnapshotFile::new(snapshot_dir)?,
        })
    }

    /// The last entry the stored snapshot covers, if there is one. Blocking.
    pub fn snapshot_last_index(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .snapshots
            .load()?
            .and_then(|s| s.meta.last_log_id)
            .map(|l| l.index))
    }

    pub fn store(&self) -> &Arc<KvStore> {
        &self.store
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.store.applied(), self.store.membership()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let reads_disk = entries
            .iter()
            .any(|e| matches!(&e.payload, EntryPayload::Normal(cmd) if cmd.reads_history()));
        let store = self.store.clone();
        if reads_disk {
            blocking(move || store.apply_entries(entries), sm_write).await
        } else {
            // Memory only (the engine write is queued for the writer thread): no need to leave
            // the runtime, which saves a thread hop on every commit.
            store.apply_entries(entries).map_err(sm_write)
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            store: self.store.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let contents: SnapshotContents = codec::decode(&data).map_err(snap_read)?;
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        blocking(
            move || {
                store.import(contents)?;
                snapshots.save(&StoredSnapshot { meta, data })
            },
            snap_write,
        )
        .await?;
        tracing::info!(
            revision = self.store.revision(),
            "installed snapshot from leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots.clone();
        blocking(
            move || {
                Ok(snapshots.load()?.map(|stored| Snapshot {
                    meta: stored.meta,
                    snapshot: Box::new(Cursor::new(stored.data)),
                }))
            },
            snap_read,
        )
        .await
    }
}

pub struct SnapshotBuilder {
    store: Arc<KvStore>,
    snapshots: SnapshotFile,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let store = self.store.clone();
        let snapshots = self.snapshots.clone();
        blocking(
            move || {
                let contents = store.export()?;
                // Raft purges the log entries a snapshot covers once it is built, so the state
                // machine must be durable at least up to this snapshot first.
                store.persist()?;
                let meta = SnapshotMeta {
                    last_log_id: contents.applied,
                    last_membership: contents.membership.clone(),
                    snapshot_id: format!(
                        "{}-{}-{}",
                        contents.applied.map_or(0, |l| l.leader_id.term),
                        contents.applied.map_or(0, |l| l.index),
                        rand::random::<u32>()
                    ),
                };
                let data = codec::encode(&contents)?;
                snapshots.save(&StoredSnapshot {
                    meta: meta.clone(),
                    data: data.clone(),
                })?;
                tracing::info!(
                    revision = contents.revision,
                    rows = contents.rows.len(),
                    bytes = data.len(),
                    "built snapshot"
                );
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                })
            },
            snap_write,
        )
        .await
    }
}
