//! The controller role (contract §6): copies one namespace's configuration from the control
//! store (PostgreSQL, or the replicated store) into an external etcd, where gateways read it.
//!
//! Controllers elect one leader with etcd's election, under the original's key layout
//! (`/hermes/election/<lease hex>` = the controller's id, the layout of Go's
//! `concurrency.Election`), so original controllers and Hermes nodes can campaign together and
//! one of them leads. The leader runs `sync` (reconcile, then the change feed, then a
//! reconcile every interval) and `report` (heartbeat, instances); a controller that loses
//! its lease stops all of that before another can win, and campaigns again. Every write it
//! makes to etcd holds only while its election key does (a fence), so one that lost its
//! leadership without noticing cannot overwrite its successor's writes; and the leader
//! watches that key, so it steps down as soon as the key goes even with nothing to write.
//!
//! The control store's feed is followed with its revision wait, so a change reaches etcd as
//! soon as the store sees it, not at the next poll.

mod key_watch;
mod metrics;
mod report;
mod session;
mod sync;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ResignOptions};
use tokio::sync::watch;

use hermes_control::model::now_rfc3339;
use hermes_control::store::{ControlError, ControlStore};
pub use metrics::ControllerMetrics;
use metrics::Stage;
use session::Session;
pub(crate) use sync::same_doc;
pub use sync::Repaired;

/// Pause between campaigns after a lost or failed term (the original's 3 s).
const RECAMPAIGN: Duration = Duration::from_secs(3);

/// How a controller runs; the defaults are the original's.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The namespace whose configuration is copied.
    pub namespace: String,
    /// This controller's name in the election and in its heartbeat (the original: hostname).
    pub id: String,
    /// A full reconcile every this often (60 s).
    pub reconcile_every: Duration,
    /// The election lease's TTL (15 s): how long a dead leader keeps the others waiting.
    pub lease_ttl: Duration,
    /// Heartbeats every this often (10 s).
    pub heartbeat_every: Duration,
    /// Where its `hermes_controller_*` figures go (by default, nowhere).
    pub metrics: ControllerMetrics,
}

impl ControllerConfig {
    pub fn new(namespace: &str, id: &str) -> ControllerConfig {
        ControllerConfig {
            namespace: namespace.to_string(),
            id: id.to_string(),
            reconcile_every: Duration::from_secs(60),
            lease_ttl: Duration::from_secs(15),
            heartbeat_every: Duration::from_secs(10),
            metrics: ControllerMetrics::unregistered(),
        }
    }
}

/// The election's name: the original's prefix for `default`, the namespace's own root for
/// others (as every other key of a namespace).
pub fn election_prefix(namespace: &str) -> String {
    let meta = hermes_storage::keys::meta_revision(namespace);
    let root = meta.trim_end_matches("meta/config_revision");
    format!("{root}election")
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("control store: {0}")]
    Control(#[from] ControlError),
    #[error("a document that cannot be written: {0}")]
    Document(String),
    /// The election key this controller won is gone: another controller may lead.
    #[error("this controller no longer leads")]
    NotLeader,
}

pub struct Controller {
    control: Arc<dyn ControlStore>,
    etcd: Client,
    config: ControllerConfig,
    started_at: String,
    leading: watch::Sender<bool>,
    /// The feed revision copied into etcd so far.
    synced: Arc<AtomicI64>,
}

impl Controller {
    pub fn new(
        control: Arc<dyn ControlStore>,
        etcd: Client,
        config: ControllerConfig,
    ) -> Arc<Controller> {
        Arc::new(Controller {
            control,
            etcd,
            config,
            started_at: now_rfc3339(),
            leading: watch::channel(false).0,
            synced: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Whether this controller leads now (and changes as it does).
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// The control-store revision copied into etcd so far.
    pub fn synced_revision(&self) -> i64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Campaigns, leads while elected, and campaigns again after losing, until `stop`; then
    /// resigns, so that another controller takes over at once.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let name = election_prefix(&self.config.namespace);
        loop {
            if *stop.borrow() {
                return;
            }
            let session = tokio::select! {
                opened = Session::open(&self.etcd, self.config.lease_ttl) => opened,
                _ = stopped(&mut stop) => return,
            };
            let session = match session {
                Ok(s) => s,
                Err(e) => {
                    self.config.metrics.failed(Stage::Campaign);
                    tracing::warn!(error = %e, "controller cannot reach etcd; retrying");
                    if pause(&mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            let mut etcd = self.etcd.clone();
            let campaign = etcd.campaign(name.as_str(), self.config.id.as_str(), session.lease);
            let won = tokio::select! {
                won = campaign => won,
                _ = session.lost() => {
                    session.close(&self.etcd).await;
                    continue;
                }
                // Dropping the campaign cancels it; etcd then removes its key.
                _ = stopped(&mut stop) => {
                    session.close(&self.etcd).await;
                    return;
                }
            };
            let leader = match won.map(|mut r| r.take_leader()) {
                Ok(Some(leader)) => leader,
                Ok(None) => {
                    self.config.metrics.failed(Stage::Campaign);
                    tracing::warn!("etcd answered a campaign without a leader key; retrying");
                    session.close(&self.etcd).await;
                    if pause(&mut stop).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    self.config.metrics.failed(Stage::Campaign);
                    tracing::warn!(error = %e, "campaign failed; retrying");
                    session.close(&self.etcd).await;
                    if pause(&mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            tracing::info!(
                id = %self.config.id,
                namespace = %self.config.namespace,
                key = %String::from_utf8_lossy(leader.key()),
                "controller elected leader"
            );
            // The metrics first: whoever waits on `leading` then sees them too.
            let term = self.config.metrics.term();
            self.leading.send_replace(true);
            let fence = sync::Fence::new(leader.key(), leader.rev());
            let stopping = tokio::select! {
                _ = self.sync(self.synced.clone(), fence) => false,
                _ = self.heartbeat(self.synced.clone()) => false,
                _ = self.report_instances() => false,
                _ = session.lost() => false,
                _ = key_watch::election_key_gone(&self.etcd, leader.key(), leader.rev()) => false,
                _ = stopped(&mut stop) => true,
            };
            drop(term);
            self.leading.send_replace(false);
            if stopping {
                self.farewell(self.synced_revision()).await;
                let mut etcd = self.etcd.clone();
                let resign = etcd.resign(Some(ResignOptions::new().with_leader(leader)));
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(3), resign).await {
                    tracing::debug!(error = %e, "resign failed; revoking the lease instead");
                }
                session.close(&self.etcd).await;
                tracing::info!(id = %self.config.id, "controller stopped leading");
                return;
            }
            tracing::warn!(id = %self.config.id, "controller lost its leadership; campaigning again");
            session.close(&self.etcd).await;
            if pause(&mut stop).await {
                return;
            }
        }
    }
}

/// Resolves when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits [`RECAMPAIGN`]; true if `stop` came first.
async fn pause(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(RECAMPAIGN) => false,
        _ = stopped(stop) => true,
    }
}

#[cfg(test)]
mod tests;
