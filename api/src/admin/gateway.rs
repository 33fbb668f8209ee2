//! `/api/v1/gateway/…`: what this node's proxy is serving — the compiled routes, the domains
//! with their hosts, and the documents it refused. Configuration is not for anonymous eyes:
//! both need `config:read` in the namespace this node serves, and header-transform values are
//! redacted as in the REST API ([`hermes_control::redact`]).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use hermes_control::model::Kind;
use hermes_control::redact;
use hermes_control::scopes::Scope;

use super::AdminState;
use crate::{ApiError, Caller};

pub async fn routes(State(state): State<AdminState>, caller: Caller) -> Result<Response, ApiError> {
    caller
        .authorize(&state.api, &state.namespace, Scope::ConfigRead)
        .await?;
    let table = state.gateway.snapshot().table.clone();
    let routes: Vec<serde_json::Value> = table
        .routes()
        .iter()
        .map(|r| {
            json!({
                "domain": &*r.domain,
                "name": &*r.name,
                "uri": r.uri,
                "priority": r.priority,
                "clusters": r.clusters,
            })
        })
        .collect();
    Ok(Json(json!({"routes": routes, "skipped": table.skipped})).into_response())
}

pub async fn domains(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let grant = caller
        .authorize(&state.api, &state.namespace, Scope::ConfigRead)
        .await?;
    let snapshot = state.gateway.snapshot();
    let domains: Vec<serde_json::Value> = snapshot
        .table
        .domains
        .iter()
        .map(|d| {
            let doc = serde_json::to_value(&**d).unwrap_or_default();
            redact::for_caller(Kind::Domain, doc, &grant.scopes)
        })
        .collect();
    let errors: Vec<serde_json::Value> = state
        .gateway
        .config_errors()
        .iter()
        .map(|(key, reason)| json!({"key": key, "error": reason}))
        .collect();
    Ok(Json(json!({
        "domains": domains,
        "clusters": snapshot.clusters.names(),
        "invalid": errors,
    }))
    .into_response())
}
