//! Who may use the etcd endpoint. Without a configured user the endpoint serves only direct
//! loopback clients (the node refuses to bind it elsewhere, and refuses requests that came
//! through a proxy, the node's own gateway included). With one (`--etcd-user` and
//! `--etcd-password-file`), or once etcd's AuthEnable has turned authentication on for the
//! users kept in the store ([`super::rbac`]), clients authenticate as with etcd's auth: `POST
//! /v3/auth/authenticate {"name","password"}` answers a token, and every other request carries
//! it in `Authorization` (the raw token, no scheme), as the original gateway and etcd clients
//! send it; gRPC calls carry it in the `token` metadata, as etcd's gRPC clients do. Each
//! request then acts as a [`Caller`] whose rights the services check.
//!
//! Tokens are stateless (like etcd's `--auth-token jwt`): the user, the issue time and an
//! HMAC-SHA256, so every node accepts every node's tokens and a restart keeps them. The
//! configured user's are keyed by its password; a stored user's by the cluster's token key
//! and the user's password hash, so that changing the password, deleting the user or turning
//! authentication off revokes them. They do not expire, because the original gateway never
//! renews its token.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hermes_control::auth::login_guard::HashingError;
use hermes_raft::proxied::came_through_proxy;
use hermes_raft::Header;

use super::body::read_json;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::{Code, EtcdError};
use super::rbac::{self, records, Caller};
use super::Api;

/// The one user of the endpoint and the key its tokens are signed with.
#[derive(Clone)]
pub struct EtcdAuth {
    user: String,
    password: Vec<u8>,
    key: [u8; 32],
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password or the key.
        f.debug_struct("EtcdAuth")
            .field("user", &self.user)
            .finish()
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for p in parts {
        m.update(p);
        m.update(b"\n");
    }
    m.finalize().into_bytes().to_vec()
}

impl EtcdAuth {
    pub fn new(user: String, password: Vec<u8>) -> EtcdAuth {
        let key: [u8; 32] = Sha256::new()
            .chain_update(b"hermes etcd token key v1\n")
            .chain_update(&password)
            .finalize()
            .into();
        EtcdAuth {
            user,
            password,
            key,
        }
    }

    /// Whether `name` and `password` are the configured ones, compared in constant time.
    fn accepts(&self, name: &str, password: &[u8]) -> bool {
        // Hash both sides first so that the comparison takes the same time for any length.
        let h = |b: &[u8]| Sha256::digest(b).to_vec();
        let name_ok = h(name.as_bytes()).ct_eq(&h(self.user.as_bytes()));
        let pw_ok = h(password).ct_eq(&h(&self.password));
        bool::from(name_ok & pw_ok)
    }

    fn token(&self, issued: u64) -> String {
        let user = URL_SAFE_NO_PAD.encode(&self.user);
        let issued = issued.to_string();
        let sig = mac(&self.key, &[user.as_bytes(), issued.as_bytes()]);
        format!("{user}.{issued}.{}", hex::encode(sig))
    }

