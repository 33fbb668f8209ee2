//! hermes-gateway: the data plane. Every node proxies traffic on `--proxy-listen`, routed by the Domain and
//! Cluster documents of its namespace, which it follows through a [`config::source::ConfigSource`]
//! (by default the node's own store). The route table is rebuilt off the request path and
//! published with the clusters as one immutable [`snapshot::Snapshot`]; cluster runtime state
//! survives updates that keep it.
//! Behaviour follows contracts/hermes.md §7 with the bugs it lists fixed.
//!
//! It owns routing ([`routing`]), the two proxy paths (the HTTP/1 fast path in [`proxy::h1`]
//! and the hyper path in [`proxy::handler`]) and their one failure model, upstream pools,
//! balancers and the upstream guard ([`upstream`]), traffic protection ([`protect`]: rate
//! limits, circuit breakers, health checks; retries are in [`proxy::retry`]), Consul
//! discovery and registration ([`discovery`], [`consul_registration`]), the instance registry
//! ([`registry`]), the access log ([`access_log`]), the configuration documents, their
//! validation and their source ([`config`]), and the `gateway_*` metrics. It depends on the store alone (to follow it);
//! the node wires it to listeners, and the API reads its views and runs its validator.

pub mod access_log;
pub mod config;
pub mod consul_registration;
pub mod digits;
pub mod discovery;
pub mod metric_cache;
pub mod metrics;
pub mod protect;
pub mod proxy;
pub mod registry;
pub mod routing;
pub mod snapshot;
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
use protect::limiters::Limiters;
use routing::table::RouteTable;
use snapshot::{ClusterChanges, Published, Snapshot};
use upstream::guard::ForbiddenUpstreams;

pub struct Gateway {
    published: Published,
    /// Shared with every request's record (one reference count, not a dozen).
    pub metrics: Arc<GatewayMetrics>,
    pub trusted_proxies: Vec<IpNet>,
    /// Control listeners of this cluster that the proxy never connects to.
    pub forbidden: ForbiddenUpstreams,
    /// The rate limiters of the limited routes, kept across route tables.
    pub limiters: Arc<Limiters>,
    /// Where Consul is, for clusters that discover their nodes there.
    consul: std::sync::OnceLock<Arc<discovery::ConsulSettings>>,
    loaded: AtomicBool,
    errors: ArcSwap<BTreeMap<String, String>>,
    /// The store revision up to which every change is being served (table built included).
    applied: watch::Sender<i64>,
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
/// How often idle upstream connections are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

impl Gateway {
    pub fn new(
        metrics: GatewayMetrics,
        trusted_proxies: Vec<IpNet>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<Gateway> {
        let metrics = Arc::new(metrics);
        Arc::new(Gateway {
            published: Published::default(),
            limiters: Arc::new(Limiters::new(metrics.clone())),
            consul: std::sync::OnceLock::new(),
            metrics,
            trusted_proxies,
            forbidden: ForbiddenUpstreams::default(),
            loaded: AtomicBool::new(false),
            errors: ArcSwap::from_pointee(BTreeMap::new()),
            applied: watch::Sender::new(0),
            shutdown,
        })
    }

    /// The route table and clusters to serve one request by (see [`snapshot`]).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load()
    }

    /// Sets how many gateway nodes share every rate limit (from the instance registry): each
    /// admits its part from the next request on.
    pub fn set_gateway_nodes(&self, nodes: u32) {
        self.limiters.share.set(nodes);
        self.metrics.gateway_nodes.set(i64::from(nodes.max(1)));
    }

    /// Discovers the nodes of `discovery_type: consul` clusters from this Consul agent. Set
    /// before [`Gateway::follow`]; only the first call takes effect.
    pub fn use_consul(&self, settings: discovery::ConsulSettings) {
        let _ = self.consul.set(Arc::new(settings));
    }

    /// Whether clusters may discover their nodes (a Consul agent is configured).
    pub fn discovery_enabled(&self) -> bool {
        self.consul.get().is_some()
    }

    /// Takes the nodes a Consul service answered.
    pub fn set_discovered(&self, service: &str, nodes: Vec<config::types::UpstreamNode>) {
        self.published.set_discovered(service, nodes);
        let snapshot = self.snapshot();
        for cluster in snapshot
            .clusters
            .all()
            .filter(|c| c.config.consul_service() == Some(service))
        {
            self.metrics
                .consul_nodes
                .with_label_values(&[&*cluster.name])
                .set(cluster.balancer.endpoints().len() as i64);
        }
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
        let prober = tokio::spawn(protect::prober::run(self.clone()));
        let discoverer = self
            .consul
            .get()
            .cloned()
            .map(|settings| tokio::spawn(discovery::run(self.clone(), settings)));
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
        prober.abort();
        if let Some(d) = discoverer {
            d.abort();
        }
    }

