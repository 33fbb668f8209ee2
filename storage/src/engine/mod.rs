//! The on-disk engine behind the log store and the state machine, as two small traits so that
//! sled could be replaced without touching raft or MVCC logic. An engine holds named trees of
//! ordered byte keys; a batch on one tree is atomic; [`Engine::sync`] makes everything written
//! so far durable (it must reach the disk, not only the page cache).

mod sled_engine;

use std::ops::Bound;
use std::sync::Arc;

pub use sled_engine::SledEngine;

/// A failure of the underlying engine; the message names the operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("engine I/O while {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("engine error while {op}: {message}")]
    Engine { op: &'static str, message: String },
}

/// One key-value pair as stored.
pub type Row = (Vec<u8>, Vec<u8>);

/// An ordered set of writes applied atomically to one tree.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub(crate) ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteBatch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push((key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch removes any key.
    pub fn has_deletes(&self) -> bool {
        self.ops.iter().any(|(_, v)| v.is_none())
    }
}

/// A durable store of named trees.
pub trait Engine: Send + Sync + 'static {
    /// Opens (creating if needed) the tree called `name`.
    fn tree(&self, name: &str) -> Result<Arc<dyn Tree>, EngineError>;
    /// Makes every write issued before this call durable. Blocking: call it off the runtime.
    fn sync(&self) -> Result<(), EngineError>;
    /// Bytes the engine occupies on disk (for status reporting).
    fn size_on_disk(&self) -> u64;
}

/// An ordered map of byte keys to byte values.
pub trait Tree: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError>;
    /// Applies the batch atomically: after a crash either all of it or none of it is present.
    fn apply(&self, batch: WriteBatch) -> Result<(), EngineError>;
    /// Rows in `[from, to)` order by key (or reversed).
    fn range(
        &self,
        from: Bound<Vec<u8>>,
        to: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Box<dyn Iterator<Item = Result<Row, EngineError>> + Send + '_>;
    fn first(&self) -> Result<Option<Row>, EngineError>;
    fn last(&self) -> Result<Option<Row>, EngineError>;
    fn clear(&self) -> Result<(), EngineError>;
}
