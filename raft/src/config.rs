//! Settings of a node's raft participation.

use std::time::Duration;

use hermes_storage::types::NodeId;

/// etcd's default `--quota-backend-bytes`.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: NodeId,
    /// URL other nodes use to reach this node's peer listener.
    pub advertise_peer_url: String,
    /// URL of this node's admin API, reported to other nodes.
    pub admin_url: String,
    /// URL of this node's etcd endpoint, if enabled.
    pub etcd_url: Option<String>,
    pub cluster_secret: Option<Vec<u8>>,
    /// Leader heartbeat period. Default 100 ms.
    pub heartbeat_interval: Duration,
    /// Followers start an election after a random timeout in this range. Default 400–800 ms.
    ///
    /// openraft 0.9 makes followers refuse votes for as long as the upper bound since they last
    /// heard from the leader (its lease), so the first election after a leader dies usually
    /// fails and the second succeeds: losing a leader costs up to two upper bounds of write
    /// unavailability. 800 ms keeps that under two seconds with 8 missed heartbeats of slack.
    pub election_timeout: (Duration, Duration),
    /// How long a client request may wait for a leader, forwarding and commit. Default 5 s.
    pub request_timeout: Duration,
    /// Revisions of history kept by automatic compaction; 0 disables it. Default 10 000.
    pub history_retention: i64,
    /// Log entries between snapshots. Default 100 000 (etcd's `--snapshot-count`).
    pub snapshot_every: u64,
    /// Bytes the state machine may take on disk before writes that grow it are refused
    /// (etcd's `--quota-backend-bytes`); 0: no quota. Default 2 GiB.
    pub quota_backend_bytes: u64,
}

impl RaftConfig {
    pub fn new(id: NodeId, advertise_peer_url: String, admin_url: String) -> Self {
        RaftConfig {
            id,
            advertise_peer_url,
            admin_url,
            etcd_url: None,
            cluster_secret: None,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
            request_timeout: Duration::from_secs(5),
            history_retention: 10_000,
            snapshot_every: 100_000,
            quota_backend_bytes: DEFAULT_QUOTA_BACKEND_BYTES,
        }
    }

    /// etcd's minimum lease TTL: 1.5 × the longest election timeout, rounded up to seconds.
    pub fn min_lease_ttl(&self) -> i64 {
        let ms = self.election_timeout.1.as_millis() as i64 * 3 / 2;
        (ms + 999) / 1000
    }
}
