//! What the leading controller tells the control store (contract §6.4, §6.5): its heartbeat,
//! and the gateway instances registered in etcd, reported again on every change there.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, WatchOptions};
use serde::Deserialize;

use super::Controller;
use hermes_control::model::{now_rfc3339, ControllerStatus, InstanceStatus};
use hermes_storage::keys;

/// Pause before watching the instances again after the watch broke (the original's 3 s).
const REWATCH: Duration = Duration::from_secs(3);

/// The fields of a gateway's registration (§2.5) that are reported; others are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Registration {
    id: String,
    status: String,
    started_at: String,
    registered_at: String,
    last_keepalive_at: String,
    config_revision: i64,
}

impl Controller {
    fn status(&self, status: &str, revision: i64) -> ControllerStatus {
        let now = now_rfc3339();
        ControllerStatus {
            id: self.config.id.clone(),
            status: status.to_string(),
            is_leader: status == "running",
            started_at: self.started_at.clone(),
            last_heartbeat_at: now.clone(),
            config_revision: revision,
            updated_at: now,
        }
    }

    /// One heartbeat now, then every interval; returns only when dropped.
    pub(super) async fn heartbeat(&self, revision: Arc<AtomicI64>) {
        let mut every = tokio::time::interval(self.config.heartbeat_every);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let status = self.status("running", revision.load(Ordering::Acquire));
            if let Err(e) = self
                .control
                .put_controller(&self.config.namespace, status)
                .await
            {
                self.config.metrics.failed(super::Stage::Report);
                tracing::warn!(error = %e, "controller heartbeat not recorded");
            }
        }
    }

    /// The last heartbeat, when the controller stops leading for good.
    pub(super) async fn farewell(&self, revision: i64) {
        let status = self.status("shutting_down", revision);
        let put = self.control.put_controller(&self.config.namespace, status);
        match tokio::time::timeout(Duration::from_secs(3), put).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "final controller heartbeat not recorded"),
            Err(_) => tracing::warn!("final controller heartbeat timed out"),
        }
    }

    /// Reports the registered instances, then again on every change under their prefix;
    /// returns only when dropped.
    pub(super) async fn report_instances(&self) {
        let prefix = keys::registered_instances(&self.config.namespace);
        loop {
            let mut etcd = self.etcd.clone();
            // Watch first, then list: a change between the two is reported, not lost.
            let watched = etcd
                .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
                .await;
            match watched {
                Ok(mut stream) => {
                    self.report(&prefix).await;
                    loop {
                        match stream.message().await {
                            // etcd cancels a watch it will not serve (an expired sign-in).
                            Ok(Some(resp)) if resp.canceled() => {
                                tracing::debug!(
                                    reason = resp.cancel_reason(),
                                    "instance watch cancelled"
                                );
                                crate::external::refresh_if_auth(&self.etcd, resp.cancel_reason())
                                    .await;
                                break;
                            }
                            Ok(Some(resp)) if !resp.events().is_empty() => {
                                self.report(&prefix).await
                            }
                            Ok(Some(_)) => {}
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(error = %e, "instance watch broke");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    self.config.metrics.failed(super::Stage::Report);
                    tracing::debug!(error = %e, "instance watch not opened")
                }
            }
            tokio::time::sleep(REWATCH).await;
        }
    }

    async fn report(&self, prefix: &str) {
        let mut etcd = self.etcd.clone();
        let listed = match etcd
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
        {
            Ok(listed) => listed,
            Err(e) => {
                self.config.metrics.failed(super::Stage::Report);
                tracing::debug!(error = %e, "instances not listed");
                return;
            }
        };
        let now = now_rfc3339();
        let instances: Vec<InstanceStatus> = listed
            .kvs()
            .iter()
            .map(|kv| {
                let r: Registration = serde_json::from_slice(kv.value()).unwrap_or_default();
                // An undecodable value, or one without an id, is named by its key (§6.5).
                let id = if r.id.is_empty() {
                    String::from_utf8_lossy(kv.key())
                        .trim_start_matches(prefix)
                        .to_string()
                } else {
                    r.id
                };
                InstanceStatus {
                    id,
                    status: r.status,
                    started_at: r.started_at,
                    registered_at: r.registered_at,
                    last_keepalive_at: r.last_keepalive_at,
                    config_revision: r.config_revision,
                    last_seen_at: String::new(),
                    updated_at: now.clone(),
                }
            })
            .collect();
        if let Err(e) = self
            .control
            .put_instances(&self.config.namespace, instances)
            .await
        {
            self.config.metrics.failed(super::Stage::Report);
            tracing::warn!(error = %e, "gateway instances not reported");
        }
    }
}
