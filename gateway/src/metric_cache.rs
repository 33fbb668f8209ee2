//! Per-thread cache of the metric handles a request records into. Finding a labelled child of
//! a Prometheus vector hashes its labels and takes the vector's lock; a request did that five
//! times. Consecutive requests mostly share their labels (same route, cluster and node), so
//! each worker thread keeps the handles of the label sets it used last.
//!
//! Children are never removed from the vectors, so a cached handle stays the one `/metrics`
//! reports. Entries hold their `GatewayMetrics` alive: a handle of one gateway is never used
//! for another's (tests run several in one process).

use std::cell::RefCell;
use std::sync::Arc;

use http::Method;
use prometheus::{Histogram, HistogramVec, IntCounter, IntGauge};

use super::metrics::GatewayMetrics;

/// Label sets remembered per thread and kind; beyond it the oldest is forgotten.
const ENTRIES: usize = 8;
/// (method, status) counters remembered per label set.
const COUNTERS: usize = 8;

/// The handles of one (domain, route, cluster, upstream) label set, each made when first used
/// (a series appears in `/metrics` only once something was recorded in it, as before).
#[derive(Default)]
struct UpstreamHandles {
    duration: Option<Histogram>,
    upstream_duration: Option<Histogram>,
    response_size: Option<Histogram>,
    requests: Vec<(Method, u16, IntCounter)>,
}

struct Entry<const N: usize, T> {
    metrics: Arc<GatewayMetrics>,
    labels: [Arc<str>; N],
    handles: T,
}

struct Cache {
    by_route: Vec<Entry<2, IntGauge>>,
    by_upstream: Vec<Entry<4, UpstreamHandles>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const {
        RefCell::new(Cache {
            by_route: Vec::new(),
            by_upstream: Vec::new(),
        })
    };
}

fn position<const N: usize, T>(
    list: &[Entry<N, T>],
    metrics: &Arc<GatewayMetrics>,
    labels: &[&Arc<str>; N],
) -> Option<usize> {
    list.iter().position(|e| {
        Arc::ptr_eq(&e.metrics, metrics) && e.labels.iter().zip(labels).all(|(a, b)| **a == ***b)
    })
}

fn remember<const N: usize, T>(list: &mut Vec<Entry<N, T>>, entry: Entry<N, T>) -> usize {
    if list.len() == ENTRIES {
        list.remove(0);
    }
    list.push(entry);
    list.len() - 1
}

/// `gateway_http_requests_in_flight{domain, route}`.
pub fn in_flight(metrics: &Arc<GatewayMetrics>, domain: &Arc<str>, route: &Arc<str>) -> IntGauge {
    CACHE.with_borrow_mut(|c| {
        let labels = [domain, route];
        let i = position(&c.by_route, metrics, &labels).unwrap_or_else(|| {
            let handles = metrics.in_flight.with_label_values(&[&**domain, &**route]);
            remember(
                &mut c.by_route,
                Entry {
                    metrics: metrics.clone(),
                    labels: labels.map(Arc::clone),
                    handles,
                },
            )
        });
        c.by_route[i].handles.clone()
    })
}

/// The handles of one (domain, route, cluster, upstream) label set.
pub struct Upstream<'a> {
    entry: &'a mut Entry<4, UpstreamHandles>,
}

fn lazily<'a>(
    slot: &'a mut Option<Histogram>,
    vec: &HistogramVec,
    labels: &[Arc<str>; 4],
) -> &'a Histogram {
    slot.get_or_insert_with(|| vec.with_label_values(&labels.each_ref().map(|l| &**l)))
}

impl Upstream<'_> {
    /// `gateway_http_requests_total` with `method` and `status` (`code` as text).
    pub fn requests(&mut self, method: &Method, code: u16, status: &str) -> &IntCounter {
        let Entry {
            metrics,
            labels,
            handles,
        } = &mut *self.entry;
        let list = &mut handles.requests;
        let j = match list.iter().position(|(m, c, _)| *c == code && m == method) {
            Some(j) => j,
            None => {
                let [domain, route, cluster, upstream] = labels.each_ref().map(|l| &**l);
                let counter = metrics.requests.with_label_values(&[
                    domain,
                    route,
                    cluster,
                    method.as_str(),
                    status,
                    upstream,
                ]);
                if list.len() == COUNTERS {
                    list.remove(0);
                }
                list.push((method.clone(), code, counter));
                list.len() - 1
            }
        };
        &list[j].2
    }

    pub fn duration(&mut self) -> &Histogram {
        let e = &mut *self.entry;
        lazily(&mut e.handles.duration, &e.metrics.duration, &e.labels)
    }

    pub fn upstream_duration(&mut self) -> &Histogram {
        let e = &mut *self.entry;
        lazily(
            &mut e.handles.upstream_duration,
            &e.metrics.upstream_duration,
            &e.labels,
        )
    }

    pub fn response_size(&mut self) -> &Histogram {
        let e = &mut *self.entry;
        lazily(
            &mut e.handles.response_size,
            &e.metrics.response_size,
            &e.labels,
        )
    }
}

/// Runs `f` with the handles of `labels` (domain, route, cluster, upstream).
pub fn with_upstream<R>(
    metrics: &Arc<GatewayMetrics>,
    labels: [&Arc<str>; 4],
    f: impl FnOnce(Upstream<'_>) -> R,
) -> R {
    CACHE.with_borrow_mut(|c| {
        let i = position(&c.by_upstream, metrics, &labels).unwrap_or_else(|| {
            remember(
                &mut c.by_upstream,
                Entry {
                    metrics: metrics.clone(),
                    labels: labels.map(Arc::clone),
                    handles: UpstreamHandles::default(),
                },
            )
        });
        f(Upstream {
            entry: &mut c.by_upstream[i],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_are_the_registered_children() {
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(GatewayMetrics::register(&registry).unwrap());
        let [d, r, c, u]: [Arc<str>; 4] = ["d", "r", "c", "u:1"].map(Arc::from);
        for _ in 0..3 {
            with_upstream(&metrics, [&d, &r, &c, &u], |mut h| {
                h.requests(&Method::GET, 200, "200").inc();
                h.duration().observe(0.1);
            });
            in_flight(&metrics, &d, &r).inc();
        }
        // Equal labels in other allocations hit the same children.
        let r2: Arc<str> = Arc::from("r");
        with_upstream(&metrics, [&d, &r2, &c, &u], |mut h| {
            h.requests(&Method::GET, 503, "503").inc()
        });
        let m = &metrics;
        assert_eq!(
            m.requests
                .with_label_values(&["d", "r", "c", "GET", "200", "u:1"])
                .get(),
            3
        );
        assert_eq!(
            m.requests
                .with_label_values(&["d", "r", "c", "GET", "503", "u:1"])
                .get(),
            1
        );
        assert_eq!(
            m.duration
                .with_label_values(&["d", "r", "c", "u:1"])
                .get_sample_count(),
            3
        );
        assert_eq!(m.in_flight.with_label_values(&["d", "r"]).get(), 3);
        assert_eq!(
            m.response_size
                .with_label_values(&["d", "r", "c", "u:1"])
                .get_sample_count(),
            0,
            "made only when used"
        );
        // Another gateway's metrics are not confused with these.
        let other = Arc::new(GatewayMetrics::register(&prometheus::Registry::new()).unwrap());
        with_upstream(&other, [&d, &r, &c, &u], |mut h| {
            h.requests(&Method::GET, 200, "200").inc()
        });
        assert_eq!(
            other
                .requests
                .with_label_values(&["d", "r", "c", "GET", "200", "u:1"])
                .get(),
            1
        );
    }
}
