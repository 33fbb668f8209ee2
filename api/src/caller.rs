//! Who is calling (contracts/hermes.md §4.1), decided once per request by [`authenticate`]:
//! an HMAC-signed credential, a built-in user's bearer token, or, during first-time setup, an
//! anonymous local client. [`Caller::authorize`] then answers whether the caller holds a scope
//! in a namespace. Differences from the original, for safety (§10.1):
//! - first-time setup is open only until the first credential or user exists, anywhere, and
//!   never reopens (S1, S2); it trusts only a loopback client that did not come through a
//!   proxy, sending JSON to a `Host` that names this node (no browser CSRF, no DNS rebinding);
//! - a credential acts only in its own namespace unless an admin made it for all (S1);
//! - the body must match its hash.
use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use hermes_compat::hmac;
use hermes_control::auth::token::{self, Claims};
use hermes_control::model::{unix_now, Credential, Operator, User};
use hermes_control::scopes::{Role, Scope};

use super::{ApiError, ApiState};

/// The largest request body the API reads (the original's 1 MiB cap); larger → 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum Identity {
    /// First-time setup: a loopback client while no credential exists anywhere.
    Bootstrap,
    Credential(Credential),
    User {
        claims: Claims,
        user: User,
    },
}

/// The authenticated caller and the request body, read once.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub body: Bytes,
}

/// What a caller may do in one namespace.
#[derive(Debug, Clone)]
pub struct Grant {
    pub scopes: Vec<Scope>,
    pub role: Option<Role>,
    /// `admin`, `direct`, `group` or empty.
    pub role_source: &'static str,
}

impl Caller {
    pub fn operator(&self) -> Operator {
        match &self.identity {
            Identity::Bootstrap => Operator::default(),
            // The original recorded nothing for HMAC callers (§10.3 C16); the key is kept.
            Identity::Credential(c) => Operator(format!("credential:{}", c.access_key)),
            Identity::User { claims, .. } => Operator(
                [
                    &claims.preferred_username,
                    &claims.email,
                    &claims.name,
                    &claims.sub,
                ]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_default(),
            ),
        }
    }

    /// The caller's scopes in `ns`.
    pub async fn grant(&self, state: &ApiState, ns: &str) -> Result<Grant, ApiError> {
        match &self.identity {
            Identity::Bootstrap => Ok(Grant {
                scopes: Scope::ALL.to_vec(),
                role: None,
                role_source: "",
            }),
            Identity::Credential(c) => {
                let scopes = hermes_control::scopes::parse_list(&c.scopes).unwrap_or_default();
                // The original let every credential act in every namespace (§4.1); the
                // original's two e2e tests that relied on it need an all-namespaces credential.
                if c.namespace != ns && !c.all_namespaces {
                    return Ok(Grant {
                        scopes: Vec::new(),
                        role: None,
                        role_source: "",
                    });
                }
                Ok(Grant {
                    scopes,
                    role: None,
                    role_source: "",
                })
            }
            Identity::User { user, claims } => {
                if user.is_admin {
                    return Ok(Grant {
                        scopes: Scope::ALL.to_vec(),
                        role: None,
                        role_source: "admin",
                    });
                }
                let direct = state
                    .store
                    .member(ns, &user.sub)
                    .await?
                    .and_then(|m| Role::parse(&m.role));
                // §4.3: the highest role bound to one of the token's groups replaces the
                // direct role only when strictly higher. Local reads, as for the member.
                let mut via_group = None;
                for group in &claims.groups {
                    let bound = state.store.group_binding(ns, group).await?;
                    via_group = via_group.max(bound.and_then(|b| Role::parse(&b.role)));
                }
                let (role, source) = match (direct, via_group) {
                    (d, Some(g)) if d.is_none_or(|d| g > d) => (Some(g), "group"),
                    (Some(d), _) => (Some(d), "direct"),
                    (None, _) => (None, ""),
                };
                Ok(Grant {
                    scopes: role.map(Role::scopes).unwrap_or_default(),
                    role,
                    role_source: source,
                })
            }
        }
    }

    /// Whether the caller administers the whole system: first-time setup, an admin user, or a
    /// credential an admin made for all namespaces with `admin:users`. Only such a caller may
    /// create credentials for all namespaces.
    pub fn is_admin(&self) -> bool {
        match &self.identity {
            Identity::Bootstrap => true,
            Identity::User { user, .. } => user.is_admin,
            Identity::Credential(c) => {
                c.all_namespaces && c.scopes.iter().any(|s| s == Scope::AdminUsers.as_str())
            }
        }
    }

