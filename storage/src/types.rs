//! The openraft type configuration shared by every crate: what a log entry carries, what
//! applying it returns, and what the cluster knows about a member.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::mvcc::request::Command;
use crate::mvcc::response::CommandResponse;

/// What the replicated membership records about a node: where its peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Member {
    /// Base URL of the node's peer listener, e.g. `http://10.0.0.1:9081`.
    pub peer_url: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.peer_url)
    }
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The raft types of a Hermes cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type Vote = openraft::Vote<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
