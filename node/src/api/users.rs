//! User administration (§3.7), all under `admin:users` resolved in `default`. Passwords are
//! hashed with argon2id on a blocking thread. Unknown users are 404.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::auth::password;
use hermes_control::model::User;
use hermes_control::scopes::Scope;

use super::{ApiError, ApiState, Caller, Identity};

pub fn user_json(u: &User) -> Value {
    json!({"sub": u.sub, "username": u.username, "email": u.email, "name": u.name,
           "is_admin": u.is_admin, "must_change_password": u.must_change_password,
           "last_seen": u.last_seen})
}

/// argon2id off the async workers.
pub async fn hash_password(pw: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("password hashing failed: {e}")))
}

async fn admin(state: &ApiState, caller: &Caller) -> Result<(), ApiError> {
    caller
        .authorize(state, "default", Scope::AdminUsers)
        .await
        .map(|_| ())
}

async fn existing(state: &ApiState, sub: &str) -> Result<User, ApiError> {
    state
        .store
        .user(sub)
        .await?
        .ok_or_else(|| ApiError::not_found("user not found"))
}

fn field<'a>(body: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

fn str_field(body: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match field(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

fn bool_field(body: &serde_json::Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match field(body, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    }
}

pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let users: Vec<Value> = state.store.users().await?.iter().map(user_json).collect();
    Ok(Json(json!({"users": users})).into_response())
}

pub async fn create(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let body = super::object_body(&caller.body)?;
    let email = str_field(&body, "email")?
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let pw = str_field(&body, "password")?.unwrap_or_default();
    if email.is_empty() || pw.is_empty() {
        return Err(ApiError::bad_request("email and password are required"));
    }
    if !email.contains('@') || email.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_request("email is not a valid address"));
    }
    password::check_new(&pw).map_err(ApiError::bad_request)?;
    let local = email.split('@').next().unwrap_or_default().to_string();
    let user = User {
        sub: format!("builtin:{email}"),
        username: local.clone(),
        email: email.clone(),
        name: str_field(&body, "name")?
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(local),
        is_admin: bool_field(&body, "is_admin")?.unwrap_or(false),
        must_change_password: true,
        last_seen: String::new(),
        password_hash: hash_password(pw).await?,
    };
    let sub = user.sub.clone();
    state
        .store
        .create_user(user, "create_builtin_user", &caller.operator())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"sub": sub, "email": email})),
    )
        .into_response())
}

pub async fn update(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let body = super::object_body(&caller.body)?;
    let mut user = existing(&state, &sub).await?;
    if let Some(email) = str_field(&body, "email")? {
        user.email = email.trim().to_lowercase();
    }
    if let Some(name) = str_field(&body, "name")? {
        user.name = name;
    }
    if let Some(admin) = bool_field(&body, "is_admin")? {
        user.is_admin = admin;
    }
    state
        .store
        .update_user(user, Some("update_user"), &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn set_admin(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let body = super::object_body(&caller.body)?;
    let flag = bool_field(&body, "is_admin")?
        .ok_or_else(|| ApiError::bad_request("is_admin is required"))?;
    let mut user = existing(&state, &sub).await?;
    user.is_admin = flag;
    let action = if flag { "grant_admin" } else { "revoke_admin" };
    state
        .store
        .update_user(user, Some(action), &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn force_password_change(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let body = super::object_body(&caller.body)?;
    let flag = bool_field(&body, "must_change_password")?
        .ok_or_else(|| ApiError::bad_request("must_change_password is required"))?;
    let mut user = existing(&state, &sub).await?;
    user.must_change_password = flag;
    let action = if flag {
        "force_password_change"
    } else {
        "clear_force_password_change"
    };
    state
        .store
        .update_user(user, Some(action), &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn reset_password(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    if !sub.starts_with("builtin:") {
        return Err(ApiError::bad_request(
            "can only reset password for builtin users",
        ));
    }
    let body = super::object_body(&caller.body)?;
    let pw = str_field(&body, "new_password")?.unwrap_or_default();
    if pw.is_empty() {
        return Err(ApiError::bad_request("new_password is required"));
    }
    password::check_new(&pw).map_err(ApiError::bad_request)?;
    let mut user = existing(&state, &sub).await?;
    user.password_hash = hash_password(pw).await?;
    user.must_change_password = true;
    state
        .store
        .update_user(user, Some("admin_reset_password"), &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    if let Identity::User { user, .. } = &caller.identity {
        if user.sub == sub {
            return Err(ApiError::bad_request("cannot delete yourself"));
        }
    }
    state.store.delete_user(&sub, &caller.operator()).await?;
    Ok(Json(json!({"ok": true})).into_response())
}
