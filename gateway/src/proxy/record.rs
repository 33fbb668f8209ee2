//! What the gateway remembers about one request until its response has been sent: labels for
//! metrics, fields for the access log, and the upstream node's in-flight mark. Dropping the
//! record (when the response body ends, fails, or is abandoned) counts the request exactly once.

use std::net::IpAddr;
use std::sync::Arc;
use tokio::time::Instant;

use http::Method;

use super::body::OnBodyEnd;
use super::failure::Failure;
use crate::metric_cache;
use crate::metrics::GatewayMetrics;
use crate::upstream::balancer::InFlight;

pub struct Record {
    pub metrics: Arc<GatewayMetrics>,
    pub started: Instant,
    pub method: Method,
    pub host: String,
    pub path: String,
    pub client_ip: IpAddr,
    pub domain: Arc<str>,
    pub route: Arc<str>,
    pub cluster: Arc<str>,
    pub upstream: Arc<str>,
    pub status: u16,
    /// Time to upstream response headers.
    pub upstream_secs: Option<f64>,
    pub bytes: u64,
    /// Set once the route is known: the in-flight gauge to release.
    pub in_flight: Option<prometheus::IntGauge>,
    pub node: Option<InFlight>,
    /// The gateway answered itself (no upstream response).
    pub local: bool,
    /// Why the gateway answered itself, when it did ([`super::failure::settle`]).
    pub failure: Option<Failure>,
    /// When the response was sent, if the caller read the clock already ([`Record::finish`]).
    ended: Option<Instant>,
}

thread_local! {
    /// The labels of a request not routed (yet), shared rather than allocated per request.
    static UNSET: Arc<str> = Arc::from("");
    static NO_ROUTE: Arc<str> = Arc::from("_no_route");
}

impl Record {
    pub fn new(
        metrics: Arc<GatewayMetrics>,
        method: Method,
        host: String,
        path: String,
        client_ip: IpAddr,
    ) -> Record {
        Record {
            metrics,
            started: Instant::now(),
            method,
            host,
            path,
            client_ip,
            domain: UNSET.with(Arc::clone),
            route: NO_ROUTE.with(Arc::clone),
            cluster: UNSET.with(Arc::clone),
            upstream: UNSET.with(Arc::clone),
            status: 0,
            upstream_secs: None,
            bytes: 0,
            in_flight: None,
            node: None,
            local: false,
            failure: None,
            ended: None,
        }
    }

    /// Notes that the response was sent at `at` (so that dropping the record reads no clock).
    pub fn finish(&mut self, at: Instant) {
        self.ended = Some(at);
    }

    pub fn enter_route(&mut self, domain: Arc<str>, route: Arc<str>) {
        self.domain = domain;
        self.route = route;
        let gauge = metric_cache::in_flight(&self.metrics, &self.domain, &self.route);
        gauge.inc();
        self.in_flight = Some(gauge);
    }
}

impl OnBodyEnd for Record {
    fn add_bytes(&mut self, n: u64) {
        self.bytes += n;
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let ended = self.ended.unwrap_or_else(Instant::now);
        let elapsed = ended.saturating_duration_since(self.started).as_secs_f64();
        let code = http::StatusCode::from_u16(self.status);
        let status = code.as_ref().map_or("0", http::StatusCode::as_str);
        let m = &self.metrics;
        let Some(gauge) = &self.in_flight else {
            // No route: only the request count (as in the original, no duration without a
            // route to label it with).
            m.requests
                .with_label_values(&[
                    &*self.domain,
                    &*self.route,
                    &*self.cluster,
                    self.method.as_str(),
                    status,
                    &*self.upstream,
                ])
                .inc();
            self.log(elapsed);
            return;
        };
        gauge.dec();
        let labels = [&self.domain, &self.route, &self.cluster, &self.upstream];
        metric_cache::with_upstream(m, labels, |mut h| {
            h.requests(&self.method, self.status, status).inc();
            h.duration().observe(elapsed);
            if let Some(up) = self.upstream_secs {
                h.upstream_duration().observe(up);
            }
            if !self.local {
                h.response_size().observe(self.bytes as f64);
            }
        });
        self.log(elapsed);
    }
}

impl Record {
    fn log(&self, elapsed: f64) {
        if !crate::access_log::enabled() {
            return;
        }
        crate::access_log::write(&crate::access_log::Line {
            client_ip: self.client_ip,
            method: self.method.as_str(),
            host: &self.host,
            path: &self.path,
            status: self.status,
            domain: &self.domain,
            route: &self.route,
            cluster: &self.cluster,
            upstream: &self.upstream,
            bytes: self.bytes,
            latency_ms: elapsed * 1000.0,
            upstream_ms: self.upstream_secs.map(|s| s * 1000.0),
            failure: self.failure.map(Failure::as_str),
            failed_by: self.failure.map(|f| f.source().as_str()),
        });
    }
}
