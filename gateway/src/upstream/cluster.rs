//! Clusters at run time: configuration, nodes with their live counters, the balancer and the
//! HTTP client. An update keeps what it does not change: node counters and idle connections (by
//! `host:port`), the smooth round-robin state when the node set and algorithm are unchanged,
//! and for TLS clusters the client with its pool unless pool size, idle timeout, TLS
//! verification, the connect timeout or h2 changed.
//!
//! Plain-HTTP clusters use [`super::pool`], driven inside each request's task. TLS clusters use
//! hyper-util's client, which negotiates h2 or HTTP/1.1 by ALPN and multiplexes h2.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;

use super::balancer::{Algorithm, Balancer, Endpoint};
use super::client::{self, BoxError, ClientKey, ProxyBody, UpstreamClient};
use super::guard::ForbiddenUpstreams;
use super::pool;
use crate::config::types::{ClusterConfig, TimeoutConfig, UpstreamNode};

#[derive(Debug)]
pub struct Cluster {
    pub config: ClusterConfig,
    /// `config.name`, shared with every request's record.
    pub name: Arc<str>,
    pub balancer: Balancer,
    pub timeouts: Timeouts,
    /// For `https` clusters only.
    client: Option<UpstreamClient>,
    client_key: ClientKey,
}

impl Cluster {
    /// Builds a cluster whose nodes are `nodes` (its static ones, or those discovered).
    fn build(config: ClusterConfig, nodes: &[UpstreamNode], previous: Option<&Cluster>) -> Cluster {
        let algorithm = Algorithm::parse(&config.lb);
        let old: HashMap<&str, &Arc<Endpoint>> = previous
            .map(|p| {
                p.balancer
                    .endpoints()
                    .iter()
                    .map(|e| (&*e.key, e))
                    .collect()
            })
            .unwrap_or_default();
        let endpoints: Vec<Arc<Endpoint>> = nodes
            .iter()
            .map(|n| {
                let fresh = Endpoint::new(&n.host, n.port, n.weight);
                match old.get(&*fresh.key) {
                    Some(e) if e.weight == n.weight => Arc::clone(e),
                    Some(e) => Arc::new(Endpoint::reweighted(e, n.weight)),
                    None => Arc::new(fresh),
                }
            })
            .collect();
        let unchanged_nodes = previous.is_some_and(|p| {
            p.balancer.algorithm() == algorithm
                && p.balancer.endpoints().len() == endpoints.len()
                && p.balancer
                    .endpoints()
                    .iter()
                    .zip(&endpoints)
                    .all(|(a, b)| Arc::ptr_eq(a, b))
        });
        let key = ClientKey::of(&config);
        let kept = previous
            .filter(|p| p.client_key == key)
            .and_then(|p| p.client.clone());
        let client =
            (config.scheme == "https").then(|| kept.unwrap_or_else(|| client::build(&key)));
        let balancer = match previous {
            // Same nodes, same algorithm: keep the balancer, and with it the rotation.
            Some(p) if unchanged_nodes => {
                Balancer::new(algorithm, p.balancer.endpoints().to_vec()).inherit(&p.balancer)
            }
            _ => Balancer::new(algorithm, endpoints),
        };
        Cluster {
            name: Arc::from(config.name.as_str()),
            timeouts: Timeouts::of(&config.timeout),
            config,
            balancer,
            client,
            client_key: key,
        }
    }
}

impl Cluster {
    /// Whether the cluster's nodes are reached over TLS (hyper-util's client).
    pub fn is_tls(&self) -> bool {
        self.client.is_some()
    }

    /// Sends `req` to `endpoint`. Its URI is in origin form (`/path?query`), and it carries
    /// the Host `pass_host` chose, or none for `pass_host: node`. `upgrade` requests get a
    /// connection of their own, which the upgrade then takes over.
    pub async fn send(
        &self,
        guard: &ForbiddenUpstreams,
        endpoint: &Endpoint,
        mut req: Request<ProxyBody>,
        upgrade: bool,
    ) -> Result<Response<ProxyBody>, SendError> {
        if let Some(client) = &self.client {
            // hyper-util's client wants the absolute form; from it, it sets Host (HTTP/1.1) or
            // `:authority` (h2) when the request has none.
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("https://{}{pq}", endpoint.key)
                .parse()
                .map_err(|e: http::uri::InvalidUri| SendError::Build(e.into()))?;
            let resp = client
                .request(req)
                .await
                .map_err(|e| SendError::Exchange(e.into()))?;
            return Ok(resp.map(|b| b.map_err(Into::into).boxed()));
        }
        // hyper's connection writes the request as it is: Host is ours to set.
        if !req.headers().contains_key(http::header::HOST) {
            req.headers_mut()
                .insert(http::header::HOST, endpoint.host_header.clone());
        }
        let target = pool::Target {
            host: &endpoint.host,
            port: endpoint.port,
            node: &endpoint.key,
            idle: &endpoint.idle,
            pool: &self.config.keepalive_pool,
            connect_timeout: self.timeouts.connect,
            guard,
        };
        if upgrade {
            let resp = pool::send_upgrade(target, req)
                .await
                .map_err(|e| SendError::Exchange(e.into()))?;
            return Ok(resp.map(|b| b.map_err(Into::into).boxed()));
        }
        let resp = pool::send(target, req)
            .await
            .map_err(|e| SendError::Exchange(e.into()))?;
        Ok(resp.map(BodyExt::boxed))
    }
}

