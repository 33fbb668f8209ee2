//! Errors a client request can meet in the MVCC store. Messages are etcd's own, because etcd
//! clients match on them; [`KvError::class`] gives the gRPC status class for the transports.

use serde::{Deserialize, Serialize};

/// The gRPC status class of an error, which the HTTP gateway turns into a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    OutOfRange,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum KvError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted { compact_revision: i64 },
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("a batch of writes may not contain another batch")]
    NestedBatch,
}

impl KvError {
    pub fn class(&self) -> ErrorClass {
        match self {
            KvError::EmptyKey
            | KvError::KeyNotFound
            | KvError::ValueProvided
            | KvError::LeaseProvided
            | KvError::TooManyOps
            | KvError::DuplicateKey
            | KvError::RequestTooLarge
            | KvError::NestedBatch => ErrorClass::InvalidArgument,
            KvError::Compacted { .. } | KvError::FutureRevision | KvError::LeaseTtlTooLarge => {
                ErrorClass::OutOfRange
            }
            KvError::LeaseNotFound => ErrorClass::NotFound,
            KvError::LeaseExists => ErrorClass::FailedPrecondition,
        }
    }
}
