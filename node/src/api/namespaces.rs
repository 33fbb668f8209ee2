//! Namespaces (§3.7). Namespace and user administration resolve roles in `default`, as the
//! original did.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::model::Member;
use hermes_control::scopes::{Role, Scope};
use hermes_control::validate;

use super::{ApiError, ApiState, Caller, Identity};

pub async fn list(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    caller
        .authorize(&state, "default", Scope::NamespaceRead)
        .await?;
    let names = state.store.namespaces().await?;
    Ok(Json(json!({"namespaces": names})).into_response())
}

pub async fn create(State(state): State<ApiState>, caller: Caller) -> Result<Response, ApiError> {
    caller
        .authorize(&state, "default", Scope::NamespaceWrite)
        .await?;
    let body = super::object_body(&caller.body)?;
    let name = match body.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return Err(ApiError::bad_request("name must be a string")),
    };
    validate::namespace_name(&name).map_err(ApiError::bad_request)?;
    state
        .store
        .create_namespace(&name, &caller.operator())
        .await?;
    // A signed-in person who creates a namespace owns it.
    if let Identity::User { user, .. } = &caller.identity {
        state
            .store
            .set_member(
                Member {
                    namespace: name.clone(),
                    user_sub: user.sub.clone(),
                    role: Role::Owner.as_str().into(),
                },
                &caller.operator(),
            )
            .await?;
    }
    Ok((StatusCode::CREATED, Json(json!({"name": name}))).into_response())
}
