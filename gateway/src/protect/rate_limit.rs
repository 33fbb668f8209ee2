//! The arithmetic of one rate limit (contracts/hermes.md §7.9): a token bucket (`mode: req`) or
//! a sliding-window estimate (`mode: count`), for one key, split across the gateway nodes that
//! share the limit. The split is read at every decision, so a node joining or leaving changes
//! every key's share at once (the original read it when a key was first seen, and kept it until
//! the key went idle for five minutes; it also left the burst unsplit).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::protection::RateLimitConfig;

/// What one limit counts requests per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The route itself: one count for every client.
    Route,
    /// Host (with port) and path.
    HostUri,
    /// The client's address, as the trusted-proxy rules establish it.
    RemoteAddr,
    /// The path alone.
    Uri,
}

/// How the requests of one key are admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// `rate` tokens a second into a bucket of `capacity` that starts full; a request takes one.
    Bucket { rate: f64, capacity: f64 },
    /// At most `count` requests in any `window`, estimated from the current and previous
    /// fixed windows.
    Window { count: u64, window: Duration },
}

/// A route's limit, compiled from its `rate_limit`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub policy: Policy,
    pub key: KeyKind,
    /// The status of a refusal.
    pub status: u16,
    /// The configured mode, as the metrics label it.
    pub mode: &'static str,
}

impl Limit {
    pub fn compile(c: &RateLimitConfig) -> Limit {
        let policy = if c.mode == "count" {
            Policy::Window {
                count: c.count.unwrap_or(1000),
                window: Duration::from_secs(c.time_window.unwrap_or(1)),
            }
        } else {
            let rate = c.rate.unwrap_or(100.0);
            // As the original: the bucket holds a second's worth of tokens plus the burst
            // (the rate's whole part when no burst is given), and at least one.
            let burst = c.burst.map_or(rate.floor(), |b| b as f64);
            Policy::Bucket {
                rate,
                capacity: (rate.floor() + burst).max(1.0),
            }
        };
        Limit {
            policy,
            key: match c.key.as_str() {
                "route" => KeyKind::Route,
                "remote_addr" => KeyKind::RemoteAddr,
                "uri" => KeyKind::Uri,
                _ => KeyKind::HostUri,
            },
            status: c.rejected_code,
            mode: if c.mode == "count" { "count" } else { "req" },
        }
    }
}

/// One key's state.
#[derive(Debug, Clone, Copy)]
pub enum State {
    Bucket {
        tokens: f64,
        at: Instant,
    },
    Window {
        /// Start of the current window.
        start: Instant,
        previous: u64,
        current: u64,
        seen: Instant,
    },
}

/// A refused request: the status and the seconds after which a retry may be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub status: u16,
    pub retry_after: u32,
}

impl Policy {
    /// A key's state before its first request: a full bucket, an empty window.
    pub fn fresh(&self, now: Instant, share: u32) -> State {
        match *self {
            Policy::Bucket { rate, capacity } => State::Bucket {
                tokens: self.split(rate, capacity, share).1,
                at: now,
            },
            Policy::Window { .. } => State::Window {
                start: now,
                previous: 0,
                current: 0,
                seen: now,
            },
        }
    }

    /// This node's rate and capacity when `share` nodes divide the limit: each a share, and a
    /// capacity of at least one request.
    fn split(&self, rate: f64, capacity: f64, share: u32) -> (f64, f64) {
        let n = f64::from(share.max(1));
        (rate / n, (capacity / n).max(1.0))
    }

    /// Decides one request at `now` for a key in `state`, among `share` nodes; `Err` holds
    /// the seconds until one would be admitted.
    pub fn admit(&self, state: &mut State, now: Instant, share: u32) -> Result<(), u32> {
        match (*self, state) {
            (Policy::Bucket { rate, capacity }, State::Bucket { tokens, at }) => {
                let (rate, capacity) = self.split(rate, capacity, share);
                let elapsed = now.saturating_duration_since(*at).as_secs_f64();
                *tokens = (*tokens + elapsed * rate).min(capacity);
                *at = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    Ok(())
                } else {
                    Err(((1.0 - *tokens) / rate).ceil().clamp(1.0, 86_400.0) as u32)
                }
            }
            (
                Policy::Window { count, window },
                State::Window {
                    start,
                    previous,
                    current,
                    seen,
                },
            ) => {
                let limit = (count / u64::from(share.max(1))).max(1);
                *seen = now;
                // Move to the window `now` falls in: one window on, the current count becomes
                // the previous; two or more, both are empty.
                let behind = now.saturating_duration_since(*start);
                let window_ns = window.as_nanos().max(1);
                match behind.as_nanos() / window_ns {
                    0 => {}
                    1 => {
                        *previous = *current;
                        *current = 0;
                        *start += window;
                    }
                    _ => {
                        *previous = 0;
                        *current = 0;
                        // Still aligned to the key's first window.
                        let into = behind.as_nanos() % window_ns;
                        *start = now - Duration::from_nanos(into as u64);
                    }
                }
                let into = now.saturating_duration_since(*start).as_secs_f64();
                let weight = 1.0 - into / window.as_secs_f64();
                let estimate = (*previous as f64 * weight).floor() as u64 + *current;
                if estimate < limit {
                    *current += 1;
                    Ok(())
                } else {
                    let left = window.saturating_sub(now.saturating_duration_since(*start));
                    Err(left.as_secs_f64().ceil().clamp(1.0, 86_400.0) as u32)
                }
            }
            // A key's state is made by its own policy; a changed limit gets a new limiter.
            (policy, state) => {
                *state = policy.fresh(now, share);
                policy.admit(state, now, share)
            }
        }
    }

    /// Whether a key's state, last touched at its time, is as a fresh one would be by `now`
    /// (a full bucket, windows that have passed), so forgetting it changes nothing.
    pub fn at_rest(&self, state: &State, now: Instant, share: u32) -> bool {
        match (*self, state) {
            (Policy::Bucket { rate, capacity }, State::Bucket { tokens, at }) => {
                let (rate, capacity) = self.split(rate, capacity, share);
                let elapsed = now.saturating_duration_since(*at).as_secs_f64();
                tokens + elapsed * rate >= capacity
            }
            (Policy::Window { window, .. }, State::Window { start, .. }) => {
                now.saturating_duration_since(*start) >= window * 2
            }
            _ => true,
        }
    }
}

