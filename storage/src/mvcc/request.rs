//! Requests to the MVCC store, shaped like etcd's `etcdserverpb` messages. Writes travel through
//! raft as [`Command`]s; reads ([`RangeRequest`]) are served from local state.

use serde::{Deserialize, Serialize};

use super::key_value::KeyRange;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortOrder {
    #[default]
    None,
    Ascend,
    Descend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortTarget {
    #[default]
    Key,
    Version,
    Create,
    Mod,
    Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RangeRequest {
    pub range: KeyRange,
    /// Maximum keys returned; 0 = no limit.
    pub limit: i64,
    /// Read the store as of this revision; 0 or less = current.
    pub revision: i64,
    pub sort_order: SortOrder,
    pub sort_target: SortTarget,
    /// Serve from local state without confirming leadership.
    pub serializable: bool,
    pub keys_only: bool,
    pub count_only: bool,
    pub min_mod_revision: i64,
    pub max_mod_revision: i64,
    pub min_create_revision: i64,
    pub max_create_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PutRequest {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub lease: i64,
    pub prev_kv: bool,
    /// Keep the current value (the key must exist).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist).
    pub ignore_lease: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeleteRangeRequest {
    pub range: KeyRange,
    pub prev_kv: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// What a compare looks at, with the value it is compared against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Version(i64),
    Create(i64),
    Mod(i64),
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    Lease(i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub result: CompareResult,
    pub target: CompareTarget,
    /// Every key in the range must satisfy the compare.
    pub range: KeyRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// A write, replicated through raft and applied by every node in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(TxnRequest),
    /// `id` is chosen by the proposer (never 0 here) so every replica agrees on it.
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    Compact {
        revision: i64,
    },
    /// Several writes proposed together: one log entry and one fsync for all of them. Each is
    /// applied in order exactly as if proposed alone, with its own revision and its own answer.
    Batch(Vec<Command>),
}

impl Command {
    /// Whether applying this command may read values of past revisions (a transaction with a
    /// historical range), which means a disk read while applying.
    pub fn reads_history(&self) -> bool {
        fn txn(t: &TxnRequest) -> bool {
            t.success.iter().chain(&t.failure).any(|op| match op {
                RequestOp::Range(r) => r.revision > 0,
                RequestOp::Txn(t) => txn(t),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => false,
            })
        }
        match self {
            Command::Txn(t) => txn(t),
            Command::Batch(cmds) => cmds.iter().any(Command::reads_history),
            _ => false,
        }
    }

    /// Whether applying this command can make the store bigger (a put, a transaction that
    /// puts, a lease): what a store over its quota refuses, while deletes and compactions,
    /// which free space, go through.
    pub fn grows(&self) -> bool {
        fn op(o: &RequestOp) -> bool {
            match o {
                RequestOp::Put(_) => true,
                RequestOp::Txn(t) => t.success.iter().chain(&t.failure).any(op),
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => false,
            }
        }
        match self {
            Command::Put(_) | Command::LeaseGrant { .. } => true,
            Command::Txn(t) => t.success.iter().chain(&t.failure).any(op),
            Command::Batch(cmds) => cmds.iter().any(Command::grows),
            _ => false,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Put(_) => "put",
            Command::DeleteRange(_) => "delete_range",
            Command::Txn(_) => "txn",
            Command::LeaseGrant { .. } => "lease_grant",
            Command::LeaseRevoke { .. } => "lease_revoke",
            Command::Compact { .. } => "compact",
            Command::Batch(_) => "batch",
        }
    }
}
