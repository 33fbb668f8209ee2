//! Namespaces (§3.7). Namespace and user administration resolve roles in `default`, as the
//! original did.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use hermes_control::scopes::Scope;
use hermes_control::validate;

use super::{fields, ApiError, ApiState, Caller, Identity};

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
    let body = fields::object(&caller.body)?;
    fields::only(&body, &["name"])?;
    let name = fields::trimmed(&body, "name")?;
    validate::namespace_name(&name).map_err(ApiError::bad_request)?;
    // A signed-in person who creates a namespace owns it.
    let owner = match &caller.identity {
        Identity::User { user, .. } => Some(user.sub.as_str()),
        _ => None,
    };
    state
        .store
        .create_namespace(&name, owner, &caller.operator())
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"name": name}))).into_response())
}
