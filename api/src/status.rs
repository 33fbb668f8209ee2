//! Status (§3.6), the audit log (§3.7) and Grafana links. Gateway instances are this
//! cluster's own registry (`/hermes/instances/`) merged with what controllers report.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hermes_control::model::{now_rfc3339, ControllerStatus, Dashboard, InstanceStatus};
use hermes_control::scopes::Scope;

use super::{ApiError, ApiState, Caller, Ns};

/// A reported instance or controller not heard from for this long is shown `offline` (the
/// original's reaper rewrote rows; here it is decided when read).
const STALE_AFTER: Duration = Duration::from_secs(30);

fn stale(updated_at: &str) -> bool {
    humantime::parse_rfc3339(updated_at)
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > STALE_AFTER)
}

fn instance_json(i: &InstanceStatus) -> Value {
    let mut v = json!({"id": i.id});
    let status = if stale(&i.updated_at) {
        "offline"
    } else {
        i.status.as_str()
    };
    for (k, val) in [
        ("status", status),
        ("started_at", &i.started_at),
        ("registered_at", &i.registered_at),
        ("last_keepalive_at", &i.last_keepalive_at),
        ("last_seen_at", &i.last_seen_at),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    if i.config_revision != 0 {
        v["config_revision"] = json!(i.config_revision);
    }
    v["updated_at"] = json!(i.updated_at);
    v
}

fn controller_json(c: &ControllerStatus) -> Value {
    let status = if stale(&c.updated_at) {
        "offline"
    } else {
        c.status.as_str()
    };
    json!({"id": c.id, "status": status, "is_leader": c.is_leader, "started_at": c.started_at,
           "last_heartbeat_at": c.last_heartbeat_at, "config_revision": c.config_revision,
           "updated_at": c.updated_at})
}

async fn all_instances(state: &ApiState, ns: &str) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = state
        .store
        .reported_instances(ns)
        .await?
        .iter()
        .map(instance_json)
        .collect();
    for doc in state.store.registered_instances(ns).await? {
        let id = doc.get("id").and_then(Value::as_str).unwrap_or_default();
        if !id.is_empty() && !out.iter().any(|i| i["id"] == id) {
            out.push(doc);
        }
    }
    out.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Ok(out)
}

async fn latest_controller(
    state: &ApiState,
    ns: &str,
) -> Result<Option<ControllerStatus>, ApiError> {
    Ok(state
        .store
        .controllers(ns)
        .await?
        .into_iter()
        .max_by(|a, b| a.updated_at.cmp(&b.updated_at)))
}

/// The controller to show: the latest external controller that reports (a deployment of the
/// original's Go controller), while it is not stale; otherwise, in a cluster of our own nodes,
/// the raft leader, which is what propagates configuration there. `"embedded": true` and the
/// raft fields say which it is.
async fn shown_controller(state: &ApiState, ns: &str) -> Result<Option<Value>, ApiError> {
    let reported = latest_controller(state, ns).await?;
    if let Some(c) = reported.as_ref().filter(|c| !stale(&c.updated_at)) {
        return Ok(Some(controller_json(c)));
    }
    let Some(raft) = &state.raft else {
        return Ok(reported.as_ref().map(controller_json));
    };
    let info = raft.info();
    let Some(leader) = info.leader else {
        return Ok(reported.as_ref().map(controller_json));
    };
    let now = now_rfc3339();
    Ok(Some(json!({
        "id": hermes_gateway::registry::instance_id(leader),
        "status": "running",
        "is_leader": true,
        "started_at": "",
        "last_heartbeat_at": now,
        "config_revision": state.store.revision(ns).await?,
        "updated_at": now,
        "embedded": true,
        "raft_member_id": leader,
        "raft_term": info.term,
    })))
}

pub async fn status(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::StatusRead).await?;
    let instances = all_instances(&state, &ns).await?;
    let mut out = json!({"total": instances.len(), "instances": instances});
    if let Some(c) = shown_controller(&state, &ns).await? {
        out["updated_at"] = c["updated_at"].clone();
        out["controller"] = c;
    }
    Ok(Json(out).into_response())
}

pub async fn instances(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::StatusRead).await?;
    Ok(Json(json!({"instances": all_instances(&state, &ns).await?})).into_response())
}

pub async fn controller(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::StatusRead).await?;
    let c = shown_controller(&state, &ns).await?;
    Ok(Json(json!({"controller": c})).into_response())
}

/// A report body: a JSON object (serde would also take an array, by position).
fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("decode: {e}"));
    match serde_json::from_slice::<Value>(body).map_err(bad)? {
        v @ Value::Object(_) => serde_json::from_value(v).map_err(bad),
        _ => Err(ApiError::bad_request("decode: expected a JSON object")),
    }
}

/// Reports refuse unknown fields (a typo would otherwise vanish); `updated_at`, which the
/// server itself stamps and emits, may come back in a round trip and is ignored.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ControllerReport {
    #[serde(default)]
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    is_leader: bool,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    last_heartbeat_at: String,
    #[serde(default)]
    config_revision: i64,
    #[serde(default, rename = "updated_at")]
    _updated_at: serde::de::IgnoredAny,
}

