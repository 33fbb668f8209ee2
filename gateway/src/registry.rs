//! The instance registry (contracts/hermes.md §2.4–§2.5): every gateway keeps a key
//! `<prefix><id>` on a lease, so that controllers and the status API list the live gateways,
//! and every gateway counts the keys to know how many nodes share each rate limit.
//!
//! Fixed from the original (G2): a keep-alive answered with TTL 0 (the lease is gone, as after
//! a long partition) registers again at once instead of being taken for success; the old lease
//! is revoked when re-registering so no instance is counted twice; the keep-alive period has a
//! floor, so a short TTL cannot become a busy loop. The value is re-written when the served
//! configuration revision changes and every [`REFRESH`], not on every keep-alive.
//!
//! Where the keys live is behind [`Registrar`]: the node's own replicated store (the node
//! implements it over raft) or, in compat mode, an external etcd.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::RangeRequest;
use hermes_storage::watch::{WatchItem, WatchOptions, Watcher};
use hermes_storage::KvStore;

use crate::Gateway;

/// The lease's TTL: how long a node that dies without revoking stays counted, and so how
/// long the others admit less than the whole limit. Short, because keep-alives are cheap (the
/// leader renews in memory, nothing is written); at least the store's minimum lease TTL (2 s
/// with the default election timeout), and a few keep-alive periods, so that one late
/// keep-alive does not drop a live node.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// The value is written again at least this often (the original controller's reports, and the
/// status API's staleness check, expect news within 30 s).
pub const REFRESH: Duration = Duration::from_secs(10);
/// How long to wait before trying again after the store refused.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RegistryError(pub String);

/// Leases and keys in the store the registry lives in.
pub trait Registrar: Send + Sync + 'static {
    /// A new lease of `ttl` seconds; its id.
    fn grant(&self, ttl: i64) -> impl Future<Output = Result<i64, RegistryError>> + Send;
    /// Renews a lease: its TTL, or 0 when it no longer exists.
    fn keep_alive(&self, lease: i64) -> impl Future<Output = Result<i64, RegistryError>> + Send;
    fn put(
        &self,
        key: &str,
        value: Vec<u8>,
        lease: i64,
    ) -> impl Future<Output = Result<(), RegistryError>> + Send;
    fn revoke(&self, lease: i64) -> impl Future<Output = Result<(), RegistryError>> + Send;
    /// The control-plane revision this gateway has seen (the meta key), 0 if none.
    fn config_revision(&self) -> impl Future<Output = i64> + Send;
}

/// The instance value (§2.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub status: String,
    pub started_at: String,
    pub registered_at: String,
    pub last_keepalive_at: String,
    pub config_revision: i64,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `<hostname>-<8 hex digits>` as the original, the digits being the node's id rather than a
/// random number: a node that restarts takes its own key over instead of being counted twice
/// until its old lease expires.
pub fn instance_id(node_id: u64) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}-{:08x}", node_id as u32)
}

