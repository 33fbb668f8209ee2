//! A small client of the control-plane REST API for the process tests: anonymous, HMAC-signed
//! (v2 with a fresh nonce per request, or the original's v1 scheme, from `hermes_compat::hmac`)
//! or with a bearer token.

use serde_json::Value;

/// The thirteen scopes of §4.5, in the order of `/api/v1/scopes`.
pub const ALL_SCOPES: [&str; 13] = [
    "config:read",
    "config:write",
    "config:watch",
    "status:read",
    "status:write",
    "credential:read",
    "credential:write",
    "member:read",
    "member:write",
    "audit:read",
    "admin:users",
    "namespace:read",
    "namespace:write",
];

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// HMAC v2: query, namespace and a nonce signed too.
    Hmac {
        access_key: String,
        secret_key: String,
    },
    /// The original's HMAC scheme, as existing controllers send it.
    HmacV1 {
        access_key: String,
        secret_key: String,
    },
    Bearer(String),
}

#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub auth: Auth,
    pub namespace: Option<String>,
}

/// A nonce that differs per request (time and a counter; uniqueness is all it needs).
fn rand_nonce() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos << 32)
        ^ u128::from(COUNTER.fetch_add(1, Ordering::Relaxed))
        ^ u128::from(std::process::id())
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Api {
    pub fn anonymous(base: &str) -> Api {
        Api {
            base: base.to_string(),
            auth: Auth::None,
            namespace: None,
        }
    }

    pub fn with(&self, auth: Auth) -> Api {
        Api {
            auth,
            ..self.clone()
        }
    }

    pub fn in_ns(&self, ns: &str) -> Api {
        Api {
            namespace: Some(ns.to_string()),
            ..self.clone()
        }
    }

    /// Sends a request signed at `at` (Unix seconds); answers (status, JSON body).
    pub fn call_at(&self, method: &str, path: &str, body: Option<&str>, at: i64) -> (u16, Value) {
        let bytes = body.unwrap_or("").as_bytes();
        let mut req = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .request(method, &format!("{}{path}", self.base));
        if let Some(ns) = &self.namespace {
            req = req.set("X-Hermes-Namespace", ns);
        }
        let (sign_path, query) = path.split_once('?').unwrap_or((path, ""));
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.set("Authorization", &format!("Bearer {t}")),
            Auth::Hmac {
                access_key,
                secret_key,
            } => {
                let nonce = format!("{:032x}", rand_nonce());
                let signed = hermes_compat::hmac::Signed {
                    method,
                    path: sign_path,
                    query,
                    namespace: self.namespace.as_deref().unwrap_or(""),
                    nonce: &nonce,
                };
                for (k, v) in hermes_compat::hmac::client_headers_v2(
                    access_key, secret_key, &signed, at, bytes,
                ) {
                    req = req.set(k, &v);
                }
                req = req.set("X-Hermes-Nonce", &nonce);
            }
            Auth::HmacV1 {
                access_key,
                secret_key,
            } => {
                for (k, v) in hermes_compat::hmac::client_headers(
                    access_key, secret_key, method, sign_path, at, bytes,
                ) {
                    req = req.set(k, &v);
                }
            }
        }
        let result = match body {
            Some(b) => req.set("content-type", "application/json").send_string(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string());
        self.call_at(method, path, text.as_deref(), now())
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(body))
    }

    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("PUT", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None)
    }

    /// Creates a credential with `scopes` (in this client's namespace) and returns a client
    /// using it.
    pub fn credential(&self, scopes: &[&str]) -> Api {
        self.credential_from(serde_json::json!({"description": "test", "scopes": scopes}))
    }

    /// Creates an all-namespaces credential with every scope (the caller must be an admin,
    /// or first-time setup) and returns a client using it.
    pub fn admin_credential(&self) -> Api {
        self.credential_from(serde_json::json!({
            "description": "admin", "scopes": ALL_SCOPES, "all_namespaces": true,
        }))
    }

    fn credential_from(&self, body: Value) -> Api {
        let (status, body) = self.post("/api/v1/credentials", &body);
        assert_eq!(status, 201, "creating a credential: {body}");
        self.with(Auth::Hmac {
            access_key: body["access_key"].as_str().unwrap().to_string(),
            secret_key: body["secret_key"].as_str().unwrap().to_string(),
        })
    }

    /// Signs in as a built-in user; a client with the session token.
    pub fn sign_in(&self, email: &str, password: &str) -> Api {
        let (status, body) = self.post(
            "/api/auth/login",
            &serde_json::json!({"email": email, "password": password}),
        );
        assert_eq!(status, 200, "signing in as {email}: {body}");
        self.with(Auth::Bearer(
            body["access_token"].as_str().unwrap().to_string(),
        ))
    }

    /// Signs in as the initial admin (`admin@hermes.local`) of the node whose data directory
    /// is `data_dir`, with the password the node wrote there.
    pub fn initial_admin(&self, data_dir: &std::path::Path) -> Api {
        // The node creates the admin once its store takes writes, just after it is ready.
        let file = data_dir.join("initial-admin-password");
        let password = crate::harness::wait_for(
            "the initial admin's password file",
            std::time::Duration::from_secs(10),
            || {
                std::fs::read_to_string(&file)
                    .ok()
                    .filter(|p| !p.trim().is_empty())
            },
        );
        self.sign_in("admin@hermes.local", password.trim())
    }
}