    /// Fails with 403 unless the caller holds every scope of `wanted` in `ns`: nobody grants,
    /// or edits a holder of, more than they hold themselves. `what` names the thing in the
    /// message.
    pub async fn require_all(
        &self,
        state: &ApiState,
        ns: &str,
        wanted: &[Scope],
        what: &str,
    ) -> Result<(), ApiError> {
        let held = self.grant(state, ns).await?.scopes;
        match wanted.iter().find(|s| !held.contains(s)) {
            None => Ok(()),
            Some(missing) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{what} needs scope \"{missing}\", which the caller does not hold"),
            )),
        }
    }

    /// Fails with 403 unless the caller holds `scope` in `ns`.
    pub async fn authorize(
        &self,
        state: &ApiState,
        ns: &str,
        scope: Scope,
    ) -> Result<Grant, ApiError> {
        let grant = self.grant(state, ns).await?;
        if !grant.scopes.contains(&scope) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("scope \"{scope}\" required"),
            ));
        }
        // The original took any namespace header (§10.3 C13), so a typo made configuration
        // no namespace list shows. Checked after the scope, so that existence does not leak.
        if !state.store.namespace_exists(ns).await? {
            return Err(ApiError::not_found(format!("namespace \"{ns}\" not found")));
        }
        Ok(grant)
    }
}

pub use hermes_raft::proxied::{is_direct_local, FORWARDING_MARKS};

/// Whether the `Host` header names this host by a loopback name (`localhost`, `127.0.0.1`,
/// `[::1]`, with or without a port). A browser on a page of another site that rebinds its
/// own name to 127.0.0.1 sends that name, not one of these.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// First-time setup's conditions beyond a direct local client: a `Host` naming this node,
/// and JSON for every method that carries a body. A cross-site page can send a POST with a
/// form's content types without asking first, but not JSON (that needs a CORS preflight, as
/// PUT and DELETE do whatever they carry).
fn setup_request_acceptable(
    method: &axum::http::Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if !host_is_local(headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "setup_host",
            "first-time setup accepts only requests whose Host is localhost or a loopback address",
        ));
    }
    use axum::http::Method;
    let bodiless = [Method::GET, Method::HEAD, Method::DELETE, Method::OPTIONS];
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !bodiless.contains(method) && !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "setup_content_type",
            "first-time setup accepts only Content-Type: application/json",
        ));
    }
    Ok(())
}

/// Reads the whole body; the admin listener bounds it in size and time
/// ([`hermes_raft::bounded_server::bound_bodies`]).
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        match hermes_raft::bounded_server::BodyError::find(&e) {
            Some(bound) => {
                let code = match bound.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    _ => "body_timeout",
                };
                ApiError::new(bound.status(), code, bound.to_string())
            }
            None => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading the request body failed: {e}"),
            ),
        }
    })
}

/// Middleware: authenticates every `/api/` request and hands the caller to the handler.
pub async fn authenticate(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    match identify(
        &state,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        peer,
    )
    .await
    {
        Ok(Some(identity)) => {
            parts.extensions.insert(Caller {
                identity,
                body: body.clone(),
            });
        }
        // Public endpoints (login, scopes, auth config) run without a caller.
        Ok(None) => {}
        Err(e) => {
            parts.extensions.insert(AuthFailure(e));
        }
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Whether `headers` carry the session token of an admin: `Some(true)` for an admin,
/// `Some(false)` for a signed-in person who is not one, `None` without a session token (an
/// HMAC signature does not count: a credential never changes the cluster). A token that does
/// not verify is refused.
pub async fn session_admin(
    state: &ApiState,
    headers: &HeaderMap,
) -> Result<Option<bool>, ApiError> {
    let Some(token) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(None);
    };
    // Not `fresh`: membership changes must work without a quorum (a lost quorum is what
    // they repair), so the admin flag is the one this node holds.
    match bearer(state, token.trim(), false).await? {
        Identity::User { user, .. } => Ok(Some(user.is_admin)),
        _ => Ok(Some(false)),
    }
}

/// Why authentication failed; reported by handlers that need a caller, so public endpoints
/// still answer requests that carry a stale token.
#[derive(Debug, Clone)]
pub struct AuthFailure(pub ApiError);

async fn identify(
    state: &ApiState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    peer: SocketAddr,
) -> Result<Option<Identity>, ApiError> {
    // A change is authorized on state that holds every write acknowledged before it arrived:
    // a credential disabled, a role or an admin flag revoked through another node a moment
    // ago must not still let a write through here. Reads (safe methods) are served from local
    // state, which trails by about one replication round, as documented. The catch-up comes
    // only once a caller has proved something (a signature, a token, a local setup request),
    // so anonymous requests cannot drive barriers of their own, and public endpoints need no
    // quorum. (A key this node does not know joins a shared, serialized catch-up, bounded in
    // time, before it is refused: see `signed`.)
    let fresh = !method.is_safe();
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("\u{0}"))
        .unwrap_or("");
    if auth.is_empty() {
        // Setup never reopens once closed: only where the local state still shows it open
        // does a change catch up and look again.
        if state.anonymous_setup
            && is_direct_local(&peer, headers)
            && state.store.setup_open().await?
        {
            if fresh {
                state.store.catch_up().await?;
            }
            if state.store.setup_open().await? {
                setup_request_acceptable(method, headers)?;
                return Ok(Some(Identity::Bootstrap));
            }
        }
        return Ok(None);
    }
    if let Some(rest) = auth.strip_prefix("Bearer ") {
        return bearer(state, rest.trim(), fresh).await.map(Some);
    }
    if let Some(rest) = auth.strip_prefix(hmac::SCHEME_PREFIX) {
        return signed(state, method, uri, headers, body, rest, fresh)
            .await
            .map(Some);
    }
    Err(ApiError::unauthorized("unsupported authorization scheme"))
}