/// A cluster's `timeout` as the request path uses it, converted once per configuration rather
/// than on every request (the float conversions showed in instruction counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// The idle limit on the request body (`send`).
    pub send: Duration,
    /// The idle limit on the response body (`read`).
    pub read: Duration,
    /// From the request's start to the response head: `send` + `read`.
    pub headers: Duration,
}

impl Timeouts {
    pub fn of(t: &TimeoutConfig) -> Timeouts {
        Timeouts {
            connect: Duration::from_secs_f64(t.connect),
            send: Duration::from_secs_f64(t.send),
            read: Duration::from_secs_f64(t.read),
            headers: Duration::from_secs_f64(t.send + t.read),
        }
    }
}

/// Why [`Cluster::send`] got no response ([`crate::proxy::failure::Failure::of_send`] says
/// whose fault it was).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The request could not be put on the wire at all (our fault, not the node's).
    #[error("building the upstream request failed: {0}")]
    Build(BoxError),
    /// Connecting, sending or waiting for the response failed.
    #[error("{0}")]
    Exchange(BoxError),
}

/// Every cluster by name: a value, copied and changed by the configuration loop and published
/// with the route table in one [`crate::Snapshot`], so that requests never lock. With it, the
/// nodes each Consul service had at its last good answer ([`crate::discovery`]).
#[derive(Debug, Default, Clone)]
pub struct Clusters {
    map: HashMap<String, Arc<Cluster>>,
    discovered: HashMap<String, Arc<Vec<UpstreamNode>>>,
}

/// The nodes a cluster sends to: those its Consul service last answered, through the
/// cluster's metadata filter, when there are any; its static nodes otherwise (the original
/// emptied the balancer on an empty answer while health checks kept the static nodes, G13).
fn effective_nodes<'a>(
    config: &'a ClusterConfig,
    discovered: &'a HashMap<String, Arc<Vec<UpstreamNode>>>,
) -> std::borrow::Cow<'a, [UpstreamNode]> {
    let found = config
        .consul_service()
        .and_then(|service| discovered.get(service))
        .map(|nodes| {
            let filter = config.discovery_args.clone().unwrap_or_default();
            nodes
                .iter()
                .filter(|n| filter.matches(&n.metadata))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|nodes| !nodes.is_empty());
    match found {
        Some(nodes) => std::borrow::Cow::Owned(nodes),
        None => std::borrow::Cow::Borrowed(&config.nodes),
    }
}

impl Clusters {
    pub fn get(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.map.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.map.values()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.keys().cloned().collect();
        names.sort();
        names
    }

    /// The Consul services the clusters discover their nodes from.
    pub fn services(&self) -> std::collections::BTreeSet<String> {
        self.map
            .values()
            .filter_map(|c| c.config.consul_service().map(str::to_string))
            .collect()
    }

    fn build(&self, config: ClusterConfig, previous: Option<&Cluster>) -> Cluster {
        let nodes = effective_nodes(&config, &self.discovered).into_owned();
        Cluster::build(config, &nodes, previous)
    }

    /// Adds or replaces a cluster, keeping the runtime state its new configuration allows.
    /// Returns whether anything changed.
    pub fn upsert(&mut self, config: ClusterConfig) -> bool {
        let previous = self.map.get(&config.name);
        if previous.is_some_and(|c| c.config == config) {
            return false;
        }
        let next = self.build(config.clone(), previous.map(Arc::as_ref));
        self.map.insert(config.name, Arc::new(next));
        true
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.map.remove(name).is_some()
    }

    /// Takes a full listing (after a re-list), keeping the state of clusters that remain.
    /// Clusters the listing lacks are kept too, and their names returned: removing them is the
    /// caller's to schedule, as for a deletion (a route table in use may still name them).
    pub fn replace_all(&mut self, configs: Vec<ClusterConfig>) -> Vec<String> {
        let mut previous = std::mem::take(&mut self.map);
        for config in configs {
            let cluster = match previous.remove(&config.name) {
                Some(c) if c.config == config => c,
                old => Arc::new(self.build(config.clone(), old.as_deref())),
            };
            self.map.insert(config.name, cluster);
        }
        let gone: Vec<String> = previous.keys().cloned().collect();
        self.map.extend(previous);
        gone
    }

