//! Sign-in of built-in users and who-am-I (§3.3, §3.7): login issues an HS256 session token
//! (checked for `alg`, `iss`, `aud`, expiry and a capped lifetime, unlike the original, §10.1
//! S7); passwords stored as bcrypt by the original are verified and upgraded to argon2id on
//! login. Sign-ins are throttled and their hashing bounded ([`super::login_guard`]); a
//! password change moves the user's token epoch on, which revokes every earlier token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::auth::{password, token};
use hermes_control::model::{now_rfc3339, unix_now, Operator, User};
use hermes_control::scopes::Scope;
use hermes_control::store::ControlError;

use super::login_guard::HashingError;
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

/// Answers 429 with `Retry-After` while `key` is locked out.
fn throttled(wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil() as u64;
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed sign-ins; try again in {secs} s"),
    )
    .with_retry_after(secs)
}

impl From<HashingError> for ApiError {
    fn from(e: HashingError) -> Self {
        match e {
            HashingError::Busy => ApiError::unavailable(e.to_string()),
            HashingError::Failed(_) => ApiError::internal(e.to_string()),
            HashingError::Refused(_) => ApiError::bad_request(e.to_string()),
        }
    }
}

pub async fn login(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body = fields::object(&body)?;
    fields::only(&body, &["email", "password"])?;
    let email = fields::trimmed(&body, "email")?.to_lowercase();
    let pw = fields::string(&body, "password")?.unwrap_or_default();
    if email.is_empty() || pw.is_empty() {
        return Err(ApiError::bad_request("email and password are required"));
    }
    let guard = &state.guard;
    let client = peer.ip().to_string();
    let by_client = guard.clients.begin(&client).map_err(throttled)?;
    let by_account = guard.accounts.begin(&email).map_err(throttled)?;
    let sub = format!("builtin:{email}");
    // A user or password made through another node a moment ago must work here at once: a
    // stale refusal would also count as a failed attempt against the account.
    state.store.catch_up().await?;
    let user = state.store.user(&sub).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    // Unknown accounts cost the same work as known ones (see `login_guard`).
    if !guard.verify(pw.clone(), stored).await? {
        by_client.failed();
        by_account.failed();
        return Err(ApiError::unauthorized("invalid email or password"));
    }
    by_client.succeeded();
    by_account.succeeded();
    let Some(user) = user else {
        return Err(ApiError::unauthorized("invalid email or password"));
    };
    let user = record_sign_in(&state, &sub, user.password_hash, &pw).await?;
    state.store.ensure_signing_key(unix_now()).await?;
    let keys = state.store.signing_keys().await?;
    let now = unix_now();
    let key = keys
        .iter()
        .find(|k| k.status == token::KeyStatus::Active && k.usable(now))
        .ok_or_else(|| ApiError::internal("no active signing key"))?;
    let claims = token::claims_for(
        &user.sub,
        &user.username,
        &user.email,
        &user.name,
        now,
        user.token_epoch,
    );
    let mut out = json!({"access_token": token::issue(key, &claims)});
    if user.must_change_password {
        out["must_change_password"] = Value::Bool(true);
    }
    Ok(Json(out).into_response())
}

/// Records a sign-in (`last_seen`, and the hash upgraded to the store's scheme) on the record
/// as stored, if the password that verified (`verified`, the hash it matched) is still its
/// password: one changed or reset meanwhile, through any node, refuses the sign-in and is
/// never written back. The hash may also have changed because a concurrent sign-in upgraded
/// it: then the password is checked once more against the new hash. Answers the record as
/// stored; the token carries its epoch, which a store may derive from the hash (the
/// PostgreSQL store does).
async fn record_sign_in(
    state: &ApiState,
    sub: &str,
    mut verified: String,
    pw: &str,
) -> Result<User, ApiError> {
    let refused = || ApiError::unauthorized("invalid email or password");
    for again in [false, true] {
        let upgraded = if state.guard.needs_upgrade(&verified) {
            match state.guard.hash(pw.to_string()).await {
                Ok(hash) => Some(hash),
                // The store's scheme cannot hold this password (bcrypt's 72 bytes): the hash
                // that just verified stays.
                Err(HashingError::Refused(_)) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let seen = now_rfc3339();
        let recorded = state
            .store
            .update_user(sub, None, &Operator::default(), &|u: &mut User| {
                if u.password_hash != verified {
                    return Err(ControlError::Conflict("the password changed".into()));
                }
                if let Some(hash) = &upgraded {
                    u.password_hash = hash.clone();
                }
                u.last_seen = seen.clone();
                Ok(())
            })
            .await;
        match recorded {
            Ok(user) => return Ok(user),
            Err(ControlError::Conflict(_)) if !again => {
                let current = state.store.user(sub).await?.ok_or_else(refused)?;
                let hash = current.password_hash;
                if !state
                    .guard
                    .verify(pw.to_string(), Some(hash.clone()))
                    .await?
                {
                    return Err(refused());
                }
                verified = hash;
            }
            Err(ControlError::Conflict(_) | ControlError::NotFound(_)) => return Err(refused()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(refused())
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
    let user = state
        .store
        .user(&user.sub)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))?;
    if user.password_hash.is_empty() {
        return Err(ApiError::bad_request(
            "cannot change password for this account",
        ));
    }
    // Guessing the current password through a stolen session is throttled like a sign-in.
    let account = user.email.to_lowercase();
    let attempt = state.guard.accounts.begin(&account).map_err(throttled)?;
    if !state
        .guard
        .verify(old, Some(user.password_hash.clone()))
        .await?
    {
        attempt.failed();
        return Err(ApiError::unauthorized("incorrect current password"));
    }
    attempt.succeeded();
    let verified = user.password_hash;
    let hash = state.guard.hash(new).await?;
    state
        .store
        .update_user(&user.sub, None, &caller.operator(), &|u: &mut User| {
            // Reset or changed through another node since it was read: the current password
            // this caller proved is no longer the password.
            if u.password_hash != verified {
                return Err(ControlError::Conflict(
                    "the password was changed meanwhile; sign in again".into(),
                ));
            }
            u.password_hash = hash.clone();
            u.must_change_password = false;
            // Every session of this user, this one too, ends: sign in again with the new
            // password.
            u.token_epoch += 1;
            Ok(())
        })
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

/// `?grace=<seconds>`: how long the retired keys still verify tokens (default and most 24 h,
/// as the original; `0` revokes every token they signed at once).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateQuery {
    grace: Option<i64>,
}

pub async fn rotate_key(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<RotateQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state, "default", Scope::AdminUsers)
        .await?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("grace: {e}")))?;
    let grace = query.grace.unwrap_or(token::ROTATION_GRACE_SECS);
    if !(0..=token::ROTATION_GRACE_SECS).contains(&grace) {
        return Err(ApiError::bad_request(format!(
            "grace: must be between 0 and {} seconds",
            token::ROTATION_GRACE_SECS
        )));
    }
    let key = state.store.rotate_signing_key(unix_now(), grace).await?;
    Ok(Json(json!({"kid": key.kid, "grace_period": go_duration(grace)})).into_response())
}

/// Seconds as Go's `time.Duration.String()` prints whole seconds (`24h0m0s`, `0s`), the
/// original's `grace_period` format.
fn go_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_print_like_go_durations() {
        assert_eq!(go_duration(86_400), "24h0m0s");
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(3_601), "1h0m1s");
    }
}
