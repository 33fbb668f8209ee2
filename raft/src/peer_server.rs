//! The peer listener: raft RPCs and the forwarding endpoints of [`peer_proto`](crate::peer_proto).
//! Every request must carry a valid cluster-secret signature when a secret is configured.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use hermes_storage::codec;
use hermes_storage::mvcc::request::Command;
use hermes_storage::types::{NodeId, TypeConfig};

use crate::batcher::{to_forwarded, ForwardedAnswer};
use crate::error::MembershipError;
use crate::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::node::RaftNode;
use crate::peer_auth::HEADER;
use crate::peer_client::CONTENT_TYPE;
use crate::peer_proto::*;

/// Largest peer request body: 64 entries of up to 1.5 MiB plus framing, or a snapshot chunk.
const MAX_PEER_BODY: usize = 128 * 1024 * 1024;

type Node = Arc<RaftNode>;

/// A request body whose signature checked out, decoded.
struct Peer<T>(T);

impl<T: DeserializeOwned> FromRequest<Node> for Peer<T> {
    type Rejection = Response;

    async fn from_request(req: Request, node: &Node) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_string();
        let header = req
            .headers()
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = Bytes::from_request(req, node)
            .await
            .map_err(IntoResponse::into_response)?;
        if let Err(e) = node
            .peers
            .auth()
            .verify("POST", &path, header.as_deref(), &body)
        {
            tracing::warn!(%path, error = %e, "rejected unauthenticated peer request");
            return Err((StatusCode::UNAUTHORIZED, e.to_string()).into_response());
        }
        codec::decode(&body).map(Peer).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                format!("undecodable peer request: {e}"),
            )
                .into_response()
        })
    }
}

/// A postcard-encoded answer.
struct Encoded<T>(T);

impl<T: Serialize> IntoResponse for Encoded<T> {
    fn into_response(self) -> Response {
        match codec::encode(&self.0) {
            Ok(bytes) => {
                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], bytes).into_response()
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
}

pub fn router(node: Node) -> Router {
    Router::new()
        .route(PATH_APPEND, post(append))
        .route(PATH_VOTE, post(vote))
        .route(PATH_SNAPSHOT, post(snapshot))
        .route(PATH_WRITE, post(write))
        .route(PATH_READ_INDEX, post(read_index))
        .route(PATH_LEASE_KEEPALIVE, post(lease_keepalive))
        .route(PATH_LEASE_TTL, post(lease_ttl))
        .route(PATH_MEMBERSHIP, post(membership))
        .route(PATH_INFO, post(info))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY))
        .with_state(node)
}

/// Serves the peer listener until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn append(
    State(node): State<Node>,
    Peer(req): Peer<AppendEntriesRequest<TypeConfig>>,
) -> impl IntoResponse {
    Encoded(node.raft.append_entries(req).await)
}

async fn vote(State(node): State<Node>, Peer(req): Peer<VoteRequest<NodeId>>) -> impl IntoResponse {
    Encoded(node.raft.vote(req).await)
}

async fn snapshot(
    State(node): State<Node>,
    Peer(req): Peer<InstallSnapshotRequest<TypeConfig>>,
) -> impl IntoResponse {
    Encoded(node.raft.install_snapshot(req).await)
}

/// Writes forwarded by a follower's batcher: each joins this leader's own batcher (so that
/// writes from every node share proposals), and each gets its own answer.
async fn write(State(node): State<Node>, Peer(cmds): Peer<Vec<Command>>) -> impl IntoResponse {
    if !node.is_leader() {
        return Encoded(Err(ForwardError::NotLeader {
            leader: node.current_leader(),
        }));
    }
    let deadline = std::time::Instant::now() + node.config.request_timeout;
    let answers: Vec<ForwardedAnswer> = futures_util::future::join_all(
        cmds.into_iter().map(|cmd| node.submit(cmd, true, deadline)),
    )
    .await
    .into_iter()
    .map(to_forwarded)
    .collect();
    Encoded(Ok(answers))
}

async fn read_index(State(node): State<Node>, Peer(()): Peer<()>) -> impl IntoResponse {
    Encoded(node.read_index_as_leader().await)
}

async fn lease_keepalive(State(node): State<Node>, Peer(id): Peer<i64>) -> impl IntoResponse {
    Encoded(node.keepalive_as_leader(id))
}

async fn lease_ttl(State(node): State<Node>, Peer(id): Peer<i64>) -> impl IntoResponse {
    Encoded(node.ttl_as_leader(id))
}

async fn membership(
    State(node): State<Node>,
    Peer((change, force)): Peer<(MembershipChange, bool)>,
) -> impl IntoResponse {
    Encoded(
        match node.change_membership_as_leader(change, force).await {
            Ok(()) => Ok(()),
            Err(
                e @ (MembershipError::Invalid(_)
                | MembershipError::UnknownNode(_)
                | MembershipError::WouldBreakQuorum { .. }),
            ) => Err(ForwardError::Invalid(e.to_string())),
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        },
    )
}

async fn info(State(node): State<Node>, Peer(()): Peer<()>) -> impl IntoResponse {
    Encoded(node.info())
}
