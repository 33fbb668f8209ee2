//! Messages between nodes beyond raft's own: forwarded writes and reads, lease renewals,
//! membership changes, leadership transfer, and the status a node reports about itself.

use serde::{Deserialize, Serialize};

use hermes_storage::types::NodeId;

pub const PATH_WRITE: &str = "/peer/write";
pub const PATH_READ_INDEX: &str = "/peer/read-index";
pub const PATH_LEASE_KEEPALIVE: &str = "/peer/lease/keepalive";
pub const PATH_LEASE_TTL: &str = "/peer/lease/ttl";
pub const PATH_MEMBERSHIP: &str = "/peer/membership";
pub const PATH_INFO: &str = "/peer/info";
/// To the leader: hand leadership to the given node.
pub const PATH_TRANSFER_LEADER: &str = "/peer/transfer-leader";
/// To a transfer's target: campaign now.
pub const PATH_CAMPAIGN: &str = "/peer/campaign";

/// Why a node could not do what another node forwarded to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("node is not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Invalid(String),
    /// The leader's store is over its quota (etcd's NOSPACE alarm).
    #[error("database space exceeded: {size} bytes of a {quota}-byte quota")]
    NoSpace { size: u64, quota: u64 },
}

/// A membership change, executed by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add as learner (no vote) and return at once.
    AddLearner { id: NodeId, peer_url: String },
    /// Make a learner a voter.
    Promote { id: NodeId },
    /// Remove a voter or learner entirely.
    Remove { id: NodeId },
    /// Add as learner, wait until it has caught up, then promote: what `--join` does.
    Join { id: NodeId, peer_url: String },
}

/// What a node says about itself, for `hermes status` and member lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeInfo {
    pub id: NodeId,
    pub version: String,
    pub peer_url: String,
    pub admin_url: String,
    pub etcd_url: Option<String>,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub db_size: u64,
    /// For a leader: milliseconds since a quorum last acknowledged it.
    pub quorum_ack_age_ms: Option<u64>,
}
