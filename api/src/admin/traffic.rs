//! `/api/v1/traffic`: the proxy's traffic across the cluster, for the console's live charts.
//! Each node reads its own `gateway_*` metrics from its registry (no text parsing); the node
//! asked adds the others', fetched from their admin listeners with the caller's own session
//! token (`?node=local` asks one node for its own only), and sums them. Counters are cumulative:
//! the console turns two samples into rates and latency percentiles.
//!
//! Authorization: `status:read` in the namespace this node serves, on every node asked. A
//! caller that signs with HMAC cannot be passed on (a signature is for one request), so it sees
//! the answering node only, and each other node is listed with that reason.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use hermes_control::scopes::Scope;

use super::AdminState;
use crate::{ApiError, Caller};

/// How long another node may take to answer before it is listed as unreachable.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// The most a node's answer may hold.
const MAX_PEER_ANSWER: usize = 4 << 20;

/// One client for every fan-out, so connections to the other nodes are kept between the
/// console's polls instead of opened each time.
static PEERS: LazyLock<Client<HttpConnector, Empty<Bytes>>> =
    LazyLock::new(|| Client::builder(TokioExecutor::new()).build_http());

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficQuery {
    node: Option<String>,
}

/// Requests, 5xx answers and the latency histogram of one route or cluster.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    pub requests: u64,
    pub errors: u64,
    /// Cumulative counts by upper bound (seconds), as Prometheus keeps them.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Series {
    fn add_buckets(&mut self, buckets: &[(f64, u64)], count: u64, sum: f64) {
        if self.buckets.is_empty() {
            self.buckets = buckets.to_vec();
        } else {
            for (mine, theirs) in self.buckets.iter_mut().zip(buckets) {
                mine.1 += theirs.1;
            }
        }
        self.count += count;
        self.sum += sum;
    }

    fn merge(&mut self, other: &Series) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.add_buckets(&other.buckets, other.count, other.sum);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteTraffic {
    pub domain: String,
    pub route: String,
    #[serde(flatten)]
    pub series: Series,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterTraffic {
    pub cluster: String,
    #[serde(flatten)]
    pub series: Series,
}

/// One upstream node as one gateway node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamState {
    /// The raft member whose proxy this is.
    pub gateway: u64,
    pub cluster: String,
    pub upstream: String,
    /// Active health: true healthy, false not, absent when not probed.
    pub healthy: Option<bool>,
    /// `closed`, `open` or `half_open`; absent without a breaker.
    pub breaker: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub id: u64,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Traffic {
    pub at_ms: u64,
    pub nodes: Vec<NodeAnswer>,
    pub routes: Vec<RouteTraffic>,
    pub clusters: Vec<ClusterTraffic>,
    pub upstreams: Vec<UpstreamState>,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// This node's traffic, from its registry.
pub fn local(registry: &prometheus::Registry, me: u64) -> Traffic {
    let mut routes: BTreeMap<(String, String), Series> = BTreeMap::new();
    let mut clusters: BTreeMap<String, Series> = BTreeMap::new();
    let mut upstreams: BTreeMap<(String, String), UpstreamState> = BTreeMap::new();
    for family in registry.gather() {
        match family.name() {
            "gateway_http_requests_total" => {
                for m in family.get_metric() {
                    let n = m.get_counter().get_value() as u64;
                    let error = u64::from(label(m, "status_code").starts_with('5')) * n;
                    let key = (
                        label(m, "domain").to_string(),
                        label(m, "route").to_string(),
                    );
                    let r = routes.entry(key).or_default();
                    r.requests += n;
                    r.errors += error;
                    let cluster = label(m, "cluster");
                    if !cluster.is_empty() {
                        let c = clusters.entry(cluster.to_string()).or_default();
                        c.requests += n;
                        c.errors += error;
                    }
                }
            }
            "gateway_http_request_duration_seconds" => {
                for m in family.get_metric() {
                    let h = m.get_histogram();
                    let buckets: Vec<(f64, u64)> = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count()))
                        // +Inf is implied by the count (and JSON has no infinity).
                        .filter(|b| b.0.is_finite())
                        .collect();
                    let key = (
                        label(m, "domain").to_string(),
                        label(m, "route").to_string(),
                    );
                    routes.entry(key).or_default().add_buckets(
                        &buckets,
                        h.get_sample_count(),
                        h.get_sample_sum(),
                    );
                    clusters
                        .entry(label(m, "cluster").to_string())
                        .or_default()
                        .add_buckets(&buckets, h.get_sample_count(), h.get_sample_sum());
                }
            }
            name @ ("gateway_upstream_health_status" | "gateway_circuit_breaker_state") => {
                for m in family.get_metric() {
                    let key = (
                        label(m, "cluster").to_string(),
                        label(m, "upstream").to_string(),
                    );
                    let u = upstreams
                        .entry(key.clone())
                        .or_insert_with(|| UpstreamState {
                            gateway: me,
                            cluster: key.0,
                            upstream: key.1,
                            healthy: None,
                            breaker: None,
                        });
                    let v = m.get_gauge().get_value();
                    if name == "gateway_upstream_health_status" {
                        u.healthy = Some(v >= 1.0);
                    } else {
                        u.breaker = Some(
                            match v as i64 {
                                0 => "closed",
                                1 => "open",
                                _ => "half_open",
                            }
                            .to_string(),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Traffic {
        at_ms: now_ms(),
        nodes: vec![NodeAnswer {
            id: me,
            ok: true,
            error: None,
        }],
        routes: routes
            .into_iter()
            .filter(|((_, route), _)| !route.is_empty())
            .map(|((domain, route), series)| RouteTraffic {
                domain,
                route,
                series,
            })
            .collect(),
        clusters: clusters
            .into_iter()
            .filter(|(cluster, _)| !cluster.is_empty())
            .map(|(cluster, series)| ClusterTraffic { cluster, series })
            .collect(),
        upstreams: upstreams.into_values().collect(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Adds another node's answer to `into`.
pub fn merge(into: &mut Traffic, other: Traffic) {
    for r in other.routes {
        match into
            .routes
            .iter_mut()
            .find(|x| x.domain == r.domain && x.route == r.route)
        {
            Some(x) => x.series.merge(&r.series),
            None => into.routes.push(r),
        }
    }
    for c in other.clusters {
        match into.clusters.iter_mut().find(|x| x.cluster == c.cluster) {
            Some(x) => x.series.merge(&c.series),
            None => into.clusters.push(c),
        }
    }
    into.upstreams.extend(other.upstreams);
    into.nodes.extend(other.nodes);
}

/// Asks the node at `admin_url` for its own traffic, as the caller.
async fn ask(admin_url: &str, authorization: &str, namespace: &str) -> Result<Traffic, String> {
    let uri: http::Uri = format!(
        "{}/api/v1/traffic?node=local",
        admin_url.trim_end_matches('/')
    )
    .parse()
    .map_err(|e| format!("bad admin URL {admin_url}: {e}"))?;
    let req = http::Request::get(uri)
        .header(header::AUTHORIZATION, authorization)
        .header("x-hermes-namespace", namespace)
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(PEER_TIMEOUT, PEERS.request(req))
        .await
        .map_err(|_| format!("no answer within {PEER_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = tokio::time::timeout(
        PEER_TIMEOUT,
        Limited::new(resp.into_body(), MAX_PEER_ANSWER).collect(),
    )
    .await
    .map_err(|_| format!("no answer within {PEER_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?
    .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unreadable answer: {e}"))
}

pub async fn traffic(
    State(state): State<AdminState>,
    Query(query): Query<TrafficQuery>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller
        .authorize(&state.api, &state.namespace, Scope::StatusRead)
        .await?;
    let mut all = local(&state.registry, state.id);
    match query.node.as_deref() {
        Some("local") => return Ok(Json(all).into_response()),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "node: expected \"local\" or nothing, got {other:?}"
            )))
        }
        None => {}
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.starts_with("Bearer "))
        .map(str::to_string);
    // Without a raft store a node knows no other members.
    let others: Vec<_> = match &state.node {
        Some(node) => node
            .members()
            .await
            .into_iter()
            .filter(|m| m.id != state.id)
            .collect(),
        None => Vec::new(),
    };
    // Every other member at once; each answer or its reason within PEER_TIMEOUT.
    let mut asked = tokio::task::JoinSet::new();
    for m in others {
        let bearer = bearer.clone();
        let namespace = state.namespace.clone();
        asked.spawn(async move {
            let answer = match (&bearer, m.info.as_ref()) {
                (None, _) => Err(
                    "not asked: only a session token can be passed on to other nodes".to_string(),
                ),
                (Some(_), None) => {
                    Err(m.error.clone().unwrap_or_else(|| "unreachable".to_string()))
                }
                (Some(token), Some(info)) => ask(&info.admin_url, token, &namespace).await,
            };
            (m.id, answer)
        });
    }
    while let Some(joined) = asked.join_next().await {
        let Ok((id, answer)) = joined else { continue };
        match answer {
            Ok(t) => merge(&mut all, t),
            Err(error) => all.nodes.push(NodeAnswer {
                id,
                ok: false,
                error: Some(error),
            }),
        }
    }
    all.nodes.sort_by_key(|n| n.id);
    Ok(Json(all).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(requests: u64, errors: u64, buckets: &[(f64, u64)]) -> Series {
        Series {
            requests,
            errors,
            buckets: buckets.to_vec(),
            count: buckets.last().map_or(0, |b| b.1),
            sum: 0.5,
        }
    }

    #[test]
    fn a_nodes_metrics_become_route_cluster_and_upstream_traffic() {
        let registry = prometheus::Registry::new();
        let m = hermes_gateway::metrics::GatewayMetrics::register(&registry).unwrap();
        for (status, n) in [("200", 7), ("502", 3)] {
            m.requests
                .with_label_values(&["d", "r", "c", "GET", status, "10.0.0.1:80"])
                .inc_by(n);
        }
        m.requests
            .with_label_values(&["", "_no_route", "", "GET", "404", ""])
            .inc();
        m.duration
            .with_label_values(&["d", "r", "c", "10.0.0.1:80"])
            .observe(0.003);
        m.health_status
            .with_label_values(&["c", "10.0.0.1:80"])
            .set(0);
        m.breaker_state
            .with_label_values(&["c", "10.0.0.1:80"])
            .set(1);
        let t = local(&registry, 4);
        let route = t.routes.iter().find(|r| r.route == "r").unwrap();
        assert_eq!((route.series.requests, route.series.errors), (10, 3));
        assert_eq!(route.series.count, 1);
        assert!(route.series.buckets.iter().any(|b| b.1 == 1));
        assert_eq!(t.clusters.len(), 1);
        assert_eq!(t.clusters[0].series.requests, 10);
        assert_eq!(
            t.upstreams,
            [UpstreamState {
                gateway: 4,
                cluster: "c".into(),
                upstream: "10.0.0.1:80".into(),
                healthy: Some(false),
                breaker: Some("open".into()),
            }]
        );
    }

    #[test]
    fn answers_of_several_nodes_add_up() {
        let one = |id| Traffic {
            at_ms: 1,
            nodes: vec![NodeAnswer {
                id,
                ok: true,
                error: None,
            }],
            routes: vec![RouteTraffic {
                domain: "d".into(),
                route: "r".into(),
                series: series(5, 1, &[(0.1, 2), (1.0, 5)]),
            }],
            clusters: vec![ClusterTraffic {
                cluster: "c".into(),
                series: series(5, 1, &[(0.1, 2), (1.0, 5)]),
            }],
            upstreams: vec![],
        };
        let mut all = one(1);
        merge(&mut all, one(2));
        assert_eq!(all.nodes.len(), 2);
        assert_eq!(all.routes.len(), 1);
        assert_eq!(
            all.routes[0].series,
            Series {
                requests: 10,
                errors: 2,
                buckets: vec![(0.1, 4), (1.0, 10)],
                count: 10,
                sum: 1.0,
            }
        );
    }
}
