//! `--join`: ask an existing member to add this node. The member's leader adds it as a learner,
//! waits until it has caught up, and promotes it to voter; this node keeps asking (the call is
//! idempotent) until that has happened or the node stops.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;

use hermes_raft::RaftNode;

use crate::admin_client::AdminClient;

pub async fn join_cluster(node: Arc<RaftNode>, url: String, mut stop: watch::Receiver<bool>) {
    let client = AdminClient::new(&url, node.peers().auth().clone());
    let body = json!({"id": node.id(), "peer_url": node.config().advertise_peer_url});
    let mut delay = Duration::from_millis(200);
    loop {
        tracing::info!(%url, "asking the cluster to add this node");
        match client
            .post("/api/v1/cluster/join", &body, Duration::from_secs(120))
            .await
        {
            Ok(_) => {
                tracing::info!("joined the cluster as a voter");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "join attempt failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