pub async fn put_controller(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::StatusWrite).await?;
    let r: ControllerReport = decode(&caller.body)?;
    state
        .store
        .put_controller(
            &ns,
            ControllerStatus {
                id: r.id,
                status: r.status,
                is_leader: r.is_leader,
                started_at: r.started_at,
                last_heartbeat_at: r.last_heartbeat_at,
                config_revision: r.config_revision,
                updated_at: now_rfc3339(),
            },
        )
        .await?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceReport {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    started_at: String,
    #[serde(default)]
    registered_at: String,
    #[serde(default)]
    last_keepalive_at: String,
    #[serde(default)]
    config_revision: i64,
    #[serde(default)]
    last_seen_at: String,
    #[serde(default, rename = "updated_at")]
    _updated_at: serde::de::IgnoredAny,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InstancesReport {
    #[serde(default)]
    instances: Vec<InstanceReport>,
}

pub async fn put_instances(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::StatusWrite).await?;
    let r: InstancesReport = decode(&caller.body)?;
    let now = now_rfc3339();
    let list = r
        .instances
        .into_iter()
        .map(|i| InstanceStatus {
            id: i.id,
            status: i.status,
            started_at: i.started_at,
            registered_at: i.registered_at,
            last_keepalive_at: i.last_keepalive_at,
            config_revision: i.config_revision,
            last_seen_at: i.last_seen_at,
            updated_at: now.clone(),
        })
        .collect();
    state.store.put_instances(&ns, list).await?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct Page {
    limit: Option<String>,
    offset: Option<String>,
}

pub async fn audit(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::AuditRead).await?;
    // The original read a non-numeric value as 0; it is refused here, naming the parameter.
    let num = |name: &str, v: &Option<String>| match v.as_deref().map(str::trim) {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("{name} must be an integer, not {s:?}"))),
    };
    // Unlike the original (which used 50 above 200 but echoed the request), the limit used is
    // the limit answered.
    let limit = match num("limit", &page.limit)? {
        l if l <= 0 => 50,
        l => l.min(200),
    } as usize;
    let offset = num("offset", &page.offset)?.max(0) as usize;
    let (entries, total) = state.store.audit(&ns, limit, offset).await?;
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({"revision": e.revision, "kind": e.kind, "name": e.name,
                               "action": e.action, "timestamp": e.timestamp});
            if !e.operator.is_empty() {
                v["operator"] = json!(e.operator);
            }
            v
        })
        .collect();
    let list = if list.is_empty() {
        Value::Null
    } else {
        Value::Array(list)
    };
    Ok(
        Json(json!({"entries": list, "total": total, "limit": limit, "offset": offset}))
            .into_response(),
    )
}

/// `scheme://host[:port]` of a dashboard URL (no user information), what a browser compares
/// frame sources with.
fn origin(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?;
    let authority = uri.authority()?.as_str();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(format!("{scheme}://{host_port}"))
}

/// The origins of every namespace's Grafana dashboards: what the console may show in frames
/// (its page policy is built from them at each load). A store that cannot answer gives none.
pub async fn dashboard_origins(store: &dyn hermes_control::store::ControlStore) -> Vec<String> {
    let mut namespaces = store.namespaces().await.unwrap_or_default();
    namespaces.push("default".to_string());
    namespaces.sort();
    namespaces.dedup();
    let mut origins = Vec::new();
    for ns in namespaces {
        for d in store.dashboards(&ns).await.unwrap_or_default() {
            origins.extend(origin(&d.url));
        }
    }
    origins.sort();
    origins.dedup();
    origins
}

pub async fn dashboards(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigRead).await?;
    let list: Vec<Value> = state
        .store
        .dashboards(&ns)
        .await?
        .iter()
        .map(|d| json!({"id": d.id, "name": d.name, "url": d.url}))
        .collect();
    Ok(Json(json!({"dashboards": list})).into_response())
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardBody {
    #[serde(default)]
    id: i64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
}

pub async fn save_dashboard(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let b: DashboardBody = super::json_body(&caller.body, "invalid JSON")?;
    if b.name.trim().is_empty() || b.url.trim().is_empty() {
        return Err(ApiError::bad_request("name and url are required"));
    }
    if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
        return Err(ApiError::bad_request("url must be an http or https URL"));
    }
    let (saved, inserted) = state
        .store
        .save_dashboard(
            &ns,
            Dashboard {
                id: b.id,
                name: b.name,
                url: b.url,
            },
        )
        .await?;
    let status = if inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({"id": saved.id, "name": saved.name, "url": saved.url})),
    )
        .into_response())
}

pub async fn delete_dashboard(
    State(state): State<ApiState>,
    Ns(ns): Ns,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.authorize(&state, &ns, Scope::ConfigWrite).await?;
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| ApiError::bad_request("invalid dashboard id"))?;
    state.store.delete_dashboard(&ns, id).await?;
    Ok(Json(json!({"status": "deleted"})).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dashboard_origins_drop_paths_and_credentials() {
        assert_eq!(
            super::origin("https://admin:pw@grafana.example:3000/d/abc?kiosk").as_deref(),
            Some("https://grafana.example:3000")
        );
        assert_eq!(
            super::origin("http://10.0.0.7/d/x").as_deref(),
            Some("http://10.0.0.7")
        );
        assert_eq!(super::origin("not a url"), None);
    }
}
