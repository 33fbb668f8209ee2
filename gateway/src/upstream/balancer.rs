//! Node selection within a cluster: smooth weighted round robin (nginx's), weighted random,
//! least request (power of two choices, requests counted until the response body ends), and
//! peak EWMA (latency that jumps to a new peak at once and decays with time, times in-flight
//! requests). A node of weight 0 gets no traffic. Per-node counters live in [`Endpoint`]s,
//! which survive configuration updates that keep the node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use rand::Rng;

use super::pool::IdleConns;
use crate::protect::breaker::Breaker;
use crate::protect::health::NodeHealth;

/// Decay time constant of peak EWMA: a latency peak fades to a third in this time.
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for a node never measured.
const EWMA_INITIAL: Duration = Duration::from_millis(20);
/// Latency charged for a failed attempt.
const EWMA_FAILURE_PENALTY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RoundRobin,
    Random,
    LeastRequest,
    PeakEwma,
}

impl Algorithm {
    /// The cluster `type` names of contracts/hermes.md §1.3; unknown names mean round robin.
    pub fn parse(name: &str) -> Algorithm {
        match name {
            "random" | "weighted_random" => Algorithm::Random,
            "least_request" | "least_conn" => Algorithm::LeastRequest,
            "peak_ewma" | "ewma" => Algorithm::PeakEwma,
            _ => Algorithm::RoundRobin,
        }
    }
}

#[derive(Debug)]
struct Ewma {
    value_ns: f64,
    at: Instant,
}

/// One upstream node and its live counters.
#[derive(Debug)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// `host:port`, the node's identity in metrics and logs.
    pub key: Arc<str>,
    /// The Host a plain-HTTP request names the node with (`pass_host: node`, or a client that
    /// sent none): `key`, without the port when it is 80, as hyper-util's client wrote it.
    pub host_header: http::HeaderValue,
    /// Shared with the same node's earlier `Endpoint`s (after a reweight), so requests still
    /// in flight on the old one are counted down on the counter the balancer now reads.
    active: Arc<AtomicU64>,
    ewma: Arc<Mutex<Ewma>>,
    /// Failed attempts charged to the node ([`Endpoint::observe_failure`]), shared like
    /// `active`.
    failures: Arc<AtomicU64>,
    /// Idle plain-HTTP connections to the node (see [`super::pool`]).
    pub idle: Arc<IdleConns>,
    /// The node's circuit breaker and health, shared like `active`.
    pub breaker: Arc<Breaker>,
    pub health: Arc<NodeHealth>,
}

impl Endpoint {
    pub fn new(host: &str, port: u16, weight: u32) -> Endpoint {
        let key = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Endpoint {
            host: host.to_string(),
            port,
            weight,
            key: Arc::from(key.as_str()),
            host_header: http::HeaderValue::from_str(key.strip_suffix(":80").unwrap_or(&key))
                .unwrap_or_else(|_| http::HeaderValue::from_static("")),
            active: Arc::new(AtomicU64::new(0)),
            ewma: Arc::new(Mutex::new(Ewma {
                value_ns: EWMA_INITIAL.as_nanos() as f64,
                at: Instant::now(),
            })),
            failures: Arc::default(),
            idle: Arc::default(),
            breaker: Arc::default(),
            health: Arc::new(NodeHealth::new()),
        }
    }

    /// The same node with a new weight, keeping its counters.
    pub fn reweighted(old: &Endpoint, weight: u32) -> Endpoint {
        Endpoint {
            host: old.host.clone(),
            port: old.port,
            weight,
            key: old.key.clone(),
            host_header: old.host_header.clone(),
            active: Arc::clone(&old.active),
            ewma: Arc::clone(&old.ewma),
            failures: Arc::clone(&old.failures),
            idle: Arc::clone(&old.idle),
            breaker: Arc::clone(&old.breaker),
            health: Arc::clone(&old.health),
        }
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Records a response latency (time to headers).
    pub fn observe(&self, latency: Duration) {
        let sample = latency.as_nanos() as f64;
        let mut e = self.ewma.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let current = decayed(&e, now);
        e.value_ns = if sample > current {
            // Peak: jump to it at once, so a node that turns slow is avoided immediately.
            sample
        } else {
            let keep = decay_factor(&e, now);
            current * keep + sample * (1.0 - keep)
        };
        e.at = now;
    }

    /// Records a failed attempt (refused, reset, timed out) as a slow answer, so a node that
    /// fails fast does not look cheap to peak EWMA.
    pub fn observe_failure(&self, elapsed: Duration) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.observe(elapsed.max(EWMA_FAILURE_PENALTY));
    }

