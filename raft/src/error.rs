//! Errors of cluster operations, each naming what failed and whether a retry could help.

use std::time::Duration;

use hermes_storage::types::NodeId;
use hermes_storage::KvError;

/// A write through raft did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The store refused the request; nothing changed anywhere.
    #[error(transparent)]
    Rejected(KvError),
    /// No leader was known within the request timeout; nothing was written.
    #[error("no raft leader elected within {0:?}; the cluster may have lost its quorum")]
    NoLeader(Duration),
    /// The write certainly was not applied; it may be retried.
    #[error("write not applied: {0}")]
    Unavailable(String),
    /// The write was handed to the leader but its fate is unknown (connection lost, timeout).
    #[error("write outcome unknown: {0}")]
    Unknown(String),
    #[error("this node is shutting down")]
    Shutdown,
    /// The store is over its quota: only writes that free space are taken.
    #[error(
        "the store is over its quota ({size} of {quota} bytes): delete and compact to free space"
    )]
    NoSpace { size: u64, quota: u64 },
}

/// A linearizable read could not be confirmed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no raft leader elected within {0:?}; the cluster may have lost its quorum")]
    NoLeader(Duration),
    #[error("leadership could not be confirmed: {0}")]
    Unavailable(String),
    #[error("this node is shutting down")]
    Shutdown,
}

/// A membership change was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("invalid membership change: {0}")]
    Invalid(String),
    #[error(
        "removing node {id} leaves {healthy} healthy voter(s) of {voters}, fewer than the \
         {quorum} a quorum needs; pass --force to remove it anyway"
    )]
    WouldBreakQuorum {
        id: NodeId,
        healthy: usize,
        voters: usize,
        quorum: usize,
    },
    #[error("membership change failed: {0}")]
    Failed(String),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// A leadership transfer was refused or did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("node {0} is not a member of this cluster")]
    UnknownNode(NodeId),
    #[error("invalid leadership transfer: {0}")]
    Invalid(String),
    #[error("no raft leader elected within {0:?}; the cluster may have lost its quorum")]
    NoLeader(Duration),
    #[error("leadership transfer failed: {0}")]
    Failed(String),
    #[error("node {target} did not become the leader in time (leader now: {leader:?})")]
    TimedOut {
        target: NodeId,
        leader: Option<NodeId>,
    },
}
