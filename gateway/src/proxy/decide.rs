//! Where a request goes, decided the same way on both paths, in one order: route → rate limit
//! → body limit → cluster → node. [`choose`] only looks (the fast path asks it first, to hand requests it
//! does not serve to hyper before anything is counted); [`Choice::admit`] then commits: it
//! counts the request against its route, applies the body limit, records the cluster and the
//! node, or says which [`Failure`] answers the request instead.

use std::sync::Arc;

use http::Method;
use rand::Rng;

use super::failure::Failure;
use super::record::Record;
use crate::protect::limiters::KeyParts;
use crate::routing::matchers::{visible_ascii, HeaderSource};
use crate::routing::table::Route;
use crate::snapshot::Snapshot;
use crate::upstream::balancer::Endpoint;
use crate::upstream::cluster::{Cluster, Clusters};
use crate::Gateway;

/// The route and cluster a request would take.
pub struct Choice {
    pub route: Option<Arc<Route>>,
    pub cluster: Option<Arc<Cluster>>,
    /// The route's override header chose the cluster.
    pub overridden: bool,
}

/// Where a request goes.
pub struct Admitted {
    pub route: Arc<Route>,
    pub cluster: Arc<Cluster>,
    pub node: Arc<Endpoint>,
    pub overridden: bool,
}

/// Looks up the route (`host` normalized) and the cluster it would send to; changes nothing.
pub fn choose(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    method: &Method,
    headers: &dyn HeaderSource,
) -> Choice {
    let route = snapshot.table.find(host, path, method, headers);
    let (cluster, overridden) = match &route {
        Some(route) => select_cluster(&snapshot.clusters, route, headers),
        None => (None, false),
    };
    Choice {
        route,
        cluster,
        overridden,
    }
}

impl Choice {
    /// Commits the choice for a request whose declared body length is `body` (a body that
    /// turns out longer than declared is cut off as it streams): the request is counted
    /// against its route from here on, and `record` names its cluster and node.
    pub fn admit(
        self,
        gw: &Gateway,
        body: Option<u64>,
        record: &mut Record,
    ) -> Result<Admitted, Failure> {
        let route = self.route.ok_or(Failure::NoRoute)?;
        record.enter_route(route.domain.clone(), route.name.clone());
        if let Some(limiter) = &route.limiter {
            let parts = KeyParts {
                host: &record.host,
                path: &record.path,
                client: record.client_ip,
            };
            limiter
                .check(&parts, record.started)
                .map_err(|r| Failure::RateLimited {
                    status: r.status,
                    retry_after: r.retry_after,
                })?;
        }
        if let (Some(max), Some(len)) = (route.max_body_bytes, body) {
            if len > max {
                return Err(Failure::BodyTooLarge);
            }
        }
        let cluster = self.cluster.ok_or(Failure::NoCluster)?;
        record.cluster = cluster.name.clone();
        if self.overridden {
            gw.metrics
                .cluster_override
                .with_label_values(&[&*route.domain, &*route.name, &cluster.config.name])
                .inc();
        }
        let node = pick_node(gw, &cluster, record, &|_| false)?;
        record.upstream = node.key.clone();
        Ok(Admitted {
            route,
            cluster,
            node,
            overridden: self.overridden,
        })
    }
}

/// A node of `cluster` for the request: a healthy one whose breaker lets the request through.
/// When no node is healthy, one whose breaker allows (fail open: an outage of the health
/// signal must not become an outage of the service); when every breaker is open, none.
/// `avoid` names nodes not to pick at all (those a retried request already tried).
fn pick_node(
    gw: &Gateway,
    cluster: &Cluster,
    record: &Record,
    avoid: &dyn Fn(&Endpoint) -> bool,
) -> Result<Arc<Endpoint>, Failure> {
    let config = &cluster.config;
    if config.circuit_breaker.is_none() && config.health_check.is_none() {
        return cluster.balancer.pick(avoid).ok_or(Failure::NoNode);
    }
    let now = tokio::time::Instant::now().max(record.started);
    let breaker = config.circuit_breaker.as_ref();
    let closed = |e: &Endpoint| !avoid(e) && breaker.is_none_or(|b| e.breaker.allows(b, now));
    let node = match cluster
        .balancer
        .pick(&|e| !(e.health.usable(now) && closed(e)))
    {
        Some(node) => node,
        None => {
            let endpoints = cluster.balancer.endpoints();
            if endpoints.iter().all(|e| avoid(e)) {
                return Err(Failure::NoNode);
            }
            match cluster.balancer.pick(&|e| !closed(e)) {
                Some(node) => {
                    gw.metrics
                        .fail_open
                        .with_label_values(&[&*cluster.name])
                        .inc();
                    tracing::warn!(cluster = %cluster.name, upstream = %node.key, "every node of the cluster is unhealthy: sending anyway (fail open)");
                    node
                }
                None => {
                    for e in endpoints.iter().filter(|e| !avoid(e)) {
                        gw.metrics
                            .breaker_rejected
                            .with_label_values(&[
                                &*record.domain,
                                &*record.route,
                                &*cluster.name,
                                &*e.key,
                            ])
                            .inc();
                    }
                    return Err(Failure::CircuitOpen);
                }
            }
        }
    };
    if let Some(b) = breaker {
        if let Some(phase) = node.breaker.admit(b, now) {
            crate::protect::outcome::breaker_moved(&gw.metrics, cluster, &node, phase);
        }
    }
    Ok(node)
}

/// Another node for a request sent again: as the first pick, never one in `tried`.
pub fn next_node(
    gw: &Gateway,
    cluster: &Cluster,
    record: &Record,
    tried: &[Arc<str>],
) -> Option<Arc<Endpoint>> {
    pick_node(gw, cluster, record, &|e| tried.contains(&e.key)).ok()
}

/// The cluster for this request, and whether the override header chose it.
fn select_cluster(
    clusters: &Clusters,
    route: &Route,
    headers: &dyn HeaderSource,
) -> (Option<Arc<Cluster>>, bool) {
    if let Some(name) = route
        .override_header
        .as_ref()
        .and_then(|h| headers.first(h))
        .and_then(visible_ascii)
    {
        // Only the route's own clusters may be chosen (the original allowed any cluster).
        if route.clusters.iter().any(|c| c.name == name) {
            if let Some(cluster) = clusters.get(name) {
                return (Some(cluster.clone()), true);
            }
        }
        tracing::debug!(cluster = name, route = %route.name, "override header names no cluster of this route");
    }
    let name = match route.clusters.as_slice() {
        [only] => &only.name,
        many => {
            let total: u64 = many.iter().map(|c| u64::from(c.weight)).sum();
            if total == 0 {
                return (None, false);
            }
            let mut r = rand::rng().random_range(0..total);
            let mut chosen = &many[many.len() - 1].name;
            for c in many {
                if r < u64::from(c.weight) {
                    chosen = &c.name;
                    break;
                }
                r -= u64::from(c.weight);
            }
            chosen
        }
    };
    (clusters.get(name).cloned(), false)
}
