//! The control plane's records (`/hermes/_cp/`: users, credentials with their secrets,
//! signing keys) are never readable or writable through the etcd endpoint. Reads that span
//! them answer as if those keys did not exist; writes, compares and transaction reads that
//! touch them are refused with etcd's permission error; watch events for them are dropped.

use std::sync::Arc;

use hermes_storage::mvcc::key_value::{Event, KeyRange};
use hermes_storage::mvcc::request::{Command, RangeRequest, RequestOp, TxnRequest};
use hermes_storage::mvcc::response::RangeResponse;
use hermes_storage::KvStore;

use super::error::{Code, EtcdError};

use hermes_storage::keys::CONTROL_PREFIX;

fn hidden() -> KeyRange {
    KeyRange::prefix(CONTROL_PREFIX.as_bytes().to_vec())
}

pub fn is_hidden(key: &[u8]) -> bool {
    key.starts_with(CONTROL_PREFIX.as_bytes())
}

fn denied() -> EtcdError {
    EtcdError::new(Code::PermissionDenied, "etcdserver: permission denied")
}

fn check_txn(t: &TxnRequest) -> Result<(), EtcdError> {
    if t.compare.iter().any(|c| c.range.overlaps(&hidden())) {
        return Err(denied());
    }
    for op in t.success.iter().chain(&t.failure) {
        let touches = match op {
            RequestOp::Range(r) => r.range.overlaps(&hidden()),
            RequestOp::Put(p) => is_hidden(&p.key),
            RequestOp::DeleteRange(d) => d.range.overlaps(&hidden()),
            RequestOp::Txn(inner) => {
                check_txn(inner)?;
                false
            }
        };
        if touches {
            return Err(denied());
        }
    }
    Ok(())
}

/// Refuses a write that would touch a hidden key.
pub fn check_write(cmd: &Command) -> Result<(), EtcdError> {
    match cmd {
        Command::Put(p) if is_hidden(&p.key) => Err(denied()),
        Command::DeleteRange(d) if d.range.overlaps(&hidden()) => Err(denied()),
        Command::Txn(t) => check_txn(t),
        _ => Ok(()),
    }
}

/// Serves a range without the hidden keys. When the range spans them it is read whole (the
/// store sorts and filters as asked), the hidden keys are dropped, the limit is applied to
/// what is left, and the count leaves out the hidden keys it counted.
pub async fn range(store: &Arc<KvStore>, req: RangeRequest) -> Result<RangeResponse, EtcdError> {
    let hidden = hidden();
    if !req.range.overlaps(&hidden) {
        return Ok(store.range(req).await?);
    }
    let mut resp = store
        .range(RangeRequest {
            limit: 0,
            count_only: false,
            ..req.clone()
        })
        .await?;
    let hidden_count = store
        .range(RangeRequest {
            range: intersection(&req.range, &hidden),
            revision: resp.revision,
            count_only: true,
            serializable: true,
            ..RangeRequest::default()
        })
        .await?
        .count;
    resp.count -= hidden_count;
    resp.kvs.retain(|kv| !is_hidden(&kv.key));
    if req.count_only {
        resp.kvs.clear();
    } else if req.limit > 0 && resp.kvs.len() > req.limit as usize {
        resp.kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    Ok(resp)
}

/// The keys in both ranges; `hidden` is a prefix range, `range` overlaps it.
fn intersection(range: &KeyRange, hidden: &KeyRange) -> KeyRange {
    if range.is_single() {
        return range.clone();
    }
    let key = range.key.clone().max(hidden.key.clone());
    let end = match range.upper() {
        Some(end) if end < hidden.range_end.as_slice() => end.to_vec(),
        _ => hidden.range_end.clone(),
    };
    KeyRange::new(key, end)
}

/// Drops events of hidden keys.
pub fn visible(events: Vec<Event>) -> Vec<Event> {
    events
        .into_iter()
        .filter(|e| !is_hidden(&e.kv.key))
        .collect()
}
