//! Namespace members and OIDC group bindings (§3.7). Role ceilings (§10.1 S3, in the spirit of
//! the credential ceiling): a caller grants only a role whose scopes it holds in the namespace,
//! and changes or removes only a member or binding whose current role it could grant, so an
//! editor can neither make itself owner nor demote an owner.

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

/// Refuses (403) unless the caller holds every scope of `role` in `ns`.
async fn within_ceiling(
    state: &ApiState,
    caller: &Caller,
    ns: &str,
    role: Role,
    what: &str,
) -> Result<(), ApiError> {
    caller
        .require_all(state, ns, &role.scopes(), &format!("{what} role {role}"))
        .await
}

/// The current role of a member or binding, when there is one it understands.
fn current_role(role: Option<&str>) -> Option<Role> {
    role.and_then(Role::parse)
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
    within_ceiling(&state, &caller, &ns, role, "granting").await?;
    let current = state.store.member(&ns, &sub).await?;
    let seen = current.as_ref().map(|m| m.role.as_str());
    if let Some(old) = current_role(seen) {
        within_ceiling(&state, &caller, &ns, old, "changing a member with").await?;
    }
    // The store refuses an unknown user (`NotFound`), and the write holds only if the role is still the one just checked.
    state
        .store
        .set_member(
            Member {
                namespace: ns.clone(),
                user_sub: sub.clone(),
                role: role.as_str().into(),
            },
            seen,
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
    let current = state.store.member(&ns, &sub).await?;
    let seen = current.as_ref().map(|m| m.role.as_str());
    if let Some(old) = current_role(seen) {
        within_ceiling(&state, &caller, &ns, old, "removing a member with").await?;
    }
    state
        .store
        .remove_member(&ns, &sub, seen, &caller.operator())
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
    within_ceiling(&state, &caller, &ns, role, "granting").await?;
    let current = state.store.group_binding(&ns, &group).await?;
    let seen = current.as_ref().map(|b| b.role.as_str());
    if let Some(old) = current_role(seen) {
        within_ceiling(&state, &caller, &ns, old, "changing a binding with").await?;
    }
    state
        .store
        .set_group_binding(&ns, &group, role.as_str(), seen, &caller.operator())
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
    let current = state.store.group_binding(&ns, &group).await?;
    let seen = current.as_ref().map(|b| b.role.as_str());
    if let Some(old) = current_role(seen) {
        within_ceiling(&state, &caller, &ns, old, "removing a binding with").await?;
    }
    state
        .store
        .remove_group_binding(&ns, &group, seen, &caller.operator())
        .await?;
    Ok(Json(json!({"ok": true})).into_response())
}
