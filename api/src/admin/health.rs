//! Liveness and readiness. `/livez` answers while the process runs. `/readyz` answers 200 only
//! when this node can serve the API and take writes: store open, a leader known, local state
//! caught up with the commit index, a leader still acknowledged by its quorum, routes loaded,
//! and the node not draining; otherwise 503 with the failing check named.
//!
//! Traffic has its own readiness: `/readyz?scope=proxy`, and `/ready` (the original gateway's
//! path), check only that the proxy has loaded its routes and is not draining. A node that lost
//! quorum keeps proxying with the configuration it has, so a load balancer in front of the
//! proxies must probe this one: probing `/readyz` would drain every node during a store outage
//! and turn it into a traffic outage. `/health` and `/healthz` are aliases of `/livez`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use hermes_raft::metrics::QUORUM_LOST_AFTER_MS;

use super::AdminState;

/// A follower more than this many entries behind the commit index is not ready.
const MAX_APPLY_LAG: u64 = 100;

pub async fn livez() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Which readiness is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The node as a whole: the store and the proxy.
    Store,
    /// The proxy alone.
    Proxy,
}

#[derive(Debug, serde::Deserialize)]
pub struct ReadyQuery {
    scope: Option<String>,
}

/// Each check of `scope`, in order, with whether it passed and why not.
pub fn checks_of(state: &AdminState, scope: Scope) -> Vec<(&'static str, Result<(), String>)> {
    let all = checks(state);
    match scope {
        Scope::Store => all,
        Scope::Proxy => all
            .into_iter()
            .filter(|(name, _)| matches!(*name, "routes" | "draining"))
            .collect(),
    }
}

/// Each check, in order, with whether it passed and why not.
pub fn checks(state: &AdminState) -> Vec<(&'static str, Result<(), String>)> {
    let draining = state.draining.load(std::sync::atomic::Ordering::Acquire);
    let mut checks = vec![("store", Ok(()))];
    // The raft store's checks, on a node that runs it.
    if let Some(node) = &state.node {
        let info = node.info();
        let lag = info.commit_index.saturating_sub(info.applied_index);
        let member = node.is_member();
        checks.extend([
            (
                "member",
                if member {
                    Ok(())
                } else {
                    Err(
                        "this node is not in the cluster's membership (removed, or not yet joined)"
                            .into(),
                    )
                },
            ),
            (
                "leader",
                match info.leader {
                    Some(_) => Ok(()),
                    None => {
                        Err("no raft leader is known (election in progress or quorum lost)".into())
                    }
                },
            ),
            (
                "caught_up",
                if lag <= MAX_APPLY_LAG {
                    Ok(())
                } else {
                    Err(format!(
                        "applied index {} is {lag} entries behind commit index {}",
                        info.applied_index, info.commit_index
                    ))
                },
            ),
            (
                "quorum",
                match (info.role.as_str(), info.quorum_ack_age_ms) {
                    ("leader", Some(age)) if age >= QUORUM_LOST_AFTER_MS => Err(format!(
                        "this leader has not been acknowledged by a quorum for {age} ms"
                    )),
                    ("leader", None) => {
                        Err("this leader has not yet been acknowledged by a quorum".into())
                    }
                    _ => Ok(()),
                },
            ),
        ]);
    }
    // The route table, on a node that proxies.
    if state.proxies {
        checks.push((
            "routes",
            if state.gateway.is_loaded() {
                Ok(())
            } else {
                Err("the proxy has not loaded its configuration yet".into())
            },
        ));
    }
    checks.push((
        "draining",
        if draining {
            Err("the node is shutting down".into())
        } else {
            Ok(())
        },
    ));
    checks
}

/// `/readyz`: the store's readiness, or the proxy's with `?scope=proxy`.
pub async fn readyz(
    State(state): State<AdminState>,
    axum::extract::Query(q): axum::extract::Query<ReadyQuery>,
) -> Response {
    let scope = match q.scope.as_deref() {
        None | Some("store") => Scope::Store,
        Some("proxy") => Scope::Proxy,
        Some(other) => {
            let message = format!("scope must be store or proxy, not {other:?}");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": message, "field": "scope"})),
            )
                .into_response();
        }
    };
    ready(&state, scope)
}

/// `/ready`: the original gateway's readiness, which is the proxy's.
pub async fn ready_proxy(State(state): State<AdminState>) -> Response {
    ready(&state, Scope::Proxy)
}

fn ready(state: &AdminState, scope: Scope) -> Response {
    let checks = checks_of(state, scope);
    // The original gateway's `/ready` body is `{"status","domains","total_routes"}` (contracts
    // §7.15), with every route counted, disabled ones too; tools that read those keep working.
    let table = state.gateway.snapshot().table.clone();
    let (domains, total_routes) = (table.domains.len(), table.configured_routes());
    let failing = checks
        .iter()
        .find_map(|(name, r)| r.as_ref().err().map(|why| (*name, why.clone())));
    let detail: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, r)| {
            (
                name.to_string(),
                match r {
                    Ok(()) => json!("ok"),
                    Err(why) => json!(why),
                },
            )
        })
        .collect();
    let mut body = json!({
        "status": "ready",
        "domains": domains,
        "total_routes": total_routes,
        "checks": detail,
    });
    match failing {
        None => Json(body).into_response(),
        Some((name, why)) => {
            body["status"] = json!("not ready");
            body["failing"] = json!(name);
            body["reason"] = json!(why);
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}