impl State {
    /// When the key was last decided.
    pub fn last_seen(&self) -> Instant {
        match self {
            State::Bucket { at, .. } => *at,
            State::Window { seen, .. } => *seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limit(v: serde_json::Value) -> Limit {
        Limit::compile(&serde_json::from_value(v).unwrap())
    }

    /// How many of `n` requests at `now` are admitted.
    fn burst_of(policy: &Policy, state: &mut State, now: Instant, n: usize, share: u32) -> usize {
        (0..n)
            .filter(|_| policy.admit(state, now, share).is_ok())
            .count()
    }

    #[test]
    fn the_bucket_admits_rate_plus_burst_then_the_rate() {
        let l = limit(json!({"mode": "req", "rate": 5, "burst": 2}));
        assert_eq!(
            l.policy,
            Policy::Bucket {
                rate: 5.0,
                capacity: 7.0
            }
        );
        let t0 = Instant::now();
        let mut s = l.policy.fresh(t0, 1);
        assert_eq!(burst_of(&l.policy, &mut s, t0, 20, 1), 7);
        // Empty: the next token comes in 1/5 s, so the answer says one second.
        assert_eq!(l.policy.admit(&mut s, t0, 1), Err(1));
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(burst_of(&l.policy, &mut s, t1, 20, 1), 5);
        assert!(!l.policy.at_rest(&s, t1, 1));
        assert!(l.policy.at_rest(&s, t1 + Duration::from_secs(2), 1));
    }

    #[test]
    fn the_bucket_is_split_between_the_nodes_at_every_decision() {
        let l = limit(json!({"rate": 300, "burst": 0}));
        let t0 = Instant::now();
        let mut s = l.policy.fresh(t0, 3);
        assert_eq!(burst_of(&l.policy, &mut s, t0, 1000, 3), 100);
        // Ten seconds at 100/s with three nodes, then a node leaves: 150/s from then on.
        let mut admitted = 0;
        for ms in (10..=10_000).step_by(10) {
            admitted += burst_of(&l.policy, &mut s, t0 + Duration::from_millis(ms), 5, 3);
        }
        assert!((995..=1001).contains(&admitted), "{admitted}");
        let t1 = t0 + Duration::from_secs(10);
        let mut after = 0;
        for ms in (10..=2_000).step_by(10) {
            after += burst_of(&l.policy, &mut s, t1 + Duration::from_millis(ms), 5, 2);
        }
        assert!((295..=301).contains(&after), "{after}");
    }

    #[test]
    fn the_window_counts_the_previous_window_by_its_overlap() {
        let l = limit(json!({"mode": "count", "count": 10, "time_window": 2}));
        let t0 = Instant::now();
        let mut s = l.policy.fresh(t0, 1);
        assert_eq!(burst_of(&l.policy, &mut s, t0, 50, 1), 10);
        assert_eq!(l.policy.admit(&mut s, t0, 1), Err(2));
        // Half way into the next window the previous ten count for five.
        let half = t0 + Duration::from_secs(3);
        assert_eq!(burst_of(&l.policy, &mut s, half, 50, 1), 5);
        // Two windows of silence forget everything.
        let later = t0 + Duration::from_secs(8);
        assert!(l.policy.at_rest(&s, later, 1));
        assert_eq!(burst_of(&l.policy, &mut s, later, 50, 1), 10);
        // Split between four nodes: two and a half each, rounded down, at least one.
        let mut s = l.policy.fresh(t0, 4);
        assert_eq!(burst_of(&l.policy, &mut s, t0, 50, 4), 2);
        let mut s = l.policy.fresh(t0, 40);
        assert_eq!(burst_of(&l.policy, &mut s, t0, 50, 40), 1);
    }

    #[test]
    fn defaults_follow_the_original() {
        let l = limit(json!({}));
        assert_eq!(
            l.policy,
            Policy::Bucket {
                rate: 100.0,
                capacity: 200.0
            }
        );
        assert_eq!((l.key, l.status, l.mode), (KeyKind::HostUri, 429, "req"));
        let l = limit(json!({"mode": "count", "key": "remote_addr", "rejected_code": 503}));
        assert_eq!(
            l.policy,
            Policy::Window {
                count: 1000,
                window: Duration::from_secs(1)
            }
        );
        assert_eq!(
            (l.key, l.status, l.mode),
            (KeyKind::RemoteAddr, 503, "count")
        );
        let tiny = limit(json!({"rate": 0.5, "burst": 0}));
        assert_eq!(
            tiny.policy,
            Policy::Bucket {
                rate: 0.5,
                capacity: 1.0
            }
        );
    }
}
