//! The Lease service: grant, revoke, keep-alive (a stream of requests, one answer line each),
//! time-to-live and the lease list.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::body::{read_json, JsonStream};
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::Api;

fn reply(result: Result<Value, EtcdError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn grant(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseGrantRequest", &["TTL", "ID"])?;
            let (ttl, id) = (o.i64("TTL")?, o.i64("ID")?);
            if id < 0 {
                return Err(EtcdError::invalid(
                    "etcdserverpb.LeaseGrantRequest.ID: must not be negative",
                ));
            }
            let r = api.node.lease_grant(id, ttl).await?;
            Ok(Out::new()
                .value("header", encode::header(&api.node.header(r.revision)))
                .int("ID", r.id)
                .int("TTL", r.ttl)
                .build())
        }
        .await,
    )
}

pub async fn revoke(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseRevokeRequest", &["ID"])?;
            let revision = api.node.lease_revoke(o.i64("ID")?).await?;
            Ok(encode::header_only(&api.node.header(revision)))
        }
        .await,
    )
}

async fn keepalive_one(api: &Api, v: Value) -> Result<Value, EtcdError> {
    let o = Obj::new(&v, "etcdserverpb.LeaseKeepAliveRequest", &["ID"])?;
    let id = o.i64("ID")?;
    let ttl = api.node.lease_keepalive(id).await?;
    Ok(Out::new()
        .value(
            "header",
            encode::header(&api.node.header(api.node.store().revision())),
        )
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

pub async fn time_to_live(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.LeaseTimeToLiveRequest", &["ID", "keys"])?;
            let (id, with_keys) = (o.i64("ID")?, o.bool("keys")?);
            let ttl = api.node.lease_time_to_live(id).await?;
            let header = encode::header(&api.node.header(api.node.store().revision()));
            let out = Out::new().value("header", header).int("ID", id);
            Ok(match ttl {
                // etcd answers an unknown lease with TTL -1 rather than an error.
                None => out.int("TTL", -1).build(),
                Some(ttl) => {
                    let keys = if with_keys {
                        api.node
                            .store()
                            .lease(id)
                            .map(|(_, k)| k)
                            .unwrap_or_default()
                    } else {
                        Vec::new()
                    };
                    out.int("TTL", ttl.remaining)
                        .int("grantedTTL", ttl.granted)
                        .list(
                            "keys",
                            keys.iter().map(|k| {
                                Value::String(base64::Engine::encode(
                                    &base64::engine::general_purpose::STANDARD,
                                    k,
                                ))
                            }),
                        )
                        .build()
                }
            })
        }
        .await,
    )
}

pub async fn leases(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            Obj::new(&v, "etcdserverpb.LeaseLeasesRequest", &[])?;
            api.node.read_barrier().await?;
            let store = api.node.store();
            let leases = store.leases();
            Ok(Out::new()
                .value("header", encode::header(&api.node.header(store.revision())))
                .list(
                    "leases",
                    leases
                        .iter()
                        .map(|(id, _)| Out::new().int("ID", *id).build()),
                )
                .build())
        }
        .await,
    )
}
