//! The peer listener: raft RPCs and the forwarding endpoints of [`peer_proto`](crate::peer_proto).
//! Every request must carry a valid cluster-secret signature when a secret is configured,
//! checked in two steps (header and timestamp before the body, signature and replay after);
//! bodies are bounded per path; nothing that came through a proxy is accepted.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use http_body_util::BodyExt;
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
use crate::proxied::came_through_proxy;

/// Largest body of each peer request, by path: an append carries up to 64 entries of up to
/// 1.5 MiB plus framing, a snapshot chunk a few MiB, a forwarded write batch about 1 MiB, and
/// everything else a few bytes. A larger declared `Content-Length` is refused before reading.
fn body_limit(path: &str) -> usize {
    const MIB: usize = 1024 * 1024;
    match path {
        PATH_APPEND => 128 * MIB,
        PATH_SNAPSHOT => 64 * MIB,
        PATH_WRITE => 16 * MIB,
        _ => 64 * 1024,
    }
}

/// How long a peer request's body may take to arrive: the largest (128 MiB) in well under
/// this on any network a cluster should run on.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

type Node = Arc<RaftNode>;

/// A request body whose signature checked out, decoded.
struct Peer<T>(T);

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

impl<T: DeserializeOwned> FromRequest<Node> for Peer<T> {
    type Rejection = Response;

    async fn from_request(req: Request, node: &Node) -> Result<Self, Self::Rejection> {
        let path = req.uri().path().to_string();
        // No peer sends these: a request that came through a proxy (the node's own gateway,
        // say) is not a peer's, whatever its address.
        if came_through_proxy(req.headers()) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "peer requests are not accepted through a proxy".into(),
            ));
        }
        let header = req.headers().get(HEADER).and_then(|v| v.to_str().ok());
        // The signature's header and timestamp are checked before any body is read.
        let signed = node.peers.auth().check_header(header).map_err(|e| {
            tracing::warn!(%path, error = %e, "rejected unauthenticated peer request");
            refuse(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
        let limit = body_limit(&path);
        let declared = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("peer request body over {limit} bytes for {path}"),
            ));
        }
        let collect = http_body_util::Limited::new(req.into_body(), limit).collect();
        let body = tokio::time::timeout(BODY_DEADLINE, collect)
            .await
            .map_err(|_| {
                refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("peer request body not received within {BODY_DEADLINE:?}"),
                )
            })?
            .map_err(|e| refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?
            .to_bytes();
        if let Err(e) = node
            .peers
            .auth()
            .verify_body(signed.as_ref(), "POST", &path, &body)
        {
            tracing::warn!(%path, error = %e, "rejected unauthenticated peer request");
            return Err(refuse(StatusCode::UNAUTHORIZED, e.to_string()));
        }
        codec::decode(&body).map(Peer).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("undecodable peer request: {e}"),
            )
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
        // Bodies are bounded per path in `Peer`.
        .layer(DefaultBodyLimit::disable())
        .with_state(node)
}

/// Serves the peer listener, at most `max_connections` at once, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    node: Node,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bounds = crate::bounded_server::Bounds {
        name: "peer",
        max_connections,
        header_timeout: crate::bounded_server::HEADER_TIMEOUT,
    };
    crate::bounded_server::serve(listener, router(node), bounds, shutdown).await
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
