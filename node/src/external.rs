//! The roles that talk to an external etcd, as tasks the node owns: each connects (again and
//! again while etcd cannot be reached, so a node may start before its etcd), then runs until
//! the node stops.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use hermes_compat::controller::{Controller, ControllerConfig};
use hermes_compat::external::registry::{count_instances, EtcdRegistrar};
use hermes_compat::external::source::EtcdSource;
use hermes_compat::external::{connect, EtcdSettings};
use hermes_control::store::ControlStore;
use hermes_gateway::config::source::Prefixes;
use hermes_gateway::Gateway;

/// Pause between attempts to connect.
const RECONNECT: Duration = Duration::from_secs(1);

/// A client of `settings`, or `None` if the node stops first.
async fn connected(
    settings: &EtcdSettings,
    stop: &mut watch::Receiver<bool>,
    failed: &(dyn Fn() + Send + Sync),
) -> Option<etcd_client::Client> {
    let mut logged = false;
    loop {
        match connect(settings).await {
            Ok(client) => return Some(client),
            Err(e) => {
                failed();
                if logged {
                    tracing::debug!(error = %e, "cannot reach etcd yet");
                } else {
                    tracing::warn!(endpoints = ?settings.endpoints, error = %e, "cannot reach etcd yet; retrying");
                    logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT) => {}
            _ = stop.wait_for(|s| *s) => return None,
        }
    }
}

/// How the gateway registers itself in etcd.
pub struct Registration {
    pub enabled: bool,
    /// `/hermes/instances/` (the namespace's).
    pub prefix: String,
    pub id: String,
    pub meta_key: String,
}

/// The gateway role on an external etcd: follows the configuration, registers the instance
/// on a lease, and counts the instances that share the rate limits.
pub async fn gateway_on_etcd(
    settings: EtcdSettings,
    gateway: Arc<Gateway>,
    prefixes: Prefixes,
    registration: Registration,
    mut stop: watch::Receiver<bool>,
) {
    let Some(client) = connected(&settings, &mut stop, &|| {}).await else {
        return;
    };
    let mut tasks = tokio::task::JoinSet::new();
    if registration.enabled {
        tasks.spawn(hermes_gateway::registry::keep_registered(
            EtcdRegistrar {
                client: client.clone(),
                meta_key: registration.meta_key,
            },
            registration.prefix.clone(),
            registration.id,
            stop.clone(),
        ));
    }
    tasks.spawn(count_instances(
        client.clone(),
        registration.prefix,
        gateway.clone(),
        stop.clone(),
    ));
    tasks.spawn(
        gateway
            .clone()
            .follow(EtcdSource::new(client, prefixes.clone()), prefixes),
    );
    // Each task ends at `stop`; waiting for them keeps the deregistration's revoke in time.
    while tasks.join_next().await.is_some() {}
}

/// The controller role: copies `control` into the etcd `settings` names until the node stops.
pub async fn controller(
    settings: EtcdSettings,
    control: Arc<dyn ControlStore>,
    config: ControllerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = config.metrics.clone();
    let Some(client) = connected(&settings, &mut stop, &|| metrics.connect_failed()).await else {
        return;
    };
    Controller::new(control, client, config).run(stop).await;
}
