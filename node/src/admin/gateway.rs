//! `/api/v1/gateway/…`: what this node's proxy is serving — the compiled routes, the domains
//! with their hosts, and the documents it refused.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AdminState;

pub async fn routes(State(state): State<AdminState>) -> Response {
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
    Json(json!({"routes": routes, "skipped": table.skipped})).into_response()
}

pub async fn domains(State(state): State<AdminState>) -> Response {
    let snapshot = state.gateway.snapshot();
    let errors: Vec<serde_json::Value> = state
        .gateway
        .config_errors()
        .iter()
        .map(|(key, reason)| json!({"key": key, "error": reason}))
        .collect();
    Json(json!({
        "domains": snapshot.table.domains,
        "clusters": snapshot.clusters.names(),
        "invalid": errors,
    }))
    .into_response()
}
