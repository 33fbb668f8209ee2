//! `/api/v1/cluster/...`: membership, leadership, backups and status, for `hermes member`, `hermes status`,
//! `--join` and the console. Reads are open like `/metrics`; changes require a request signed
//! with the cluster secret (the same scheme as peer traffic), or, on a cluster without a
//! secret, a direct loopback client (not one that came through a proxy). Adding, promoting,
//! removing a member, moving the leader and taking a backup is also open to the session of an admin (the console's cluster page):
//! an admin already holds every namespace, user and credential; a signed-in person who is not
//! one is refused (403), and a credential's HMAC signature never counts. Joining stays with
//! the node that joins.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use hermes_raft::peer_auth::HEADER;
use hermes_raft::peer_proto::MembershipChange;

use super::AdminState;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    id: u64,
    peer_url: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

fn authorize(
    state: &AdminState,
    client: SocketAddr,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(), ApiError> {
    let auth = state.raft()?.peers().auth();
    if !auth.enabled() {
        // A loopback peer that came through a proxy (this node's own, say) is not local.
        if crate::is_direct_local(&client, headers) {
            return Ok(());
        }
        return Err(ApiError::unauthorized(
            "membership changes on a cluster without a cluster secret are accepted only from \
             a direct loopback client",
        ));
    }
    let header = headers.get(HEADER).and_then(|v| v.to_str().ok());
    let signed = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    // Signed for any audience: see `hermes_raft::peer_auth`.
    auth.verify(method, signed, "", header, body)
        .map_err(|e| ApiError::unauthorized(e.to_string()))
}

/// `authorize`, or the session of an admin for the changes the console makes.
async fn authorize_change(
    state: &AdminState,
    client: SocketAddr,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(), ApiError> {
    match crate::caller::session_admin(&state.api, headers).await? {
        Some(true) => {
            tracing::info!(%method, path = uri.path(), "membership change by an admin session");
            Ok(())
        }
        Some(false) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "membership changes need an admin",
        )),
        None => authorize(state, client, headers, method, uri, body),
    }
}

fn parse_member(body: &[u8]) -> Result<MemberBody, ApiError> {
    let member: MemberBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid member: {e}")))?;
    if member.id == 0 {
        return Err(ApiError::bad_request("id: must be a positive integer"));
    }
    if !member.peer_url.starts_with("http://") {
        return Err(ApiError::bad_request("peer_url: must be an http:// URL"));
    }
    Ok(member)
}

pub async fn list(State(state): State<AdminState>) -> Result<Response, ApiError> {
    Ok(Json(json!({"members": state.raft()?.members().await})).into_response())
}

pub async fn status(State(state): State<AdminState>) -> Result<Response, ApiError> {
    let info = state.raft()?.info();
    let members = state.raft()?.members().await;
    let checks: serde_json::Map<String, serde_json::Value> = super::health::checks(&state)
        .into_iter()
        .map(|(name, r)| {
            (
                name.to_string(),
                json!(r.err().unwrap_or_else(|| "ok".into())),
            )
        })
        .collect();
    let voters = members.iter().filter(|m| m.voter).count();
    let healthy_voters = members
        .iter()
        .filter(|m| m.voter && m.info.is_some())
        .count();
    let health = if info.leader.is_none() || healthy_voters < voters / 2 + 1 {
        "unavailable: no quorum"
    } else if healthy_voters < voters {
        "degraded: some members are unreachable"
    } else {
        "healthy"
    };
    Ok(Json(json!({
        "health": health,
        "node": info,
        "checks": checks,
        "members": members,
    }))
    .into_response())
}

pub async fn add(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_change(&state, client, &headers, "POST", &uri, &body).await?;
    let m = parse_member(&body)?;
    state
        .raft()?
        .change_membership(
            MembershipChange::AddLearner {
                id: m.id,
                peer_url: m.peer_url,
            },
            false,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"added": m.id, "voter": false})),
    )
        .into_response())
}

pub async fn join(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, client, &headers, "POST", &uri, &body)?;
    let m = parse_member(&body)?;
    tracing::info!(node = m.id, peer_url = %m.peer_url, "node asks to join");
    state
        .raft()?
        .change_membership(
            MembershipChange::Join {
                id: m.id,
                peer_url: m.peer_url,
            },
            false,
        )
        .await?;
    Ok(Json(json!({"joined": m.id, "voter": true})).into_response())
}

pub async fn promote(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<u64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_change(&state, client, &headers, "POST", &uri, &body).await?;
    state
        .raft()?
        .change_membership(MembershipChange::Promote { id }, false)
        .await?;
    Ok(Json(json!({"promoted": id})).into_response())
}

pub async fn remove(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<u64>,
    Query(query): Query<RemoveQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_change(&state, client, &headers, "DELETE", &uri, &body).await?;
    state
        .raft()?
        .change_membership(MembershipChange::Remove { id }, query.force)
        .await?;
    Ok(Json(json!({"removed": id})).into_response())
}

/// Makes member `id` the raft leader (before restarting the current leader, say): writes and
/// reads that reach the old leader meanwhile wait for the new one rather than fail.
pub async fn lead(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<u64>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_change(&state, client, &headers, "POST", &uri, &body).await?;
    state.raft()?.transfer_leader(id).await?;
    Ok(Json(json!({"leader": id})).into_response())
}

/// A backup of the whole store (`hermes snapshot save`), control plane included: sealed
/// secrets and password hashes, so it is for those who may change the membership. It holds
/// every write acknowledged before the request.
pub async fn snapshot(
    State(state): State<AdminState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize_change(&state, client, &headers, "GET", &uri, &body).await?;
    state.raft()?.read_barrier().await?;
    let bytes = state
        .raft()?
        .store()
        .read_whole(|s| s.backup(None))
        .await
        .map_err(|e| ApiError::internal(format!("taking the backup: {e}")))?;
    tracing::info!(bytes = bytes.len(), "backup taken");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/octet-stream"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"hermes.backup\"",
            ),
        ],
        bytes,
    )
        .into_response())
}
