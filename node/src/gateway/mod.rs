//! The data plane: every node proxies traffic on `--proxy-listen`, routed by the Domain and
//! Cluster documents of its namespace, which it follows through a [`config::source::ConfigSource`]
//! (by default the node's own store). The route table is an immutable snapshot rebuilt off the
//! request path and swapped in whole; cluster runtime state survives updates that keep it.
//! Behaviour follows contracts/hermes.md §7 with the bugs it lists fixed.

pub mod config;
pub mod metric_cache;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use ipnet::IpNet;
use tokio::sync::watch;

use config::catalog::Catalog;
use config::source::{ConfigSource, Prefixes, Update};
use metrics::GatewayMetrics;
use routing::table::RouteTable;
use upstream::cluster::Clusters;

pub struct Gateway {
    table: ArcSwap<RouteTable>,
    pub clusters: Clusters,
    /// Shared with every request's record (one reference count, not a dozen).
    pub metrics: Arc<GatewayMetrics>,
    pub trusted_proxies: Vec<IpNet>,
    loaded: AtomicBool,
    errors: ArcSwap<BTreeMap<String, String>>,
    /// Revision of the domains last handed to the table builder, and of the last table built.
    sent_revision: AtomicI64,
    built_revision: AtomicI64,
    applied_revision: AtomicI64,
    /// Revision of the last update handed to [`Gateway::apply`].
    seen_revision: AtomicI64,
    /// Cluster removals waiting for a route table that no longer needs them (see `apply`).
    pending_removals: Mutex<Vec<PendingRemoval>>,
    shutdown: watch::Receiver<bool>,
}

/// A cluster to remove once the table built from domains at revision `after` is in place.
#[derive(Debug)]
struct PendingRemoval {
    name: String,
    after: i64,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("loaded", &self.loaded)
            .finish()
    }
}