/// The person a session token names; with `fresh`, as of every write acknowledged before the
/// call (see [`identify`]).
async fn bearer(state: &ApiState, token: &str, fresh: bool) -> Result<Identity, ApiError> {
    if let Some(provider) = &state.oidc {
        let claims = provider.verify_bearer(token).await.map_err(|e| match e {
            super::oidc::OidcError::Unavailable(m) => ApiError::unavailable(m),
            e => ApiError::unauthorized(format!("invalid token: {e}")),
        })?;
        if fresh {
            state.store.catch_up().await?;
        }
        let user = super::oidc::sync_user(state.store.as_ref(), provider, &claims, false).await?;
        return Ok(Identity::User { claims, user });
    }
    let keys = state.store.signing_keys().await?;
    let claims = token::verify(token, &keys, unix_now())
        .map_err(|e| ApiError::unauthorized(format!("invalid token: {e}")))?;
    // Only a validly signed token gets this far, so no catch-up below can be driven by an
    // anonymous caller.
    if fresh {
        state.store.catch_up().await?;
    }
    let mut user = state.store.user(&claims.sub).await?;
    // A token signed a moment ago through another node may name a user, or an epoch, this
    // node has not applied yet.
    if !fresh && user.as_ref().is_none_or(|u| claims.epoch > u.token_epoch) {
        state.store.catch_up().await?;
        user = state.store.user(&claims.sub).await?;
    }
    let user =
        user.ok_or_else(|| ApiError::unauthorized("invalid token: the user no longer exists"))?;
    if claims.epoch != user.token_epoch {
        // On a database shared with original servers, a token of theirs carries no epoch and
        // lands here too.
        return Err(ApiError::unauthorized(
            "invalid token: revoked by a password change (or issued by another server); sign \
             in again",
        ));
    }
    Ok(Identity::User { claims, user })
}

/// How long a request signed with a key this node does not know waits for a shared catch-up
/// (which takes one round trip to the leader when the cluster is healthy).
const UNKNOWN_KEY_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