/// Keeps this gateway registered as `<prefix><id>` until `stop`, then revokes its lease so
/// that it leaves the registry at once.
pub async fn keep_registered<R: Registrar>(
    registrar: R,
    prefix: String,
    id: String,
    mut stop: watch::Receiver<bool>,
) {
    let key = format!("{prefix}{id}");
    let started = rfc3339(SystemTime::now());
    let mut instance = Instance {
        id: id.clone(),
        status: "running".into(),
        started_at: started.clone(),
        registered_at: String::new(),
        last_keepalive_at: started,
        config_revision: 0,
    };
    let ttl = LEASE_TTL.as_secs() as i64;
    let every = (LEASE_TTL / 3).max(Duration::from_secs(1));
    loop {
        // Register: a lease, then the key on it.
        let lease = match registrar.grant(ttl).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::debug!(error = %e, "instance registration: no lease yet");
                if pause(RETRY, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        instance.config_revision = registrar.config_revision().await;
        if instance.registered_at.is_empty() {
            instance.registered_at = rfc3339(SystemTime::now());
        }
        if let Err(e) = registrar.put(&key, encode(&instance), lease).await {
            tracing::debug!(error = %e, "instance registration: key not written");
            let _ = registrar.revoke(lease).await;
            if pause(RETRY, &mut stop).await {
                return;
            }
            continue;
        }
        tracing::info!(%key, lease, "gateway instance registered");
        let mut written = Instant::now();
        // Keep it alive until the lease is lost or the node stops.
        loop {
            if pause(every, &mut stop).await {
                if let Err(e) = registrar.revoke(lease).await {
                    tracing::warn!(error = %e, %key, "instance lease not revoked at shutdown; it expires by itself");
                }
                return;
            }
            match registrar.keep_alive(lease).await {
                Ok(0) => {
                    tracing::warn!(%key, lease, "instance lease expired; registering again");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    // The store may be briefly leaderless; the lease outlives a few misses.
                    tracing::debug!(error = %e, "instance keep-alive failed");
                    continue;
                }
            }
            instance.last_keepalive_at = rfc3339(SystemTime::now());
            let now_revision = registrar.config_revision().await;
            if now_revision != instance.config_revision || written.elapsed() >= REFRESH {
                instance.config_revision = now_revision;
                match registrar.put(&key, encode(&instance), lease).await {
                    Ok(()) => written = Instant::now(),
                    Err(e) => tracing::debug!(error = %e, "instance value not refreshed"),
                }
            }
        }
        // The lease is gone (or unusable): make sure of it, so the key is counted once.
        let _ = registrar.revoke(lease).await;
    }
}

fn encode(instance: &Instance) -> Vec<u8> {
    // A struct of strings and an integer: serializing it cannot fail.
    serde_json::to_vec(instance).unwrap_or_default()
}

/// Sleeps `d`; whether `stop` was raised meanwhile.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// Follows the registry in the local store and tells `gateway` how many instances share the
/// rate limits, on every change of `<prefix>…`, until `stop`.
pub async fn count_instances(
    store: Arc<KvStore>,
    prefix: String,
    gateway: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
) {
    let range = KeyRange::prefix(prefix.into_bytes());
    loop {
        let revision = store.readable_revision();
        let count = |revision: i64| {
            let store = store.clone();
            let range = range.clone();
            async move {
                store
                    .range(RangeRequest {
                        range,
                        revision,
                        serializable: true,
                        count_only: true,
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.count)
            }
        };
        match count(revision).await {
            Ok(n) => gateway.set_gateway_nodes(n.clamp(1, i64::from(u32::MAX)) as u32),
            Err(e) => {
                tracing::debug!(error = %e, "counting gateway instances failed");
                if pause(RETRY, &mut stop).await {
                    return;
                }
                continue;
            }
        }
        let mut watcher = Watcher::new(
            store.clone(),
            WatchOptions {
                range: range.clone(),
                start_revision: revision + 1,
                ..Default::default()
            },
        );
        loop {
            let item = tokio::select! {
                item = watcher.next() => item,
                _ = stop.wait_for(|s| *s) => return,
            };
            match item {
                Ok(WatchItem::Events(events)) => {
                    let at = events.last().map_or(0, |e| e.kv.mod_revision);
                    match count(at).await {
                        Ok(n) => gateway.set_gateway_nodes(n.clamp(1, i64::from(u32::MAX)) as u32),
                        // Compacted past `at` already: list again.
                        Err(_) => break,
                    }
                }
                Ok(WatchItem::Compacted { .. }) | Err(_) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// The last lease id, the live leases, and the keys with their value and lease.
    type Leases = (i64, HashMap<i64, ()>, HashMap<String, (Vec<u8>, i64)>);

    /// Leases and keys in memory, as etcd keeps them: a key on a revoked or expired lease goes.
    #[derive(Default)]
    struct Fake {
        leases: Mutex<Leases>,
        revision: std::sync::atomic::AtomicI64,
    }

    impl Fake {
        fn expire_all(&self) {
            let mut g = self.leases.lock().unwrap();
            g.1.clear();
            g.2.clear();
        }
        fn keys(&self) -> HashMap<String, (Vec<u8>, i64)> {
            self.leases.lock().unwrap().2.clone()
        }
        fn live_leases(&self) -> usize {
            self.leases.lock().unwrap().1.len()
        }
    }

    impl Registrar for Arc<Fake> {
        async fn grant(&self, _ttl: i64) -> Result<i64, RegistryError> {
            let mut g = self.leases.lock().unwrap();
            g.0 += 1;
            let id = g.0;
            g.1.insert(id, ());
            Ok(id)
        }
        async fn keep_alive(&self, lease: i64) -> Result<i64, RegistryError> {
            let g = self.leases.lock().unwrap();
            Ok(if g.1.contains_key(&lease) { 10 } else { 0 })
        }
        async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<(), RegistryError> {
            let mut g = self.leases.lock().unwrap();
            if !g.1.contains_key(&lease) {
                return Err(RegistryError("lease not found".into()));
            }
            g.2.insert(key.to_string(), (value, lease));
            Ok(())
        }
        async fn revoke(&self, lease: i64) -> Result<(), RegistryError> {
            let mut g = self.leases.lock().unwrap();
            g.1.remove(&lease);
            g.2.retain(|_, (_, l)| *l != lease);
            Ok(())
        }
        async fn config_revision(&self) -> i64 {
            self.revision.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..1000 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_lease_is_noticed_and_shutdown_leaves_at_once() {
        let fake = Arc::new(Fake::default());
        let (stop_tx, stop) = watch::channel(false);
        fake.revision.store(7, std::sync::atomic::Ordering::Relaxed);
        let task = tokio::spawn(keep_registered(
            fake.clone(),
            "/hermes/instances/".into(),
            "gw-00000001".into(),
            stop,
        ));
        until("registered", || fake.keys().len() == 1).await;
        let (value, first_lease) = fake.keys()["/hermes/instances/gw-00000001"].clone();
        let instance: Instance = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            (
                instance.id.as_str(),
                instance.status.as_str(),
                instance.config_revision
            ),
            ("gw-00000001", "running", 7)
        );
        // The served revision moves: the value follows at the next keep-alive.
        fake.revision.store(9, std::sync::atomic::Ordering::Relaxed);
        until("revision 9 reported", || {
            let v = fake.keys()["/hermes/instances/gw-00000001"].0.clone();
            serde_json::from_slice::<Instance>(&v)
                .unwrap()
                .config_revision
                == 9
        })
        .await;
        // The store forgets the lease (as after a partition longer than the TTL): the
        // keep-alive's TTL 0 makes the node register again, on a new lease.
        fake.expire_all();
        until("registered again", || fake.keys().len() == 1).await;
        let (_, second_lease) = fake.keys()["/hermes/instances/gw-00000001"].clone();
        assert_ne!(first_lease, second_lease);
        assert_eq!(fake.live_leases(), 1, "one lease, one count");
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(fake.keys().is_empty(), "revoked at shutdown");
        assert_eq!(fake.live_leases(), 0);
    }

    #[test]
    fn instance_ids_name_the_host_and_the_node() {
        let id = instance_id(0x2a);
        assert!(id.ends_with("-0000002a"), "{id}");
        assert!(id.len() > "-0000002a".len(), "{id}");
    }
}
