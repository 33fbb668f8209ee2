//! The node's background drivers, all owned by the [`RaftNode`] and stopped by its shutdown:
//! lease expiry and automatic compaction, both acting only while this node leads.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use openraft::ServerState;

use hermes_storage::mvcc::request::Command;
use hermes_storage::KvError;

use crate::error::WriteError;
use crate::node::RaftNode;

const LEASE_TICK: Duration = Duration::from_millis(250);
/// At most this many expired leases are revoked per tick (etcd limits revocations too).
const MAX_REVOKES_PER_TICK: usize = 250;
const COMPACTION_CHECK: Duration = Duration::from_secs(5);

pub(crate) fn spawn_all(node: &Arc<RaftNode>) {
    let weak = Arc::downgrade(node);
    node.spawn(every(node, LEASE_TICK, {
        let weak = weak.clone();
        move || expire_leases(weak.clone())
    }));
    node.spawn(every(node, COMPACTION_CHECK, {
        let weak = weak.clone();
        move || auto_compact(weak.clone())
    }));
    node.spawn(every(node, DB_SIZE_EVERY, move || measure(weak.clone())));
}

/// How often the state machine's size is measured (for the quota and the metrics).
const DB_SIZE_EVERY: Duration = Duration::from_secs(1);

async fn measure(node: Weak<RaftNode>) {
    let Some(node) = node.upgrade() else { return };
    let before = node.over_quota();
    let measuring = node.clone();
    let _ = tokio::task::spawn_blocking(move || measuring.measure_db_size()).await;
    let after = node.over_quota();
    if after != before {
        if after {
            tracing::error!(
                size = node.db_size(),
                quota = node.config.quota_backend_bytes,
                "the store is over its quota: writes that grow it are refused (NOSPACE) until \
                 deletes and compaction free space, or the quota is raised"
            );
        } else {
            tracing::info!(size = node.db_size(), "the store is back under its quota");
        }
    }
}

/// Runs `step` every `period` until the node shuts down.
fn every<F, Fut>(
    node: &Arc<RaftNode>,
    period: Duration,
    mut step: F,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut shutdown = node.shutdown_signal();
    async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => step().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn expire_leases(node: Weak<RaftNode>) {
    let Some(node) = node.upgrade() else { return };
    let leader_term = {
        let m = node.raft.metrics();
        let m = m.borrow();
        (m.state == ServerState::Leader).then_some(m.current_term)
    };
    let expired = node
        .leases
        .tick(leader_term, node.store.leases(), Instant::now());
    let deadline = Instant::now() + node.config.request_timeout;
    let ids: Vec<i64> = expired.into_iter().take(MAX_REVOKES_PER_TICK).collect();
    // Submitted together, the revocations share proposals.
    let results = futures_util::future::join_all(
        ids.iter()
            .map(|id| node.submit(Command::LeaseRevoke { id: *id }, true, deadline)),
    )
    .await;
    for (id, result) in ids.into_iter().zip(results) {
        // Revoked now, or already gone: either way the lease is no longer ours to track.
        let outcome = match result {
            Ok(_) => {
                tracing::debug!(lease = id, "lease expired and was revoked");
                node.leases.forget(id);
                "revoked"
            }
            // Leadership moved or raft is stopping: the next leader takes over.
            Err(_) => "failed",
        };
        if let Some(exporter) = &node.exporter {
            exporter.lease_revokes.with_label_values(&[outcome]).inc();
        }
    }
}

async fn auto_compact(node: Weak<RaftNode>) {
    let Some(node) = node.upgrade() else { return };
    let retention = node.config.history_retention;
    if retention <= 0 || !node.is_leader() {
        return;
    }
    let revision = node.store.revision();
    let floor = node.store.compact_revision();
    // Compact in steps of a tenth of the retention, not on every revision.
    if revision - floor <= retention + retention / 10 {
        return;
    }
    let target = revision - retention;
    match node.write(Command::Compact { revision: target }).await {
        Ok(_) => tracing::info!(revision = target, retention, "compacted history"),
        Err(WriteError::Rejected(KvError::Compacted { .. })) => {}
        Err(e) => tracing::warn!(error = %e, revision = target, "automatic compaction failed"),
    }
}
