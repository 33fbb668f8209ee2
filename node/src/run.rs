//! Wiring of a node: open the store, bind every listener, start raft, bootstrap or join, serve,
//! and on shutdown drain with a deadline. `main` only parses arguments and calls [`run`]; tests
//! call it in-process.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use hermes_raft::peer_server;
use hermes_raft::{RaftConfig, RaftNode};
use hermes_storage::types::Member;

use crate::config::{
    ConfigStoreKind, ControlStoreKind, NodeConfig, Setting, ADMIN_LISTEN, CONTROL_STORE,
    ETCD_LISTEN, PEER_LISTEN, PROXY_LISTEN,
};
use crate::join::join_cluster;
use hermes_api::admin::{self, AdminState};
use hermes_compat::controller::ControllerConfig;
use hermes_compat::external::EtcdSettings;
use hermes_gateway::config::source::{Prefixes, StoreSource};
use hermes_gateway::metrics::GatewayMetrics;
use hermes_gateway::Gateway;

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("opening the store in {dir}: {source}")]
    Store {
        dir: String,
        #[source]
        source: hermes_storage::StoreError,
    },
    #[error("cannot listen on {addr} ({flag}): {source}; is another process using the port?")]
    Bind {
        flag: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting raft: {0}")]
    Raft(#[from] hermes_raft::node::StartError),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("a background task failed: {0}")]
    Task(String),
    #[error("this node stopped because its storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    Config(String),
}

async fn bind(setting: Setting, addr: std::net::SocketAddr) -> Result<TcpListener, RunError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind {
            flag: setting.flag,
            addr,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(listener = setting.section, addr = %bound, "listening");
    Ok(listener)
}

/// Registers the build and runtime metrics; the runtimes counted can be added to later.
fn build_info(
    registry: &prometheus::Registry,
) -> Result<crate::runtime_metrics::Runtimes, prometheus::Error> {
    let info = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "hermes_build_info",
            "Build of this hermes binary (always 1)",
        ),
        &["version", "git_sha"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION"), crate::version::GIT_SHA])
        .set(1);
    registry.register(Box::new(info))?;
    let runtimes = crate::runtime_metrics::Runtimes::default();
    runtimes.add(&[tokio::runtime::Handle::current()]);
    let collector = crate::runtime_metrics::RuntimeCollector::new(runtimes.clone())?;
    registry.register(Box::new(collector))?;
    Ok(runtimes)
}

/// Runs a node until `shutdown` resolves, then drains and stops.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        git_sha = crate::version::GIT_SHA,
        node_id = config.id,
        data_dir = %config.data_dir.display(),
        "starting hermes node"
    );

    // 1. The data directory, private, and the store in it. Opening replays sled's log:
    //    blocking work.
    tokio::pin!(shutdown);
    crate::data_dir::private_umask();
    let dir = config.data_dir.clone();
    let machine_key = tokio::task::spawn_blocking(move || {
        crate::data_dir::prepare(&dir)?;
        crate::data_dir::machine_key(&dir)
    })
    .await
    .map_err(|e| RunError::Task(e.to_string()))?
    .map_err(|e| RunError::Config(e.to_string()))?;
    let sealer = Arc::new(
        hermes_control::seal::Sealer::new(
            config.cluster_secret.as_ref().map(|s| s.0.as_slice()),
            &machine_key,
        )
        .map_err(|e| RunError::Config(format!("secrets at rest: {e}")))?,
    );
    if config.topology.runs_raft() && sealer.source() == hermes_control::seal::KeySource::MachineId
    {
        tracing::info!(
            "secrets at rest are sealed with a key derived from this host's machine id; a \
             cluster secret (--cluster-secret-file) keys them to the cluster instead"
        );
    }
    let topology = config.topology.clone();
    let opened = if topology.runs_raft() {
        let dir = config.data_dir.clone();
        let id = config.id;
        let opened = tokio::task::spawn_blocking(move || hermes_storage::open(&dir, id))
            .await
            .map_err(|e| RunError::Task(e.to_string()))?
            .map_err(|source| RunError::Store {
                dir: config.data_dir.display().to_string(),
                source,
            })?;
        tracing::info!(
            revision = opened.store.revision(),
            keys = opened.store.key_count(),
            "store opened"
        );
        Some(opened)
    } else {
        tracing::info!(
            roles = ?topology.roles,
            "no embedded store: this node's stores are external"
        );
        None
    };

    // 2. Every listener, before anything is served, each with its share of the descriptors.
    let budget = crate::fd_budget::plan(
        crate::fd_budget::raise_limit(),
        config.max_connections,
        config.etcd_listen.is_some(),
    );
    if budget.proxy < config.max_connections {
        tracing::warn!(
            fd_limit = budget.limit,
            proxy = budget.proxy,
            admin = budget.admin,
            etcd = budget.etcd,
            peer = budget.peer,
            configured_proxy = config.max_connections,
            "the file-descriptor limit cannot hold every listener's connections; each gets a \
             proportional share (raise it with `ulimit -n` or systemd's LimitNOFILE)"
        );
    } else {
        tracing::info!(
            fd_limit = budget.limit,
            proxy = budget.proxy,
            admin = budget.admin,
            etcd = budget.etcd,
            peer = budget.peer,
            "connection limits"
        );
    }
    let proxy_threads = hermes_gateway::proxy::threads::count(config.proxy_threads);
    let proxy_listeners = if topology.roles.gateway {
        let listeners = hermes_gateway::proxy::threads::bind(config.proxy_listen, proxy_threads)
            .map_err(|source| RunError::Bind {
                flag: PROXY_LISTEN.flag,
                addr: config.proxy_listen,
                source,
            })?;
        if let Some(bound) = listeners.first().and_then(|l| l.local_addr().ok()) {
            tracing::info!(listener = PROXY_LISTEN.section, addr = %bound, threads = proxy_threads, "listening");
        }
        listeners
    } else {
        Vec::new()
    };
    let peer_listener = match &opened {
        Some(_) => Some(bind(PEER_LISTEN, config.peer_listen).await?),
        None => None,
    };
    let admin_listener = bind(ADMIN_LISTEN, config.admin_listen).await?;
    let etcd_listener = match config.etcd_listen {
        Some(addr) => Some(bind(ETCD_LISTEN, addr).await?),
        None => None,
    };
    // What the proxy must never connect to (see `gateway::upstream::guard`).
    let own_listeners: Vec<std::net::SocketAddr> = [
        peer_listener.as_ref(),
        Some(&admin_listener),
        etcd_listener.as_ref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|l| l.local_addr().ok())
    .collect();
    let admin_url = match admin_listener.local_addr() {
        Ok(a) if config.admin_listen.port() == 0 => format!("http://{a}"),
        _ => config.admin_url(),
    };

    // 3. Raft.
    let registry = prometheus::Registry::new();
    let runtimes = build_info(&registry)?;
    let (node, store, fatal) = match opened {
        Some(hermes_storage::Opened {
            log,
            state_machine,
            store,
            fatal,
        }) => {
            let mut raft_config =
                RaftConfig::new(config.id, config.advertise_peer.clone(), admin_url);
            raft_config.etcd_url = config.etcd_url();
            raft_config.cluster_secret = config.cluster_secret.as_ref().map(|s| s.0.clone());
            raft_config.history_retention = config.history_retention;
            raft_config.snapshot_every = config.snapshot_every;
            raft_config.quota_backend_bytes = config.quota_backend_bytes;
            raft_config.request_timeout = config.request_timeout;
            let node = RaftNode::start(
                raft_config,
                log,
                state_machine,
                fatal.clone(),
                Some(&registry),
            )
            .await?;
            (Some(node), Some(store), Some(fatal))
        }
        None => (None, None, None),
    };

    // 4. Serve.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let draining = Arc::new(AtomicBool::new(false));
    let mut servers = JoinSet::new();
    let mut helpers = JoinSet::new();

    // The data plane: this node's namespace, from the configuration store.
    let gateway = Gateway::new(
        GatewayMetrics::register(&registry)?,
        config.trusted_proxies.clone(),
        stop_rx.clone(),
    );
    let prefixes = Prefixes::for_namespace(&config.namespace);
    let instances = hermes_storage::keys::registered_instances(&config.namespace);
    let meta_key = hermes_storage::keys::meta_revision(&config.namespace);
    // The external etcd, when it is the configuration store.
    let external_etcd = match &topology.config_store {
        ConfigStoreKind::Etcd { endpoints, auth } => Some(EtcdSettings {
            endpoints: endpoints.clone(),
            user: auth
                .as_ref()
                .map(|(u, p)| (u.clone(), String::from_utf8_lossy(&p.0).into_owned())),
        }),
        ConfigStoreKind::Raft => None,
    };
    if topology.roles.gateway {
        if let Some(consul) = &config.consul {
            gateway.use_consul(consul.clone());
            if let Some(me) = &config.consul_registration {
                helpers.spawn(hermes_gateway::consul_registration::keep(
                    consul.clone(),
                    me.clone(),
                    stop_rx.clone(),
                ));
            }
        }
        match (&node, &store) {
            (Some(node), Some(_)) => {
                helpers.spawn(crate::control_listeners::keep(
                    node.clone(),
                    gateway.clone(),
                    own_listeners,
                    stop_rx.clone(),
                ));
            }
            _ => gateway.forbidden.set(own_listeners),
        }
        match (&external_etcd, &node, &store) {
            (Some(settings), _, _) => {
                helpers.spawn(crate::external::gateway_on_etcd(
                    settings.clone(),
                    gateway.clone(),
                    prefixes.clone(),
                    crate::external::Registration {
                        enabled: config.instance_registry,
                        prefix: instances.clone(),
                        id: hermes_gateway::registry::instance_id(config.id),
                        meta_key: meta_key.clone(),
                    },
                    stop_rx.clone(),
                ));
            }
            (None, Some(node), Some(store)) => {
                helpers.spawn(
                    gateway
                        .clone()
                        .follow(StoreSource::new(store.clone(), prefixes.clone()), prefixes),
                );
                // The instance registry: this node as a gateway, and the count that splits
                // rate limits.
                if config.instance_registry {
                    helpers.spawn(hermes_gateway::registry::keep_registered(
                        crate::registrar::RaftRegistrar {
                            node: node.clone(),
                            meta_key: meta_key.clone(),
                        },
                        instances.clone(),
                        hermes_gateway::registry::instance_id(config.id),
                        stop_rx.clone(),
                    ));
                }
                helpers.spawn(hermes_gateway::registry::count_instances(
                    store.clone(),
                    instances.clone(),
                    gateway.clone(),
                    stop_rx.clone(),
                ));
            }
            // `Topology::runs_raft` holds the store whenever the gateway reads raft.
            (None, _, _) => {
                return Err(RunError::Config(
                    "the gateway role has no configuration store".into(),
                ))
            }
        }
        let proxy = hermes_gateway::proxy::threads::ProxyThreads::start(
            proxy_listeners,
            gateway.clone(),
            budget.proxy,
            stop_rx.clone(),
            config.shutdown_grace,
        )
        .await
        .map_err(|e| RunError::Task(format!("starting the proxy threads: {e}")))?;
        runtimes.add(proxy.handles());
        servers.spawn(proxy.wait());
    }
    if let (Some(listener), Some(node)) = (peer_listener, &node) {
        servers.spawn(peer_server::serve(
            listener,
            node.clone(),
            budget.peer,
            stopped(stop_rx.clone()),
        ));
    }
    // The control store: the replicated store, or the original server's PostgreSQL.
    let control: Option<Arc<dyn hermes_control::store::ControlStore>> =
        match (&topology.control_store, &node) {
            _ if !topology.uses_control_store() => None,
            (ControlStoreKind::Raft, Some(node)) => {
                Some(Arc::new(hermes_control::replicated::Replicated::new(
                    node.clone(),
                    config.api.resource_history,
                    sealer.clone(),
                )))
            }
            (ControlStoreKind::Postgres(dsn), _) => {
                let dsn = String::from_utf8_lossy(&dsn.0).into_owned();
                // A database that cannot be reached yet (starting with the node, restarting)
                // is waited for; one that refuses (no such database, bad credentials) is a
                // configuration error.
                let mut waiting = false;
                let pg = loop {
                    let connected = hermes_compat::postgres::PgControl::connect(
                        &dsn,
                        config.api.resource_history,
                    )
                    .await;
                    match connected {
                        Ok(pg) => break pg,
                        Err(e @ hermes_compat::postgres::PgError::Unreachable { .. }) => {
                            if !waiting {
                                tracing::warn!(error = %e, "waiting for the control store");
                                waiting = true;
                            }
                            tokio::select! {
                                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                _ = &mut shutdown => return Ok(()),
                            }
                        }
                        Err(e) => {
                            return Err(RunError::Config(format!("{}: {e}", CONTROL_STORE.flag)))
                        }
                    }
                };
                tracing::info!(server = pg.server(), "control store: PostgreSQL");
                Some(Arc::new(pg))
            }
            (ControlStoreKind::Raft, None) => {
                return Err(RunError::Config(
                    "the control store is raft but raft is not running".into(),
                ))
            }
        };
    // The controller: the control store's configuration into the configuration store (an
    // external etcd, or this node's own store through its etcd endpoint).
    if let (true, Some(control)) = (topology.runs_controller(), &control) {
        let settings = match &external_etcd {
            Some(settings) => settings.clone(),
            None => EtcdSettings {
                endpoints: config.etcd_url().into_iter().collect(),
                user: config
                    .etcd_auth
                    .as_ref()
                    .map(|(u, p)| (u.clone(), String::from_utf8_lossy(&p.0).into_owned())),
            },
        };
        let mut controller = ControllerConfig::new(
            &config.namespace,
            &hermes_gateway::registry::instance_id(config.id),
        );
        controller.reconcile_every = topology.controller.reconcile_every;
        controller.lease_ttl = topology.controller.lease_ttl;
        controller.metrics =
            hermes_compat::controller::ControllerMetrics::register(&registry, &config.namespace)?;
        helpers.spawn(crate::external::controller(
            settings,
            control.clone(),
            controller,
            stop_rx.clone(),
        ));
    }
    // OIDC is configured only where the API is served (the configuration refuses it elsewhere).
    let oidc = match &config.api.auth {
        crate::config::AuthMode::Builtin => None,
        crate::config::AuthMode::Oidc(settings) => Some(Arc::new(
            hermes_api::oidc::Provider::new(settings.clone())
                .map_err(|e| RunError::Config(format!("--oidc-issuer: {e}")))?,
        )),
    };
    // One guard for every sign-in on this node: the admin API's and the etcd endpoint's
    // users share the hashing budget and the lockouts.
    let scheme = control
        .as_ref()
        .map(|c| c.password_scheme())
        .unwrap_or_default();
    let guard = Arc::new(
        tokio::task::spawn_blocking(move || hermes_api::login_guard::LoginGuard::new(scheme))
            .await
            .map_err(|e| RunError::Task(e.to_string()))?
            .map_err(|e| RunError::Config(e.to_string()))?,
    );
    // A node without a control store (a gateway, say) still answers the admin listener's
    // operator endpoints, whose callers authenticate against... nothing: they are refused
    // unless anonymous setup allows them, which an empty store does not decide here.
    let api_store: Arc<dyn hermes_control::store::ControlStore> = match &control {
        Some(c) => c.clone(),
        None => Arc::new(hermes_control::no_store::NoControlStore),
    };
    // A write is answered once this node's gateway serves it only where the two share the
    // raft store's revisions.
    let same_store = topology.control_store == ControlStoreKind::Raft
        && topology.config_store == ConfigStoreKind::Raft;
    let admin_state = AdminState {
        id: config.id,
        namespace: config.namespace.clone(),
        node: node.clone(),
        gateway: gateway.clone(),
        proxies: topology.roles.gateway,
        serves_api: topology.roles.server,
        registry: registry.clone(),
        draining: draining.clone(),
        api: hermes_api::ApiState {
            shared_catch_up: Arc::new(hermes_api::shared_catch_up::SharedCatchUp::for_store(
                api_store.clone(),
            )),
            store: api_store,
            oidc: oidc.clone(),
            cors_origins: config.api.cors_origins.clone(),
            guard: guard.clone(),
            anonymous_setup: config.initial_admin.is_none()
                || !matches!(config.api.auth, crate::config::AuthMode::Builtin),
            hmac_max_skew: config.api.hmac_max_skew_secs,
            max_document_bytes: config.api.max_document_bytes,
            hmac_seen: Arc::new(hermes_raft::replay::ReplayCache::new(
                config.api.hmac_max_skew_secs,
                1 << 20,
            )),
            gateway: (same_store && topology.roles.gateway)
                .then(|| (gateway.clone(), config.namespace.clone())),
            raft: node.clone(),
        },
    };
    servers.spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        budget.admin,
        stopped(stop_rx.clone()),
    ));
    if let (Some(listener), Some(node)) = (etcd_listener, &node) {
        let auth = config.etcd_auth.as_ref().map(|(user, password)| {
            hermes_compat::etcd::auth::EtcdAuth::new(user.clone(), password.0.clone())
        });
        let mut api =
            hermes_compat::etcd::Api::new(node.clone(), auth, guard.clone(), stop_rx.clone())
                .with_max_watchers(config.etcd_max_watchers);
        // Where the control plane lives in this store, a write to a configuration key through
        // the endpoint is one of its changes (recorded, checked); where the control store is
        // elsewhere this store only holds configuration a controller writes.
        if topology.control_store == ControlStoreKind::Raft {
            // Whatever this node's roles: other members may serve the control plane on this
            // store, whose configuration keys are then theirs.
            let store: Arc<dyn hermes_control::store::ControlStore> = match &control {
                Some(control) => control.clone(),
                None => Arc::new(hermes_control::replicated::Replicated::new(
                    node.clone(),
                    config.api.resource_history,
                    sealer.clone(),
                )),
            };
            api = api.with_config_writes(store, config.api.max_document_bytes);
        }
        servers.spawn(hermes_compat::etcd::serve(
            listener,
            api,
            budget.etcd,
            stopped(stop_rx.clone()),
        ));
    }

    // 5. Bootstrap a new cluster, or join an existing one (when this node runs raft).
    if let Some(node) = &node {
        if let Some(url) = &config.join {
            if node.is_initialized().await {
                tracing::info!("already a cluster member; ignoring --join");
            } else {
                helpers.spawn(join_cluster(node.clone(), url.clone(), stop_rx.clone()));
            }
        } else {
            let voters: BTreeMap<u64, Member> = match &config.initial_cluster {
                Some(members) => members
                    .iter()
                    .map(|(id, url)| {
                        (
                            *id,
                            Member {
                                peer_url: url.clone(),
                            },
                        )
                    })
                    .collect(),
                None => BTreeMap::from([(
                    config.id,
                    Member {
                        peer_url: config.advertise_peer.clone(),
                    },
                )]),
            };
            if node.bootstrap(voters.clone()).await? {
                tracing::info!(voters = ?voters.keys().collect::<Vec<_>>(), "initialized a new cluster");
            }
        }
    }
    helpers.spawn(announce_ready(admin_state, stop_rx.clone()));
    if let Some(provider) = oidc {
        // Discover the provider now, so a misconfiguration shows in the log at start.
        helpers.spawn(hermes_api::oidc::warm_up(provider, stop_rx.clone()));
    }
    // With OIDC, admins come from --oidc-initial-admin-users; a built-in admin could not
    // sign in.
    let builtin = matches!(config.api.auth, crate::config::AuthMode::Builtin);
    if let (Some(email), Some(control), true) = (
        config.initial_admin.clone().filter(|_| builtin),
        control,
        topology.roles.server,
    ) {
        helpers.spawn(hermes_api::bootstrap::run(
            control,
            config.data_dir.clone(),
            email,
            stop_rx.clone(),
        ));
    }

    // 6. Run until told to stop, until a server fails, or until the store cannot write: a
    //    member that can no longer write must not go on looking healthy (etcd's choice).
    let failure = tokio::select! {
        _ = &mut shutdown => None,
        cause = async {
            match &fatal {
                Some(fatal) => fatal.raised().await,
                None => std::future::pending().await,
            }
        } => Some(RunError::Storage(cause)),
        Some(result) = servers.join_next() => Some(RunError::Task(match result {
            Ok(Ok(())) => "a listener stopped unexpectedly".to_string(),
            Ok(Err(e)) => format!("a listener failed: {e}"),
            Err(e) => format!("a listener task failed: {e}"),
        })),
    };

    // 7. Drain: hand leadership over (when leading a cluster), readiness off, stop
    //    accepting, finish in-flight requests within the grace period, stop raft, make the
    //    store durable. Handing over first lets the writes in flight here finish on the new
    //    leader instead of waiting out an election.
    let started = Instant::now();
    // One grace period for the hand-off and the drain together: a supervisor whose stop
    // timeout matches `--shutdown-grace-ms` must not kill the node mid-drain.
    let grace_ends = tokio::time::Instant::now() + config.shutdown_grace;
    if let (None, Some(node)) = (&failure, &node) {
        match tokio::time::timeout_at(grace_ends, node.hand_off_leadership()).await {
            Ok(Some(to)) => tracing::info!(to, "handed leadership over before stopping"),
            Ok(None) => {}
            Err(_) => tracing::warn!("handing leadership over took the whole grace period"),
        }
    }
    draining.store(true, Ordering::Release);
    tracing::info!(
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "shutting down: draining"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout_at(grace_ends, async {
        while servers.join_next().await.is_some() {}
        while helpers.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    servers.abort_all();
    helpers.abort_all();
    if let (Some(node), Some(store)) = (&node, &store) {
        node.shutdown().await;
        let persisting = store.clone();
        let synced = tokio::task::spawn_blocking(move || persisting.persist()).await;
        if !matches!(synced, Ok(Ok(()))) {
            tracing::error!(
                "final store sync failed; the raft log still holds every acknowledged write"
            );
        }
    }
    tracing::info!(
        drained_in_time = drained,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "stopped"
    );
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Logs once when the node first becomes ready, with its raft role (if it runs raft).
async fn announce_ready(state: AdminState, mut stop: watch::Receiver<bool>) {
    loop {
        if admin::health::checks(&state).iter().all(|(_, r)| r.is_ok()) {
            match &state.node {
                Some(node) => {
                    let info = node.info();
                    tracing::info!(role = %info.role, leader = ?info.leader, term = info.term, "ready");
                }
                None => tracing::info!("ready"),
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
        }
    }
}
