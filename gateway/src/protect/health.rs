//! What is known of one upstream node's health: the verdict of active probes (contracts §7.7,
//! with both thresholds counting consecutive results, G1 fixed) and passive ejection (failed
//! requests in a row take the node out for a period that doubles with each ejection until a
//! success). A node unknown to either is healthy. The request path reads two atomics; locks
//! are taken only when something changes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::protection::{ActiveHealthCheck, PassiveHealthCheck};

#[derive(Debug, Default)]
struct Probes {
    successes: u32,
    failures: u32,
}

#[derive(Debug, Default)]
struct Passive {
    /// Failed requests in a row.
    failures: u32,
    /// Ejected until then.
    until: Option<Instant>,
    /// Ejections since the last success: the next lasts `ejection_secs × 2^ejections`.
    ejections: u32,
}

#[derive(Debug, Default)]
pub struct NodeHealth {
    /// Active probes took the node out.
    probed_down: AtomicBool,
    probes: Mutex<Probes>,
    /// No failure counted and not ejected: the common case.
    passive_clean: AtomicBool,
    passive: Mutex<Passive>,
    /// A probe is running.
    probing: AtomicBool,
    /// When the next probe is due (`None`: at once).
    next_probe: Mutex<Option<Instant>>,
}

/// A change of a node's health the caller reports (log line, metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Active probes took it out.
    Down,
    /// Active probes brought it back.
    Up,
    /// Passive ejection for this long.
    Ejected(Duration),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters only; a panic elsewhere cannot leave them harmful.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeHealth {
    pub fn new() -> NodeHealth {
        NodeHealth {
            passive_clean: AtomicBool::new(true),
            ..NodeHealth::default()
        }
    }

    /// Whether the node should get traffic at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        if self.probed_down.load(Ordering::Acquire) {
            return false;
        }
        self.passive_clean.load(Ordering::Acquire)
            || lock(&self.passive).until.is_none_or(|until| now >= until)
    }

    /// Whether active probes currently consider the node healthy.
    pub fn probed_healthy(&self) -> bool {
        !self.probed_down.load(Ordering::Acquire)
    }

    /// Until when passive ejection keeps the node out, if it does at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        if self.passive_clean.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.passive).until.filter(|until| now < *until)
    }

    /// Whether a probe is due at `now`; if so, marks one running until [`Self::probe_done`].
    pub fn probe_due(&self, now: Instant, interval: Duration) -> bool {
        if self.probing.load(Ordering::Acquire) {
            return false;
        }
        let mut next = lock(&self.next_probe);
        // The interval may have shrunk since the last probe was scheduled.
        let due = next.is_none_or(|at| now >= at || at > now + interval);
        if due {
            *next = Some(now + interval);
            self.probing.store(true, Ordering::Release);
        }
        due
    }

    /// The running probe ended at `now`: the next one is an interval later.
    pub fn probe_done(&self, now: Instant, interval: Duration) {
        *lock(&self.next_probe) = Some(now + interval);
        self.probing.store(false, Ordering::Release);
    }

    /// Counts one active probe's result.
    pub fn probed(&self, cfg: &ActiveHealthCheck, healthy: bool) -> Option<Change> {
        let mut p = lock(&self.probes);
        let down = self.probed_down.load(Ordering::Acquire);
        if healthy {
            p.failures = 0;
            p.successes = p.successes.saturating_add(1);
            if down && p.successes >= cfg.healthy_threshold {
                self.probed_down.store(false, Ordering::Release);
                return Some(Change::Up);
            }
        } else {
            p.successes = 0;
            p.failures = p.failures.saturating_add(1);
            if !down && p.failures >= cfg.unhealthy_threshold {
                self.probed_down.store(true, Ordering::Release);
                return Some(Change::Down);
            }
        }
        None
    }

    /// A request the node answered usably.
    pub fn request_succeeded(&self) {
        if self.passive_clean.load(Ordering::Acquire) {
            return;
        }
        let mut p = lock(&self.passive);
        p.failures = 0;
        p.ejections = 0;
        p.until = None;
        self.passive_clean.store(true, Ordering::Release);
    }

    /// A request the node failed; ejects it when that makes `consecutive_failures` in a row.
    pub fn request_failed(&self, cfg: &PassiveHealthCheck, now: Instant) -> Option<Change> {
        let mut p = lock(&self.passive);
        self.passive_clean.store(false, Ordering::Release);
        if p.until.is_some_and(|until| now < until) {
            // Already out (the request was sent before, or in fail-open).
            return None;
        }
        p.failures += 1;
        if p.failures < cfg.consecutive_failures {
            return None;
        }
        let period = Duration::from_secs(cfg.ejection_secs)
            .saturating_mul(1u32 << p.ejections.min(20))
            .min(Duration::from_secs(
                cfg.max_ejection_secs.max(cfg.ejection_secs),
            ));
        p.ejections += 1;
        p.failures = 0;
        p.until = Some(now + period);
        Some(Change::Ejected(period))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(healthy: u32, unhealthy: u32) -> ActiveHealthCheck {
        serde_json::from_value(serde_json::json!({
            "healthy_threshold": healthy, "unhealthy_threshold": unhealthy}))
        .unwrap()
    }

    #[test]
    fn both_probe_thresholds_count_results_in_a_row() {
        let h = NodeHealth::new();
        let c = active(2, 3);
        let now = Instant::now();
        assert_eq!(h.probed(&c, false), None);
        assert_eq!(h.probed(&c, false), None);
        assert_eq!(h.probed(&c, true), None, "a success breaks the run");
        assert_eq!(h.probed(&c, false), None);
        assert_eq!(h.probed(&c, false), None);
        assert_eq!(h.probed(&c, false), Some(Change::Down));
        assert!(!h.usable(now));
        assert_eq!(h.probed(&c, true), None);
        assert_eq!(h.probed(&c, false), None);
        assert_eq!(h.probed(&c, true), None);
        assert_eq!(h.probed(&c, true), Some(Change::Up));
        assert!(h.usable(now));
    }

    #[test]
    fn passive_ejections_grow_until_a_success() {
        let h = NodeHealth::new();
        let c = PassiveHealthCheck {
            consecutive_failures: 2,
            ejection_secs: 10,
            max_ejection_secs: 25,
        };
        let t0 = Instant::now();
        assert_eq!(h.request_failed(&c, t0), None);
        h.request_succeeded();
        assert_eq!(h.request_failed(&c, t0), None);
        let ejected = h.request_failed(&c, t0);
        assert_eq!(ejected, Some(Change::Ejected(Duration::from_secs(10))));
        assert!(!h.usable(t0 + Duration::from_secs(9)));
        let t1 = t0 + Duration::from_secs(10);
        assert!(h.usable(t1));
        h.request_failed(&c, t1);
        assert_eq!(
            h.request_failed(&c, t1),
            Some(Change::Ejected(Duration::from_secs(20)))
        );
        let t2 = t1 + Duration::from_secs(20);
        h.request_failed(&c, t2);
        assert_eq!(
            h.request_failed(&c, t2),
            Some(Change::Ejected(Duration::from_secs(25))),
            "capped"
        );
        h.request_succeeded();
        assert!(h.usable(t2));
        h.request_failed(&c, t2);
        assert_eq!(
            h.request_failed(&c, t2),
            Some(Change::Ejected(Duration::from_secs(10))),
            "a success resets the growth"
        );
    }
}
