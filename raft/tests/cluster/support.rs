//! An in-process cluster: real nodes (their WAL, state machine and raft) in temp dirs, whose
//! peer calls go through a [`Router`] instead of HTTP. The router finds the target node by
//! its peer URL (`mem://<id>`) and hands the call to its [`dispatch`]; tests cut, heal and
//! delay the links between named nodes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use hermes_raft::peer_client::PeerError;
use hermes_raft::peer_dispatch::dispatch;
use hermes_raft::transport::{CallFuture, Transport};
use hermes_raft::{RaftConfig, RaftNode, WriteError};
use hermes_storage::mvcc::request::{Command, PutRequest};
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::types::{Member, NodeId};
use tokio::time::Instant;

pub fn url_of(id: NodeId) -> String {
    format!("mem://{id}")
}

fn id_of(url: &str) -> Option<NodeId> {
    url.strip_prefix("mem://")?.parse().ok()
}

/// Delivers peer calls between the nodes of one test, with the faults the test asks for.
#[derive(Default)]
pub struct Router {
    nodes: Mutex<BTreeMap<NodeId, Weak<RaftNode>>>,
    /// Links that drop every call, both ways (stored with the smaller id first).
    cut: Mutex<BTreeSet<(NodeId, NodeId)>>,
    /// Extra latency on calls from the first node to the second.
    delay: Mutex<BTreeMap<(NodeId, NodeId), Duration>>,
}

fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Router {
    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.cut.lock().unwrap().contains(&link(a, b))
    }

    /// Drops every call between `a` and `b` until healed.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        self.cut.lock().unwrap().insert(link(a, b));
    }

    /// Cuts `id` off from every other node.
    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().collect();
        for other in others.into_iter().filter(|o| *o != id) {
            self.cut(id, other);
        }
    }

    pub fn heal_all(&self) {
        self.cut.lock().unwrap().clear();
    }

    pub fn delay(&self, from: NodeId, to: NodeId, by: Duration) {
        self.delay.lock().unwrap().insert((from, to), by);
    }

    /// Adds `by` to every call between every pair of nodes (a network with latency).
    pub fn delay_all(&self, by: Duration) {
        let ids: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().collect();
        for &from in &ids {
            for &to in ids.iter().filter(|t| **t != from) {
                self.delay(from, to, by);
            }
        }
    }

    fn node(&self, id: NodeId) -> Option<Arc<RaftNode>> {
        self.nodes.lock().unwrap().get(&id).and_then(Weak::upgrade)
    }
}

/// One node's way out: calls from `from`.
struct Link {
    router: Arc<Router>,
    from: NodeId,
}

impl Transport for Link {
    fn call<'a>(&'a self, url: &'a str, path: &'a str, body: Bytes) -> CallFuture<'a> {
        Box::pin(async move {
            let unreachable = |why: &str| PeerError::Unreachable {
                url: url.to_string(),
                message: why.to_string(),
            };
            let to = id_of(url).ok_or_else(|| unreachable("not an in-process peer URL"))?;
            if self.router.is_cut(self.from, to) {
                return Err(unreachable("the link is cut"));
            }
            let delay = self
                .router
                .delay
                .lock()
                .unwrap()
                .get(&(self.from, to))
                .copied();
            if let Some(by) = delay {
                tokio::time::sleep(by).await;
            }
            let node = self
                .router
                .node(to)
                .ok_or_else(|| unreachable("the node is stopped"))?;
            let answer = dispatch(&node, path, &body)
                .await
                .map_err(|e| PeerError::Status {
                    url: url.to_string(),
                    status: 400,
                    message: e.to_string(),
                })?;
            // Cut while the call was being served: the answer is lost on the way back.
            if self.router.is_cut(self.from, to) {
                return Err(PeerError::Interrupted {
                    url: url.to_string(),
                    message: "the link was cut".into(),
                });
            }
            Ok(Bytes::from(answer))
        })
    }
}

pub struct TestCluster {
    pub router: Arc<Router>,
    nodes: BTreeMap<NodeId, Arc<RaftNode>>,
    /// Kept until the end of the test, also for stopped nodes.
    _dirs: Vec<tempfile::TempDir>,
}

