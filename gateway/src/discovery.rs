//! Consul service discovery (contracts/hermes.md §7.17) for clusters with
//! `discovery_type: consul`: one watcher per service, each a loop of blocking queries on
//! Consul's health endpoint (`/v1/health/service/<service>?passing=true&index=…&wait=…`,
//! with the datacenter and the ACL token when configured), so that a change reaches the
//! gateway within one round trip instead of a poll interval (the original polled). A node's
//! address falls back to its Consul node's address (the original used 127.0.0.1, G13), its
//! weight is `Meta["weight"]`, else Consul's passing weight, else 1. An error keeps the last
//! good list; the watcher retries with a growing pause. Clusters keep their own metadata
//! filter ([`crate::config::types::DiscoveryArgs`]) and fall back to their static nodes while
//! their service has no matching node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::config::types::UpstreamNode;
use crate::Gateway;

/// How long Consul may hold a blocking query (its `wait`).
pub const WAIT: Duration = Duration::from_secs(30);
/// Longest pause between attempts after errors.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often the set of services to watch is brought in line with the clusters.
const RESCAN: Duration = Duration::from_secs(1);
/// The largest answer read from Consul.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Where Consul is, as the node's settings give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsulSettings {
    /// `http://host:port` of a Consul agent.
    pub address: String,
    pub datacenter: Option<String>,
    pub token: Option<String>,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Watches every service the clusters discover from, until the task is dropped.
pub async fn run(gw: Arc<Gateway>, settings: Arc<ConsulSettings>) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let mut watchers: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut every = tokio::time::interval(RESCAN);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        while tasks.try_join_next().is_some() {}
        let services = gw.snapshot().clusters.services();
        watchers.retain(|service, handle| {
            let keep = services.contains(service);
            if !keep {
                handle.abort();
            }
            keep
        });
        for service in services {
            watchers.entry(service.clone()).or_insert_with(|| {
                tasks.spawn(watch(gw.clone(), settings.clone(), client.clone(), service))
            });
        }
    }
}

/// One service's blocking-query loop.
async fn watch(
    gw: Arc<Gateway>,
    settings: Arc<ConsulSettings>,
    client: HttpClient,
    service: String,
) {
    let mut index: u64 = 0;
    let mut backoff = Duration::from_millis(500);
    loop {
        match query(&client, &settings, &service, index).await {
            Ok((next, nodes)) => {
                record_poll(&gw, &service, "success");
                gw.set_discovered(&service, nodes);
                backoff = Duration::from_millis(500);
                // Consul's advice: an index that goes backwards (or is missing) starts over.
                if next == 0 || next < index {
                    index = 0;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    index = next;
                }
            }
            Err(e) => {
                record_poll(&gw, &service, "error");
                tracing::warn!(%service, error = %e, "Consul discovery failed; keeping the last nodes");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn record_poll(gw: &Gateway, service: &str, result: &str) {
    gw.metrics
        .consul_polls
        .with_label_values(&[service, result])
        .inc();
}

/// A blocking query: Consul's next index and the service's passing nodes.
async fn query(
    client: &HttpClient,
    settings: &ConsulSettings,
    service: &str,
    index: u64,
) -> Result<(u64, Vec<UpstreamNode>), String> {
    let mut url = format!(
        "{}/v1/health/service/{}?passing=true&index={index}&wait={}s",
        settings.address.trim_end_matches('/'),
        encode(service),
        WAIT.as_secs()
    );
    if let Some(dc) = &settings.datacenter {
        url.push_str(&format!("&dc={}", encode(dc)));
    }
    let mut req = http::Request::get(&url);
    if let Some(token) = &settings.token {
        req = req.header("x-consul-token", token);
    }
    let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
    // Consul adds up to a sixteenth of `wait` of jitter.
    let answer = tokio::time::timeout(WAIT + Duration::from_secs(10), async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let next = resp
            .headers()
            .get("x-consul-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, next, body))
    })
    .await
    .map_err(|_| "no answer in time".to_string())??;
    let (status, next, body) = answer;
    if !status.is_success() {
        return Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>()
        ));
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not a health answer: {e}"))?;
    Ok((next, nodes_of(entries)))
}

/// Percent-encodes everything but unreserved characters.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    #[serde(default)]
    node: ConsulNode,
    service: ConsulService,
    #[serde(default)]
    checks: Option<Vec<Check>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulNode {
    #[serde(default)]
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsulService {
    #[serde(default)]
    address: String,
    port: u16,
    #[serde(default)]
    meta: Option<HashMap<String, String>>,
    #[serde(default)]
    weights: Option<Weights>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Weights {
    #[serde(default)]
    passing: u32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Check {
    #[serde(default)]
    status: String,
}

/// The nodes of a health answer: every check passing, an address and a port, sorted so
/// that an answer in another order is the same list.
fn nodes_of(entries: Vec<Entry>) -> Vec<UpstreamNode> {
    let mut nodes: Vec<UpstreamNode> = entries
        .into_iter()
        .filter(|e| {
            e.checks
                .as_deref()
                .unwrap_or_default()
                .iter()
                .all(|c| c.status == "passing")
        })
        .filter_map(|e| {
            let host = if e.service.address.is_empty() {
                e.node.address
            } else {
                e.service.address
            };
            if host.is_empty() || e.service.port == 0 {
                return None;
            }
            let meta = e.service.meta.unwrap_or_default();
            let weight = meta
                .get("weight")
                .and_then(|w| w.parse::<u32>().ok())
                .or(e.service.weights.map(|w| w.passing).filter(|w| *w > 0))
                .unwrap_or(1);
            Some(UpstreamNode {
                host,
                port: e.service.port,
                weight,
                metadata: meta,
            })
        })
        .collect();
    nodes.sort_by(|a, b| (&a.host, a.port).cmp(&(&b.host, b.port)));
    nodes.dedup_by(|a, b| a.host == b.host && a.port == b.port);
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_answers_become_nodes() {
        let answer = json!([
            {"Node": {"Node": "n2", "Address": "10.0.0.2"},
             "Service": {"ID": "web-2", "Address": "", "Port": 8080, "Meta": {"weight": "5", "zone": "b"}},
             "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]},
            {"Node": {"Node": "n1", "Address": "10.0.0.1"},
             "Service": {"ID": "web-1", "Address": "10.1.0.1", "Port": 8080, "Meta": null,
                         "Weights": {"Passing": 3, "Warning": 1}},
             "Checks": []},
            {"Node": {"Node": "n3", "Address": "10.0.0.3"},
             "Service": {"ID": "web-3", "Address": "10.1.0.3", "Port": 8080},
             "Checks": [{"CheckID": "serfHealth", "Status": "critical"}]}
        ]);
        let nodes = nodes_of(serde_json::from_value(answer).unwrap());
        assert_eq!(nodes.len(), 2, "{nodes:?}");
        // Sorted by address; the node's address when the service has none.
        assert_eq!((nodes[0].host.as_str(), nodes[0].weight), ("10.0.0.2", 5));
        assert_eq!(nodes[0].metadata["zone"], "b");
        assert_eq!((nodes[1].host.as_str(), nodes[1].weight), ("10.1.0.1", 3));
        assert!(nodes[1].metadata.is_empty());
    }

    #[test]
    fn names_are_encoded_for_the_path() {
        assert_eq!(encode("web-api_v1.2"), "web-api_v1.2");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