    /// Failed attempts charged to the node so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn ewma_cost(&self) -> f64 {
        let e = self.ewma.lock().unwrap_or_else(|p| p.into_inner());
        decayed(&e, Instant::now()) * (self.active() as f64 + 1.0) / f64::from(self.weight.max(1))
    }
}

fn decay_factor(e: &Ewma, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(e.at).as_secs_f64();
    (-elapsed / EWMA_DECAY.as_secs_f64()).exp()
}

/// The estimate as of `now`: it fades towards zero while no answer is seen, so a node avoided
/// after one slow answer is tried again instead of being starved for good.
fn decayed(e: &Ewma, now: Instant) -> f64 {
    e.value_ns * decay_factor(e, now)
}

/// Marks a node busy from selection until dropped (when the response body has ended).
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
}

impl InFlight {
    pub fn new(endpoint: Arc<Endpoint>) -> InFlight {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        InFlight { endpoint }
    }

    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The nodes of a cluster and the algorithm choosing among them.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    endpoints: Vec<Arc<Endpoint>>,
    /// Smooth WRR's current weights, one per endpoint.
    current: Mutex<Vec<i64>>,
}

impl Balancer {
    pub fn new(algorithm: Algorithm, endpoints: Vec<Arc<Endpoint>>) -> Balancer {
        let n = endpoints.len();
        Balancer {
            algorithm,
            endpoints,
            current: Mutex::new(vec![0; n]),
        }
    }