    /// Records the nodes `service` answered, and rebuilds the clusters discovering from it
    /// (keeping the state of nodes that remain). Returns whether anything changed.
    pub fn set_discovered(&mut self, service: &str, nodes: Vec<UpstreamNode>) -> bool {
        if self
            .discovered
            .get(service)
            .is_some_and(|known| **known == nodes)
        {
            return false;
        }
        self.discovered.insert(service.to_string(), Arc::new(nodes));
        let affected: Vec<Arc<Cluster>> = self
            .map
            .values()
            .filter(|c| c.config.consul_service() == Some(service))
            .cloned()
            .collect();
        for old in affected {
            let next = self.build(old.config.clone(), Some(&old));
            self.map.insert(old.config.name.clone(), Arc::new(next));
        }
        true
    }

    /// Forgets services no cluster discovers from any more.
    pub fn forget_services(&mut self, keep: &std::collections::BTreeSet<String>) {
        self.discovered.retain(|s, _| keep.contains(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> ClusterConfig {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn updates_keep_node_state_and_pool() {
        let mut clusters = Clusters::default();
        clusters.upsert(cfg(json!({"name": "c", "nodes": [{"host": "10.0.0.1", "port": 80}, {"host": "10.0.0.2", "port": 80}]})));
        let before = clusters.get("c").unwrap().clone();
        let node = before.balancer.endpoints()[0].clone();
        // A change the client does not depend on (upstream_host) keeps nodes, balancer
        // rotation and pool.
        clusters.upsert(cfg(json!({"name": "c", "upstream_host": "x.internal", "nodes": [{"host": "10.0.0.1", "port": 80}, {"host": "10.0.0.2", "port": 80}]})));
        let after = clusters.get("c").unwrap().clone();
        assert!(Arc::ptr_eq(&after.balancer.endpoints()[0], &node));
        assert_eq!(after.client_key, before.client_key);
        // pass_host node offers h2 to TLS upstreams: a new client, the same nodes.
        clusters.upsert(cfg(json!({"name": "c", "pass_host": "node", "nodes": [{"host": "10.0.0.1", "port": 80}, {"host": "10.0.0.2", "port": 80}]})));
        let h2 = clusters.get("c").unwrap().clone();
        assert!(h2.client_key.h2 && !before.client_key.h2);
        assert!(Arc::ptr_eq(&h2.balancer.endpoints()[0], &node));
        // Dropping a node keeps the other's counters.
        clusters.upsert(cfg(
            json!({"name": "c", "nodes": [{"host": "10.0.0.1", "port": 80}]}),
        ));
        assert!(Arc::ptr_eq(
            &clusters.get("c").unwrap().balancer.endpoints()[0],
            &node
        ));
        assert!(clusters.remove("c"));
        assert!(clusters.get("c").is_none());
    }

    #[tokio::test]
    async fn discovered_nodes_replace_static_ones_through_the_filter() {
        let mut clusters = Clusters::default();
        clusters.upsert(cfg(
            json!({"name": "c", "discovery_type": "consul", "service_name": "web",
            "discovery_args": {"metadata_match": {"zone": ["a"]}},
            "nodes": [{"host": "10.9.9.9", "port": 80}]}),
        ));
        clusters.upsert(cfg(
            json!({"name": "plain", "nodes": [{"host": "10.0.0.9", "port": 80}]}),
        ));
        let keys = |c: &Clusters, name: &str| -> Vec<String> {
            c.get(name)
                .unwrap()
                .balancer
                .endpoints()
                .iter()
                .map(|e| e.key.to_string())
                .collect()
        };
        assert_eq!(
            keys(&clusters, "c"),
            ["10.9.9.9:80"],
            "static until Consul answers"
        );
        assert_eq!(clusters.services().into_iter().collect::<Vec<_>>(), ["web"]);
        let node = |host: &str, zone: &str| UpstreamNode {
            host: host.into(),
            port: 8080,
            weight: 1,
            metadata: [("zone".to_string(), zone.to_string())].into(),
        };
        assert!(clusters.set_discovered("web", vec![node("10.0.0.1", "a"), node("10.0.0.2", "b")]));
        assert_eq!(
            keys(&clusters, "c"),
            ["10.0.0.1:8080"],
            "zone b filtered out"
        );
        let kept = clusters.get("c").unwrap().balancer.endpoints()[0].clone();
        assert!(!clusters.set_discovered("web", vec![node("10.0.0.1", "a"), node("10.0.0.2", "b")]));
        assert!(clusters.set_discovered("web", vec![node("10.0.0.1", "a"), node("10.0.0.3", "a")]));
        assert!(
            Arc::ptr_eq(&clusters.get("c").unwrap().balancer.endpoints()[0], &kept),
            "node state kept"
        );
        // Nothing matching: the static nodes again, never an empty cluster.
        assert!(clusters.set_discovered("web", vec![node("10.0.0.2", "b")]));
        assert_eq!(keys(&clusters, "c"), ["10.9.9.9:80"]);
        assert_eq!(
            keys(&clusters, "plain"),
            ["10.0.0.9:80"],
            "other clusters untouched"
        );
    }
}
