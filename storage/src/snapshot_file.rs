//! The latest snapshot on disk, as one file replaced atomically: written to a temporary file,
//! fsynced, renamed over `current.snap`, and the directory fsynced, and checksummed so that a
//! damaged snapshot is never sent to a follower. A snapshot is large and written rarely, so it
//! does not belong in the log.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::StoreError;
use crate::types::SnapshotMeta;

/// Opens a snapshot file; a CRC32 of the whole file follows the value.
const MAGIC: &[u8; 8] = b"HERMSNAP";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub meta: SnapshotMeta,
    /// The encoded [`SnapshotContents`](crate::snapshot::SnapshotContents).
    pub data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    dir: PathBuf,
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Engine(crate::engine::EngineError::Io { op, source })
}

impl SnapshotFile {
    pub fn new(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io("creating the snapshot directory"))?;
        Ok(SnapshotFile {
            dir: dir.to_path_buf(),
        })
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current.snap")
    }

    /// Replaces the stored snapshot. Blocking.
    pub fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let bytes = crate::wal::frame::seal_small(MAGIC, &codec::encode(snapshot)?);
        let tmp = self.dir.join("current.snap.tmp");
        let mut file = File::create(&tmp).map_err(io("creating a snapshot file"))?;
        file.write_all(&bytes)
            .map_err(io("writing a snapshot file"))?;
        file.sync_all().map_err(io("syncing a snapshot file"))?;
        fs::rename(&tmp, self.current()).map_err(io("replacing the snapshot file"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the snapshot directory"))
    }

    /// The stored snapshot, if any. Blocking.
    pub fn load(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        match fs::read(self.current()) {
            Ok(bytes) => {
                let value = crate::wal::frame::open_small(MAGIC, &bytes).ok_or_else(|| {
                    StoreError::Wal(crate::wal::WalError::Damaged {
                        file: self.current(),
                        offset: 0,
                        what: "snapshot checksum mismatch".into(),
                    })
                })?;
                Ok(Some(codec::decode(value)?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading the snapshot file")(e)),
        }
    }
}