    /// A balancer over the same nodes that continues `previous`'s rotation.
    pub fn inherit(self, previous: &Balancer) -> Balancer {
        let current = previous
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if current.len() == self.endpoints.len() {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = current;
        }
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Records a response latency of `endpoint` for the algorithm that weighs latencies
    /// (peak EWMA); the others have no use for it, and it costs a lock and an `exp` a request.
    pub fn observe(&self, endpoint: &Endpoint, latency: Duration) {
        if self.algorithm == Algorithm::PeakEwma {
            endpoint.observe(latency);
        }
    }

    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// Picks a node, skipping those `skip` rejects and those of weight 0.
    pub fn pick(&self, skip: &dyn Fn(&Endpoint) -> bool) -> Option<Arc<Endpoint>> {
        if let [only] = self.endpoints.as_slice() {
            return (only.weight > 0 && !skip(only)).then(|| only.clone());
        }
        let eligible: Vec<usize> = (0..self.endpoints.len())
            .filter(|i| self.endpoints[*i].weight > 0 && !skip(&self.endpoints[*i]))
            .collect();
        if eligible.is_empty() {
            return None;
        }
        let index = match self.algorithm {
            Algorithm::RoundRobin => self.smooth_wrr(&eligible),
            Algorithm::Random => self.weighted_random(&eligible),
            Algorithm::LeastRequest => {
                self.two_choices(&eligible, |e| e.active() as f64 / f64::from(e.weight))
            }
            Algorithm::PeakEwma => self.two_choices(&eligible, Endpoint::ewma_cost),
        };
        Some(self.endpoints[index].clone())
    }

    fn smooth_wrr(&self, eligible: &[usize]) -> usize {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let mut total = 0i64;
        let mut best = eligible[0];
        for &i in eligible {
            let w = i64::from(self.endpoints[i].weight);
            current[i] += w;
            total += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        best
    }

    fn weighted_random(&self, eligible: &[usize]) -> usize {
        let total: u64 = eligible
            .iter()
            .map(|i| u64::from(self.endpoints[*i].weight))
            .sum();
        let mut r = rand::rng().random_range(0..total);
        for &i in eligible {
            let w = u64::from(self.endpoints[i].weight);
            if r < w {
                return i;
            }
            r -= w;
        }
        eligible[eligible.len() - 1]
    }

    fn two_choices(&self, eligible: &[usize], cost: impl Fn(&Endpoint) -> f64) -> usize {
        if eligible.len() == 1 {
            return eligible[0];
        }
        let mut rng = rand::rng();
        let a = rng.random_range(0..eligible.len());
        let mut b = rng.random_range(0..eligible.len() - 1);
        if b >= a {
            b += 1;
        }
        let (a, b) = (eligible[a], eligible[b]);
        if cost(&self.endpoints[b]) < cost(&self.endpoints[a]) {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn nodes(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Arc::new(Endpoint::new("10.0.0.1", 8000 + i as u16, *w)))
            .collect()
    }

    fn counts(b: &Balancer, n: usize) -> HashMap<u16, usize> {
        let mut out = HashMap::new();
        for _ in 0..n {
            *out.entry(b.pick(&|_| false).unwrap().port).or_default() += 1;
        }
        out
    }

    #[test]
    fn smooth_round_robin_is_exact_and_interleaved() {
        let b = Balancer::new(Algorithm::RoundRobin, nodes(&[5, 1, 1]));
        let seq: Vec<u16> = (0..7)
            .map(|_| b.pick(&|_| false).unwrap().port - 8000)
            .collect();
        // nginx's smooth WRR: a a b a c a a, never five a's in a row.
        assert_eq!(seq, vec![0, 0, 1, 0, 2, 0, 0]);
        let c = counts(&Balancer::new(Algorithm::RoundRobin, nodes(&[2, 3])), 5000);
        assert_eq!((c[&8000], c[&8001]), (2000, 3000));
    }

    #[test]
    fn weight_zero_gets_nothing_and_skips_are_honoured() {
        let b = Balancer::new(Algorithm::RoundRobin, nodes(&[1, 0, 1]));
        let c = counts(&b, 100);
        assert!(!c.contains_key(&8001));
        let only_last = b.pick(&|e| e.port == 8000).unwrap();
        assert_eq!(only_last.port, 8002);
        assert!(b.pick(&|_| true).is_none());
        for alg in [
            Algorithm::Random,
            Algorithm::LeastRequest,
            Algorithm::PeakEwma,
        ] {
            let b = Balancer::new(alg, nodes(&[0, 5]));
            assert!(counts(&b, 50).keys().all(|p| *p == 8001), "{alg:?}");
        }
    }

    #[test]
    fn weighted_random_is_proportional() {
        let c = counts(&Balancer::new(Algorithm::Random, nodes(&[1, 3])), 20_000);
        let share = c[&8001] as f64 / 20_000.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }

    #[test]
    fn least_request_avoids_busy_nodes_until_their_bodies_end() {
        let ns = nodes(&[1, 1]);
        let b = Balancer::new(Algorithm::LeastRequest, ns.clone());
        let busy: Vec<InFlight> = (0..5).map(|_| InFlight::new(ns[0].clone())).collect();
        for _ in 0..50 {
            assert_eq!(b.pick(&|_| false).unwrap().port, 8001);
        }
        drop(busy);
        assert_eq!(ns[0].active(), 0);
    }

    #[test]
    fn peak_ewma_prefers_the_fast_node_and_reacts_to_peaks() {
        let ns = nodes(&[1, 1]);
        let b = Balancer::new(Algorithm::PeakEwma, ns.clone());
        ns[0].observe(Duration::from_millis(200));
        ns[1].observe(Duration::from_millis(2));
        ns[1].observe(Duration::from_millis(2));
        let c = counts(&b, 200);
        assert_eq!(c.get(&8001), Some(&200));
        // A sudden peak on the fast node moves traffic at once.
        ns[1].observe(Duration::from_millis(900));
        let c = counts(&b, 200);
        assert_eq!(c.get(&8000), Some(&200));
        let kept = Endpoint::reweighted(&ns[1], 7);
        assert!(
            kept.ewma_cost() > 100_000_000.0,
            "counters survive a reweight"
        );
    }

    #[test]
    fn a_reweighted_node_counts_down_requests_started_before() {
        let old = Arc::new(Endpoint::new("10.0.0.1", 80, 1));
        let started = InFlight::new(old.clone());
        let new = Endpoint::reweighted(&old, 5);
        assert_eq!(new.active(), 1);
        drop(started);
        assert_eq!(
            new.active(),
            0,
            "the guard on the old endpoint counts down the new one"
        );
    }

    #[test]
    fn an_ewma_peak_fades_while_the_node_is_not_used() {
        let now = Instant::now();
        let old_peak = Ewma {
            value_ns: 1e9,
            at: now - EWMA_DECAY * 3,
        };
        let left = decayed(&old_peak, now);
        assert!(left < 0.06e9, "{left}");
        let ns = nodes(&[1]);
        ns[0].observe_failure(Duration::from_millis(1));
        assert!(ns[0].ewma_cost() >= 0.9 * EWMA_FAILURE_PENALTY.as_nanos() as f64);
    }
}
