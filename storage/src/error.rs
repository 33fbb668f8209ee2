//! The error type of this crate's public operations.

use crate::codec::CodecError;
use crate::engine::EngineError;
use crate::mvcc::error::KvError;
use crate::mvcc::state::ResolveError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request itself was wrong (etcd's client errors).
    #[error(transparent)]
    Kv(KvError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("decoding stored data: {0}")]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("background storage task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Ahead(crate::AheadOfLog),
}

impl StoreError {
    /// The client error inside, if this is one.
    pub fn as_kv(&self) -> Option<&KvError> {
        match self {
            StoreError::Kv(e) => Some(e),
            _ => None,
        }
    }
}
