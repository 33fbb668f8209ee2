//! The key patterns behind etcd's v3election and v3lock services, run on the server: a
//! contender's key is `<name>/<lease id in hex>`, put with the lease if it does not exist; the
//! contender with the oldest key (lowest create revision) holds the lock or leads, and each
//! other contender waits for the deletion of the one created just before it. Every read and
//! write goes through [`crate::etcd::service`] with the caller's own rights, as etcd's server
//! runs these calls with the client's credentials; the services check the rights on the whole
//! name first ([`check`]), so that a caller without them is refused before any key is made.

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    SortOrder, SortTarget, TxnRequest,
};
use hermes_storage::mvcc::response::ResponseOp;
use hermes_storage::watch::{WatchItem, WatchOptions, Watcher};
use hermes_storage::{EventType, KeyValue};

use hermes_raft::Header;

use crate::etcd::error::{Code, EtcdError};
use crate::etcd::rbac::Caller;
use crate::etcd::Api;

/// A leader key a client hands back (Proclaim, Resign) must be a contender key of the name it
/// claims: the calls below run with full rights, so a key elsewhere would let a caller who
/// holds the name write or delete any key.
pub fn check_leader_key(who: &Caller, name: &[u8], key: &[u8]) -> Result<(), EtcdError> {
    check(who, name, true)?;
    if !key.starts_with(&prefix(name)) {
        return Err(crate::etcd::rbac::perms::denied());
    }
    Ok(())
}

/// What etcd's client-side pattern needs on a name: read and write on every contender key.
pub fn check(who: &Caller, name: &[u8], write: bool) -> Result<(), EtcdError> {
    let p = prefix(name);
    let end = hermes_storage::mvcc::key_value::prefix_end(&p);
    who.read(&p, &end)?;
    if write {
        who.write(&p, &end)?;
    }
    Ok(())
}

/// The key prefix of every contender for `name`.
pub fn prefix(name: &[u8]) -> Vec<u8> {
    let mut p = name.to_vec();
    p.push(b'/');
    p
}

/// A contender's key: the prefix and its lease id in lowercase hex, as etcd's clients make it.
pub fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

fn single(key: &[u8]) -> KeyRange {
    KeyRange::new(key.to_vec(), Vec::new())
}

fn get(key: &[u8]) -> RequestOp {
    RequestOp::Range(RangeRequest {
        range: single(key),
        ..RangeRequest::default()
    })
}

fn missing_key() -> EtcdError {
    EtcdError::new(Code::Internal, "etcdserver: contender key vanished")
}

/// Creates `key` with `value` and `lease` unless it exists; answers the key as stored and
/// whether this call created it.
pub async fn create_or_get(
    api: &Api,
    who: &Caller,
    key: &[u8],
    value: &[u8],
    lease: i64,
) -> Result<(KeyValue, bool), EtcdError> {
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Create(0),
            range: single(key),
        }],
        success: vec![
            RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..PutRequest::default()
            }),
            get(key),
        ],
        failure: vec![get(key)],
    };
    let (_, resp) = api.txn(who, txn).await?;
    let kv = match resp.responses.last() {
        Some(ResponseOp::Range(r)) => r.kvs.first().cloned(),
        _ => None,
    };
    Ok((kv.ok_or_else(missing_key)?, resp.succeeded))
}

/// Puts `value` on `key` only while `key` still has create revision `rev`; false if not.
pub async fn put_if_created_at(
    api: &Api,
    who: &Caller,
    key: &[u8],
    rev: i64,
    value: &[u8],
    lease: i64,
) -> Result<(Header, bool), EtcdError> {
    let txn = TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![RequestOp::Put(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..PutRequest::default()
        })],
        failure: Vec::new(),
    };
    let (h, resp) = api.txn(who, txn).await?;
    Ok((h, resp.succeeded))
}

/// Deletes `key` only while it has create revision `rev`.
pub async fn delete_if_created_at(
    api: &Api,
    who: &Caller,
    key: &[u8],
    rev: i64,
) -> Result<Header, EtcdError> {
    let txn = TxnRequest {
        compare: vec![created_at(key, rev)],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            range: single(key),
            prev_kv: false,
        })],
        failure: Vec::new(),
    };
    Ok(api.txn(who, txn).await?.0)
}

fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(rev),
        range: single(key),
    }
}

