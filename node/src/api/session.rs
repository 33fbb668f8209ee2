//! Sign-in of built-in users and who-am-I (§3.3, §3.7): login issues an HS256 session token
//! (checked for `alg`, `iss`, `aud` and expiry, unlike the original, §10.1 S7); passwords
//! stored as bcrypt by the original are verified and upgraded to argon2id on login.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::auth::{password, token};
use hermes_control::model::{now_rfc3339, unix_now, Operator};
use hermes_control::scopes::Scope;

use super::users::hash_password;
use super::{fields, ApiError, ApiState, Caller, Identity, Ns};

pub async fn auth_config(State(state): State<ApiState>) -> Response {
    let mode = if state.oidc.is_some() {
        "oidc"
    } else {
        "builtin"
    };
    Json(json!({"enabled": true, "mode": mode})).into_response()
}

pub async fn scopes() -> Response {
    let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    Json(json!({"scopes": names})).into_response()
}

pub async fn login(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = fields::object(&body)?;
    fields::only(&body, &["email", "password"])?;
    let email = fields::trimmed(&body, "email")?.to_lowercase();
    let pw = fields::string(&body, "password")?.unwrap_or_default();
    if email.is_empty() || pw.is_empty() {
        return Err(ApiError::bad_request("email and password are required"));
    }
    let denied = || ApiError::unauthorized("invalid email or password");
    let sub = format!("builtin:{email}");
    let mut user = state.store.user(&sub).await?.ok_or_else(denied)?;
    if user.password_hash.is_empty() {
        return Err(denied());
    }
    let stored = user.password_hash.clone();
    let candidate = pw.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&candidate, &stored))
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?;
    if !ok {
        return Err(denied());
    }
    if password::needs_upgrade(&user.password_hash) {
        user.password_hash = hash_password(pw).await?;
    }
    user.last_seen = now_rfc3339();
    state
        .store
        .update_user(user.clone(), None, &Operator::default())
        .await?;
    state.store.ensure_signing_key(unix_now()).await?;
    let keys = state.store.signing_keys().await?;
    let now = unix_now();
    let key = keys
        .iter()
        .find(|k| k.status == token::KeyStatus::Active && k.usable(now))
        .ok_or_else(|| ApiError::internal("no active signing key"))?;
    let claims = token::claims_for(&user.sub, &user.username, &user.email, &user.name, now);
    let mut out = json!({"access_token": token::issue(key, &claims)});
    if user.must_change_password {
        out["must_change_password"] = Value::Bool(true);
    }
    Ok(Json(out).into_response())
}

pub async fn change_password(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let Identity::User { user, .. } = &caller.identity else {
        return match caller.identity {
            Identity::Bootstrap => Err(ApiError::unauthorized("authentication required")),
            _ => Err(ApiError::bad_request(
                "cannot change password for this account",
            )),
        };
    };
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["old_password", "new_password"])?;
    let old = fields::string(&body, "old_password")?.unwrap_or_default();
    let new = fields::string(&body, "new_password")?.unwrap_or_default();
    if new.is_empty() {
        return Err(ApiError::bad_request("new_password is required"));
    }
    password::check_new(&new).map_err(ApiError::bad_request)?;
    let mut user = state
        .store
        .user(&user.sub)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    if user.password_hash.is_empty() {
        return Err(ApiError::bad_request(
            "cannot change password for this account",
        ));
    }
    let stored = user.password_hash.clone();
    let ok = tokio::task::spawn_blocking(move || password::verify(&old, &stored))
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))?;
    if !ok {
        return Err(ApiError::unauthorized("incorrect current password"));
    }
    user.password_hash = hash_password(new).await?;
    user.must_change_password = false;
    state
        .store
        .update_user(user, None, &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state, "default", Scope::AdminUsers)
        .await?;
    let key = state
        .store
        .rotate_signing_key(unix_now(), token::ROTATION_GRACE_SECS)
        .await?;
    Ok(Json(json!({"kid": key.kid, "grace_period": "24h0m0s"})).into_response())
}

pub async fn userinfo(caller: Caller) -> Result<Response, ApiError> {
    let Identity::User { claims, .. } = &caller.identity else {
        return Err(ApiError::unauthorized("no valid token"));
    };
    let mut v = json!({"sub": claims.sub, "exp": claims.exp});
    if !claims.groups.is_empty() {
        v["groups"] = json!(claims.groups);
    }
    for (k, val) in [
        ("preferred_username", &claims.preferred_username),
        ("email", &claims.email),
        ("name", &claims.name),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    Ok(Json(v).into_response())
}

pub async fn whoami(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    let grant = caller.grant(&state, &ns).await?;
    let scopes: Vec<&str> = grant.scopes.iter().map(|s| s.as_str()).collect();
    match &caller.identity {
        Identity::Bootstrap => Err(ApiError::unauthorized("authentication required")),
        Identity::Credential(c) => Ok(Json(json!({
            "source": "hmac", "subject": format!("credential:{}", c.access_key),
            "namespace": c.namespace, "scopes": scopes, "access_key": c.access_key,
        }))
        .into_response()),
        Identity::User { user, claims } => {
            let groups = if claims.groups.is_empty() {
                Value::Null
            } else {
                json!(claims.groups)
            };
            let role = if user.is_admin {
                "admin".to_string()
            } else {
                grant
                    .role
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default()
            };
            Ok(Json(json!({
                "source": "oidc", "sub": user.sub, "username": user.username,
                "email": user.email, "name": user.name, "groups": groups,
                "is_admin": user.is_admin, "role": role, "role_source": grant.role_source,
                "scopes": scopes,
            }))
            .into_response())
        }
    }
}
