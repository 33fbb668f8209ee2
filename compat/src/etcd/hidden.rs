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

/// The same prefix as `hermes_control::replicated::keys::CONTROL_PREFIX` (compat does not
/// depend on the control crate); the process tests check the endpoint hides it.
pub const HIDDEN_PREFIX: &[u8] = b"/hermes/_cp/";

fn hidden() -> KeyRange {
    KeyRange::prefix(HIDDEN_PREFIX.to_vec())
}

pub fn is_hidden(key: &[u8]) -> bool {
    key.starts_with(HIDDEN_PREFIX)
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

/// Serves a range without the hidden keys: the request is split around them, so limits,
/// counts and `more` stay exact.
pub async fn range(store: &Arc<KvStore>, req: RangeRequest) -> Result<RangeResponse, EtcdError> {
    if !req.range.overlaps(&hidden()) {
        return Ok(store.range(req).await?);
    }
    if req.range.is_single() {
        let resp = store.range(RangeRequest {
            count_only: true,
            ..req
        });
        let revision = resp.await?.revision;
        return Ok(RangeResponse {
            revision,
            ..RangeResponse::default()
        });
    }
    let hidden = hidden();
    let mut parts = Vec::new();
    if req.range.key.as_slice() < HIDDEN_PREFIX {
        parts.push(KeyRange::new(req.range.key.clone(), HIDDEN_PREFIX.to_vec()));
    }
    let after = hidden.range_end.clone();
    if req.range.upper().is_none_or(|end| end > after.as_slice()) {
        parts.push(KeyRange::new(after, req.range.range_end.clone()));
    }
    let mut merged = RangeResponse::default();
    let mut all = Vec::new();
    for part in parts {
        let resp = store
            .range(RangeRequest {
                range: part,
                limit: 0,
                ..req.clone()
            })
            .await?;
        merged.revision = resp.revision;
        merged.count += resp.count;
        all.extend(resp.kvs);
    }
    if !req.count_only {
        // Each part came back in the requested order; order across parts again.
        resort(&req, &mut all);
        if req.limit > 0 && all.len() > req.limit as usize {
            all.truncate(req.limit as usize);
            merged.more = true;
        }
    }
    merged.kvs = all;
    Ok(merged)
}

fn resort(req: &RangeRequest, kvs: &mut [hermes_storage::mvcc::key_value::KeyValue]) {
    use hermes_storage::mvcc::request::{SortOrder, SortTarget};
    let order = match (req.sort_order, req.sort_target) {
        (SortOrder::None, SortTarget::Key) => SortOrder::Ascend,
        (SortOrder::None, _) => SortOrder::Ascend,
        (o, _) => o,
    };
    kvs.sort_by(|a, b| {
        let ord = match req.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version).then(a.key.cmp(&b.key)),
            SortTarget::Create => a
                .create_revision
                .cmp(&b.create_revision)
                .then(a.key.cmp(&b.key)),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision).then(a.key.cmp(&b.key)),
            SortTarget::Value => a.value.cmp(&b.value).then(a.key.cmp(&b.key)),
        };
        if order == SortOrder::Descend {
            ord.reverse()
        } else {
            ord
        }
    });
}

/// Drops events of hidden keys.
pub fn visible(events: Vec<Event>) -> Vec<Event> {
    events
        .into_iter()
        .filter(|e| !is_hidden(&e.kv.key))
        .collect()
}
