//! The data plane's Prometheus metrics, with the original gateway's names and labels
//! (contracts/hermes.md §7.16) so that existing dashboards keep working, plus
//! `hermes_config_applied_revision`. Every request is counted exactly once, when it completes.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const SIZE_BUCKETS: [f64; 9] = [
    100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0, 500000.0, 1000000.0,
];

#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub in_flight: IntGaugeVec,
    pub response_size: HistogramVec,
    pub connections_active: IntGauge,
    pub connections: IntCounterVec,
    pub routes: IntGauge,
    pub reloads: IntCounterVec,
    pub cluster_override: IntCounterVec,
    pub applied_revision: IntGauge,
    pub config_errors: IntGauge,
    pub upgrades: IntCounter,
    pub rate_limit_allowed: IntCounterVec,
    pub rate_limit_rejected: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub gateway_nodes: IntGauge,
    pub breaker_state: IntGaugeVec,
    pub breaker_rejected: IntCounterVec,
    pub health_status: IntGaugeVec,
    pub health_checks: IntCounterVec,
    pub ejections: IntCounterVec,
    pub fail_open: IntCounterVec,
    pub retries: IntCounterVec,
    pub consul_polls: IntCounterVec,
    pub consul_nodes: IntGaugeVec,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    m: T,
) -> Result<T, prometheus::Error> {
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

impl GatewayMetrics {
    pub fn register(r: &Registry) -> Result<GatewayMetrics, prometheus::Error> {
        let by_upstream = ["domain", "route", "cluster", "upstream"];
        Ok(GatewayMetrics {
            requests: reg(r, IntCounterVec::new(
                Opts::new("gateway_http_requests_total", "HTTP requests handled by the gateway"),
                &["domain", "route", "cluster", "method", "status_code", "upstream"],
            )?)?,
            duration: reg(r, HistogramVec::new(
                HistogramOpts::new("gateway_http_request_duration_seconds", "Time from request to the end of the response")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &by_upstream,
            )?)?,
            upstream_duration: reg(r, HistogramVec::new(
                HistogramOpts::new("gateway_upstream_request_duration_seconds", "Time from sending upstream to response headers")
                    .buckets(DURATION_BUCKETS.to_vec()),
                &by_upstream,
            )?)?,
            in_flight: reg(r, IntGaugeVec::new(
                Opts::new("gateway_http_requests_in_flight", "Requests being handled"),
                &["domain", "route"],
            )?)?,
            response_size: reg(r, HistogramVec::new(
                HistogramOpts::new("gateway_http_response_size_bytes", "Bytes of response body sent to clients")
                    .buckets(SIZE_BUCKETS.to_vec()),
                &by_upstream,
            )?)?,
            connections_active: reg(r, IntGauge::new("gateway_connections_active", "Open downstream connections")?)?,
            connections: reg(r, IntCounterVec::new(
                Opts::new("gateway_connections_total", "Downstream connections accepted or failed"),
                &["status"],
            )?)?,
            routes: reg(r, IntGauge::new("gateway_config_routes_total", "Routes of the loaded domains (enabled or not)")?)?,
            reloads: reg(r, IntCounterVec::new(
                Opts::new("gateway_config_reloads_total", "Configuration changes applied or refused"),
                &["source", "result"],
            )?)?,
            cluster_override: reg(r, IntCounterVec::new(
                Opts::new("gateway_cluster_override_total", "Requests sent to a cluster named by the override header"),
                &["domain", "route", "cluster"],
            )?)?,
            applied_revision: reg(r, IntGauge::new(
                "hermes_config_applied_revision",
                "Store revision of the configuration the proxy serves",
            )?)?,
            config_errors: reg(r, IntGauge::new(
                "hermes_config_invalid_resources",
                "Domain and cluster documents that failed to parse (their previous version is served)",
            )?)?,
            upgrades: reg(r, IntCounter::new("hermes_gateway_upgrades_total", "Connections upgraded (WebSocket and others)")?)?,
            rate_limit_allowed: reg(r, IntCounterVec::new(
                Opts::new("gateway_rate_limit_allowed_total", "Requests a route's rate limit admitted"),
                &["domain", "route", "mode"],
            )?)?,
            rate_limit_rejected: reg(r, IntCounterVec::new(
                Opts::new("gateway_rate_limit_rejected_total", "Requests a route's rate limit refused"),
                &["domain", "route", "mode"],
            )?)?,
            gateway_nodes: reg(r, IntGauge::new(
                "hermes_gateway_instances",
                "Gateway instances registered, which share every rate limit",
            )?)?,
            breaker_state: reg(r, IntGaugeVec::new(
                Opts::new("gateway_circuit_breaker_state", "Circuit breaker of an upstream node: 0 closed, 1 open, 2 half open"),
                &["cluster", "upstream"],
            )?)?,
            breaker_rejected: reg(r, IntCounterVec::new(
                Opts::new("gateway_circuit_breaker_rejected_total", "Upstream nodes passed over because their circuit breaker was open"),
                &["domain", "route", "cluster", "upstream"],
            )?)?,
            health_status: reg(r, IntGaugeVec::new(
                Opts::new("gateway_upstream_health_status", "Active health of an upstream node: 1 healthy, 0 unhealthy"),
                &["cluster", "upstream"],
            )?)?,
            health_checks: reg(r, IntCounterVec::new(
                Opts::new("gateway_health_check_total", "Active health probes by result"),
                &["cluster", "upstream", "result"],
            )?)?,
            ejections: reg(r, IntCounterVec::new(
                Opts::new("gateway_upstream_ejections_total", "Upstream nodes taken out of rotation after failing requests in a row"),
                &["cluster", "upstream"],
            )?)?,
            consul_polls: reg(r, IntCounterVec::new(
                Opts::new("gateway_consul_poll_total", "Consul health queries answered, by service and result"),
                &["service_name", "result"],
            )?)?,
            consul_nodes: reg(r, IntGaugeVec::new(
                Opts::new("gateway_consul_discovered_nodes", "Nodes a cluster sends to after Consul's last good answer"),
                &["cluster"],
            )?)?,
            retries: reg(r, IntCounterVec::new(
                Opts::new("gateway_upstream_retries_total", "Requests sent again to another node, by the node that failed and why"),
                &["domain", "route", "cluster", "upstream", "reason"],
            )?)?,
            fail_open: reg(r, IntCounterVec::new(
                Opts::new("gateway_upstream_fail_open_total", "Requests sent to an unhealthy node because every node of the cluster was unhealthy"),
                &["cluster"],
            )?)?,
            rate_limited: reg(r, IntCounterVec::new(
                Opts::new("gateway_rate_limited_total", "Requests refused by a rate limit, by route"),
                &["domain", "route"],
            )?)?,
        })
    }
}