    /// Whether `token` was issued by a node with this user and password.
    pub fn verify(&self, token: &str) -> bool {
        let mut parts = token.trim().split('.');
        let (Some(user), Some(issued), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        let expected = mac(&self.key, &[user.as_bytes(), issued.as_bytes()]);
        let decoded_user = URL_SAFE_NO_PAD.decode(user).unwrap_or_default();
        bool::from(expected.ct_eq(&sig)) && decoded_user == self.user.as_bytes()
    }
}

/// A password operation the node's guard could not run.
pub(crate) fn hashing_error(e: HashingError) -> EtcdError {
    match e {
        HashingError::Busy => EtcdError::new(
            Code::Unavailable,
            "etcdserver: the node is busy checking other passwords; try again shortly",
        ),
        HashingError::Failed(e) => EtcdError::new(Code::Internal, format!("etcdserver: {e}")),
        HashingError::Refused(e) => {
            EtcdError::new(Code::InvalidArgument, format!("etcdserver: {e}"))
        }
    }
}

fn unauthenticated(message: &str) -> EtcdError {
    EtcdError::new(Code::Unauthenticated, message)
}

/// The authentication decision for one request of either front end: who it acts for, or
/// `None` for an `open` call (signing in) on an endpoint that requires a token.
pub fn decide(
    api: &Api,
    headers: &HeaderMap,
    open: bool,
    token: Option<&str>,
) -> Result<Option<Caller>, EtcdError> {
    if api.auth.is_none() && came_through_proxy(headers) {
        return Err(EtcdError::new(
            Code::PermissionDenied,
            "etcdserver: this endpoint serves only direct local clients; requests through a proxy are refused",
        ));
    }
    let state = records::state(api.node.store())?;
    let stored_enabled = state.as_ref().is_some_and(|s| s.enabled);
    if api.auth.is_none() && !stored_enabled {
        return Ok(Some(Caller::Root { user: None }));
    }
    if open {
        return Ok(None);
    }
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Err(EtcdError::invalid("etcdserver: user name is empty"));
    };
    if let Some(auth) = api.auth.as_deref() {
        if auth.verify(t) {
            return Ok(Some(Caller::Root {
                user: Some(auth.user.clone()),
            }));
        }
    }
    // Stored users sign in once AuthEnable turned authentication on, or on a node whose
    // configured user keeps it on.
    if let Some(state) = state.filter(|s| s.enabled || api.auth.is_some()) {
        if let Some(user) = verify_stored(api, &state, t)? {
            return rbac::caller_for(api.node.store(), &user).map(Some);
        }
    }
    Err(unauthenticated("etcdserver: invalid auth token"))
}

/// A stored user's token: `s.<user>.<issued>.<mac>`, the user base64url-encoded.
fn stored_token(state: &records::AuthState, user: &records::User, issued: u64) -> String {
    let name = URL_SAFE_NO_PAD.encode(&user.name);
    let issued = issued.to_string();
    let sig = stored_mac(state, user, &name, &issued);
    format!("s.{name}.{issued}.{}", hex::encode(sig))
}

fn stored_mac(
    state: &records::AuthState,
    user: &records::User,
    name: &str,
    issued: &str,
) -> Vec<u8> {
    let hash = user.password_hash.as_deref().unwrap_or("");
    mac(
        &state.key,
        &[
            b"stored user",
            name.as_bytes(),
            issued.as_bytes(),
            hash.as_bytes(),
        ],
    )
}

/// The stored user a token was issued to, if it is still valid for them.
fn verify_stored(
    api: &Api,
    state: &records::AuthState,
    token: &str,
) -> Result<Option<records::User>, EtcdError> {
    let mut parts = token.trim().split('.');
    let (Some("s"), Some(name), Some(issued), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Ok(None);
    };
    let (Ok(sig), Ok(user_name)) = (hex::decode(sig), URL_SAFE_NO_PAD.decode(name)) else {
        return Ok(None);
    };
    let Ok(user_name) = String::from_utf8(user_name) else {
        return Ok(None);
    };
    let Some(user) = records::user(api.node.store(), &user_name)? else {
        return Ok(None);
    };
    let expected = stored_mac(state, &user, name, issued);
    Ok(bool::from(expected.ct_eq(&sig)).then_some(user))
}

