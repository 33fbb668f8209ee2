//! Domain and cluster CRUD, history and rollback (§3.5), one set of handlers for both kinds.
//! Documents are validated (§1.7 plus the checks of §10.3 C7) and stored with the gateway's
//! defaults applied (C6), so an omitted `status` or `scheme` never disables a route. Fixed
//! status codes (C8): a missing resource on delete or rollback is 404, not 500.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use hermes_control::model::{HistoryEntry, Kind};
use hermes_control::redact;
use hermes_control::scopes::Scope;
use hermes_control::store::{ResourceChange, Written};
use hermes_control::validate;

use super::{ApiError, ApiState, Caller, Ns};

pub fn routes() -> Router<ApiState> {
    let mut r = Router::new();
    for kind in [Kind::Domain, Kind::Cluster] {
        let base = format!("/api/v1/{}", kind.plural());
        r = r
            .route(
                &base,
                get(move |s: State<ApiState>, ns: Ns, c: Caller| list(s, ns, c, kind))
                    .post(move |s: State<ApiState>, ns: Ns, c: Caller| create(s, ns, c, kind)),
            )
            .route(
                &format!("{base}/{{name}}"),
                get(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<String>| {
                        fetch(s, ns, c, p, kind)
                    },
                )
                .put(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<String>| {
                        update(s, ns, c, p, kind)
                    },
                )
                .delete(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<String>| {
                        remove(s, ns, c, p, kind)
                    },
                ),
            )
            .route(
                &format!("{base}/{{name}}/history"),
                get(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<String>| {
                        history(s, ns, c, p, kind)
                    },
                ),
            )
            .route(
                &format!("{base}/{{name}}/history/{{version}}"),
                get(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<(String, String)>| {
                        history_entry(s, ns, c, p, kind)
                    },
                ),
            )
            .route(
                &format!("{base}/{{name}}/rollback/{{version}}"),
                post(
                    move |s: State<ApiState>, ns: Ns, c: Caller, p: Path<(String, String)>| {
                        rollback(s, ns, c, p, kind)
                    },
                ),
            );
    }
    r
}

fn errors_at(kind: Kind, doc: &Value) -> Vec<validate::FieldError> {
    match kind {
        Kind::Domain => validate::domain(doc, 0, None),
        Kind::Cluster => validate::cluster(doc, 0),
    }
}

fn normalized(kind: Kind, doc: Value) -> Value {
    match kind {
        Kind::Domain => validate::normalize_domain(doc),
        Kind::Cluster => validate::normalize_cluster(doc),
    }
}

/// A create or update as §3.5 answers it.
fn written_json(kind: Kind, written: Written) -> Value {
    json!({"version": written.version, kind.as_str(): written.doc,
           "resource_version": written.resource_version})
}

/// The submitted document, checked; `name` (from the path, for updates) replaces the body's.
fn checked_doc(
    kind: Kind,
    mut doc: Value,
    name: Option<&str>,
    state: &ApiState,
) -> Result<Value, ApiError> {
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::bad_request("invalid json: expected an object"));
    };
    if let Some(name) = name {
        obj.insert("name".into(), Value::String(name.to_string()));
    }
    if obj
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(format!(
            "{} name is required",
            kind.as_str()
        )));
    }
    let errors = errors_at(kind, &doc);
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let doc = normalized(kind, doc);
    servable(kind, &doc, kind.as_str(), state)?;
    Ok(doc)
}

/// The gateway's own verdict, last: nothing stored is later refused or skipped by the proxy.
/// And no document over `max_bytes`: every version of it is kept in the history, the change
/// log and the store's revisions.
pub fn servable(kind: Kind, doc: &Value, field: &str, state: &ApiState) -> Result<(), ApiError> {
    let max_bytes = state.max_document_bytes;
    let size = serde_json::to_vec(doc).map_or(usize::MAX, |v| v.len());
    let verdict = if size > max_bytes {
        Err(format!(
            "the {} document is {size} bytes, more than the {max_bytes} this cluster stores \
             (--max-document-bytes); split it",
            kind.as_str()
        ))
    } else {
        match kind {
            Kind::Domain => hermes_gateway::config::check::domain(doc),
            Kind::Cluster => hermes_gateway::config::check::cluster(doc),
        }
    };
    // Discovery needs a Consul agent: a cluster that asks for it on a node without one would
    // be accepted and left without nodes.
    if kind == Kind::Cluster && doc.get("discovery_type").and_then(Value::as_str) == Some("consul")
    {
        if let Some((gateway, _)) = &state.gateway {
            if !gateway.discovery_enabled() {
                return Err(ApiError::invalid(vec![validate::FieldError {
                    field: "discovery_type".into(),
                    message: "this cluster has no Consul agent configured (--consul-address)"
                        .into(),
                }]));
            }
        }
    }
    verdict.map_err(|message| {
        ApiError::invalid(vec![validate::FieldError {
            field: field.to_string(),
            message,
        }])
    })
}

