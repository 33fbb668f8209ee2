//! Active health checks (contracts/hermes.md §7.7): every node of a cluster with
//! `health_check.active` is probed every `interval` seconds (the original ignored the interval
//! and probed every 10 s, one cluster after the other), at most `concurrency` probes of a
//! cluster at once. A probe is `GET <path>` to the node (or to `port` on the node's host)
//! through the cluster's own transport, so TLS, its verification (`tls_verify`), the connect
//! timeout and the upstream guard are the ones requests get; it must answer one of
//! `healthy_statuses` within `timeout` seconds.
//!
//! One task, owned by [`crate::Gateway::follow`], ticks every [`TICK`] and starts the probes
//! that are due; a probe still running is not started again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::Request;
use http_body_util::{BodyExt, Empty};
use tokio::time::Instant;

use super::outcome;
use crate::config::protection::ActiveHealthCheck;
use crate::upstream::balancer::Endpoint;
use crate::upstream::cluster::Cluster;
use crate::Gateway;

/// How often due probes are looked for: the finest interval granularity.
pub const TICK: Duration = Duration::from_secs(1);

/// Probes what is due, every [`TICK`], until the task is dropped.
pub async fn run(gw: Arc<Gateway>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = tokio::task::JoinSet::new();
    loop {
        every.tick().await;
        // Reap finished rounds, so the set does not grow.
        while rounds.try_join_next().is_some() {}
        let now = Instant::now();
        let snapshot = gw.snapshot();
        for cluster in snapshot.clusters.all() {
            let Some(active) = cluster
                .config
                .health_check
                .as_ref()
                .and_then(|h| h.active.clone())
            else {
                continue;
            };
            let due: Vec<Arc<Endpoint>> = cluster
                .balancer
                .endpoints()
                .iter()
                .filter(|e| {
                    e.health
                        .probe_due(now, Duration::from_secs(active.interval))
                })
                .cloned()
                .collect();
            if due.is_empty() {
                continue;
            }
            rounds.spawn(probe_all(gw.clone(), cluster.clone(), active, due));
        }
    }
}

async fn probe_all(
    gw: Arc<Gateway>,
    cluster: Arc<Cluster>,
    active: ActiveHealthCheck,
    due: Vec<Arc<Endpoint>>,
) {
    let concurrency = active.concurrency.max(1);
    futures_util::stream::iter(due)
        .for_each_concurrent(concurrency, |node| {
            let (gw, cluster, active) = (&gw, &cluster, &active);
            async move {
                let healthy = probe(gw, cluster, &node, active).await;
                let result = if healthy { "success" } else { "failure" };
                gw.metrics
                    .health_checks
                    .with_label_values(&[&*cluster.name, &*node.key, result])
                    .inc();
                if let Some(change) = node.health.probed(active, healthy) {
                    outcome::health_changed(&gw.metrics, cluster, &node, change);
                }
                node.health
                    .probe_done(Instant::now(), Duration::from_secs(active.interval));
            }
        })
        .await;
}

/// One probe: whether the node answered a healthy status in time.
async fn probe(
    gw: &Gateway,
    cluster: &Cluster,
    node: &Endpoint,
    active: &ActiveHealthCheck,
) -> bool {
    // Another port of the node's host: a transient endpoint, with its own (empty) pool.
    let other;
    let target = match active.port {
        Some(port) if port != node.port => {
            other = Endpoint::new(&node.host, port, 1);
            &other
        }
        _ => node,
    };
    let mut req = Request::new(Empty::new().map_err(|never| match never {}).boxed());
    *req.uri_mut() = match active.path.parse() {
        Ok(uri) => uri,
        Err(_) => return false,
    };
    let answer = tokio::time::timeout(
        Duration::from_secs(active.timeout),
        cluster.send(&gw.forbidden, target, req, false),
    )
    .await;
    match answer {
        Ok(Ok(resp)) => {
            let healthy = active.healthy_statuses.contains(&resp.status().as_u16());
            // Read the (small) body, so the connection can go back to the pool.
            let _ = tokio::time::timeout(
                Duration::from_secs(active.timeout),
                resp.into_body().collect(),
            )
            .await;
            healthy
        }
        Ok(Err(e)) => {
            tracing::debug!(cluster = %cluster.name, upstream = %target.key, error = %e, "health probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(cluster = %cluster.name, upstream = %target.key, "health probe timed out");
            false
        }
    }
}
