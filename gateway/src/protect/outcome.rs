//! What a node did with a request, recorded once for everything that learns from it: the
//! balancer's latency estimate, the node's circuit breaker and its passive health. Both proxy
//! paths call [`answered`] when a response head arrives and the failure model's
//! [`crate::proxy::failure::settle`] calls [`failed`] for failures it blames on the node, so
//! no client fault or configuration mistake ever reaches a breaker.

use std::time::Duration;

use tokio::time::Instant;

use super::breaker::Phase;
use super::health::Change;
use crate::metrics::GatewayMetrics;
use crate::upstream::balancer::Endpoint;
use crate::upstream::cluster::Cluster;

/// The node answered with `status` after `latency`. A 5xx is the node's failure (§7.8).
pub fn answered(
    metrics: &GatewayMetrics,
    cluster: &Cluster,
    node: &Endpoint,
    status: u16,
    latency: Duration,
) {
    cluster.balancer.observe(node, latency);
    if status >= 500 {
        failed(metrics, cluster, node, Instant::now());
        return;
    }
    if let Some(cfg) = &cluster.config.circuit_breaker {
        if let Some(phase) = node.breaker.success(cfg) {
            breaker_moved(metrics, cluster, node, phase);
        }
    }
    node.health.request_succeeded();
}

/// The node failed a request (refused, reset, timed out, answered unusably or with a 5xx).
pub fn failed(metrics: &GatewayMetrics, cluster: &Cluster, node: &Endpoint, now: Instant) {
    if let Some(cfg) = &cluster.config.circuit_breaker {
        if let Some(phase) = node.breaker.failure(cfg, now) {
            breaker_moved(metrics, cluster, node, phase);
        }
    }
    let passive = cluster
        .config
        .health_check
        .as_ref()
        .and_then(|h| h.passive.as_ref());
    if let Some(cfg) = passive {
        if let Some(change) = node.health.request_failed(cfg, now) {
            health_changed(metrics, cluster, node, change);
        }
    }
}

/// Reports a breaker's new phase: the state gauge, and a line when it opens or closes.
pub fn breaker_moved(metrics: &GatewayMetrics, cluster: &Cluster, node: &Endpoint, phase: Phase) {
    metrics
        .breaker_state
        .with_label_values(&[&*cluster.name, &*node.key])
        .set(phase as i64);
    match phase {
        Phase::Open => {
            tracing::warn!(cluster = %cluster.name, upstream = %node.key, "circuit breaker opened")
        }
        Phase::Closed => {
            tracing::info!(cluster = %cluster.name, upstream = %node.key, "circuit breaker closed")
        }
        Phase::HalfOpen => {
            tracing::debug!(cluster = %cluster.name, upstream = %node.key, "circuit breaker probing")
        }
    }
}

/// Reports a node taken out of or brought back into rotation.
pub fn health_changed(
    metrics: &GatewayMetrics,
    cluster: &Cluster,
    node: &Endpoint,
    change: Change,
) {
    let labels = [&*cluster.name, &*node.key];
    match change {
        Change::Down => {
            metrics.health_status.with_label_values(&labels).set(0);
            tracing::warn!(cluster = %cluster.name, upstream = %node.key, "upstream node unhealthy (active check)");
        }
        Change::Up => {
            metrics.health_status.with_label_values(&labels).set(1);
            tracing::info!(cluster = %cluster.name, upstream = %node.key, "upstream node healthy again (active check)");
        }
        Change::Ejected(period) => {
            metrics.ejections.with_label_values(&labels).inc();
            tracing::warn!(
                cluster = %cluster.name,
                upstream = %node.key,
                seconds = period.as_secs(),
                "upstream node ejected after failing requests in a row"
            );
        }
    }
}
