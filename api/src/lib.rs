//! hermes-api: everything a node serves on its admin listener.
//!
//! - The control-plane REST API of contracts/hermes.md §3 ([`router`]): paths, bodies, status
//!   codes, scopes and messages as the original server's, so scripts and the original
//!   controller keep working; the weaknesses of §10.1 and §10.3 are fixed where clients do not
//!   depend on them. Handlers are thin: validation here (documents through the gateway's own
//!   validator), persistence in a [`ControlStore`].
//! - Sign-in: built-in accounts with throttling ([`login_guard`]) and OpenID Connect
//!   ([`oidc`]), HMAC credentials and session tokens ([`authenticate`]).
//! - The operator views ([`admin`]): health and readiness, metrics, the cluster's members and
//!   status, the gateway's routes.
//!
//! Every error answers as the original's JSON error body ([`ApiError`]).

pub mod admin;
pub mod bootstrap;
mod caller;
mod config;
mod credentials;
pub mod error;
mod fields;
// Lives in hermes-control, shared with the etcd endpoint's sign-ins.
pub use hermes_control::auth::login_guard;
mod members;
mod namespaces;
pub mod oidc;
mod resources;
mod session;
pub mod shared_catch_up;
mod status;
mod users;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;

use hermes_control::store::ControlStore;

pub use caller::{
    authenticate, is_direct_local, Caller, Identity, FORWARDING_MARKS, MAX_BODY_BYTES,
};
pub use error::ApiError;

/// What every handler needs.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn ControlStore>,
    /// The OpenID Connect provider when users sign in through one (`--auth-mode oidc`);
    /// `None` for built-in accounts.
    pub oidc: Option<Arc<oidc::Provider>>,
    /// Browser origins allowed to call the API (CORS); empty allows none.
    pub cors_origins: Vec<String>,
    /// Sign-in throttling and bounded password hashing.
    pub guard: Arc<login_guard::LoginGuard>,
    /// Whether first-time setup may ever be anonymous: not when a built-in admin is created at
    /// the first start (the admin exists moments after the node is ready, and nobody should
    /// get in anonymously in between).
    pub anonymous_setup: bool,
    /// How far an HMAC signature's timestamp may be from this node's clock, in seconds.
    pub hmac_max_skew: u64,
    /// The largest domain or cluster document stored, in bytes.
    pub max_document_bytes: usize,
    /// HMAC signatures seen within that window (see `hermes_compat::hmac`).
    pub hmac_seen: Arc<hermes_raft::replay::ReplayCache<String>>,
    /// The store's catch-up for callers that have proved nothing yet, one round for many.
    pub shared_catch_up: Arc<shared_catch_up::SharedCatchUp>,
    /// This node's gateway and the namespace it serves: a configuration write to that
    /// namespace is answered once the gateway serves it (`None`: no gateway follows the store
    /// this API writes to).
    pub gateway: Option<(Arc<hermes_gateway::Gateway>, String)>,
    /// The embedded raft cluster, when this node runs one: its leader is the cluster's
    /// controller, shown by the status API when no external controller reports.
    pub raft: Option<Arc<hermes_raft::RaftNode>>,
}

/// How long a configuration write waits for this node's proxy to serve it. Past this the
/// write (committed all the same) is answered, and the delay logged.
const SERVE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl ApiState {
    /// Read your writes through the proxy: once a write to `ns` applied at store `revision` is
    /// answered, this node's proxy routes by it (as etcd answers a write only once the member
    /// that took it applied it).
    pub async fn served_by_proxy(&self, ns: &str, revision: i64) {
        let Some((gateway, namespace)) = &self.gateway else {
            return;
        };
        if ns != namespace || revision <= 0 {
            return;
        }
        if !gateway.serving(revision, SERVE_WAIT).await {
            tracing::warn!(
                revision,
                applied = gateway.applied_revision(),
                "a configuration write was answered before this node's proxy served it"
            );
        }
    }
}

/// The request's namespace (§3.1 NS): header `X-Hermes-Namespace`, else `?namespace=`, else
/// `default`. Unlike the original, a malformed name is refused (400) instead of becoming a key.
#[derive(Debug, Clone)]
pub struct Ns(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Ns {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get("x-hermes-namespace")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        let query = || {
            parts.uri.query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "namespace")
                    .map(|(_, v)| v.into_owned())
                    .filter(|v| !v.is_empty())
            })
        };
        let ns = header.or_else(query).unwrap_or_else(|| "default".into());
        hermes_control::validate::namespace_name(&ns)
            .map_err(|m| ApiError::bad_request(format!("invalid namespace: {m}")))?;
        Ok(Ns(ns))
    }
}

