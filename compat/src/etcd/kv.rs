//! The KV service: range, put, delete-range, txn and compaction.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use hermes_storage::mvcc::request::{Command, RangeRequest};
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::mvcc::state::{validate_txn, MAX_TXN_OPS};
use hermes_storage::KvError;

use super::body::read_json;
use super::decode::{self, request_size, Obj, MAX_REQUEST_BYTES};
use super::encode;
use super::error::EtcdError;
use super::Api;

fn reply(result: Result<Value, EtcdError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn unexpected(resp: CommandResponse) -> EtcdError {
    tracing::error!(?resp, "state machine answered with the wrong response kind");
    EtcdError::new(
        super::error::Code::Internal,
        "etcdserver: unexpected response",
    )
}

/// Checks what etcd checks before proposing: size and shape of a write.
fn check_write(cmd: &Command) -> Result<(), EtcdError> {
    if request_size(cmd) > MAX_REQUEST_BYTES {
        return Err(KvError::RequestTooLarge.into());
    }
    match cmd {
        Command::Put(p) if p.key.is_empty() => Err(KvError::EmptyKey.into()),
        Command::DeleteRange(d) if d.range.key.is_empty() => Err(KvError::EmptyKey.into()),
        Command::Txn(t) => validate_txn(t).map_err(EtcdError::from),
        _ => Ok(()),
    }?;
    super::hidden::check_write(cmd)
}

/// Reads that must see every acknowledged write wait for the leader's read index first.
async fn barrier(api: &Api, serializable: bool) -> Result<(), EtcdError> {
    if !serializable {
        api.node.read_barrier().await?;
    }
    Ok(())
}

pub async fn range(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let req: RangeRequest = decode::range_request(&read_json(body).await?)?;
            if req.range.key.is_empty() {
                return Err(KvError::EmptyKey.into());
            }
            barrier(&api, req.serializable).await?;
            let resp = super::hidden::range(api.node.store(), req).await?;
            Ok(encode::range(&api.node.header(resp.revision), &resp))
        }
        .await,
    )
}

pub async fn put(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let cmd = Command::Put(decode::put_request(&read_json(body).await?)?);
            check_write(&cmd)?;
            match api.node.write(cmd).await? {
                CommandResponse::Put(r) => Ok(encode::put(&api.node.header(r.revision), &r)),
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}

pub async fn delete_range(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let cmd = Command::DeleteRange(decode::delete_range_request(&read_json(body).await?)?);
            check_write(&cmd)?;
            match api.node.write(cmd).await? {
                CommandResponse::DeleteRange(r) => {
                    Ok(encode::delete_range(&api.node.header(r.revision), &r))
                }
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}

pub async fn txn(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let req = decode::txn_request(&read_json(body).await?)?;
            if req.compare.len() > MAX_TXN_OPS {
                return Err(KvError::TooManyOps.into());
            }
            let cmd = Command::Txn(req);
            check_write(&cmd)?;
            // Every transaction goes through raft, even one that only reads: compares and reads
            // are then evaluated atomically at one linearizable point, and a read-only
            // transaction creates no revision.
            match api.node.write(cmd).await? {
                CommandResponse::Txn(r) => Ok(encode::txn(&api.node.header(r.revision), &r)),
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}

pub async fn compact(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(
                &v,
                "etcdserverpb.CompactionRequest",
                &["revision", "physical"],
            )?;
            let revision = o.i64("revision")?;
            o.bool("physical")?;
            match api.node.write(Command::Compact { revision }).await? {
                CommandResponse::Compact(r) => {
                    Ok(encode::header_only(&api.node.header(r.revision)))
                }
                other => Err(unexpected(other)),
            }
        }
        .await,
    )
}