async fn signed(
    state: &ApiState,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
    rest: &str,
    fresh: bool,
) -> Result<Identity, ApiError> {
    let unauthorized = |e: hmac::HmacError| ApiError::unauthorized(e.to_string());
    let auth = hmac::parse_authorization(rest).map_err(unauthorized)?;
    let mut credential = state
        .store
        .credential_by_access_key(&auth.access_key)
        .await?;
    // Whether this node's state now holds every write acknowledged before the request.
    let mut caught_up = false;
    // Only for a request that could pass once the key is known: a stale or missing timestamp
    // fails anyway (after the key check, in the contract's order), so it joins no catch-up.
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timely = hmac::timestamp_within(
        header("x-hermes-timestamp"),
        unix_now(),
        state.hmac_max_skew,
    )
    .is_ok();
    if timely && credential.as_ref().is_none_or(|c| !c.enabled) {
        // A credential created or enabled through another node a moment ago (answered, so
        // committed) may not be applied here yet: catch up before refusing it. The caller
        // has proved nothing, so the catch-up is a shared one, and a short one: without a
        // quorum (when nothing new can have been answered anyway) the key is refused as it
        // stands rather than holding the connection for the store's whole timeout.
        match tokio::time::timeout(UNKNOWN_KEY_CATCH_UP, state.shared_catch_up.run()).await {
            Ok(Ok(())) => {
                caught_up = true;
                credential = state
                    .store
                    .credential_by_access_key(&auth.access_key)
                    .await?;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "no catch-up for an unknown access key"),
            Err(_) => tracing::debug!("no catch-up in time for an unknown access key"),
        }
    }
    let credential = credential.ok_or_else(|| ApiError::unauthorized("invalid access key"))?;
    if !credential.enabled {
        return Err(ApiError::unauthorized("credential is disabled"));
    }
    // The original signs the decoded path (Go's URL.Path).
    let decoded = percent_encoding::percent_decode_str(uri.path()).decode_utf8_lossy();
    let request = hmac::Signed {
        method: method.as_str(),
        path: &decoded,
        query: uri.query().unwrap_or(""),
        namespace: header("x-hermes-namespace").unwrap_or(""),
        nonce: header("x-hermes-nonce").unwrap_or(""),
    };
    let now = unix_now();
    let signed_at = hmac::verify(
        &credential.secret_key,
        &auth,
        &request,
        header("x-hermes-timestamp"),
        header("x-hermes-body-sha256"),
        body,
        now,
        state.hmac_max_skew,
    )
    .map_err(unauthorized)?;
    // Before the catch-up, so that a replayed request costs no round trip.
    if hmac::replay_checked(&auth, method.as_str()) {
        state
            .hmac_seen
            .first_time(
                format!("{}:{}", auth.access_key, auth.signature),
                signed_at.max(0) as u64,
                now.max(0) as u64,
            )
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    }
    // The signature proved the secret; a change then goes by the credential as it stands
    // after every acknowledged write (deleted, disabled or narrowed through another node).
    // A shared catch-up above started after the request arrived: that already holds.
    let credential = if fresh && !caught_up {
        state.store.catch_up().await?;
        state
            .store
            .credential_by_access_key(&auth.access_key)
            .await?
            .filter(|c| c.enabled && c.id == credential.id)
            .ok_or_else(|| ApiError::unauthorized("credential is disabled or deleted"))?
    } else {
        credential
    };
    Ok(Identity::Credential(credential))
}

/// A handler that takes a [`Caller`] gets the authenticated one, or answers with the reason
/// there is none (401).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        match parts.extensions.get::<AuthFailure>() {
            Some(AuthFailure(e)) => Err(e.clone()),
            None => Err(ApiError::unauthorized("authentication required")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_compared_decoded_like_go() {
        let percent_decode = |p: &str| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        };
        assert_eq!(
            percent_decode("/api/v1/domains/a%20b"),
            "/api/v1/domains/a b"
        );
        assert_eq!(percent_decode("/x%2"), "/x%2");
        assert_eq!(percent_decode("/x%zz"), "/x%zz");
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, axum::http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn setup_needs_a_local_host_and_json_writes() {
        use axum::http::Method;
        let ok = |m: Method, h: &[(&'static str, &'static str)]| {
            setup_request_acceptable(&m, &headers(h)).map_err(|e| e.status.as_u16())
        };
        for host in [
            "localhost",
            "LOCALHOST:9080",
            "127.0.0.1:9080",
            "127.9.9.9",
            "[::1]:80",
            "[::1]",
        ] {
            assert_eq!(ok(Method::GET, &[("host", host)]), Ok(()), "{host}");
        }
        for host in [
            "evil.example:9080",
            "10.0.0.1",
            "localhost.evil.example",
            "[::2]",
        ] {
            assert_eq!(ok(Method::GET, &[("host", host)]), Err(403), "{host}");
        }
        assert_eq!(ok(Method::GET, &[]), Err(403));
        let json = [
            ("host", "localhost"),
            ("content-type", "application/json; charset=utf-8"),
        ];
        assert_eq!(ok(Method::POST, &json), Ok(()));
        let form = [("host", "localhost"), ("content-type", "text/plain")];
        assert_eq!(ok(Method::POST, &form), Err(415));
        assert_eq!(ok(Method::PUT, &[("host", "localhost")]), Err(415));
        assert_eq!(ok(Method::DELETE, &[("host", "localhost")]), Ok(()));
    }
}
