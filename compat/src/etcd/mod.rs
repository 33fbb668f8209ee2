//! The etcd v3 API over the replicated store, on one port: the gRPC services (`grpc`) and
//! the JSON gateway (`/v3/...`, also under `/v3beta/` as etcd 3.4 serves it). Behaviour and
//! shapes follow Debian's etcd 3.4; see `shared/contracts/etcd.md`.
//!
//! Both front ends are codecs around [`service`] (what a request does to the store) and
//! [`watch_session`] (a watch stream), with one error type, [`error::EtcdError`]. The JSON
//! handlers decode strictly, the gRPC ones take protobuf as it comes; both answer errors as
//! etcd does.

pub mod auth;
mod auth_admin;
mod body;
pub mod config_writes;
pub mod decode;
pub mod encode;
pub mod error;
pub mod grpc;
pub mod hidden;
mod kv;
mod lease;
pub mod maintenance;
pub mod rbac;
pub mod service;
mod watch;
pub mod watch_session;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::future::Either;
use hermes_raft::bounded_server::IncomingRequest;
use tokio::sync::{mpsc, watch as signal};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tower::ServiceExt as _;

use error::EtcdError;

use hermes_control::auth::login_guard::LoginGuard;
use hermes_raft::RaftNode;

pub use maintenance::ETCD_VERSION;

/// What every handler needs.
#[derive(Clone)]
pub struct Api {
    node: Arc<RaftNode>,
    /// The endpoint's user; `None`: direct loopback clients only (see [`auth`]).
    auth: Option<Arc<auth::EtcdAuth>>,
    /// Flips to `true` when the node shuts down; streams end then.
    shutdown: signal::Receiver<bool>,
    progress_interval: Duration,
    /// The node's watcher budget, shared by every watch stream of both front ends and by
    /// Election's and Lock's waits.
    watcher_slots: Arc<tokio::sync::Semaphore>,
    max_watchers: usize,
    /// Password hashing and failed-sign-in lockouts, shared with the admin API's sign-ins.
    guard: Arc<LoginGuard>,
    /// Where writes to configuration keys go, on a node whose control store is this store
    /// (see [`config_writes`]); `None`: they are plain keys (the store only holds configuration
    /// that a controller writes).
    config_writes: Option<Arc<config_writes::ConfigWrites>>,
}

impl Api {
    pub fn new(
        node: Arc<RaftNode>,
        auth: Option<auth::EtcdAuth>,
        guard: Arc<LoginGuard>,
        shutdown: signal::Receiver<bool>,
    ) -> Self {
        Api {
            node,
            auth: auth.map(Arc::new),
            guard,
            shutdown,
            progress_interval: watch_session::PROGRESS_INTERVAL,
            watcher_slots: Arc::new(tokio::sync::Semaphore::new(watch_session::MAX_WATCHERS)),
            max_watchers: watch_session::MAX_WATCHERS,
            config_writes: None,
        }
    }

    /// At most `max` watchers on this node at once, over every stream (`--etcd-max-watchers`);
    /// more than tokio's `Semaphore::MAX_PERMITS` is taken as that.
    pub fn with_max_watchers(mut self, max: usize) -> Self {
        let max = max.min(tokio::sync::Semaphore::MAX_PERMITS);
        self.watcher_slots = Arc::new(tokio::sync::Semaphore::new(max));
        self.max_watchers = max;
        self
    }

    /// A place in the node's watcher budget, for a watcher's whole life: watch streams'
    /// watchers and those Election and Lock keep while they wait.
    pub(crate) fn watcher_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, EtcdError> {
        self.watcher_slots.clone().try_acquire_owned().map_err(|_| {
            EtcdError::new(
                error::Code::ResourceExhausted,
                format!(
                    "etcdserver: too many watchers on this node (at most {}, \
                     --etcd-max-watchers)",
                    self.max_watchers
                ),
            )
        })
    }

    /// Writes to configuration keys become recorded changes of `store` (this node's control
    /// store, on this raft store).
    pub fn with_config_writes(
        mut self,
        store: Arc<dyn hermes_control::store::ControlStore>,
        max_document_bytes: usize,
    ) -> Self {
        self.config_writes = Some(Arc::new(config_writes::ConfigWrites::new(
            store,
            max_document_bytes,
        )));
        self
    }
}

/// Request-body bytes the etcd listener holds at once (see `BodyBudget`).
const BODY_BUDGET: usize = 256 << 20;