/// Timings of a production node, a little shorter so that failovers take under a second.
fn config(id: NodeId) -> RaftConfig {
    let mut c = RaftConfig::new(id, url_of(id), String::new());
    c.heartbeat_interval = Duration::from_millis(50);
    c.election_timeout = (Duration::from_millis(250), Duration::from_millis(500));
    c.request_timeout = Duration::from_secs(5);
    c
}

impl TestCluster {
    /// Starts `n` nodes and initializes them as one cluster; returns once a leader is known.
    pub async fn start(n: u64) -> TestCluster {
        // RUST_LOG=openraft=info,hermes_raft=debug shows what the nodes did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let router = Arc::new(Router::default());
        let mut nodes = BTreeMap::new();
        let mut dirs = Vec::new();
        for id in 1..=n {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let opened = tokio::task::spawn_blocking(move || hermes_storage::open(&path, id))
                .await
                .unwrap()
                .unwrap();
            let transport = Arc::new(Link {
                router: router.clone(),
                from: id,
            });
            let node = RaftNode::start_with_transport(
                config(id),
                opened.log,
                opened.state_machine,
                opened.fatal,
                None,
                transport,
            )
            .await
            .unwrap();
            router
                .nodes
                .lock()
                .unwrap()
                .insert(id, Arc::downgrade(&node));
            nodes.insert(id, node);
            dirs.push(dir);
        }
        let voters: BTreeMap<NodeId, Member> = (1..=n)
            .map(|id| {
                (
                    id,
                    Member {
                        peer_url: url_of(id),
                    },
                )
            })
            .collect();
        nodes[&1].bootstrap(voters).await.unwrap();
        let cluster = TestCluster {
            router,
            nodes,
            _dirs: dirs,
        };
        cluster.leader(&cluster.ids()).await;
        cluster
    }

    /// The data directory of node `id` (kept after it stops, until the test ends).
    pub fn dir(&self, id: NodeId) -> std::path::PathBuf {
        self._dirs[(id - 1) as usize].path().to_path_buf()
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    pub fn node(&self, id: NodeId) -> &Arc<RaftNode> {
        &self.nodes[&id]
    }

    /// The leader that every node of `among` agrees on, waiting up to 10 s for one.
    pub async fn leader(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let seen: BTreeSet<Option<NodeId>> = among
                .iter()
                .map(|id| self.nodes[id].current_leader())
                .collect();
            if let [Some(leader)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                if among.contains(&leader) && self.nodes[&leader].is_leader() {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed among {among:?}: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A follower among `among`, given the leader.
    pub fn follower(&self, leader: NodeId) -> NodeId {
        self.ids().into_iter().find(|id| *id != leader).unwrap()
    }

    /// Stops a node as a crash would look to the others: cut off first, then shut down.
    pub async fn stop(&mut self, id: NodeId) {
        self.router.isolate(id);
        let node = self.nodes.remove(&id).unwrap();
        node.shutdown().await;
        self.router.nodes.lock().unwrap().remove(&id);
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn applied_everywhere(&self, index: u64) {
        for node in self.nodes.values() {
            node.raft()
                .wait(Some(Duration::from_secs(10)))
                .applied_index_at_least(Some(index), "caught up")
                .await
                .unwrap();
        }
    }

    pub async fn shutdown(self) {
        for node in self.nodes.values() {
            node.shutdown().await;
        }
    }
}

pub async fn put(node: &RaftNode, key: &str, value: &str) -> Result<i64, WriteError> {
    put_leased(node, key, value, 0).await
}

pub async fn put_leased(
    node: &RaftNode,
    key: &str,
    value: &str,
    lease: i64,
) -> Result<i64, WriteError> {
    let cmd = Command::Put(PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        lease,
        ..Default::default()
    });
    match node.write(cmd).await? {
        CommandResponse::Put(p) => Ok(p.revision),
        other => panic!("a put answered {other:?}"),
    }
}

/// The value of `key` in `node`'s own state (a serializable read).
pub fn local_value(node: &RaftNode, key: &str) -> Option<String> {
    node.store()
        .get(key.as_bytes())
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
}

/// Prints which test phase runs, so a failure says where it happened.
pub fn phase(n: u32, what: &str) {
    eprintln!("phase {n}: {what}");
}

/// Polls `done` every 10 ms until it holds; fails the test after 30 s.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
