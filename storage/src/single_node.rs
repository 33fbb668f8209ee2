//! Restarting a single-node cluster whose raft log is damaged or lost, from what its state
//! machine holds (`hermes recover`, etcd's `--force-new-cluster` in spirit). The node must be
//! stopped. The damaged log is moved aside (never deleted), the state machine becomes a
//! snapshot at the entry it last applied, with this node as the only voter, and a new log
//! starts after it. Whatever the old log held beyond that entry is lost: that is the price,
//! and the report says how far the state reaches.
//!
//! [`restore`] founds a new single-node cluster the same way from a backup
//! ([`crate::backup`]).

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::snapshot_file::{SnapshotFile, StoredSnapshot};
use crate::types::{LogId, Member, SnapshotMeta, StoredMembership, Vote};
use crate::wal::WalError;
use crate::{codec, engine, fatal, layout, wal, KvStore};

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The last entry the state machine had applied: the new log starts after it.
    pub applied: Option<LogId>,
    pub revision: i64,
    /// Where the old log went.
    pub old_log: Option<PathBuf>,
}

/// Why a recovery cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("{dir} is not a hermes data directory of node {id} (no member marker)")]
    NotADataDir { dir: PathBuf, id: u64 },
    #[error(
        "the state machine of {dir} has never applied an entry: there is nothing to recover \
         from; start the node with an empty data directory instead"
    )]
    Empty { dir: PathBuf },
    #[error(
        "node {id} is not a member in the state machine's last membership; give the node id it \
         ran with"
    )]
    NotAMember { id: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Recovers the data directory `dir` of node `id` as a single-node cluster. Blocking.
pub fn recover(dir: &Path, id: u64) -> Result<Recovery, RecoveryError> {
    let layout = layout::Layout::new(dir);
    if !layout.marker().exists() {
        return Err(RecoveryError::NotADataDir {
            dir: dir.to_path_buf(),
            id,
        });
    }
    // Checks that the marker names this node (and the format).
    layout.claim(id).map_err(StoreError::from)?;
    let state: std::sync::Arc<dyn engine::Engine> = std::sync::Arc::new(
        engine::SledEngine::open(&layout.state(), None).map_err(StoreError::from)?,
    );
    let store = KvStore::open(
        state,
        fatal::Fatal::default(),
        std::sync::Arc::new(crate::durable::Durable::always()),
    )?;
    let contents = store.export()?;
    let Some(applied) = contents.applied else {
        return Err(RecoveryError::Empty {
            dir: dir.to_path_buf(),
        });
    };
    let member = contents
        .membership
        .membership()
        .get_node(&id)
        .cloned()
        .ok_or(RecoveryError::NotAMember { id })?;
    let revision = contents.revision;
    // The old log goes aside (never deleted); the new one starts after the snapshot.
    let raft = layout.raft();
    let old_log = if raft.exists() {
        let aside = dir.join(format!(
            "raft.damaged-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ));
        std::fs::rename(&raft, &aside).map_err(|source| {
            StoreError::Wal(WalError::Io {
                op: "moving the damaged log aside",
                path: raft.clone(),
                source,
            })
        })?;
        Some(aside)
    } else {
        None
    };
    found(&layout, &store, contents, applied, id, member, "recovered")?;
    Ok(Recovery {
        applied: Some(applied),
        revision,
        old_log,
    })
}

/// Makes `contents` the state of a single-node cluster of node `id` (at `member`) in the data
/// directory of `layout`: a snapshot at `applied` with this node as the only voter, and a new
/// raft log, empty after it, whose vote is this node's. Blocking.
fn found(
    layout: &layout::Layout,
    store: &KvStore,
    mut contents: crate::snapshot::SnapshotContents,
    applied: LogId,
    id: u64,
    member: Member,
    what: &str,
) -> Result<(), RecoveryError> {
    let only_me = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([id])],
        std::collections::BTreeMap::<u64, Member>::from([(id, member)]),
    );
    contents.membership = StoredMembership::new(Some(applied), only_me);
    contents.applied = Some(applied);
    let meta = SnapshotMeta {
        last_log_id: Some(applied),
        last_membership: contents.membership.clone(),
        snapshot_id: format!("{what}-{}-{}", applied.leader_id.term, applied.index),
    };
    let data = codec::encode(&contents).map_err(StoreError::from)?;
    store.import(contents)?;
    SnapshotFile::new(&layout.snapshots())?.save(&StoredSnapshot { meta, data })?;
    let (mut log, _) = wal::recover(&layout.raft(), false).map_err(StoreError::from)?;
    log.purge(applied).map_err(StoreError::from)?;
    let mut vote = Vote::new(applied.leader_id.term, id);
    vote.commit();
    log.save_vote(&vote).map_err(StoreError::from)?;
    log.write_meta_if_due(true).map_err(StoreError::from)?;
    store.persist()?;
    Ok(())
}

/// Why a restore cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{dir} already holds a hermes data directory; restore into a new, empty directory")]
    NotEmpty { dir: PathBuf },
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
}

