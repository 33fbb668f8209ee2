//! The etcd-compatible MVCC key-value model: keys, revisions, requests, responses, errors, the
//! on-disk row layout and the in-memory index that applies writes.

pub mod error;
pub mod key_value;
pub mod request;
pub mod response;
pub mod rows;
pub mod state;

#[cfg(test)]
pub(crate) mod tests;
