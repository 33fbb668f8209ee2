//! The whole-namespace configuration endpoints (§3.4): read, bulk replace (which, unlike the
//! original, records a delete for everything it removes, §10.3 C1), dry-run validation, the
//! revision, and the change feed the original controller polls, with an optional long poll.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::model::{ChangeEntry, Kind};
use hermes_control::redact;
use hermes_control::scopes::Scope;
use hermes_control::validate;

use super::{ApiError, ApiState, Caller, Ns};

/// The original's batch size per poll.
const WATCH_BATCH: usize = 100;
/// The longest `wait` a long poll may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The zero-valued legacy members the original emitted beside domains and clusters (§1.5).
fn config_json(domains: Vec<Value>, clusters: Vec<Value>) -> Value {
    json!({
        "consul": {"address": "", "poll_interval_secs": 0},
        "etcd": {"endpoints": null},
        "domains": domains,
        "clusters": clusters,
        "registration": {"enabled": false, "service_name": "", "ttl_secs": 0, "deregister_after_secs": 0},
        "instance_registry": {"enabled": false, "prefix": "", "lease_ttl_secs": 0},
    })
}

pub async fn get_config(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    let grant = caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let domains = state.store.resources(&ns, Kind::Domain).await?;
    let clusters = state.store.resources(&ns, Kind::Cluster).await?;
    Ok(Json(json!({"config": config_json(
        domains
            .into_iter()
            .map(|r| redact::for_caller(Kind::Domain, r.doc, &grant.scopes))
            .collect(),
        clusters.into_iter().map(|r| r.doc).collect(),
    )}))
    .into_response())
}

/// `{"domains": [...], "clusters": [...]}` of a bulk body; absent or null lists are empty.
fn lists(body: &[u8]) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let v: Value = super::json_body(body, "invalid json")?;
    let Value::Object(mut obj) = v else {
        return Err(ApiError::bad_request("invalid json: expected an object"));
    };
    let mut list = |key: &str| -> Result<Vec<Value>, ApiError> {
        match obj.remove(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(ApiError::bad_request(format!(
                "invalid json: {key} must be an array"
            ))),
        }
    };
    let lists = (list("domains")?, list("clusters")?);
    // What `GET /api/v1/config` also emits (the legacy gateway-local mirrors, §1.5) may come
    // back in a round trip and is ignored; anything else is a mistake worth naming.
    const IGNORED: [&str; 4] = ["consul", "etcd", "registration", "instance_registry"];
    if let Some(unknown) = obj.keys().find(|k| !IGNORED.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "invalid json: unknown field {unknown:?}"
        )));
    }
    Ok(lists)
}

/// What the gateway would refuse or skip in a bulk configuration, after normalization.
fn servable_errors(
    domains: &[Value],
    clusters: &[Value],
    state: &ApiState,
) -> Vec<validate::FieldError> {
    let kinds = [
        (Kind::Domain, "domains", domains),
        (Kind::Cluster, "clusters", clusters),
    ];
    let mut errors = Vec::new();
    for (kind, plural, docs) in kinds {
        for (i, doc) in docs.iter().enumerate() {
            let doc = match kind {
                Kind::Domain => validate::normalize_domain(doc.clone()),
                Kind::Cluster => validate::normalize_cluster(doc.clone()),
            };
            let field = format!("{plural}[{i}]");
            if let Err(e) = super::resources::servable(kind, &doc, &field, state) {
                errors.extend(e.errors.unwrap_or_default());
            }
        }
    }
    errors
}

pub async fn validate(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let (domains, clusters) = lists(&caller.body)?;
    let mut errors = validate::config(&domains, &clusters);
    if errors.is_empty() {
        errors = servable_errors(&domains, &clusters, &state);
    }
    Ok(Json(if errors.is_empty() {
        json!({"valid": true, "domains": domains.len(), "clusters": clusters.len()})
    } else {
        json!({"valid": false, "errors": errors})
    })
    .into_response())
}

pub async fn replace(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let (domains, clusters) = lists(&caller.body)?;
    let errors = validate::config(&domains, &clusters);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let domains: Vec<Value> = domains
        .into_iter()
        .map(validate::normalize_domain)
        .collect();
    let clusters: Vec<Value> = clusters
        .into_iter()
        .map(validate::normalize_cluster)
        .collect();
    let errors = servable_errors(&domains, &clusters, &state);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let imported = state
        .store
        .replace_config(&ns, domains, clusters, &caller.operator())
        .await?;
    state.served_by_proxy(&ns, imported.revision).await;
    Ok(Json(json!({"domains": imported.domains, "clusters": imported.clusters})).into_response())
}

pub async fn revision(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let revision = state.store.revision(&ns).await?;
    Ok(Json(json!({"revision": revision})).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct WatchQuery {
    revision: Option<String>,
    /// Long poll: seconds to wait for a change when there is none yet (default 0: answer at
    /// once, as the original did).
    wait: Option<String>,
}

fn event_json(e: &ChangeEntry) -> Value {
    let mut v = json!({"revision": e.revision, "kind": e.kind, "name": e.name, "action": e.action});
    if let Some(doc) = e
        .doc
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
    {
        v[e.kind.as_str()] = doc;
    }
    v
}

pub async fn watch(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Query(q): Query<WatchQuery>,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWatch).await?;
    let after = match q.revision.as_deref().filter(|r| !r.is_empty()) {
        None => 0,
        Some(r) => r
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request("invalid revision"))?,
    };
    let wait = match q.wait.as_deref().filter(|w| !w.is_empty()) {
        None => Duration::ZERO,
        Some(w) => w
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ApiError::bad_request("invalid wait: seconds expected"))?
            .min(MAX_WAIT),
    };
    if !wait.is_zero() {
        state.store.wait_revision(&ns, after, wait).await?;
    }
    let rows = state.store.changes(&ns, after, WATCH_BATCH).await?;
    // Audit-only rows (credentials, members) are not configuration (§10.3 C3): they are
    // skipped, but the revision still moves past them so a poller never stalls on them.
    let scanned = rows.last().map_or(0, |r| r.revision);
    let events: Vec<Value> = rows
        .iter()
        .filter(|r| r.is_config())
        .map(event_json)
        .collect();
    let total = events.len();
    let events = if events.is_empty() {
        Value::Null
    } else {
        Value::Array(events)
    };
    Ok(Json(json!({"events": events, "revision": scanned, "total": total})).into_response())
}
