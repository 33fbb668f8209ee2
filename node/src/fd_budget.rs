//! Dividing the process's file descriptors among its listeners, so that a flood of connections
//! on one of them cannot take the descriptors raft, the store and the upstream connections need.
//! At start the soft `RLIMIT_NOFILE` is raised to the hard one; [`RESERVED`] descriptors stay
//! out of every listener's reach; each proxy connection counts twice (its upstream connection
//! too). When the limit cannot hold every listener's default, all of them shrink in proportion,
//! with a warning that names the limit and how to raise it.

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors kept for the store's files, the raft log, peer and OIDC client connections,
/// snapshots and whatever else the node opens itself.
pub const RESERVED: u64 = 1024;

/// Connections each non-proxy listener accepts at once, when the limit allows.
pub const ADMIN_CONNECTIONS: usize = 4096;
pub const ETCD_CONNECTIONS: usize = 4096;
pub const PEER_CONNECTIONS: usize = 4096;

/// How many connections each listener may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub proxy: usize,
    pub admin: usize,
    pub etcd: usize,
    pub peer: usize,
    /// The descriptor limit the budget was made for.
    pub limit: u64,
}

/// Raises the soft descriptor limit as far as the hard one allows; returns the limit now.
pub fn raise_limit() -> u64 {
    let current = getrlimit(Resource::Nofile);
    let soft = current.current.unwrap_or(u64::MAX);
    if let Some(hard) = current.maximum.filter(|hard| *hard > soft) {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return hard;
        }
    }
    soft
}

/// The budget for `limit` descriptors and `proxy` configured proxy connections.
pub fn plan(limit: u64, proxy: usize, etcd_enabled: bool) -> Budget {
    let etcd = if etcd_enabled { ETCD_CONNECTIONS } else { 0 };
    let wanted = 2 * proxy as u64 + (ADMIN_CONNECTIONS + etcd + PEER_CONNECTIONS) as u64;
    let available = limit.saturating_sub(RESERVED);
    if wanted <= available {
        return Budget {
            proxy,
            admin: ADMIN_CONNECTIONS,
            etcd,
            peer: PEER_CONNECTIONS,
            limit,
        };
    }
    let share = |n: usize, per: u64| -> usize {
        // Every listener keeps at least a handful, however low the limit.
        ((n as u128 * available as u128 / wanted as u128) as u64 / per).max(8) as usize
    };
    Budget {
        proxy: share(2 * proxy, 2),
        admin: share(ADMIN_CONNECTIONS, 1),
        etcd: if etcd_enabled {
            share(ETCD_CONNECTIONS, 1)
        } else {
            0
        },
        peer: share(PEER_CONNECTIONS, 1),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generous_limit_gives_every_listener_its_default() {
        let b = plan(1 << 20, 10_000, true);
        assert_eq!(
            (b.proxy, b.admin, b.etcd, b.peer),
            (10_000, 4096, 4096, 4096)
        );
    }

    #[test]
    fn a_tight_limit_is_shared_in_proportion_and_keeps_the_reserve() {
        for limit in [20_000u64, 4096, 1024, 64] {
            let b = plan(limit, 10_000, true);
            let used = 2 * b.proxy + b.admin + b.etcd + b.peer;
            assert!(
                used as u64 + RESERVED <= limit.max(RESERVED + 40),
                "{limit}: {b:?} uses {used}"
            );
            assert!(b.admin >= 8 && b.peer >= 8 && b.proxy >= 8, "{b:?}");
        }
        let b = plan(20_000, 10_000, true);
        assert!(
            b.admin > 2000,
            "2,000 stalled admin connections still leave room: {b:?}"
        );
        assert_eq!(plan(20_000, 10_000, false).etcd, 0);
    }

    #[test]
    fn raising_keeps_a_usable_limit() {
        assert!(raise_limit() >= 64);
    }
}
