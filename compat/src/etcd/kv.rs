//! The KV service over JSON: range, put, delete-range, txn and compaction.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use super::body::read_json;
use super::decode::{self, Obj};
use super::encode;
use super::rbac::Caller;
use super::Api;

pub async fn range(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let req = decode::range_request(&read_json(body).await?)?;
            let (header, resp) = api.range(&who, req).await?;
            Ok(encode::range(&header, &resp))
        }
        .await,
    )
}

pub async fn put(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let req = decode::put_request(&read_json(body).await?)?;
            let (header, resp) = api.put(&who, req).await?;
            Ok(encode::put(&header, &resp))
        }
        .await,
    )
}

pub async fn delete_range(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let req = decode::delete_range_request(&read_json(body).await?)?;
            let (header, resp) = api.delete_range(&who, req).await?;
            Ok(encode::delete_range(&header, &resp))
        }
        .await,
    )
}

pub async fn txn(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let req = decode::txn_request(&read_json(body).await?)?;
            let (header, resp) = api.txn(&who, req).await?;
            Ok(encode::txn(&header, &resp))
        }
        .await,
    )
}

pub async fn compact(State(api): State<Api>, body: Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(
                &v,
                "etcdserverpb.CompactionRequest",
                &["revision", "physical"],
            )?;
            let revision = o.i64("revision")?;
            o.bool("physical")?;
            Ok(encode::header_only(&api.compact(revision).await?))
        }
        .await,
    )
}
