//! Who may use the etcd endpoint. Without a configured user the endpoint serves only direct
//! loopback clients (the node refuses to bind it elsewhere, and refuses requests that came
//! through a proxy, the node's own gateway included). With one (`--etcd-user` and
//! `--etcd-password-file`), clients authenticate as with etcd's auth: `POST
//! /v3/auth/authenticate {"name","password"}` answers a token, and every other request carries
//! it in `Authorization` (the raw token, no scheme), as the original gateway and etcd clients
//! send it; gRPC calls carry it in the `token` metadata, as etcd's gRPC clients do.
//!
//! Tokens are stateless (like etcd's `--auth-token jwt`): the user, the issue time and an
//! HMAC-SHA256 under a key derived from the password, so every node accepts every node's
//! tokens and a restart keeps them. They do not expire, because the original gateway never
//! renews its token; changing the password revokes every token at once.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use hermes_raft::proxied::came_through_proxy;
use hermes_raft::Header;

use super::body::read_json;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::{Code, EtcdError};
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

fn unauthenticated(message: &str) -> EtcdError {
    EtcdError::new(Code::Unauthenticated, message)
}

/// The authentication decision for one request of either front end: without a configured
/// user, only direct clients; with one, a valid token, unless the call is `open` (signing in).
pub fn decide(
    api: &Api,
    headers: &HeaderMap,
    open: bool,
    token: Option<&str>,
) -> Result<(), EtcdError> {
    match &api.auth {
        None if came_through_proxy(headers) => Err(EtcdError::new(
            Code::PermissionDenied,
            "etcdserver: this endpoint serves only direct local clients; requests through a proxy are refused",
        )),
        None => Ok(()),
        Some(_) if open => Ok(()),
        Some(auth) => match token.filter(|t| !t.is_empty()) {
            None => Err(EtcdError::invalid("etcdserver: user name is empty")),
            Some(t) if auth.verify(t) => Ok(()),
            Some(_) => Err(unauthenticated("etcdserver: invalid auth token")),
        },
    }
}

/// Middleware on every JSON route: [`decide`], with the token in `Authorization`.
pub async fn require(State(api): State<Api>, req: Request, next: Next) -> Response {
    let open = req.uri().path().ends_with("/auth/authenticate");
    match decide(&api, req.headers(), open, token(req.headers())) {
        Ok(()) => next.run(req).await,
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
    /// Checks a user name and password; answers a token every node accepts.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<(Header, String), EtcdError> {
        let Some(auth) = &self.auth else {
            return Err(EtcdError::new(
                Code::FailedPrecondition,
                "etcdserver: authentication is not enabled",
            ));
        };
        if name.is_empty() {
            return Err(EtcdError::invalid("etcdserver: user name is empty"));
        }
        if !auth.accepts(name, password.as_bytes()) {
            return Err(EtcdError::invalid(
                "etcdserver: authentication failed, invalid user ID or password",
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok((self.current_header(), auth.token(now)))
    }

    /// Whether the endpoint requires a password.
    pub fn auth_enabled(&self) -> bool {
        self.auth.is_some()
    }

    /// The endpoint's one user, if it has one.
    pub fn auth_user(&self) -> Option<&str> {
        self.auth.as_deref().map(|a| a.user.as_str())
    }
}

/// `POST /v3/auth/authenticate {"name","password"}` → `{"header", "token"}`.
pub async fn authenticate(State(api): State<Api>, body: axum::body::Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(
                &v,
                "etcdserverpb.AuthenticateRequest",
                &["name", "password"],
            )?;
            let (header, token) = api.authenticate(&o.string("name")?, &o.string("password")?)?;
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
    super::reply(Ok(Out::new()
        .value("header", encode::header(&api.current_header()))
        .flag("enabled", api.auth_enabled())
        .build()))
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
