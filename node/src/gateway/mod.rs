//! The data plane: every node proxies traffic on `--proxy-listen`, routed by the Domain and
//! Cluster documents of its namespace, which it follows through a [`config::source::ConfigSource`]
//! (by default the node's own store). The route table is an immutable snapshot rebuilt off the
//! request path and swapped in whole; cluster runtime state survives updates that keep it.
//! Behaviour follows contracts/hermes.md §7 with the bugs it lists fixed.

pub mod config;
pub mod metrics;
pub mod proxy;
pub mod routing;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
    pub metrics: GatewayMetrics,
    pub trusted_proxies: Vec<IpNet>,
    loaded: AtomicBool,
    errors: ArcSwap<BTreeMap<String, String>>,
    shutdown: watch::Receiver<bool>,
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

impl Gateway {
    pub fn new(
        metrics: GatewayMetrics,
        trusted_proxies: Vec<IpNet>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Gateway> {
        Arc::new(Gateway {
            table: ArcSwap::from_pointee(RouteTable::default()),
            clusters: Clusters::default(),
            metrics,
            trusted_proxies,
            loaded: AtomicBool::new(false),
            errors: ArcSwap::from_pointee(BTreeMap::new()),
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

    /// Follows `source` until shutdown, applying every update in order.
    pub async fn follow<S: ConfigSource>(self: Arc<Self>, mut source: S, prefixes: Prefixes) {
        let mut catalog = Catalog::new(prefixes);
        let mut stop = self.shutdown.clone();
        loop {
            let update = tokio::select! {
                u = source.next() => u,
                _ = stop.wait_for(|s| *s) => return,
            };
            match update {
                Ok(update) => self.apply(&mut catalog, update).await,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration source failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(SOURCE_RETRY) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
            }
        }
    }

    async fn apply(&self, catalog: &mut Catalog, update: Update) {
        let (revision, full) = match &update {
            Update::Full { revision, .. } => (*revision, true),
            Update::Changes { revision, .. } => (*revision, false),
        };
        let applied = catalog.apply(update);
        if let Some(all) = applied.clusters_replaced {
            self.clusters.replace_all(all);
        }
        for cluster in applied.cluster_upserts {
            self.clusters.upsert(cluster);
        }
        for name in &applied.cluster_removals {
            self.clusters.remove(name);
        }
        if applied.domains_changed {
            let domains = catalog.domains();
            // Compiling thousands of routes is CPU work: keep it off the async workers.
            match tokio::task::spawn_blocking(move || RouteTable::build(&domains)).await {
                Ok(table) => self.table.store(Arc::new(table)),
                Err(e) => tracing::error!(error = %e, "building the route table failed"),
            }
        }
        let reloads = &self.metrics.reloads;
        reloads
            .with_label_values(&["etcd", "success"])
            .inc_by(applied.accepted);
        reloads
            .with_label_values(&["etcd", "error"])
            .inc_by(applied.refused);
        self.metrics.routes.set(catalog.route_count() as i64);
        self.metrics.applied_revision.set(revision);
        self.metrics
            .config_errors
            .set(catalog.errors().len() as i64);
        self.errors.store(Arc::new(catalog.errors().clone()));
        if full && !self.loaded.swap(true, Ordering::AcqRel) {
            tracing::info!(
                revision,
                domains = catalog.domains().len(),
                routes = catalog.route_count(),
                clusters = self.clusters.names().len(),
                "gateway configuration loaded"
            );
        }
    }
}