    /// Closes pooled upstream connections that outlived their cluster's idle timeout or that
    /// the upstream closed, every [`SWEEP_EVERY`]; nobody else looks at an idle connection.
    async fn sweep_idle_connections(self: Arc<Self>) {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            for cluster in self.snapshot().clusters.all() {
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
        let applied = catalog.apply(update);
        let domains_changed = applied.domains_changed || full;
        let changes = ClusterChanges {
            replaced: applied.clusters_replaced,
            upserts: applied.cluster_upserts,
            removals: applied.cluster_removals,
        };
        if !self.discovery_enabled() {
            // The API refuses these on such a node; one written straight to the store is
            // served by its static nodes, and says so.
            let written = changes
                .upserts
                .iter()
                .chain(changes.replaced.iter().flatten());
            for c in written.filter(|c| c.consul_service().is_some()) {
                tracing::warn!(
                    cluster = %c.name,
                    "cluster asks for Consul discovery, but this node has no --consul-address; \
                     serving its static nodes"
                );
            }
        }
        // The builder learns of new domains only once their revision is recorded as sent, so
        // that the table it builds is never taken for an older one.
        let table_current = self.published.apply(changes, revision, domains_changed);
        if domains_changed {
            to_builder.send_replace(Some(Arc::new(DomainsAt {
                revision,
                domains: catalog.domains(),
            })));
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

    fn mark_applied(&self, revision: i64) {
        self.applied.send_if_modified(|applied| {
            let moved = revision > *applied;
            *applied = (*applied).max(revision);
            moved
        });
        self.metrics.applied_revision.set(*self.applied.borrow());
    }

    /// The store revision up to which this gateway serves every change.
    pub fn applied_revision(&self) -> i64 {
        *self.applied.borrow()
    }

    /// Waits until this gateway serves every change up to `revision` (its route table rebuilt
    /// where domains changed), at most `within`; whether it does. What the API waits for before
    /// answering a configuration write, so that this node's proxy serves it once answered.
    pub async fn serving(&self, revision: i64, within: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(within, applied.wait_for(|a| *a >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    async fn build_tables(self: Arc<Self>, mut latest: watch::Receiver<Option<Arc<DomainsAt>>>) {
        while latest.changed().await.is_ok() {
            let Some(next) = latest.borrow_and_update().clone() else {
                continue;
            };
            let domains = next.domains.clone();
            // Compiling thousands of routes is CPU work: keep it off the async workers.
            let limiters = self.limiters.clone();
            let build = move || RouteTable::build_serving(&domains, &limiters);
            match tokio::task::spawn_blocking(build).await {
                Ok(table) => {
                    let routes = table.routes().len();
                    let served = self.published.install_table(table, next.revision);
                    self.mark_applied(served);
                    if !self.loaded.swap(true, Ordering::AcqRel) {
                        tracing::info!(
                            revision = next.revision,
                            domains = next.domains.len(),
                            routes,
                            clusters = self.snapshot().clusters.names().len(),
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
        gw.snapshot()
            .table
            .routes()
            .iter()
            .flat_map(|r| r.clusters.iter().map(|c| c.name.clone()))
            .collect()
    }

    /// Waits up to 5 s for `done` (the table builder runs on its own task); the caller's
    /// assertions then say what was missing.
    async fn eventually(done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A gateway fed by hand: the catalog it applies updates to, and the channel its table
    /// builder would read (tests build tables themselves or start the builder).
    struct Fed {
        gw: Arc<Gateway>,
        catalog: Catalog,
        to_builder: watch::Sender<Option<Arc<DomainsAt>>>,
        from_loop: Option<watch::Receiver<Option<Arc<DomainsAt>>>>,
        _stop: watch::Sender<bool>,
    }

    impl Fed {
        fn new() -> Fed {
            let (stop, shutdown) = watch::channel(false);
            let metrics = GatewayMetrics::register(&prometheus::Registry::new()).unwrap();
            let (to_builder, from_loop) = watch::channel(None);
            Fed {
                gw: Gateway::new(metrics, Vec::new(), shutdown),
                catalog: Catalog::new(Prefixes::for_namespace("default")),
                to_builder,
                from_loop: Some(from_loop),
                _stop: stop,
            }
        }

        fn full(&mut self, revision: i64, items: Vec<(&str, Vec<u8>)>) {
            let items = items.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            let update = Update::Full { revision, items };
            self.gw.apply(&mut self.catalog, update, &self.to_builder);
        }

        fn change(&mut self, revision: i64, key: &str, value: Option<Vec<u8>>) {
            let changes = vec![Change {
                key: key.into(),
                value,
            }];
            let update = Update::Changes { revision, changes };
            self.gw.apply(&mut self.catalog, update, &self.to_builder);
        }

        /// Clusters a and b, and the route on a.
        fn routed_to_a() -> Fed {
            let mut fed = Fed::new();
            fed.full(
                1,
                vec![
                    ("/hermes/clusters/a", cluster("a")),
                    ("/hermes/clusters/b", cluster("b")),
                    ("/hermes/domains/d", domain_to("a")),
                ],
            );
            fed
        }

        /// Builds and installs the table of the current domains, as of `revision`; returns the
        /// revision then served.
        fn install_table(&self, revision: i64) -> i64 {
            let table = RouteTable::build(&self.catalog.domains());
            self.gw.published.install_table(table, revision)
        }
    }

    #[tokio::test]
    async fn a_cluster_removed_after_its_route_moved_outlives_the_old_table() {
        let mut fed = Fed::routed_to_a();
        // The route moves to b, then a is deleted, before any table is built.
        fed.change(2, "/hermes/domains/d", Some(domain_to("b")));
        fed.change(3, "/hermes/clusters/a", None);
        let gw = fed.gw.clone();
        assert!(
            gw.snapshot().clusters.get("a").is_some(),
            "removed while the table in use still routes to it"
        );
        let from_loop = fed.from_loop.take().unwrap();
        let builder = tokio::spawn(gw.clone().build_tables(from_loop));
        eventually(|| routed_to(&gw) == ["b"] && gw.snapshot().clusters.get("a").is_none()).await;
        assert_eq!(routed_to(&gw), ["b"]);
        assert!(
            gw.snapshot().clusters.get("a").is_none(),
            "removed once the table moved on"
        );
        assert_eq!(gw.applied_revision(), 3);
        // With the table current, a removal applies at once.
        fed.change(4, "/hermes/clusters/b", None);
        assert!(gw.snapshot().clusters.get("b").is_none());
        builder.abort();
    }

    /// What the API waits on before answering a configuration write: a domain change counts
    /// as served only once the table with it is built and in use.
    #[tokio::test]
    async fn serving_a_revision_means_its_table_is_in_use() {
        let mut fed = Fed::routed_to_a();
        let gw = fed.gw.clone();
        let from_loop = fed.from_loop.take().unwrap();
        let builder = tokio::spawn(gw.clone().build_tables(from_loop));
        assert!(gw.serving(1, Duration::from_secs(5)).await);
        fed.change(2, "/hermes/domains/d", Some(domain_to("b")));
        let waiter = tokio::spawn({
            let gw = gw.clone();
            async move { gw.serving(2, Duration::from_secs(5)).await }
        });
        assert!(waiter.await.unwrap());
        assert_eq!(
            routed_to(&gw),
            ["b"],
            "served means the new table is in use"
        );
        // Nothing at revision 9 ever comes: the wait gives up, saying so.
        assert!(!gw.serving(9, Duration::from_millis(50)).await);
        builder.abort();
    }

    /// What `/readyz`'s "routes" check reads: not loaded until the first table is served.
    #[tokio::test]
    async fn loaded_only_once_the_first_table_is_built() {
        let mut fed = Fed::new();
        assert!(!fed.gw.is_loaded());
        fed.full(
            1,
            vec![
                ("/hermes/clusters/a", cluster("a")),
                ("/hermes/domains/d", domain_to("a")),
            ],
        );
        assert!(!fed.gw.is_loaded(), "listed but no table built yet");
        assert!(routed_to(&fed.gw).is_empty());
        let from_loop = fed.from_loop.take().unwrap();
        let builder = tokio::spawn(fed.gw.clone().build_tables(from_loop));
        eventually(|| fed.gw.is_loaded()).await;
        assert!(fed.gw.is_loaded());
        assert_eq!(
            routed_to(&fed.gw),
            ["a"],
            "loaded means the table is served"
        );
        builder.abort();
    }

    #[test]
    fn a_request_resolves_its_clusters_in_the_snapshot_it_routed_by() {
        let mut fed = Fed::routed_to_a();
        assert_eq!(fed.install_table(1), 1);
        // A request routes by this snapshot, to a ...
        let before = fed.gw.snapshot();
        assert_eq!(routed_to(&fed.gw), ["a"]);
        // ... while the route moves to b and a is deleted, and the new table goes in.
        fed.change(2, "/hermes/domains/d", Some(domain_to("b")));
        fed.change(3, "/hermes/clusters/a", None);
        assert_eq!(fed.install_table(2), 3, "revision 3 served");
        assert_eq!(routed_to(&fed.gw), ["b"]);
        assert!(fed.gw.snapshot().clusters.get("a").is_none());
        // The request's snapshot still has the cluster its route names.
        let route = before.table.routes()[0].clone();
        assert_eq!(route.clusters[0].name, "a");
        assert!(before.clusters.get("a").is_some());
    }

    #[test]
    fn a_cluster_missing_from_a_relist_waits_for_the_table_too() {
        let mut fed = Fed::new();
        fed.full(
            1,
            vec![
                ("/hermes/clusters/a", cluster("a")),
                ("/hermes/domains/d", domain_to("a")),
            ],
        );
        fed.install_table(1);
        // After a compaction the re-list finds the route on b and a gone.
        fed.full(
            9,
            vec![
                ("/hermes/clusters/b", cluster("b")),
                ("/hermes/domains/d", domain_to("b")),
            ],
        );
        assert_eq!(routed_to(&fed.gw), ["a"]);
        assert!(fed.gw.snapshot().clusters.get("a").is_some());
        fed.install_table(9);
        assert_eq!(routed_to(&fed.gw), ["b"]);
        assert_eq!(fed.gw.snapshot().clusters.names(), ["b"]);
    }
}