/// How long the configuration loop waits before trying a failed source again.
const SOURCE_RETRY: Duration = Duration::from_secs(1);
/// How often idle upstream connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl Gateway {
    pub fn new(
        metrics: GatewayMetrics,
        trusted_proxies: Vec<IpNet>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            table: ArcSwap::from_pointee(RouteTable::default()),
            clusters: Clusters::default(),
            metrics: Arc::new(metrics),
            trusted_proxies,
            loaded: AtomicBool::new(false),
            errors: ArcSwap::from_pointee(BTreeMap::new()),
            sent_revision: AtomicI64::new(0),
            built_revision: AtomicI64::new(0),
            applied_revision: AtomicI64::new(0),
            seen_revision: AtomicI64::new(0),
            pending_removals: Mutex::new(Vec::new()),
            shutdown,
        })
    }

    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Whether the first full configuration has been applied.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Documents currently refused, by key.
    pub fn config_errors(&self) -> Arc<BTreeMap<String, String>> {
        self.errors.load_full()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    /// Follows `source` until shutdown, applying every update in order. Clusters change at
    /// once; the route table is rebuilt by a companion task that always builds from the latest
    /// domains, so a burst of changes costs one rebuild per build time, not one per change.
    pub async fn follow<S: ConfigSource>(self: Arc<Self>, mut source: S, prefixes: Prefixes) {
        let mut catalog = Catalog::new(prefixes);
        let mut stop = self.shutdown.clone();
        let (to_builder, from_loop) = watch::channel::<Option<Arc<DomainsAt>>>(None);
        let builder = tokio::spawn(self.clone().build_tables(from_loop));
        let sweeper = tokio::spawn(self.clone().sweep_idle_connections());
        loop {
            let update = tokio::select! {
                u = source.next() => u,
                _ = stop.wait_for(|s| *s) => break,
            };
            match update {
                Ok(update) => self.apply(&mut catalog, update, &to_builder),
                Err(e) => {
                    tracing::warn!(error = %e, "configuration source failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(SOURCE_RETRY) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        }
        builder.abort();
        sweeper.abort();
    }

    /// Closes pooled upstream connections that outlived their cluster's idle timeout or that
    /// the upstream closed, every [`SWEEP_EVERY`]; nobody else looks at an idle connection.
    async fn sweep_idle_connections(self: Arc<Self>) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for cluster in self.clusters.all() {
                for endpoint in cluster.balancer.endpoints() {
                    endpoint.idle.sweep(&cluster.config.keepalive_pool);
                }
            }
        }
    }

    fn apply(
        &self,
        catalog: &mut Catalog,
        update: Update,
        to_builder: &watch::Sender<Option<Arc<DomainsAt>>>,
    ) {
        let (revision, full) = match &update {
            Update::Full { revision, .. } => (*revision, true),
            Update::Changes { revision, .. } => (*revision, false),
        };
        self.seen_revision.store(revision, Ordering::Release);
        let applied = catalog.apply(update);
        if let Some(all) = applied.clusters_replaced {
            self.pending().clear();
            self.clusters.replace_all(all);
        }
        for cluster in applied.cluster_upserts {
            self.pending().retain(|p| p.name != cluster.name);
            self.clusters.upsert(cluster);
        }
        if applied.domains_changed || full {
            self.sent_revision.store(revision, Ordering::Release);
            to_builder.send_replace(Some(Arc::new(DomainsAt {
                revision,
                domains: catalog.domains(),
            })));
        }
        // Changes apply in revision order: a cluster removed after the route that used it was
        // repointed must outlive the table that still holds that route, or requests would see
        // 503 in between. So a removal waits for the table of every domain change before it.
        let needed = self.sent_revision.load(Ordering::Acquire);
        let table_current = self.built_revision.load(Ordering::Acquire) >= needed;
        for name in applied.cluster_removals {
            if table_current {
                self.clusters.remove(&name);
            } else {
                self.pending().push(PendingRemoval {
                    name,
                    after: needed,
                });
            }
        }
        if table_current {
            // No table build outstanding: this change is fully served now.
            self.mark_applied(revision);
        }
        let reloads = &self.metrics.reloads;
        reloads
            .with_label_values(&["etcd", "success"])
            .inc_by(applied.accepted);
        reloads
            .with_label_values(&["etcd", "error"])
            .inc_by(applied.refused);
        self.metrics.routes.set(catalog.route_count() as i64);
        self.metrics
            .config_errors
            .set(catalog.errors().len() as i64);
        self.errors.store(Arc::new(catalog.errors().clone()));
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<PendingRemoval>> {
        // A panic while holding this lock cannot leave the list inconsistent: take it as is.
        self.pending_removals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn mark_applied(&self, revision: i64) {
        let previous = self.applied_revision.fetch_max(revision, Ordering::AcqRel);
        self.metrics.applied_revision.set(previous.max(revision));
    }

    async fn build_tables(self: Arc<Self>, mut latest: watch::Receiver<Option<Arc<DomainsAt>>>) {
        while latest.changed().await.is_ok() {
            let Some(next) = latest.borrow_and_update().clone() else {
                continue;
            };
            let domains = next.domains.clone();
            // Compiling thousands of routes is CPU work: keep it off the async workers.
            match tokio::task::spawn_blocking(move || RouteTable::build(&domains)).await {
                Ok(table) => {
                    let routes = table.routes().len();
                    self.table.store(Arc::new(table));
                    self.built_revision.store(next.revision, Ordering::Release);
                    let due: Vec<String> = {
                        let mut pending = self.pending();
                        let (due, wait) = std::mem::take(&mut *pending)
                            .into_iter()
                            .partition(|p| p.after <= next.revision);
                        *pending = wait;
                        due.into_iter().map(|p: PendingRemoval| p.name).collect()
                    };
                    for name in due {
                        self.clusters.remove(&name);
                    }
                    // With no newer table on its way, every update seen so far is served.
                    let served = if self.sent_revision.load(Ordering::Acquire) == next.revision {
                        self.seen_revision.load(Ordering::Acquire)
                    } else {
                        next.revision
                    };
                    self.mark_applied(served);
                    if !self.loaded.swap(true, Ordering::AcqRel) {
                        tracing::info!(
                            revision = next.revision,
                            domains = next.domains.len(),
                            routes,
                            clusters = self.clusters.names().len(),
                            "gateway configuration loaded"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "building the route table failed"),
            }
        }
    }
}

/// The domains to compile, as of a store revision.
#[derive(Debug)]
struct DomainsAt {
    revision: i64,
    domains: Vec<Arc<config::types::DomainConfig>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use config::source::Change;

    fn doc(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    fn domain_to(cluster: &str) -> Vec<u8> {
        doc(serde_json::json!({"name": "d", "hosts": ["d.test"],
            "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": cluster}]}]}))
    }

    fn cluster(name: &str) -> Vec<u8> {
        doc(serde_json::json!({"name": name, "nodes": [{"host": "127.0.0.1", "port": 1}]}))
    }

    fn routed_to(gw: &Gateway) -> Vec<String> {
        gw.table()
            .routes()
            .iter()
            .flat_map(|r| r.clusters.iter().map(|c| c.name.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_cluster_removed_after_its_route_moved_outlives_the_old_table() {
        let (_stop, shutdown) = watch::channel(false);
        let metrics = GatewayMetrics::register(&prometheus::Registry::new()).unwrap();
        let gw = Gateway::new(metrics, Vec::new(), shutdown);
        let prefixes = Prefixes::for_namespace("default");
        let mut catalog = Catalog::new(prefixes);
        let (to_builder, from_loop) = watch::channel(None);
        gw.apply(
            &mut catalog,
            Update::Full {
                revision: 1,
                items: vec![
                    ("/hermes/clusters/a".into(), cluster("a")),
                    ("/hermes/clusters/b".into(), cluster("b")),
                    ("/hermes/domains/d".into(), domain_to("a")),
                ],
            },
            &to_builder,
        );
        // The route moves to b, then a is deleted, before any table is built.
        for (revision, key, value) in [
            (2, "/hermes/domains/d", Some(domain_to("b"))),
            (3, "/hermes/clusters/a", None),
        ] {
            let change = Change {
                key: key.into(),
                value,
            };
            let update = Update::Changes {
                revision,
                changes: vec![change],
            };
            gw.apply(&mut catalog, update, &to_builder);
        }
        assert!(
            gw.clusters.get("a").is_some(),
            "removed while the table in use still routes to it"
        );
        let builder = tokio::spawn(gw.clone().build_tables(from_loop));
        for _ in 0..500 {
            if routed_to(&gw) == ["b"] && gw.clusters.get("a").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(routed_to(&gw), ["b"]);
        assert!(
            gw.clusters.get("a").is_none(),
            "removed once the table moved on"
        );
        assert_eq!(gw.applied_revision.load(Ordering::Acquire), 3);
        // With the table current, a removal applies at once.
        let update = Update::Changes {
            revision: 4,
            changes: vec![Change {
                key: "/hermes/clusters/b".into(),
                value: None,
            }],
        };
        gw.apply(&mut catalog, update, &to_builder);
        assert!(gw.clusters.get("b").is_none());
        builder.abort();
    }
}