/// The oldest contender for `prefix` (the holder), or the newest one created at or before
/// `max_create` when given.
pub async fn contender(
    api: &Api,
    who: &Caller,
    prefix: &[u8],
    max_create: Option<i64>,
) -> Result<(Header, Option<KeyValue>), EtcdError> {
    let (h, resp) = api
        .range(
            who,
            RangeRequest {
                range: KeyRange::prefix(prefix.to_vec()),
                limit: 1,
                sort_target: SortTarget::Create,
                sort_order: if max_create.is_some() {
                    SortOrder::Descend
                } else {
                    SortOrder::Ascend
                },
                max_create_revision: max_create.unwrap_or(0),
                ..RangeRequest::default()
            },
        )
        .await?;
    Ok((h, resp.kvs.into_iter().next()))
}

/// `key` itself, if it exists.
pub async fn get_key(
    api: &Api,
    who: &Caller,
    key: &[u8],
) -> Result<(Header, Option<KeyValue>), EtcdError> {
    let (h, resp) = api
        .range(
            who,
            RangeRequest {
                range: single(key),
                ..RangeRequest::default()
            },
        )
        .await?;
    Ok((h, resp.kvs.into_iter().next()))
}

/// Waits until no contender for `prefix` created before `rev` is left.
pub async fn wait_for_older(
    api: &Api,
    who: &Caller,
    prefix: &[u8],
    rev: i64,
) -> Result<(), EtcdError> {
    // One place in the node's watcher budget for the whole wait, taken when a wait is needed:
    // a contender already queued is not refused later because one ahead of it left.
    let mut slot = None;
    loop {
        let (h, older) = contender(api, who, prefix, Some(rev - 1)).await?;
        let Some(older) = older else {
            return Ok(());
        };
        if slot.is_none() {
            slot = Some(api.watcher_slot()?);
        }
        wait_delete(api, &older.key, h.revision + 1).await?;
    }
}

/// Waits for a deletion of `key` at or after revision `from`. History compacted away ends the
/// wait too: the caller reads again. The caller holds a place in the watcher budget for it.
async fn wait_delete(api: &Api, key: &[u8], from: i64) -> Result<(), EtcdError> {
    let mut watcher = Watcher::new(
        api.node.store().clone(),
        WatchOptions {
            range: single(key),
            start_revision: from,
            filter_put: true,
            ..WatchOptions::default()
        },
    );
    let mut shutdown = api.shutdown.clone();
    loop {
        let item = tokio::select! {
            item = watcher.next() => item?,
            _ = shutdown.changed() => {
                return Err(EtcdError::new(Code::Unavailable, "etcdserver: server stopped"))
            }
        };
        match item {
            WatchItem::Events(events) => {
                if events.iter().any(|e| e.kind == EventType::Delete) {
                    return Ok(());
                }
            }
            WatchItem::Compacted { .. } => return Ok(()),
        }
    }
}

/// Deletes a contender's key if the call that created it ends before it is done (the client
/// gave up or went away), as etcd's clients clean up after a cancelled campaign or lock.
pub struct Abandon {
    api: Api,
    who: Caller,
    key: Vec<u8>,
    rev: i64,
    armed: bool,
}

impl Abandon {
    pub fn new(api: &Api, who: &Caller, key: &[u8], rev: i64) -> Abandon {
        Abandon {
            api: api.clone(),
            who: who.clone(),
            key: key.to_vec(),
            rev,
            armed: true,
        }
    }

    /// The call finished: keep the key.
    pub fn keep(mut self) {
        self.armed = false;
    }

    /// The call failed: remove the key before the error is answered, so that the client's next
    /// read or retry does not find it (dropping the guard only schedules the removal). Cancelled
    /// midway, the guard is still armed and schedules it as on any drop.
    pub async fn remove_now(mut self) {
        let removed = delete_if_created_at(&self.api, &self.who, &self.key, self.rev).await;
        self.armed = false;
        if let Err(e) = removed {
            tracing::warn!(error = %e.message, "could not remove a failed contender's key");
        }
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (api, who) = (self.api.clone(), self.who.clone());
        let (key, rev) = (std::mem::take(&mut self.key), self.rev);
        runtime.spawn(async move {
            if let Err(e) = delete_if_created_at(&api, &who, &key, rev).await {
                tracing::warn!(error = %e.message, "could not remove an abandoned contender key");
            }
        });
    }
}
