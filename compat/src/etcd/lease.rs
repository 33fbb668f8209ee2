//! The Lease service: grant, revoke, keep-alive (a stream of requests, one answer line each),
//! time-to-live and the lease list.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::body::{read_json, JsonStream};
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::rbac::Caller;
use super::Api;

pub async fn grant(State(api): State<Api>, body: Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseGrantRequest", &["TTL", "ID"])?;
            let (ttl, id) = (o.i64("TTL")?, o.i64("ID")?);
            let (header, r) = api.lease_grant(id, ttl).await?;
            Ok(Out::new()
                .value("header", encode::header(&header))
                .int("ID", r.id)
                .int("TTL", r.ttl)
                .build())
        }
        .await,
    )
}

pub async fn revoke(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseRevokeRequest", &["ID"])?;
            Ok(encode::header_only(
                &api.lease_revoke(&who, o.i64("ID")?).await?,
            ))
        }
        .await,
    )
}

async fn keepalive_one(api: &Api, v: Value) -> Result<Value, EtcdError> {
    let o = Obj::new(&v, "etcdserverpb.LeaseKeepAliveRequest", &["ID"])?;
    let id = o.i64("ID")?;
    let (header, ttl) = api.lease_keepalive(id).await?;
    Ok(Out::new()
        .value("header", encode::header(&header))
        .int("ID", id)
        .int("TTL", ttl)
        .build())
}

/// Answers each request object of the body with one line, as they arrive; ends with the body.
pub async fn keepalive(State(api): State<Api>, body: Body) -> Response {
    let mut requests = JsonStream::new(body);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let mut shutdown = api.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                next = requests.next() => next,
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
            };
            let line = match next {
                None => return,
                Some(Ok(v)) => match keepalive_one(&api, v).await {
                    Ok(result) => encode::stream_line(result),
                    Err(e) => encode::stream_error_line(&e),
                },
                Some(Err(e)) => {
                    let _ = tx.send(encode::stream_error_line(&e)).await;
                    return;
                }
            };
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    super::stream_response(rx)
}

pub async fn time_to_live(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseTimeToLiveRequest", &["ID", "keys"])?;
            let (id, with_keys) = (o.i64("ID")?, o.bool("keys")?);
            let (header, t) = api.lease_time_to_live(&who, id, with_keys).await?;
            let out = Out::new()
                .value("header", encode::header(&header))
                .int("ID", t.id)
                .int("TTL", t.ttl)
                .int("grantedTTL", t.granted_ttl);
            let keys = t.keys.iter().map(|k| {
                Value::String(base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    k,
                ))
            });
            Ok(out.list("keys", keys).build())
        }
        .await,
    )
}

pub async fn leases(State(api): State<Api>, body: Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            Obj::new(&v, "etcdserverpb.LeaseLeasesRequest", &[])?;
            let (header, ids) = api.leases().await?;
            Ok(Out::new()
                .value("header", encode::header(&header))
                .list(
                    "leases",
                    ids.iter().map(|id| Out::new().int("ID", *id).build()),
                )
                .build())
        }
        .await,
    )
}
