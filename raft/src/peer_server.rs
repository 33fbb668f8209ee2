//! The peer listener: raft RPCs and the forwarding endpoints of [`peer_proto`](crate::peer_proto).
//! Every request must carry a valid cluster-secret signature when a secret is configured,
//! checked in two steps (header and timestamp before the body, signature and replay after);
//! bodies are bounded per path; nothing that came through a proxy is accepted.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::network::{PATH_APPEND, PATH_SNAPSHOT};
use crate::node::RaftNode;
use crate::peer_auth::{audience_of, HEADER};
use crate::peer_client::CONTENT_TYPE;
use crate::peer_dispatch::{dispatch, Refused, PATHS};
use crate::peer_proto::PATH_WRITE;
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

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// The body of a peer request whose signature checked out.
async fn authenticated_body(node: &Node, path: &str, req: Request) -> Result<Bytes, Response> {
    // No peer sends these: a request that came through a proxy (the node's own gateway,
    // say) is not a peer's, whatever its address.
    if came_through_proxy(req.headers()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "peer requests are not accepted through a proxy".into(),
        ));
    }
    let header = req.headers().get(HEADER).and_then(|v| v.to_str().ok());
    let limit = body_limit(path);
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
    // The whole signature (and that it was sent to this node, and not before) is checked
    // before any body byte is read.
    let audience = audience_of(&node.config.advertise_peer_url);
    let signed = node
        .peers
        .auth()
        .check_header("POST", path, &audience, header, declared)
        .map_err(|e| {
            tracing::warn!(%path, error = %e, "rejected unauthenticated peer request");
            refuse(StatusCode::UNAUTHORIZED, e.to_string())
        })?;
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
    if let Err(e) = node.peers.auth().verify_body(signed.as_ref(), &body) {
        tracing::warn!(%path, error = %e, "rejected unauthenticated peer request");
        return Err(refuse(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    Ok(body)
}

/// One peer request: authenticated and bounded here, served by [`dispatch`].
async fn handle(State(node): State<Node>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let body = match authenticated_body(&node, &path, req).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    match dispatch(&node, &path, &body).await {
        Ok(answer) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], answer).into_response(),
        Err(e @ Refused::Undecodable(_)) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ Refused::UnknownPath(_)) => refuse(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Refused::Encode(_)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub fn router(node: Node) -> Router {
    let mut router = Router::new();
    for path in PATHS {
        router = router.route(path, post(handle));
    }
    // Bodies are bounded per path in `authenticated_body`.
    router.layer(DefaultBodyLimit::disable()).with_state(node)
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
        max_streams: crate::bounded_server::MAX_STREAMS,
    };
    crate::bounded_server::serve(listener, router(node), bounds, shutdown).await
}
