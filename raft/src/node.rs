//! [`RaftNode`]: one member of the replicated store. It starts openraft on the local storage,
//! and gives the rest of the node writes that work on any member (followers forward to the
//! leader), linearizable read barriers (read-index on the leader), and the response header
//! fields etcd clients expect.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::{Raft, ServerState};
use tokio::sync::{mpsc, oneshot, watch};

use crate::batcher::Pending;
use tokio::task::JoinSet;

use hermes_storage::fatal::Fatal;
use hermes_storage::log_store::LogStore;
use hermes_storage::mvcc::request::Command;
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::state_machine::StateMachine;
use hermes_storage::types::{Member, NodeId, TypeConfig};
use hermes_storage::KvStore;

use crate::config::RaftConfig;
use crate::error::{ReadError, WriteError};
use crate::lease_keeper::LeaseKeeper;
use crate::metrics::RaftMetricsExporter;
use crate::network::NetworkFactory;
use crate::peer_auth::PeerAuth;
use crate::peer_client::{PeerClient, PeerError};
use crate::peer_proto::{ForwardError, PATH_READ_INDEX};

/// Pause between attempts while the leader is unknown or unreachable.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The fields of etcd's `ResponseHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub cluster_id: u64,
    pub member_id: u64,
    pub revision: i64,
    pub raft_term: u64,
}

pub struct RaftNode {
    pub(crate) config: RaftConfig,
    pub(crate) raft: Raft<TypeConfig>,
    pub(crate) store: Arc<KvStore>,
    pub(crate) log: LogStore,
    pub(crate) peers: PeerClient,
    pub(crate) leases: LeaseKeeper,
    pub(crate) exporter: Option<RaftMetricsExporter>,
    pub(crate) batcher: mpsc::Sender<Pending>,
    /// The state machine's size on disk, refreshed every second (for the quota).
    db_size: std::sync::atomic::AtomicU64,
    /// True while this leader hands its leadership over ([`crate::transfer`]).
    pub(crate) transferring: watch::Sender<bool>,
    pub(crate) transfer_lock: tokio::sync::Mutex<()>,
    shutdown_tx: watch::Sender<bool>,
    tasks: std::sync::Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.config.id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid raft configuration: {0}")]
    Config(String),
    #[error("starting raft: {0}")]
    Raft(String),
}

impl RaftNode {
    /// Starts raft on the given storage, and the background drivers (lease expiry, automatic
    /// compaction, metrics). Does not bootstrap: see [`RaftNode::bootstrap`].
    pub async fn start(
        config: RaftConfig,
        log: LogStore,
        sm: StateMachine,
        fatal: Fatal,
        metrics: Option<&prometheus::Registry>,
    ) -> Result<Arc<RaftNode>, StartError> {
        let peers = PeerClient::new(PeerAuth::new(config.cluster_secret.clone()));
        Self::start_with_peers(config, log, sm, fatal, metrics, peers).await
    }

    /// [`RaftNode::start`] with another way to reach the peers than HTTP (the in-process
    /// cluster tests' router).
    pub async fn start_with_transport(
        config: RaftConfig,
        log: LogStore,
        sm: StateMachine,
        fatal: Fatal,
        metrics: Option<&prometheus::Registry>,
        transport: Arc<dyn crate::transport::Transport>,
    ) -> Result<Arc<RaftNode>, StartError> {
        let auth = PeerAuth::new(config.cluster_secret.clone());
        let peers = PeerClient::with_transport(transport, auth);
        Self::start_with_peers(config, log, sm, fatal, metrics, peers).await
    }

