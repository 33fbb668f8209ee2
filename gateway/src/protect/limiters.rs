//! Rate limiters at run time: one per limited route, holding the state of every key it has
//! seen, and the registry that hands the same limiter to every route table built while the
//! route's limit stays the same (the original made new ones, and a task each that never ended,
//! on every domain change, G4).
//!
//! Memory is bounded: a limiter keeps at most [`MAX_KEYS`] keys (64-bit hashes of the key, so
//! a long path costs no more than a short one), forgetting first the keys whose state is as a
//! fresh one's would be, then the least recently seen. Nothing runs in the background: the
//! forgetting happens when a new key finds its shard full.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::IntCounter;
use tokio::time::Instant;

use super::rate_limit::{KeyKind, Limit, Refused, State};
use crate::metrics::GatewayMetrics;

/// The most keys one limiter remembers.
pub const MAX_KEYS: usize = 100_000;
/// Keys are spread over this many independently locked maps.
const SHARDS: usize = 16;
const SHARD_KEYS: usize = MAX_KEYS / SHARDS;

/// How many gateway nodes share every limit (each admits its part). Set from the live instance
/// registry; 1 until it reports.
#[derive(Debug)]
pub struct Share(AtomicU32);

impl Default for Share {
    fn default() -> Share {
        Share(AtomicU32::new(1))
    }
}

impl Share {
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed).max(1)
    }

    pub fn set(&self, nodes: u32) {
        self.0.store(nodes.max(1), Ordering::Relaxed);
    }
}

/// What a request is counted by: the parts of it a key kind reads.
pub struct KeyParts<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub client: IpAddr,
}

pub struct Limiter {
    pub limit: Limit,
    share: Arc<Share>,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<HashMap<u64, State>>]>,
    allowed: IntCounter,
    rejected: IntCounter,
    limited: IntCounter,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .field("keys", &self.keys())
            .finish()
    }
}

impl Limiter {
    fn new(limit: Limit, share: Arc<Share>, metrics: &GatewayMetrics, labels: [&str; 2]) -> Self {
        let [domain, route] = labels;
        Limiter {
            allowed: metrics
                .rate_limit_allowed
                .with_label_values(&[domain, route, limit.mode]),
            rejected: metrics
                .rate_limit_rejected
                .with_label_values(&[domain, route, limit.mode]),
            limited: metrics.rate_limited.with_label_values(&[domain, route]),
            limit,
            share,
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn key(&self, parts: &KeyParts<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        match self.limit.key {
            KeyKind::Route => return 0,
            KeyKind::HostUri => {
                parts.host.hash(&mut h);
                parts.path.hash(&mut h);
            }
            KeyKind::RemoteAddr => parts.client.hash(&mut h),
            KeyKind::Uri => parts.path.hash(&mut h),
        }
        h.finish()
    }

    /// Decides one request at `now`, and counts it.
    pub fn check(&self, parts: &KeyParts<'_>, now: Instant) -> Result<(), Refused> {
        let key = self.key(parts);
        let share = self.share.get();
        let policy = self.limit.policy;
        let decided = {
            let mut shard = self.shards[(key as usize) % SHARDS]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if !shard.contains_key(&key) && shard.len() >= SHARD_KEYS {
                forget_some(&mut shard, |s| policy.at_rest(s, now, share));
            }
            let state = shard.entry(key).or_insert_with(|| policy.fresh(now, share));
            policy.admit(state, now, share)
        };
        match decided {
            Ok(()) => {
                self.allowed.inc();
                Ok(())
            }
            Err(retry_after) => {
                self.rejected.inc();
                self.limited.inc();
                Err(Refused {
                    status: self.limit.status,
                    retry_after,
                })
            }
        }
    }

    /// Keys remembered.
    pub fn keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }
}

/// Makes room in a full shard: drops the keys at rest, then, if that freed less than a
/// quarter, the least recently seen quarter. Each call frees a quarter of the shard at least,
/// so its O(n) cost is paid once per n/4 new keys.
fn forget_some(shard: &mut HashMap<u64, State>, at_rest: impl Fn(&State) -> bool) {
    shard.retain(|_, s| !at_rest(s));
    let keep = SHARD_KEYS - SHARD_KEYS / 4;
    if shard.len() <= keep {
        return;
    }
    let mut seen: Vec<Instant> = shard.values().map(State::last_seen).collect();
    let cut = seen.len() - keep;
    let (_, oldest_kept, _) = seen.select_nth_unstable(cut);
    let oldest_kept = *oldest_kept;
    shard.retain(|_, s| s.last_seen() >= oldest_kept);
}

type RouteId = (Arc<str>, Arc<str>);

/// The limiters of the routes being served, by domain and route name.
pub struct Limiters {
    metrics: Arc<GatewayMetrics>,
    pub share: Arc<Share>,
    map: Mutex<HashMap<RouteId, Arc<Limiter>>>,
}

impl Limiters {
    pub fn new(metrics: Arc<GatewayMetrics>) -> Limiters {
        Limiters {
            metrics,
            share: Arc::default(),
            map: Mutex::default(),
        }
    }