/// How long a unary request's body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

fn v3_routes() -> Router<Api> {
    // Whole-body requests: bounded in size (declared too large: etcd's own answer, before a
    // byte is read) and in time.
    static BUDGET: hermes_raft::bounded_server::BodyBudget =
        hermes_raft::bounded_server::BodyBudget::new(BODY_BUDGET);
    let bounds = hermes_raft::bounded_server::BodyBounds {
        max_bytes: body::MAX_BODY_BYTES,
        deadline: BODY_DEADLINE,
        drain_up_to: body::DRAIN_LIMIT,
        reject: |status, message| {
            if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
                return EtcdError::new(error::Code::Unavailable, message).into_response();
            }
            EtcdError::invalid("etcdserver: request is too large").into_response()
        },
        budget: &BUDGET,
    };
    let unary = Router::new()
        .route("/kv/range", post(kv::range))
        .route("/kv/put", post(kv::put))
        .route("/kv/deleterange", post(kv::delete_range))
        .route("/kv/txn", post(kv::txn))
        .route("/kv/compaction", post(kv::compact))
        .route("/lease/grant", post(lease::grant))
        .route("/lease/revoke", post(lease::revoke))
        .route("/kv/lease/revoke", post(lease::revoke))
        .route("/lease/timetolive", post(lease::time_to_live))
        .route("/kv/lease/timetolive", post(lease::time_to_live))
        .route("/lease/leases", post(lease::leases))
        .route("/kv/lease/leases", post(lease::leases))
        .route("/maintenance/status", post(maintenance::status))
        .route("/maintenance/alarm", post(maintenance::alarm))
        // A unary request whose answer streams for as long as the backup takes.
        .route("/maintenance/snapshot", post(maintenance::snapshot))
        .route(
            "/maintenance/transfer-leadership",
            post(maintenance::move_leader),
        )
        .route("/cluster/member/list", post(maintenance::member_list))
        .route("/auth/authenticate", post(auth::authenticate))
        .route("/auth/status", post(auth::status))
        .merge(auth_admin::routes())
        .layer(axum::middleware::from_fn_with_state(
            bounds,
            hermes_raft::bounded_server::bound_bodies,
        ));
    // Streams: the client sends requests for as long as it watches or keeps leases alive.
    let streams = Router::new()
        .route("/watch", post(watch::watch))
        .route("/lease/keepalive", post(lease::keepalive));
    unary.merge(streams)
}

/// The JSON gateway's routes, under `/v3/` and `/v3beta/`.
fn json_router(api: Api) -> Router {
    Router::new()
        .nest("/v3", v3_routes())
        .nest("/v3beta", v3_routes())
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::require,
        ))
        // After the layer: etcd's gateway answers an unknown path before authenticating.
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "Not Found\n") })
        .with_state(api)
}

/// Whether `req` is a gRPC call, as etcd's server tells them apart: HTTP/2 with a gRPC
/// content type. Everything else is the JSON gateway's (or its 404).
fn is_grpc<B>(req: &axum::http::Request<B>) -> bool {
    req.version() == axum::http::Version::HTTP_2
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/grpc"))
}

/// A JSON answer, or the error's.
fn reply(result: Result<serde_json::Value, EtcdError>) -> Response {
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Serves the etcd endpoint, at most `max_connections` at once, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Api,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bounds = hermes_raft::bounded_server::Bounds {
        name: "etcd",
        max_connections,
        header_timeout: hermes_raft::bounded_server::HEADER_TIMEOUT,
        // gRPC clients multiplex everything on one connection: every watch, keep-alive and
        // campaign of a process, and the requests of all its tasks.
        max_streams: grpc::MAX_STREAMS_PER_CONNECTION,
    };
    let json = json_router(api.clone());
    let grpc = grpc::Services::new(api);
    let service = tower::service_fn(move |req: IncomingRequest| {
        if is_grpc(&req) {
            let grpc = grpc.clone();
            Either::Right(async move { Ok(grpc.call(req).await) })
        } else {
            Either::Left(json.clone().oneshot(req))
        }
    });
    hermes_raft::bounded_server::serve_service(listener, service, bounds, shutdown).await
}

/// A chunked response whose lines come from `rx`.
fn stream_response(rx: mpsc::Receiver<bytes::Bytes>) -> Response {
    let stream = ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}
