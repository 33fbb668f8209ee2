//! Lease deadlines, kept by the leader only (as etcd's lessor does).
//!
//! Grants and revocations are raft commands; deadlines are not replicated. A node that becomes
//! leader gives every existing lease a fresh full TTL, so a leader change never expires a live
//! lease early. Keep-alives reach the leader (followers forward them) and push the deadline out.
//! The leader proposes `LeaseRevoke` for each lease whose deadline passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
struct Inner {
    /// The term in which this node last became leader; `None` when not leader.
    leader_term: Option<u64>,
    deadlines: HashMap<i64, (Instant, i64)>,
}

#[derive(Debug, Default)]
pub struct LeaseKeeper {
    inner: Mutex<Inner>,
}

/// Remaining and granted TTL of a lease, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseTtl {
    pub remaining: i64,
    pub granted: i64,
}

impl LeaseKeeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain data; a panic elsewhere cannot leave it half-updated in a harmful way.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the table in line with the store's `leases` (id and granted TTL) and this node's
    /// role. Called periodically. Returns the leases whose deadline has passed (to revoke),
    /// oldest first.
    pub fn tick(
        &self,
        leader_term: Option<u64>,
        leases: Vec<(i64, i64)>,
        now: Instant,
    ) -> Vec<i64> {
        let mut inner = self.lock();
        let Some(term) = leader_term else {
            inner.leader_term = None;
            inner.deadlines.clear();
            return Vec::new();
        };
        if inner.leader_term != Some(term) {
            // New leadership: every lease starts a full TTL from now.
            inner.leader_term = Some(term);
            inner.deadlines = leases
                .iter()
                .map(|(id, ttl)| (*id, (now + secs(*ttl), *ttl)))
                .collect();
            if !leases.is_empty() {
                tracing::info!(
                    term,
                    leases = leases.len(),
                    "became leader: extended all leases"
                );
            }
            return Vec::new();
        }
        let live: std::collections::HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        inner.deadlines.retain(|id, _| live.contains(id));
        for (id, ttl) in leases {
            inner.deadlines.entry(id).or_insert((now + secs(ttl), ttl));
        }
        let mut expired: Vec<(Instant, i64)> = inner
            .deadlines
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, (deadline, _))| (*deadline, *id))
            .collect();
        expired.sort();
        expired.into_iter().map(|(_, id)| id).collect()
    }

    /// Whether this node currently keeps deadlines (it is leader and has ticked).
    pub fn is_active(&self) -> bool {
        self.lock().leader_term.is_some()
    }

    /// Starts the clock of a lease just granted through this leader.
    pub fn granted(&self, id: i64, ttl: i64) {
        let mut inner = self.lock();
        if inner.leader_term.is_some() {
            inner
                .deadlines
                .insert(id, (Instant::now() + secs(ttl), ttl));
        }
    }

    pub fn forget(&self, id: i64) {
        self.lock().deadlines.remove(&id);
    }

    /// Renews a lease whose granted TTL in the store is `granted`; returns that TTL, or 0 if
    /// the lease does not exist (etcd's answer).
    pub fn renew(&self, id: i64, granted: Option<i64>) -> i64 {
        let Some(ttl) = granted else {
            self.forget(id);
            return 0;
        };
        self.lock()
            .deadlines
            .insert(id, (Instant::now() + secs(ttl), ttl));
        ttl
    }

    /// Remaining and granted TTL of a lease whose granted TTL in the store is `granted`, or
    /// `None` for an unknown lease.
    pub fn ttl(&self, id: i64, granted: Option<i64>) -> Option<LeaseTtl> {
        let granted = granted?;
        let now = Instant::now();
        let remaining = match self.lock().deadlines.get(&id) {
            // etcd truncates the remaining seconds.
            Some((deadline, _)) => deadline.saturating_duration_since(now).as_secs() as i64,
            None => granted,
        };
        Some(LeaseTtl { remaining, granted })
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    //! Deadlines under tokio's paused clock: the test moves time, nothing sleeps.

    use super::*;
    use tokio::time::advance;

    const TERM: Option<u64> = Some(3);

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_a_full_ttl_after_its_last_keepalive() {
        let keeper = LeaseKeeper::default();
        let leases = || vec![(7, 10)];
        assert!(keeper.tick(TERM, leases(), Instant::now()).is_empty());
        assert!(keeper.is_active());
        advance(Duration::from_secs(9)).await;
        assert_eq!(keeper.renew(7, Some(10)), 10);
        advance(Duration::from_secs(9)).await;
        assert!(
            keeper.tick(TERM, leases(), Instant::now()).is_empty(),
            "renewed at 9 s"
        );
        assert_eq!(
            keeper.ttl(7, Some(10)),
            Some(LeaseTtl {
                remaining: 1,
                granted: 10
            })
        );
        advance(Duration::from_secs(1)).await;
        assert_eq!(keeper.tick(TERM, leases(), Instant::now()), vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_leader_gives_every_lease_a_full_ttl() {
        let keeper = LeaseKeeper::default();
        let leases = || vec![(1, 5), (2, 20)];
        keeper.tick(Some(1), leases(), Instant::now());
        advance(Duration::from_secs(4)).await;
        // Leadership lost and regained in a later term: the clock starts again for both.
        assert!(keeper.tick(None, leases(), Instant::now()).is_empty());
        assert!(!keeper.is_active());
        assert!(keeper.tick(Some(2), leases(), Instant::now()).is_empty());
        advance(Duration::from_secs(4)).await;
        assert!(keeper.tick(Some(2), leases(), Instant::now()).is_empty());
        advance(Duration::from_secs(1)).await;
        assert_eq!(keeper.tick(Some(2), leases(), Instant::now()), vec![1]);
        advance(Duration::from_secs(15)).await;
        assert_eq!(keeper.tick(Some(2), leases(), Instant::now()), vec![1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn revoked_and_unknown_leases_are_forgotten() {
        let keeper = LeaseKeeper::default();
        keeper.tick(TERM, vec![(1, 5)], Instant::now());
        keeper.granted(2, 5);
        advance(Duration::from_secs(6)).await;
        // Lease 1 left the store (revoked through raft); lease 2 expired.
        assert_eq!(keeper.tick(TERM, vec![(2, 5)], Instant::now()), vec![2]);
        assert_eq!(
            keeper.renew(1, None),
            0,
            "etcd answers TTL 0 for an unknown lease"
        );
        assert_eq!(keeper.ttl(1, None), None);
        // A follower keeps no deadlines: it reports the granted TTL.
        let follower = LeaseKeeper::default();
        follower.granted(9, 30);
        assert_eq!(
            follower.ttl(9, Some(30)),
            Some(LeaseTtl {
                remaining: 30,
                granted: 30
            })
        );
    }
}