    async fn start_with_peers(
        config: RaftConfig,
        log: LogStore,
        sm: StateMachine,
        fatal: Fatal,
        metrics: Option<&prometheus::Registry>,
        peers: PeerClient,
    ) -> Result<Arc<RaftNode>, StartError> {
        let raft_config = openraft::Config {
            cluster_name: "hermes".into(),
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            election_timeout_min: config.election_timeout.0.as_millis() as u64,
            election_timeout_max: config.election_timeout.1.as_millis() as u64,
            // Keep each append request well under the peer listener's body limit.
            max_payload_entries: 64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Config(e.to_string()))?;
        let network = NetworkFactory {
            id: config.id,
            client: peers.clone(),
        };
        let store = sm.store().clone();
        let raft = Raft::new(config.id, Arc::new(raft_config), network, log.clone(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (shutdown_tx, _) = watch::channel(false);
        let (batch_tx, batch_rx) = mpsc::channel(crate::batcher::QUEUE);
        let exporter = metrics
            .map(RaftMetricsExporter::register)
            .transpose()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let node = Arc::new(RaftNode {
            config,
            raft,
            store,
            log,
            peers,
            leases: LeaseKeeper::default(),
            exporter,
            batcher: batch_tx,
            db_size: std::sync::atomic::AtomicU64::new(0),
            transferring: watch::channel(false).0,
            transfer_lock: tokio::sync::Mutex::new(()),
            shutdown_tx,
            tasks: std::sync::Mutex::new(JoinSet::new()),
        });
        node.spawn(crate::batcher::run(
            Arc::downgrade(&node),
            batch_rx,
            node.shutdown_signal(),
        ));
        crate::background::spawn_all(&node);
        node.spawn(watch_running_state(
            node.raft.metrics(),
            fatal,
            node.shutdown_signal(),
        ));
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<KvStore> {
        &self.store
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    pub fn peers(&self) -> &PeerClient {
        &self.peers
    }

    /// Brings the `hermes_raft_*` and `hermes_store_*` gauges up to date; call before a scrape.
    pub fn refresh_metrics(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.refresh(self);
        }
    }

    pub fn commit_index(&self) -> u64 {
        self.log.committed().map_or(0, |l| l.index)
    }

    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(task);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Initializes a new cluster with these voters, unless this node already has state.
    pub async fn bootstrap(
        &self,
        voters: std::collections::BTreeMap<NodeId, Member>,
    ) -> Result<bool, StartError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if initialized {
            return Ok(false);
        }
        match self.raft.initialize(voters).await {
            Ok(()) => Ok(true),
            // Another member's initialization reached us first: same cluster, nothing to do.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(StartError::Raft(e.to_string())),
        }
    }

    /// Whether this node has any raft state (it is or was part of a cluster).
    pub async fn is_initialized(&self) -> bool {
        self.raft.is_initialized().await.unwrap_or(false)
    }

    /// The etcd response header for a response at `revision`.
    pub fn header(&self, revision: i64) -> Header {
        Header {
            cluster_id: self.store.cluster_id(),
            member_id: self.config.id,
            revision,
            raft_term: self.raft.metrics().borrow().current_term,
        }
    }

    /// Whether the current membership lists this node (as voter or learner).
    pub fn is_member(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&self.config.id)
            .is_some()
    }

    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.config.id)
    }

    pub(crate) fn peer_url_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.peer_url.clone())
    }

    /// Waits (until `deadline`) for a leader to be known.
    pub(crate) async fn wait_leader(&self, deadline: Instant) -> Result<NodeId, Duration> {
        if let Some(leader) = self.current_leader() {
            return Ok(leader);
        }
        let waited = self.config.request_timeout;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let metrics = self
            .raft
            .wait(Some(remaining))
            .metrics(|m| m.current_leader.is_some(), "a leader is known")
            .await
            .map_err(|_| waited)?;
        metrics.current_leader.ok_or(waited)
    }

    /// The state machine's size on disk, as last measured.
    pub fn db_size(&self) -> u64 {
        self.db_size.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Measures the state machine's size on disk. Blocking (reads file metadata).
    pub(crate) fn measure_db_size(&self) {
        let size = self.store.engine().size_on_disk();
        self.db_size
            .store(size, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the store is over its quota (etcd's NOSPACE alarm): growing writes are refused
    /// until deletes and compaction bring it back under.
    pub fn over_quota(&self) -> bool {
        let quota = self.config.quota_backend_bytes;
        quota > 0 && self.db_size() > quota
    }

    /// Applies a write through raft from any member, returning the state machine's answer.
    pub async fn write(&self, cmd: Command) -> Result<CommandResponse, WriteError> {
        if cmd.grows() && self.over_quota() {
            return Err(WriteError::NoSpace {
                size: self.db_size(),
                quota: self.config.quota_backend_bytes,
            });
        }
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            // Waiting here turns "no leader" into a prompt NoLeader instead of retries.
            self.wait_leader(deadline)
                .await
                .map_err(WriteError::NoLeader)?;
            let attempt = self.submit(cmd.clone(), false, deadline).await;
            match attempt.map(|a| a.response) {
                Ok(CommandResponse::Rejected(e)) => return Err(WriteError::Rejected(e)),
                Ok(resp) => return Ok(resp),
                Err(Retry::Again(why)) => {
                    if Instant::now() + RETRY_PAUSE >= deadline {
                        return Err(WriteError::Unavailable(why));
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
    }

    /// Whether this node leads but has not heard from a quorum for a while (partitioned away).
    pub fn leader_without_quorum(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        // `None` right after an election means "not acknowledged yet", not "lost".
        m.state == ServerState::Leader
            && m.millis_since_quorum_ack
                .is_some_and(|age| age >= crate::metrics::QUORUM_LOST_AFTER_MS)
    }

    /// Hands a write to this node's batcher, which proposes it (leader) or forwards it (follower;
    /// unless `local_only`), and waits at most until `deadline` for its outcome.
    pub(crate) async fn submit(
        &self,
        cmd: Command,
        local_only: bool,
        deadline: Instant,
    ) -> Result<crate::batcher::Applied, Retry> {
        if self.leader_without_quorum() {
            // Fail fast: a partitioned leader cannot commit, and the client can try elsewhere.
            return Err(Retry::Fail(WriteError::Unavailable(
                "this leader has lost contact with a quorum".into(),
            )));
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            cmd,
            local_only,
            reply,
        };
        if self.batcher.send(pending).await.is_err() {
            return Err(Retry::Fail(WriteError::Shutdown));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Retry::Fail(WriteError::Shutdown)),
            // Queued or sent but not known committed: it may still be applied.
            Err(_) => Err(Retry::Fail(WriteError::Unknown(format!(
                "not committed within {remaining:?}"
            )))),
        }
    }

    /// Waits until this node's state reflects every write acknowledged before the call:
    /// read-index on the leader, asked for by followers.
    pub async fn read_barrier(&self) -> Result<(), ReadError> {
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let leader = self
                .wait_leader(deadline)
                .await
                .map_err(ReadError::NoLeader)?;
            let why = if leader == self.config.id {
                if self.leader_without_quorum() {
                    return Err(ReadError::Unavailable(
                        "this leader has lost contact with a quorum".into(),
                    ));
                }
                // Bounded by the read's own deadline; after it, the read finds out who leads.
                let _ = tokio::time::timeout_at(deadline, self.wait_transfer()).await;
                let remaining = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(remaining, self.raft.ensure_linearizable()).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(RaftError::APIError(e))) => e.to_string(),
                    Ok(Err(RaftError::Fatal(_))) => return Err(ReadError::Shutdown),
                    Err(_) => "leadership not confirmed in time".into(),
                }
            } else {
                match self.remote_read_index(leader, deadline).await {
                    Ok(index) => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        return self
                            .raft
                            .wait(Some(remaining))
                            .applied_index_at_least(Some(index), "read index applied")
                            .await
                            .map(|_| ())
                            .map_err(|e| ReadError::Unavailable(e.to_string()));
                    }
                    Err(why) => why,
                }
            };
            if Instant::now() + RETRY_PAUSE >= deadline {
                return Err(ReadError::Unavailable(why));
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    async fn remote_read_index(&self, leader: NodeId, deadline: Instant) -> Result<u64, String> {
        let url = self
            .peer_url_of(leader)
            .ok_or_else(|| format!("leader {leader} has no known address"))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let answer: Result<Result<u64, ForwardError>, PeerError> =
            self.peers.call(&url, PATH_READ_INDEX, &(), remaining).await;
        match answer {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Leader side of a forwarded read: confirm leadership, return the index to wait for.
    pub(crate) async fn read_index_as_leader(&self) -> Result<u64, ForwardError> {
        self.wait_transfer().await;
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(read_log_id.map_or(0, |l| l.index)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(ForwardError::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    /// Stops background drivers and raft, then writes the log's metadata. The state machine
    /// is flushed by the caller afterwards.
    pub async fn shutdown(&self) {
        let _ = self.shutdown_tx.send(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        while tasks.join_next().await.is_some() {}
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        let log = self.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

/// Raises `fatal` if openraft stops by itself (a storage error it met, an internal failure):
/// the node then stops too, rather than answer every write "shutting down" while it looks
/// healthy.
async fn watch_running_state(
    mut metrics: watch::Receiver<openraft::RaftMetrics<NodeId, Member>>,
    fatal: Fatal,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = &metrics.borrow_and_update().running_state {
            fatal.raise(format!("raft stopped: {e}"));
            return;
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone)]
pub(crate) enum Retry {
    Again(String),
    Fail(WriteError),
}