    /// The limiter of a route with `limit`: the one it had, unless its limit changed.
    pub fn limiter(&self, domain: &Arc<str>, route: &Arc<str>, limit: &Limit) -> Arc<Limiter> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let id = (domain.clone(), route.clone());
        match map.get(&id) {
            Some(l) if l.limit == *limit => l.clone(),
            _ => {
                let l = Arc::new(Limiter::new(
                    limit.clone(),
                    self.share.clone(),
                    &self.metrics,
                    [domain, route],
                ));
                map.insert(id, l.clone());
                l
            }
        }
    }

    /// Forgets the limiters of routes no longer served (tables still in use keep theirs).
    pub fn retain(&self, served: &std::collections::HashSet<RouteId>) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| served.contains(id));
    }

    /// Limited routes known.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiters() -> Limiters {
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).unwrap();
        Limiters::new(Arc::new(metrics))
    }

    fn limit(v: serde_json::Value) -> Limit {
        Limit::compile(&serde_json::from_value(v).unwrap())
    }

    fn parts(path: &str) -> KeyParts<'_> {
        KeyParts {
            host: "h",
            path,
            client: IpAddr::from([10, 0, 0, 1]),
        }
    }

    #[test]
    fn a_route_keeps_its_limiter_until_its_limit_changes() {
        let ls = limiters();
        let (d, r): (Arc<str>, Arc<str>) = (Arc::from("d"), Arc::from("r"));
        let five = limit(serde_json::json!({"rate": 5, "burst": 0, "key": "route"}));
        let a = ls.limiter(&d, &r, &five);
        let now = Instant::now();
        for _ in 0..5 {
            a.check(&parts("/"), now).unwrap();
        }
        assert!(a.check(&parts("/x"), now).is_err(), "one key for the route");
        assert!(Arc::ptr_eq(&a, &ls.limiter(&d, &r, &five)), "same limit");
        let six = limit(serde_json::json!({"rate": 6, "burst": 0, "key": "route"}));
        let b = ls.limiter(&d, &r, &six);
        assert!(!Arc::ptr_eq(&a, &b), "a new limit starts afresh");
        assert!(b.check(&parts("/"), now).is_ok());
        ls.retain(&Default::default());
        assert!(ls.is_empty());
    }

    #[test]
    fn the_share_changes_every_key_at_once() {
        let ls = limiters();
        let l = ls.limiter(
            &Arc::from("d"),
            &Arc::from("r"),
            &limit(serde_json::json!({"rate": 10, "burst": 0, "key": "uri"})),
        );
        let now = Instant::now();
        ls.share.set(5);
        let admitted = (0..20)
            .filter(|_| l.check(&parts("/a"), now).is_ok())
            .count();
        assert_eq!(admitted, 2, "a fifth of ten");
        let refused = l.check(&parts("/a"), now).unwrap_err();
        assert_eq!(refused.status, 429);
        assert_eq!(refused.retry_after, 1);
    }

    #[test]
    fn keys_are_bounded_and_the_busiest_survive() {
        let ls = limiters();
        let l = ls.limiter(
            &Arc::from("d"),
            &Arc::from("r"),
            &limit(serde_json::json!({"mode": "count", "count": 3, "time_window": 60, "key": "remote_addr"})),
        );
        let t0 = Instant::now();
        let hot = KeyParts {
            host: "h",
            path: "/",
            client: IpAddr::from([192, 168, 0, 1]),
        };
        for _ in 0..3 {
            l.check(&hot, t0).unwrap();
        }
        for i in 0..(3 * MAX_KEYS as u32) {
            let ip = IpAddr::from((10u32 << 24 | i).to_be_bytes());
            let at = t0 + Duration::from_micros(u64::from(i));
            let p = KeyParts {
                host: "h",
                path: "/",
                client: ip,
            };
            l.check(&p, at).unwrap();
            if i % 1000 == 0 {
                // The hot key stays in use, and so stays remembered: still refused.
                assert!(l.check(&hot, at).is_err(), "after {i} keys");
                assert!(l.keys() <= MAX_KEYS, "{} keys after {i}", l.keys());
            }
        }
        assert!(l.keys() <= MAX_KEYS, "{}", l.keys());
    }
}