/// Starts a new single-node cluster of node `id`, reachable by its peers at `peer_url`, in the
/// new data directory `dir`, holding what `backup` holds (its revisions, history and leases).
/// It gets a new cluster id. Other nodes join it with `--join` and receive its snapshot.
/// Blocking.
pub fn restore(
    dir: &Path,
    id: u64,
    peer_url: &str,
    backup: &[u8],
) -> Result<Recovery, RestoreError> {
    let backup = crate::backup::decode(backup)?;
    let layout = layout::Layout::new(dir);
    if layout.marker().exists() || layout.state().exists() || layout.raft().exists() {
        return Err(RestoreError::NotEmpty {
            dir: dir.to_path_buf(),
        });
    }
    let had_snapshots = layout.snapshots().exists();
    let restored = restore_into(&layout, id, peer_url, backup);
    if restored.is_err() {
        // Nothing of a half-made member stays behind to refuse the next attempt.
        let _ = std::fs::remove_file(layout.marker());
        let _ = std::fs::remove_dir_all(layout.state());
        let _ = std::fs::remove_dir_all(layout.raft());
        if !had_snapshots {
            let _ = std::fs::remove_dir_all(layout.snapshots());
        }
    }
    restored
}

fn restore_into(
    layout: &layout::Layout,
    id: u64,
    peer_url: &str,
    backup: crate::backup::Backup,
) -> Result<Recovery, RestoreError> {
    layout
        .claim(id)
        .map_err(StoreError::from)
        .map_err(RecoveryError::from)?;
    let state: std::sync::Arc<dyn engine::Engine> = std::sync::Arc::new(
        engine::SledEngine::open(&layout.state(), None)
            .map_err(StoreError::from)
            .map_err(RecoveryError::from)?,
    );
    let store = KvStore::open(
        state,
        fatal::Fatal::default(),
        std::sync::Arc::new(crate::durable::Durable::always()),
    )
    .map_err(RecoveryError::from)?;
    // The first entry of a new term-1 log: the snapshot stands in for it.
    let applied = LogId::new(openraft::CommittedLeaderId::new(1, id), 1);
    let revision = backup.revision;
    let contents = crate::snapshot::SnapshotContents {
        applied: Some(applied),
        membership: StoredMembership::default(),
        // A new cluster: etcd's restore gives one a new id too.
        cluster_id: rand::random::<u64>().max(1),
        revision: backup.revision,
        compact_revision: backup.compact_revision,
        rows: backup.rows,
        leases: backup.leases,
    };
    let member = Member {
        peer_url: peer_url.to_string(),
    };
    found(layout, &store, contents, applied, id, member, "restored")?;
    Ok(Recovery {
        applied: Some(applied),
        revision,
        old_log: None,
    })
}
