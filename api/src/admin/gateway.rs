//! `/api/v1/gateway/…`: what this node's proxy is serving — the compiled routes, the domains
//! with their hosts, the documents it refused, and the health of every upstream node. Configuration is not for anonymous eyes:
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

/// Every cluster's nodes as this node's proxy sees them: weight, requests in flight, failures
/// charged, active health, passive ejection and circuit breaker.
pub async fn upstreams(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state.api, &state.namespace, Scope::ConfigRead)
        .await?;
    let snapshot = state.gateway.snapshot();
    let now = tokio::time::Instant::now();
    let mut clusters: Vec<serde_json::Value> = snapshot
        .clusters
        .all()
        .map(|c| {
            let nodes: Vec<serde_json::Value> = c
                .balancer
                .endpoints()
                .iter()
                .map(|e| {
                    let ejected = e
                        .health
                        .ejected_until(now)
                        .map(|until| until.saturating_duration_since(now).as_secs());
                    json!({
                        "upstream": &*e.key,
                        "weight": e.weight,
                        "active_requests": e.active(),
                        "failures": e.failures(),
                        "healthy": e.health.probed_healthy() && ejected.is_none(),
                        "active_check": if c.config.health_check.as_ref().is_some_and(|h| h.active.is_some()) {
                            json!(if e.health.probed_healthy() { "healthy" } else { "unhealthy" })
                        } else {
                            json!(null)
                        },
                        "ejected_for_secs": ejected,
                        "circuit_breaker": c.config.circuit_breaker.map(|_| e.breaker.phase().as_str()),
                    })
                })
                .collect();
            json!({"name": &*c.name, "type": c.config.lb, "nodes": nodes})
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({"clusters": clusters})).into_response())
}

fn pretty(value: &serde_json::Value) -> Response {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// `/routes` as the original gateway answered it (contracts §7.15): one entry per enabled
/// route and host of its domain, `[{"name","uri","priority","clusters"}]`, pretty-printed.
pub async fn original_routes(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state.api, &state.namespace, Scope::ConfigRead)
        .await?;
    let table = state.gateway.snapshot().table.clone();
    let mut out = Vec::new();
    for route in table.routes() {
        let hosts = table
            .domains
            .iter()
            .find(|d| *d.name == *route.domain)
            .map_or(1, |d| d.hosts.len().max(1));
        for _ in 0..hosts {
            out.push(json!({
                "name": &*route.name,
                "uri": route.uri,
                "priority": route.priority,
                "clusters": route.clusters,
            }));
        }
    }
    Ok(pretty(&serde_json::Value::Array(out)))
}

/// `/domains` as the original gateway answered it: every domain with its routes' matching
/// fields (no transforms), pretty-printed.
pub async fn original_domains(
    State(state): State<AdminState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state.api, &state.namespace, Scope::ConfigRead)
        .await?;
    let table = state.gateway.snapshot().table.clone();
    let domains: Vec<serde_json::Value> = table
        .domains
        .iter()
        .map(|d| {
            let routes: Vec<serde_json::Value> = d
                .routes
                .iter()
                .map(|r| {
                    json!({
                        "name": r.name,
                        "uri": r.uri,
                        "methods": r.methods,
                        "headers": r.headers,
                        "priority": r.priority,
                        "clusters": r.clusters,
                    })
                })
                .collect();
            json!({"name": d.name, "hosts": d.hosts, "routes": routes})
        })
        .collect();
    Ok(pretty(&serde_json::Value::Array(domains)))
}
