//! Namespace members and OIDC group bindings (§3.7).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::model::Member;
use hermes_control::scopes::{Role, Scope};

use super::{fields, ApiError, ApiState, Caller, Ns};

fn role(body: &fields::Object) -> Result<Role, ApiError> {
    Role::parse(&fields::trimmed(body, "role")?)
        .ok_or_else(|| ApiError::bad_request("role must be owner, editor, or viewer"))
}

pub async fn list(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberRead).await?;
    let mut out = Vec::new();
    for m in state.store.members(&ns).await? {
        let user = state.store.user(&m.user_sub).await?;
        let mut v = json!({"namespace": m.namespace, "user_sub": m.user_sub, "role": m.role});
        if let Some(u) = user {
            v["username"] = json!(u.username);
            v["email"] = json!(u.email);
            v["name"] = json!(u.name);
        }
        out.push(v);
    }
    out.sort_by(|a, b| {
        let key = |v: &Value| v["username"].as_str().unwrap_or_default().to_string();
        key(a).cmp(&key(b))
    });
    Ok(Json(json!({"members": out})).into_response())
}

pub async fn set(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberWrite).await?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["user_sub", "role"])?;
    let sub = fields::trimmed(&body, "user_sub")?;
    if sub.is_empty() {
        return Err(ApiError::bad_request("user_sub is required"));
    }
    let role = role(&body)?;
    if state.store.user(&sub).await?.is_none() {
        return Err(ApiError::not_found(
            "user not found (user must login at least once)",
        ));
    }
    state
        .store
        .set_member(
            Member {
                namespace: ns,
                user_sub: sub,
                role: role.as_str().into(),
            },
            &caller.operator(),
        )
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn remove(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(sub): Path<String>,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberWrite).await?;
    state
        .store
        .remove_member(&ns, &sub, &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn bindings(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberRead).await?;
    let mut all = state.store.group_bindings(&ns).await?;
    all.sort_by(|a, b| a.group.cmp(&b.group));
    let list: Vec<Value> = all
        .iter()
        .map(|b| json!({"id": b.id, "namespace": b.namespace, "group": b.group, "role": b.role}))
        .collect();
    Ok(Json(json!({"bindings": list})).into_response())
}

pub async fn set_binding(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberWrite).await?;
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["group", "role"])?;
    let group = fields::trimmed(&body, "group")?;
    if group.is_empty() {
        return Err(ApiError::bad_request("group is required"));
    }
    let role = role(&body)?;
    state
        .store
        .set_group_binding(&ns, &group, role.as_str(), &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}

pub async fn remove_binding(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::MemberWrite).await?;
    state
        .store
        .remove_group_binding(&ns, &group, &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}