/// Decodes a JSON object body, answering `400 {"error": "<prefix>: <detail>"}` when it is
/// not one (serde alone would also fill a struct from an array, by position) or names a member
/// twice.
pub fn json_body<T: DeserializeOwned>(body: &[u8], prefix: &str) -> Result<T, ApiError> {
    if let Some(key) = hermes_control::validate::duplicate_key(body) {
        return Err(ApiError::bad_request(format!(
            "{prefix}: duplicate key {key}"
        )));
    }
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("{prefix}: {e}"));
    match serde_json::from_slice::<serde_json::Value>(body).map_err(bad)? {
        v @ serde_json::Value::Object(_) => serde_json::from_value(v).map_err(bad),
        _ => Err(ApiError::bad_request(format!(
            "{prefix}: expected a JSON object"
        ))),
    }
}

/// The sign-in routes of the configured mode (§3.2: routes 2–4 with OIDC, 6–8 built-in).
fn sign_in_routes(oidc: bool) -> Router<ApiState> {
    let routes = Router::new().route("/api/auth/userinfo", get(session::userinfo));
    if oidc {
        routes
            .route("/api/auth/login", get(oidc::login))
            .route("/api/auth/token", get(oidc::token))
            .route("/api/auth/refresh", post(oidc::refresh))
    } else {
        routes
            .route("/api/auth/login", post(session::login))
            .route("/api/auth/change-password", post(session::change_password))
            .route("/api/auth/rotate-key", post(session::rotate_key))
    }
}

/// Lets the configured browser origins call the API; answers their preflight requests
/// before authentication (a preflight carries no credentials).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    if origins.is_empty() {
        return None;
    }
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-hermes-namespace"),
                HeaderName::from_static("x-hermes-timestamp"),
                HeaderName::from_static("x-hermes-body-sha256"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

pub fn router(state: ApiState) -> Router {
    let router = Router::new()
        .route("/api/auth/config", get(session::auth_config))
        .merge(sign_in_routes(state.oidc.is_some()))
        .route("/api/v1/scopes", get(session::scopes))
        .route("/api/v1/whoami", get(session::whoami))
        .route(
            "/api/v1/config",
            get(config::get_config).put(config::replace),
        )
        .route("/api/v1/config/revision", get(config::revision))
        .route("/api/v1/config/validate", post(config::validate))
        .route("/api/v1/config/watch", get(config::watch))
        .merge(resources::routes())
        .route("/api/v1/status", get(status::status))
        .route(
            "/api/v1/status/instances",
            get(status::instances).put(status::put_instances),
        )
        .route(
            "/api/v1/status/controller",
            get(status::controller).put(status::put_controller),
        )
        .route("/api/v1/audit", get(status::audit))
        .route(
            "/api/v1/grafana/dashboards",
            get(status::dashboards)
                .post(status::save_dashboard)
                .put(status::save_dashboard),
        )
        .route(
            "/api/v1/grafana/dashboards/{id}",
            delete(status::delete_dashboard),
        )
        .route(
            "/api/v1/credentials",
            get(credentials::list).post(credentials::create),
        )
        .route(
            "/api/v1/credentials/{id}",
            put(credentials::update).delete(credentials::remove),
        )
        .route("/api/v1/members", get(members::list).post(members::set))
        .route("/api/v1/members/{sub}", delete(members::remove))
        .route(
            "/api/v1/group-bindings",
            get(members::bindings).post(members::set_binding),
        )
        .route(
            "/api/v1/group-bindings/{group}",
            delete(members::remove_binding),
        )
        .route("/api/v1/users", get(users::list).post(users::create))
        .route(
            "/api/v1/users/{sub}",
            put(users::update).delete(users::remove),
        )
        .route("/api/v1/users/{sub}/admin", put(users::set_admin))
        .route(
            "/api/v1/users/{sub}/force-password-change",
            put(users::force_password_change),
        )
        .route(
            "/api/v1/users/{sub}/reset-password",
            put(users::reset_password),
        )
        .route(
            "/api/v1/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authenticate,
        ));
    let router = match cors(&state.cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    };
    router.with_state(state)
}
