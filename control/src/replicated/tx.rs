//! One control-plane write as a store transaction: compares that pin what was read, and the
//! puts and deletes that follow from it. All of it applies, on every node, or none of it.

use hermes_raft::RaftNode;
use hermes_storage::mvcc::key_value::{prefix_end, KeyRange, KeyValue};
use hermes_storage::mvcc::request::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RequestOp,
    TxnRequest,
};
use hermes_storage::mvcc::response::CommandResponse;

use crate::store::{ControlError, Result};

#[derive(Debug, Default)]
pub struct Tx {
    compares: Vec<Compare>,
    ops: Vec<RequestOp>,
}

impl Tx {
    /// The transaction applies only if `key` is still as it was read (`None`: absent).
    pub fn pin(&mut self, key: &str, seen: Option<&KeyValue>) {
        self.compares.push(Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(seen.map_or(0, |kv| kv.mod_revision)),
            range: KeyRange::new(key.as_bytes().to_vec(), Vec::new()),
        });
    }

    pub fn put(&mut self, key: &str, value: Vec<u8>) {
        self.ops.push(RequestOp::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..PutRequest::default()
        }));
    }

    pub fn delete(&mut self, key: &str) {
        self.ops.push(RequestOp::DeleteRange(DeleteRangeRequest {
            range: KeyRange::new(key.as_bytes().to_vec(), Vec::new()),
            prev_kv: false,
        }));
    }

    /// Deletes keys in `[from, to)`.
    pub fn delete_range(&mut self, from: &str, to: &str) {
        self.ops.push(RequestOp::DeleteRange(DeleteRangeRequest {
            range: KeyRange::new(from.as_bytes().to_vec(), to.as_bytes().to_vec()),
            prev_kv: false,
        }));
    }

    pub fn delete_prefix(&mut self, prefix: &str) {
        self.ops.push(RequestOp::DeleteRange(DeleteRangeRequest {
            range: KeyRange::new(prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes())),
            prev_kv: false,
        }));
    }

    /// Proposes the transaction: the store revision it was applied at, or `None` when a pinned
    /// key had changed (nothing was written). An empty transaction writes nothing and answers
    /// the current revision.
    pub async fn commit(self, node: &RaftNode) -> Result<Option<i64>> {
        if self.ops.is_empty() {
            return Ok(Some(node.store().revision()));
        }
        let cmd = Command::Txn(TxnRequest {
            compare: self.compares,
            success: self.ops,
            failure: Vec::new(),
        });
        match node.write(cmd).await? {
            CommandResponse::Txn(r) => Ok(r.succeeded.then_some(r.revision)),
            other => Err(ControlError::Internal(format!(
                "the store answered a transaction with {other:?}"
            ))),
        }
    }
}
