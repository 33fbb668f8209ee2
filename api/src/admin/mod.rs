//! The admin listener: health, readiness, metrics, the cluster API, the control-plane API (the
//! crate root) and the web UI (`hermes-admin-ui`).

mod cluster;

mod gateway;
pub mod health;
mod metrics;
mod traffic;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::{any, delete, get, post};
use axum::Router;

use hermes_raft::RaftNode;

#[derive(Clone)]
pub struct AdminState {
    /// This node's id.
    pub id: u64,
    /// The embedded raft store; `None` on a node whose stores are both external.
    pub node: Option<Arc<RaftNode>>,
    pub gateway: Arc<hermes_gateway::Gateway>,
    /// Whether this node runs the proxy (the gateway role): its route table counts for
    /// readiness.
    pub proxies: bool,
    /// Whether this node serves the control-plane API and the web UI (the server role).
    pub serves_api: bool,
    pub registry: prometheus::Registry,
    /// Set when shutdown begins, so `/readyz` turns away new traffic first.
    pub draining: Arc<AtomicBool>,
    /// The control-plane API served beside the operator endpoints.
    pub api: crate::ApiState,
    /// The namespace this node's proxy serves (what `/api/v1/gateway/*` shows).
    pub namespace: String,
}

impl AdminState {
    /// The raft store, or the answer for a node that runs none.
    pub fn raft(&self) -> Result<&Arc<RaftNode>, crate::error::ApiError> {
        self.node.as_ref().ok_or_else(|| {
            crate::error::ApiError::not_found(
                "this node runs no raft store: its control and configuration stores are \
                 external (--control-store, --config-store)",
            )
        })
    }
}

pub fn router(state: AdminState) -> Router {
    let frames = frame_sources(&state.api);
    let serves_api = state.serves_api;
    let operator = Router::new()
        // The original gateway's admin paths ignore the method (contracts §7.15): probes
        // written for it may POST or HEAD them.
        .route("/livez", any(health::livez))
        .route("/health", any(health::livez))
        .route("/healthz", any(health::livez))
        .route("/readyz", any(health::readyz))
        .route("/ready", any(health::ready_proxy))
        .route("/metrics", any(metrics::metrics))
        .route("/api/v1/cluster/status", get(cluster::status))
        .route(
            "/api/v1/cluster/members",
            get(cluster::list).post(cluster::add),
        )
        .route("/api/v1/cluster/members/{id}", delete(cluster::remove))
        .route(
            "/api/v1/cluster/members/{id}/promote",
            post(cluster::promote),
        )
        .route("/api/v1/cluster/members/{id}/lead", post(cluster::lead))
        .route("/api/v1/cluster/snapshot", get(cluster::snapshot))
        .route("/api/v1/cluster/join", post(cluster::join))
        .merge(
            Router::new()
                .route("/api/v1/gateway/routes", get(gateway::routes))
                .route("/api/v1/gateway/domains", get(gateway::domains))
                .route("/api/v1/gateway/upstreams", get(gateway::upstreams))
                .route("/api/v1/traffic", get(traffic::traffic))
                // The original gateway's listings (§7.15), any method as there; unlike there,
                // configuration is not shown to anonymous callers.
                .route("/routes", any(gateway::original_routes))
                .route("/domains", any(gateway::original_domains))
                .layer(axum::middleware::from_fn_with_state(
                    state.api.clone(),
                    crate::authenticate,
                )),
        )
        .with_state(state.clone());
    let with_api = if serves_api {
        operator
            .merge(crate::router(state.api))
            // The web UI: public assets (they hold no data; every datum comes through the API).
            .merge(hermes_admin_ui::router(frames))
    } else {
        operator
    };
    with_api
        // The original gateway's answer to an unknown admin path, instead of an empty body.
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "not found"})),
            )
        })
        // Every body on this listener: at most the API's limit, within its deadline.
        .layer(axum::middleware::from_fn_with_state(
            hermes_raft::bounded_server::BodyBounds {
                max_bytes: crate::MAX_BODY_BYTES,
                deadline: BODY_DEADLINE,
                drain_up_to: 16 << 20,
                reject: |status, message| {
                    let code = if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
                        "busy"
                    } else {
                        "body_too_large"
                    };
                    crate::error::ApiError::new(status, code, message).into_response()
                },
                budget: &BODY_BUDGET,
            },
            hermes_raft::bounded_server::bound_bodies,
        ))
}

/// The console may frame the configured Grafana dashboards' origins, read at each page load.
fn frame_sources(api: &crate::ApiState) -> hermes_admin_ui::FrameSources {
    let store = api.store.clone();
    std::sync::Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { crate::status::dashboard_origins(store.as_ref()).await })
    })
}

/// Request-body bytes the admin listener holds at once, before anyone is authenticated.
static BODY_BUDGET: hermes_raft::bounded_server::BodyBudget =
    hermes_raft::bounded_server::BodyBudget::new(64 << 20);

/// How long a request body may take to arrive on the admin listener.
pub const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the admin listener, at most `max_connections` at once, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bounds = hermes_raft::bounded_server::Bounds {
        name: "admin",
        max_connections,
        header_timeout: hermes_raft::bounded_server::HEADER_TIMEOUT,
        max_streams: hermes_raft::bounded_server::MAX_STREAMS,
    };
    hermes_raft::bounded_server::serve(listener, router(state), bounds, shutdown).await
}