/// Middleware on every JSON route: [`decide`], with the token in `Authorization`.
pub async fn require(State(api): State<Api>, req: Request, next: Next) -> Response {
    let open = req.uri().path().ends_with("/auth/authenticate");
    match decide(&api, req.headers(), open, token(req.headers())) {
        Ok(caller) => {
            let mut req = req;
            if let Some(caller) = caller {
                req.extensions_mut().insert(caller);
            }
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
}

impl Api {
    /// Checks a user name and password from `client`; answers a token every node accepts.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(Header, String), EtcdError> {
        if !self.auth_enabled() {
            return Err(EtcdError::new(
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ));
        }
        if name.is_empty() {
            return Err(EtcdError::invalid("etcdserver: user name is empty"));
        }
        let failed =
            || EtcdError::invalid("etcdserver: authentication failed, invalid user ID or password");
        // The admin API's lockouts: past a few failures a user is locked out for doubling
        // times, before any hashing. Counted per user and client address together, so that a
        // guesser cannot lock the gateways' own user out from elsewhere (tokens do not expire,
        // but a restarted gateway must sign in again).
        let from = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let attempt = self
            .guard
            .accounts
            .begin(&format!("etcd user {name} from {from}"))
            .map_err(|wait| {
                EtcdError::new(
                    Code::ResourceExhausted,
                    format!(
                        "etcdserver: too many failed sign-ins as {name:?}; try again in {} s",
                        wait.as_secs().max(1)
                    ),
                )
            })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Some(auth) = self.auth.as_deref().filter(|a| a.user == name) {
            if !auth.accepts(name, password.as_bytes()) {
                attempt.failed();
                return Err(failed());
            }
            attempt.succeeded();
            return Ok((self.current_header(), auth.token(now)));
        }
        let store = self.node.store();
        let state = records::state(store)?.filter(|s| s.enabled || self.auth.is_some());
        let user = records::user(store, name)?;
        // An unknown user, or one without a password, costs the same hashing as a known one
        // (the guard verifies against a decoy), so timing does not tell which users exist.
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let matches = self
            .guard
            .verify(password.to_string(), stored)
            .await
            .map_err(hashing_error)?;
        match (matches, state, user) {
            (true, Some(state), Some(user)) => {
                attempt.succeeded();
                Ok((self.current_header(), stored_token(&state, &user, now)))
            }
            _ => {
                attempt.failed();
                Err(failed())
            }
        }
    }

    /// The endpoint's configured user, if it has one.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth.as_deref().map(|a| a.user.as_str())
    }
}

/// `POST /v3/auth/authenticate {"name","password"}` → `{"header", "token"}`.
pub async fn authenticate(
    State(api): State<Api>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    body: axum::body::Body,
) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(
                &v,
                "etcdserverpb.AuthenticateRequest",
                &["name", "password"],
            )?;
            let (header, token) = api
                .authenticate(
                    &o.string("name")?,
                    &o.string("password")?,
                    Some(client.ip()),
                )
                .await?;
            Ok(Out::new()
                .value("header", encode::header(&header))
                .string("token", &token)
                .build())
        }
        .await,
    )
}

/// `POST /v3/auth/status` → whether authentication is on.
pub async fn status(State(api): State<Api>) -> Response {
    super::reply(
        async {
            let (header, enabled, revision) = api.auth_status().await?;
            Ok(Out::new()
                .value("header", encode::header(&header))
                .flag("enabled", enabled)
                .uint("authRevision", revision)
                .build())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_same_password() {
        let auth = EtcdAuth::new("gw".into(), b"pw-long-enough".to_vec());
        assert!(auth.accepts("gw", b"pw-long-enough"));
        assert!(!auth.accepts("gw", b"pw"));
        assert!(!auth.accepts("root", b"pw-long-enough"));
        let t = auth.token(1_700_000_000);
        assert!(auth.verify(&t));
        // Another node with the same settings accepts it; a changed password revokes it.
        assert!(EtcdAuth::new("gw".into(), b"pw-long-enough".to_vec()).verify(&t));
        assert!(!EtcdAuth::new("gw".into(), b"new-password".to_vec()).verify(&t));
        for bad in [
            "",
            "a.b",
            "a.b.c",
            &format!("{t}x"),
            &t.replacen("1700", "1800", 1),
        ] {
            assert!(!auth.verify(bad), "{bad}");
        }
    }
}