fn parse_version(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| ApiError::bad_request(format!("invalid version: {raw:?}")))
}

async fn list(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    kind: Kind,
) -> Result<Response, ApiError> {
    let grant = caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let all = state.store.resources(&ns, kind).await?;
    let docs: Vec<Value> = all
        .into_iter()
        .map(|r| redact::for_caller(kind, r.doc, &grant.scopes))
        .collect();
    // The original emitted `null` for an empty list.
    let total = docs.len();
    let list = if docs.is_empty() {
        Value::Null
    } else {
        Value::Array(docs)
    };
    Ok(Json(json!({kind.plural(): list, "total": total})).into_response())
}

async fn fetch(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let grant = caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    match state.store.resource(&ns, kind, &name).await? {
        Some(r) => Ok(Json(json!({
            kind.as_str(): redact::for_caller(kind, r.doc, &grant.scopes),
            "resource_version": r.resource_version,
        }))
        .into_response()),
        None => Err(ApiError::not_found(format!(
            "{} \"{name}\" not found",
            kind.as_str()
        ))),
    }
}

async fn create(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    kind: Kind,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let doc = checked_doc(
        kind,
        super::json_body(&caller.body, "invalid json")?,
        None,
        &state,
    )?;
    let name = doc["name"].as_str().unwrap_or_default().to_string();
    let written = state
        .store
        .write_resource(
            &ns,
            kind,
            &name,
            ResourceChange::Create { doc },
            &caller.operator(),
        )
        .await?;
    state.served_by_proxy(&ns, written.revision).await;
    Ok((StatusCode::CREATED, Json(written_json(kind, written))).into_response())
}

async fn update(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let raw: Value = super::json_body(&caller.body, "invalid json")?;
    let expected = raw
        .get("resource_version")
        .and_then(Value::as_i64)
        .filter(|v| *v > 0)
        .ok_or_else(|| {
            ApiError::bad_request("resource_version is required for update (must be > 0)")
        })?;
    let doc = checked_doc(kind, raw, Some(&name), &state)?;
    let written = state
        .store
        .write_resource(
            &ns,
            kind,
            &name,
            ResourceChange::Update {
                doc,
                expected_version: expected,
            },
            &caller.operator(),
        )
        .await?;
    state.served_by_proxy(&ns, written.revision).await;
    Ok(Json(written_json(kind, written)).into_response())
}

async fn remove(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let written = state
        .store
        .write_resource(&ns, kind, &name, ResourceChange::Delete, &caller.operator())
        .await?;
    state.served_by_proxy(&ns, written.revision).await;
    Ok(Json(json!({"version": written.version})).into_response())
}

/// `HistoryEntry` as §3.5 shows it: the document under the kind's name, redacted for a
/// caller holding `scopes` that do not reveal secrets.
fn history_json(h: &HistoryEntry, scopes: &[Scope]) -> Value {
    let mut v = json!({
        "version": h.version,
        "timestamp": h.timestamp,
        "kind": h.kind.as_str(),
        "name": h.name,
        "action": h.action.as_str(),
    });
    if !h.operator.is_empty() {
        v["operator"] = Value::String(h.operator.clone());
    }
    if let Some(doc) = h
        .doc
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
    {
        v[h.kind.as_str()] = redact::for_caller(h.kind, doc, scopes);
    }
    v
}

async fn history(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(name): Path<String>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let grant = caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let entries = state.store.history(&ns, kind, &name).await?;
    let total = entries.len();
    let list: Vec<Value> = entries
        .iter()
        .map(|h| history_json(h, &grant.scopes))
        .collect();
    let list = if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    };
    Ok(Json(json!({"history": list, "total": total})).into_response())
}

async fn history_entry(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let grant = caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let version = parse_version(&version)?;
    match state.store.history_entry(&ns, kind, &name, version).await? {
        Some(h) => Ok(Json(history_json(&h, &grant.scopes)).into_response()),
        None => Err(ApiError::not_found(format!(
            "{} \"{name}\" version {version} not found",
            kind.as_str()
        ))),
    }
}

async fn rollback(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    kind: Kind,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let version = parse_version(&version)?;
    let written = state
        .store
        .write_resource(
            &ns,
            kind,
            &name,
            ResourceChange::Rollback { version },
            &caller.operator(),
        )
        .await?;
    state.served_by_proxy(&ns, written.revision).await;
    Ok(
        Json(json!({"name": name, "rolled_back_to": version, "new_version": written.version}))
            .into_response(),
    )
}
