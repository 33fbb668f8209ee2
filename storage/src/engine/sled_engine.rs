//! [`Engine`] on sled 0.34.
//!
//! sled's own `flush` writes its log with `sync_file_range` on Linux, which starts write-back
//! but neither flushes the device cache nor persists file metadata, and it writes large values
//! ("blobs") to separate files without syncing them at all. [`SledEngine::sync`] therefore
//! follows sled's flush with `fdatasync` on the `db` file, `fsync` on every blob file created
//! since the previous sync, and `fsync` on the directories whose entries changed.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Engine, EngineError, Row, Tree, WriteBatch};

/// Large enough that a maximal etcd request (1.5 MiB) plus framing stays inline in sled's log
/// (sled moves items over a quarter of a segment into blob files).
const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

pub struct SledEngine {
    db: sled::Db,
    dir: PathBuf,
    db_file: File,
    /// Highest blob file name (a log sequence number) already fsynced; blobs get rising names.
    blobs_synced_upto: Mutex<u64>,
}

impl std::fmt::Debug for SledEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEngine")
            .field("dir", &self.dir)
            .finish()
    }
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Io { op, source }
}

fn sled_err(op: &'static str) -> impl FnOnce(sled::Error) -> EngineError {
    move |e| match e {
        sled::Error::Io(source) => EngineError::Io { op, source },
        other => EngineError::Engine {
            op,
            message: other.to_string(),
        },
    }
}

/// How long opening waits for sled's lock on the directory. Dropping a `sled::Db` leaves its
/// background threads to release the lock a moment later, so an engine reopened in the same
/// process (as the tests do) can find it still held; another process holding it
/// is reported once the wait is over.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn open_locked(config: &sled::Config) -> Result<sled::Db, EngineError> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports the held lock only in the message of an `Other` I/O error.
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && tokio::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(sled::Error::Io(source))
                if source.to_string().contains("could not acquire lock") =>
            {
                return Err(EngineError::Engine {
                    op: "opening sled",
                    message: format!(
                        "{source}; is another hermes process using this data directory?"
                    ),
                })
            }
            Err(e) => return Err(sled_err("opening sled")(e)),
        }
    }
}

impl SledEngine {
    /// Opens or creates the engine in `dir`. Blocking.
    /// `background_flush`: let sled write its buffers out on a timer as well (for data whose
    /// durability does not depend on [`Engine::sync`] being called on every write).
    pub fn open(
        dir: &Path,
        background_flush: Option<std::time::Duration>,
    ) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(io("creating the data directory"))?;
        let config = sled::Config::new()
            .path(dir)
            .segment_size(SEGMENT_SIZE)
            .flush_every_ms(background_flush.map(|d| d.as_millis() as u64));
        let db = open_locked(&config)?;
        let db_file = File::open(dir.join("db")).map_err(io("opening sled's db file"))?;
        let engine = SledEngine {
            db,
            dir: dir.to_path_buf(),
            db_file,
            blobs_synced_upto: Mutex::new(0),
        };
        // The files sled just created must survive a crash too.
        sync_dir(dir)?;
        engine.sync()?;
        Ok(engine)
    }

    fn sync_new_blobs(&self) -> Result<(), EngineError> {
        let blob_dir = self.dir.join("blobs");
        let Ok(entries) = std::fs::read_dir(&blob_dir) else {
            return Ok(());
        };
        // Poisoning only means another sync panicked; the counter itself stays valid.
        let mut upto = self
            .blobs_synced_upto
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut newest = *upto;
        for entry in entries {
            let entry = entry.map_err(io("listing sled blobs"))?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if lsn <= *upto {
                continue;
            }
            // A blob may be garbage-collected between listing and opening; that is fine.
            if let Ok(file) = File::open(entry.path()) {
                file.sync_all().map_err(io("syncing a sled blob"))?;
            }
            newest = newest.max(lsn);
        }
        if newest > *upto {
            sync_dir(&blob_dir)?;
            *upto = newest;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), EngineError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing a directory"))
}

impl Engine for SledEngine {
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>, EngineError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(sled_err("opening a tree"))?;
        Ok(Arc::new(SledTree(tree)))
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.db.flush().map_err(sled_err("flushing sled"))?;
        self.db_file
            .sync_data()
            .map_err(io("fdatasync of sled's db file"))?;
        self.sync_new_blobs()
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

struct SledTree(sled::Tree);

impl Tree for SledTree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .0
            .get(key)
            .map_err(sled_err("reading a key"))?
            .map(|v| v.to_vec()))
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        self.0
            .insert(key, value)
            .map_err(sled_err("writing a key"))?;
        Ok(())
    }

    fn apply(&self, batch: WriteBatch) -> Result<(), EngineError> {
        let mut sled_batch = sled::Batch::default();
        for (key, value) in batch.ops {
            match value {
                Some(value) => sled_batch.insert(key, value),
                None => sled_batch.remove(key),
            }
        }
        self.0
            .apply_batch(sled_batch)
            .map_err(sled_err("applying a batch"))
    }

    fn range(
        &self,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Row, EngineError>> + Send + '_> {
        let iter = self.0.range::<Vec<u8>, _>((from, to));
        let map = |r: Result<(sled::IVec, sled::IVec), sled::Error>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(sled_err("scanning keys"))
        };
        if reverse {
            Box::new(iter.rev().map(map))
        } else {
            Box::new(iter.map(map))
        }
    }

    fn first(&self) -> Result<Option<Row>, EngineError> {
        Ok(self
            .0
            .first()
            .map_err(sled_err("reading the first key"))?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn last(&self) -> Result<Option<Row>, EngineError> {
        Ok(self
            .0
            .last()
            .map_err(sled_err("reading the last key"))?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn clear(&self) -> Result<(), EngineError> {
        self.0.clear().map_err(sled_err("clearing a tree"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_range_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let engine = SledEngine::open(dir.path(), None).unwrap();
            let tree = engine.tree("t").unwrap();
            let mut batch = WriteBatch::default();
            for i in 0u8..10 {
                batch.put(vec![i], vec![i; 3]);
            }
            batch.delete(vec![3u8]);
            tree.apply(batch).unwrap();
            let keys: Vec<u8> = tree
                .range(Bound::Included(vec![2]), Bound::Excluded(vec![6]), false)
                .map(|r| r.unwrap().0[0])
                .collect();
            assert_eq!(keys, vec![2, 4, 5]);
            let rev: Vec<u8> = tree
                .range(Bound::Unbounded, Bound::Unbounded, true)
                .take(2)
                .map(|r| r.unwrap().0[0])
                .collect();
            assert_eq!(rev, vec![9, 8]);
            engine.sync().unwrap();
        }
        let engine = SledEngine::open(dir.path(), None).unwrap();
        let tree = engine.tree("t").unwrap();
        assert_eq!(tree.get(&[7]).unwrap(), Some(vec![7, 7, 7]));
        assert_eq!(tree.first().unwrap().unwrap().0, vec![0]);
        assert_eq!(tree.last().unwrap().unwrap().0, vec![9]);
    }

    #[test]
    fn large_values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![0xabu8; 3 * 1024 * 1024];
        {
            let engine = SledEngine::open(dir.path(), None).unwrap();
            engine.tree("t").unwrap().insert(b"big", &big).unwrap();
            engine.sync().unwrap();
        }
        let engine = SledEngine::open(dir.path(), None).unwrap();
        assert_eq!(engine.tree("t").unwrap().get(b"big").unwrap(), Some(big));
    }
}
