//! User administration (§3.7), all under `admin:users` resolved in `default`. Passwords are
//! hashed with argon2id through the login guard (a few at a time, off the runtime). Unknown
//! users are 404; the store refuses to remove the last admin (409) and to give two users one
//! e-mail (409). A password reset revokes the user's sessions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::auth::password;
use hermes_control::model::User;
use hermes_control::scopes::Scope;

use super::{fields, ApiError, ApiState, Caller, Identity};

pub fn user_json(u: &User) -> Value {
    json!({"sub": u.sub, "username": u.username, "email": u.email, "name": u.name,
           "is_admin": u.is_admin, "must_change_password": u.must_change_password,
           "last_seen": u.last_seen})
}

async fn admin(state: &ApiState, caller: &Caller) -> Result<(), ApiError> {
    caller
        .authorize(state, "default", Scope::AdminUsers)
        .await
        .map(|_| ())
}

pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let users: Vec<Value> = state.store.users().await?.iter().map(user_json).collect();
    Ok(Json(json!({"users": users})).into_response())
}

pub async fn create(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    admin(&state, &caller).await?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["email", "password", "name", "is_admin"])?;
    let email = fields::string(&body, "email")?
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let pw = fields::string(&body, "password")?.unwrap_or_default();
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
        name: fields::string(&body, "name")?
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(local),
        is_admin: fields::boolean(&body, "is_admin")?.unwrap_or(false),
        must_change_password: true,
        last_seen: String::new(),
        password_hash: state.guard.hash(pw).await?,
        token_epoch: 0,
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
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["email", "name", "is_admin"])?;
    let email = match fields::string(&body, "email")? {
        Some(email) => {
            let email = email.trim().to_lowercase();
            if !email.contains('@') || email.chars().any(char::is_whitespace) {
                return Err(ApiError::bad_request("email is not a valid address"));
            }
            Some(email)
        }
        None => None,
    };
    let name = fields::string(&body, "name")?;
    let is_admin = fields::boolean(&body, "is_admin")?;
    state
        .store
        .update_user(
            &sub,
            Some("update_user"),
            &caller.operator(),
            &|u: &mut User| {
                if let Some(email) = &email {
                    u.email = email.clone();
                }
                if let Some(name) = &name {
                    u.name = name.clone();
                }
                if let Some(admin) = is_admin {
                    u.is_admin = admin;
                }
                Ok(())
            },
        )
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

/// Sets one of a user's flags from a `{"<field>": bool}` body, audited as `actions.0` when
/// set and `actions.1` when cleared.
async fn set_flag(
    state: &ApiState,
    caller: &Caller,
    sub: &str,
    field: &str,
    actions: (&str, &str),
    apply: fn(&mut User, bool),
) -> Result<Response, ApiError> {
    admin(state, caller).await?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &[field])?;
    let flag = fields::boolean(&body, field)?
        .ok_or_else(|| ApiError::bad_request(format!("{field} is required")))?;
    let action = if flag { actions.0 } else { actions.1 };
    state
        .store
        .update_user(sub, Some(action), &caller.operator(), &|u: &mut User| {
            apply(u, flag);
            Ok(())
        })
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn set_admin(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    set_flag(
        &state,
        &caller,
        &sub,
        "is_admin",
        ("grant_admin", "revoke_admin"),
        |u, f| u.is_admin = f,
    )
    .await
}

pub async fn force_password_change(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    set_flag(
        &state,
        &caller,
        &sub,
        "must_change_password",
        ("force_password_change", "clear_force_password_change"),
        |u, f| u.must_change_password = f,
    )
    .await
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
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["new_password"])?;
    let pw = fields::string(&body, "new_password")?.unwrap_or_default();
    if pw.is_empty() {
        return Err(ApiError::bad_request("new_password is required"));
    }
    password::check_new(&pw).map_err(ApiError::bad_request)?;
    let hash = state.guard.hash(pw).await?;
    state
        .store
        .update_user(
            &sub,
            Some("admin_reset_password"),
            &caller.operator(),
            &|u: &mut User| {
                u.password_hash = hash.clone();
                u.must_change_password = true;
                // Past every epoch a token was issued in, including one written meanwhile.
                u.token_epoch += 1;
                Ok(())
            },
        )
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
