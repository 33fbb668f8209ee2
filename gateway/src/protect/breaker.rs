//! The circuit breaker of one upstream node (contracts/hermes.md §7.8): closed, open after
//! `failure_threshold` failures in a row, half open after `open_duration_secs`, closed again
//! after `success_threshold` successful probes. Fixed from the original (G11): the cluster's
//! current settings apply at every decision, and a half-open breaker lets at most
//! `success_threshold` probes through at once (the original let every request through as a
//! probe). Probes that never report (their client went away) do not wedge it: after another
//! `open_duration_secs` a new round of probes is allowed.
//!
//! Only outcomes the failure model ([`crate::proxy::failure`]) blames on the node reach it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::protection::CircuitBreakerConfig;

/// The breaker's state, with the values of `gateway_circuit_breaker_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Failures in a row while closed.
    failures: u32,
    /// Successful probes while half open.
    successes: u32,
    /// When it opened, or when the current round of probes began.
    since: Instant,
    /// Probes let through in the current round.
    probes: u32,
}

#[derive(Debug)]
pub struct Breaker {
    /// Closed with no failure counted: the common case, decided without the lock.
    clean: AtomicBool,
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker {
            clean: AtomicBool::new(true),
            state: Mutex::new(State {
                phase: Phase::Closed,
                failures: 0,
                successes: 0,
                since: Instant::now(),
                probes: 0,
            }),
        }
    }
}

fn open_for(cfg: &CircuitBreakerConfig) -> Duration {
    Duration::from_secs(cfg.open_duration_secs)
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters only; a panic elsewhere cannot leave them harmful.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn phase(&self) -> Phase {
        if self.clean.load(Ordering::Acquire) {
            return Phase::Closed;
        }
        self.lock().phase
    }

    /// Whether a request may be sent to the node at `now`; changes nothing (the balancer asks
    /// for every node, then [`Breaker::admit`] commits the one chosen).
    pub fn allows(&self, cfg: &CircuitBreakerConfig, now: Instant) -> bool {
        if self.clean.load(Ordering::Acquire) {
            return true;
        }
        let s = self.lock();
        let waited = now.saturating_duration_since(s.since) >= open_for(cfg);
        match s.phase {
            Phase::Closed => true,
            Phase::Open => waited,
            Phase::HalfOpen => s.probes < cfg.success_threshold || waited,
        }
    }

    /// Commits a request to the node; returns the new phase if it changed (open to half open).
    pub fn admit(&self, cfg: &CircuitBreakerConfig, now: Instant) -> Option<Phase> {
        if self.clean.load(Ordering::Acquire) {
            return None;
        }
        let mut s = self.lock();
        let waited = now.saturating_duration_since(s.since) >= open_for(cfg);
        match s.phase {
            Phase::Closed => None,
            Phase::Open => {
                s.phase = Phase::HalfOpen;
                s.successes = 0;
                s.since = now;
                s.probes = 1;
                Some(Phase::HalfOpen)
            }
            Phase::HalfOpen => {
                if s.probes >= cfg.success_threshold && waited {
                    // The last round's probes never reported: a new round.
                    s.since = now;
                    s.probes = 0;
                }
                s.probes += 1;
                None
            }
        }
    }

    /// The node answered usably; returns the new phase if it changed (half open to closed).
    pub fn success(&self, cfg: &CircuitBreakerConfig) -> Option<Phase> {
        if self.clean.load(Ordering::Acquire) {
            return None;
        }
        let mut s = self.lock();
        match s.phase {
            Phase::Closed => {
                s.failures = 0;
                self.clean.store(true, Ordering::Release);
                None
            }
            Phase::HalfOpen => {
                s.successes += 1;
                if s.successes >= cfg.success_threshold {
                    s.phase = Phase::Closed;
                    s.failures = 0;
                    self.clean.store(true, Ordering::Release);
                    Some(Phase::Closed)
                } else {
                    None
                }
            }
            // Sent before the breaker opened: too late to count.
            Phase::Open => None,
        }
    }

    /// The node failed a request; returns the new phase if it changed (to open).
    pub fn failure(&self, cfg: &CircuitBreakerConfig, now: Instant) -> Option<Phase> {
        let mut s = self.lock();
        self.clean.store(false, Ordering::Release);
        match s.phase {
            Phase::Closed => {
                s.failures += 1;
                (s.failures >= cfg.failure_threshold).then(|| {
                    s.phase = Phase::Open;
                    s.since = now;
                    Phase::Open
                })
            }
            Phase::HalfOpen => {
                s.phase = Phase::Open;
                s.since = now;
                s.successes = 0;
                Some(Phase::Open)
            }
            Phase::Open => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(failures: u32, successes: u32, open: u64) -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: failures,
            success_threshold: successes,
            open_duration_secs: open,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_probes_and_closes() {
        let b = Breaker::default();
        let c = cfg(3, 2, 10);
        let now = Instant::now();
        assert_eq!(b.failure(&c, now), None);
        assert_eq!(b.success(&c), None, "a success resets the count");
        assert_eq!(b.failure(&c, now), None);
        assert_eq!(b.failure(&c, now), None);
        assert_eq!(b.failure(&c, now), Some(Phase::Open));
        assert!(!b.allows(&c, now));
        let later = now + Duration::from_secs(10);
        assert!(b.allows(&c, later));
        assert_eq!(b.admit(&c, later), Some(Phase::HalfOpen));
        // Two probes at most, while they are out.
        assert!(b.allows(&c, later));
        assert_eq!(b.admit(&c, later), None);
        assert!(!b.allows(&c, later), "a third probe waits");
        assert_eq!(b.success(&c), None);
        assert_eq!(b.success(&c), Some(Phase::Closed));
        assert!(b.allows(&c, later));
        assert_eq!(b.phase(), Phase::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_and_lost_probes_do_not_wedge_it() {
        let b = Breaker::default();
        let c = cfg(1, 1, 5);
        let t0 = Instant::now();
        assert_eq!(b.failure(&c, t0), Some(Phase::Open));
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit(&c, t1), Some(Phase::HalfOpen));
        assert_eq!(b.failure(&c, t1), Some(Phase::Open));
        assert!(!b.allows(&c, t1 + Duration::from_secs(4)));
        let t2 = t1 + Duration::from_secs(5);
        assert_eq!(b.admit(&c, t2), Some(Phase::HalfOpen));
        // The probe's client went away: no outcome. Another round after the open duration.
        assert!(!b.allows(&c, t2 + Duration::from_secs(1)));
        let t3 = t2 + Duration::from_secs(5);
        assert!(b.allows(&c, t3));
        assert_eq!(b.admit(&c, t3), None);
        assert_eq!(b.success(&c), Some(Phase::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn new_settings_apply_to_a_live_breaker() {
        let b = Breaker::default();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.failure(&cfg(5, 1, 30), now), None);
        }
        // The threshold drops to 4: the next failure opens it.
        assert_eq!(b.failure(&cfg(4, 1, 30), now), Some(Phase::Open));
        // The open duration drops to 1 s: it probes after one second, not thirty.
        assert!(b.allows(&cfg(4, 1, 1), now + Duration::from_secs(1)));
    }
}
