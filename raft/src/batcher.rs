//! Write batching, on every node. Client writes queue here; a proposal takes everything queued
//! (up to a limit) and either proposes it as one raft entry (on the leader) or forwards it to
//! the leader in one request (on a follower, where the leader's batcher merges it with its
//! own). Under load one HTTP round, one log append, one fsync, one replication round and one
//! apply then serve many writes; each write still gets its own revision and answer
//! ([`Command::Batch`]). One proposal is outstanding at a time; while it is, new writes
//! accumulate into the next batch. A lone write when nothing is in flight goes out at once, so
//! batching adds no latency at low load.
//!
//! Read your writes (as etcd): a write is answered only once the node that took it has applied
//! it. The leader answers after applying; a follower gets the log index of its forwarded
//! writes back and waits until it has applied that far, so a read on the same node right after
//! the answer sees the write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use hermes_storage::mvcc::request::Command;
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::types::NodeId;

use crate::error::WriteError;
use crate::node::{RaftNode, Retry};
use crate::peer_client::PeerError;
use crate::peer_proto::{ForwardError, PATH_WRITE};

/// Proposals outstanding at once. Measured: one keeps batches largest and is fastest on both
/// one node and three (more entries in flight cost more fsyncs than they hide latency).
pub const MAX_IN_FLIGHT: usize = 1;
/// How long a batch waits, at most, for the writes it expects (see `expected` in [`run`]).
const LINGER: std::time::Duration = std::time::Duration::from_micros(LINGER_US);
const LINGER_US: u64 = 2000;
/// Writes per proposal.
const MAX_BATCH: usize = 256;
/// Approximate payload per proposal: a batch stops growing past it, which keeps raft entries
/// inline in the log engine (see `engine::sled_engine`) and well inside peer body limits.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Writes waiting for a proposal before submitters wait for room.
pub const QUEUE: usize = 4096;

pub(crate) struct Pending {
    pub cmd: Command,
    /// Forwarded here by another node: propose locally or refuse, never forward again.
    pub local_only: bool,
    pub reply: oneshot::Sender<Result<Applied, Retry>>,
}

/// A write's answer and the index of the log entry that carried it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub response: CommandResponse,
    pub index: u64,
}

/// One forwarded write's outcome, as it crosses the wire.
pub type ForwardedAnswer = Result<Applied, ForwardError>;

fn approx_size(cmd: &Command) -> usize {
    match cmd {
        Command::Put(p) => p.key.len() + p.value.len() + 32,
        Command::Txn(t) => 64 * (t.success.len() + t.failure.len() + t.compare.len() + 1),
        _ => 64,
    }
}

/// Runs until `shutdown` flips; then in-flight proposals are abandoned (their waiters see the
/// batcher gone and report the node shutting down).
pub(crate) async fn run(
    node: Weak<RaftNode>,
    mut rx: mpsc::Receiver<Pending>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(mut leadership) = node.upgrade().map(|n| n.raft.metrics()) else {
        return;
    };
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    // Writes the last proposal answered: their writers are likely to send their next ones
    // soon. Set before that proposal's permit is released.
    let answered = Arc::new(AtomicUsize::new(0));
    // Writes taken off the queue while the previous batch is still out.
    let mut backlog: VecDeque<Pending> = VecDeque::new();
    let mut open = true;
    loop {
        while in_flight.try_join_next().is_some() {}
        // While the batch in flight is out, a write that another node forwarded here when this
        // node led must not wait behind it: if this node no longer leads, it is answered at
        // once. Otherwise two nodes that each forward to the other (views of the leader cross
        // during a change) would each wait for the other's batcher until both time out.
        let permit = loop {
            tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => break Some(p),
                    Err(_) => break None,
                },
                item = rx.recv(), if open && backlog.len() < QUEUE => match item {
                    Some(item) => backlog.push_back(item),
                    None if backlog.is_empty() => break None,
                    None => open = false,
                },
                changed = leadership.changed() => if changed.is_err() { break None },
                _ = shutdown.changed() => break None,
            }
            refuse_forwarded_if_not_leader(&node, &mut backlog);
        };
        let Some(permit) = permit else { break };
        // The writers to wait for under load: those just answered and those that queued
        // while the last proposal was out. Counting the queued ones keeps two groups of
        // writers from settling into alternate proposals of half the size each (one group
        // queues while the other's batch is out, then goes alone while the other turns
        // round), which doubles the fsyncs and replication rounds per write.
        //
        // A last proposal of one write says nothing about load: queued writes then go at once,
        // so that independent writers at a low rate never wait for each other (the linger
        // below requires `answered_last > 1`).
        let answered_last = answered.load(Ordering::Relaxed);
        let expected = (answered_last + backlog.len()).min(MAX_BATCH);
        let first = match backlog.pop_front() {
            Some(item) => item,
            None if !open => break,
            None => tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => item,
                    None => break,
                },
                _ = shutdown.changed() => break,
            },
        };
        let mut bytes = approx_size(&first.cmd);
        // Lingering helps only this node's own clients: a follower's forwarded batch arrives
        // whole, and nothing more of it is coming while it waits.
        let mut any_local = !first.local_only;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Some(item) = backlog.pop_front() else {
                break;
            };
            bytes += approx_size(&item.cmd);
            any_local |= !item.local_only;
            batch.push(item);
        }
        let linger_until = tokio::time::Instant::now() + LINGER;
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += approx_size(&item.cmd);
                    any_local |= !item.local_only;
                    batch.push(item);
                }
                Err(_) if any_local && answered_last > 1 && batch.len() < expected => {
                    // Under load, give the writers that just got their answers a moment to
                    // send their next write, so that it joins this batch.
                    match tokio::time::timeout_at(linger_until, rx.recv()).await {
                        Ok(Some(item)) => {
                            bytes += approx_size(&item.cmd);
                            any_local |= !item.local_only;
                            batch.push(item);
                        }
                        _ => break,
                    }
                }
                Err(_) => break,
            }
        }
        let Some(node) = node.upgrade() else { break };
        let answered = answered.clone();
        in_flight.spawn(async move {
            let started = tokio::time::Instant::now();
            let writes = batch.len();
            let proposed = dispatch(&node, batch).await;
            answered.store(writes, Ordering::Relaxed);
            drop(permit);
            if let (true, Some(m)) = (proposed, &node.exporter) {
                m.proposal_writes.observe(writes as f64);
                m.proposal_seconds.observe(started.elapsed().as_secs_f64());
            }
        });
    }
    in_flight.abort_all();
}

/// Answers the forwarded writes of `backlog` with "not the leader" when this node no longer
/// leads: the forwarding node retries them with the new leader.
fn refuse_forwarded_if_not_leader(node: &Weak<RaftNode>, backlog: &mut VecDeque<Pending>) {
    if !backlog.iter().any(|p| p.local_only) {
        return;
    }
    if node.upgrade().is_none_or(|n| n.is_leader()) {
        return;
    }
    let (refused, kept): (VecDeque<Pending>, VecDeque<Pending>) =
        backlog.drain(..).partition(|p| p.local_only);
    *backlog = kept;
    for p in refused {
        let _ = p.reply.send(Err(Retry::Again(
            "this node is no longer the leader".into(),
        )));
    }
}

/// Sends a batch where it can be applied. Returns whether it was proposed locally.
async fn dispatch(node: &RaftNode, batch: Vec<Pending>) -> bool {
    // A leader handing over holds the batch, which then goes to whoever leads after.
    node.wait_transfer().await;
    match node.current_leader() {
        Some(leader) if leader == node.id() => {
            propose(node, batch).await;
            true
        }
        leader => {
            let (forwardable, local_only): (Vec<Pending>, Vec<Pending>) =
                batch.into_iter().partition(|p| !p.local_only);
            for p in local_only {
                let _ = p.reply.send(Err(Retry::Again(
                    "this node is no longer the leader".into(),
                )));
            }
            match leader {
                Some(leader) if !forwardable.is_empty() => forward(node, leader, forwardable).await,
                _ => {
                    for p in forwardable {
                        let _ = p.reply.send(Err(Retry::Again("no leader is known".into())));
                    }
                }
            }
            false
        }
    }
}

fn reply_all(
    replies: Vec<oneshot::Sender<Result<Applied, Retry>>>,
    answers: Vec<Result<Applied, Retry>>,
) {
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A waiter that gave up (timed out) is fine to skip.
        let _ = reply.send(answer);
    }
}

fn same_for_all(n: usize, e: Retry) -> Vec<Result<Applied, Retry>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

/// Proposes a batch as one raft entry on this node, the leader.
async fn propose(node: &RaftNode, mut batch: Vec<Pending>) {
    let single = batch.len() == 1;
    let (cmd, replies): (Command, Vec<_>) = if single {
        let Some(p) = batch.pop() else { return };
        (p.cmd, vec![p.reply])
    } else {
        let (cmds, replies) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        (Command::Batch(cmds), replies)
    };
    let n = replies.len();
    let answers = match node.raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            CommandResponse::Batch(answers) if !single => {
                let index = resp.log_id.index;
                answers
                    .into_iter()
                    .map(|response| Ok(Applied { response, index }))
                    .collect()
            }
            response if single => vec![Ok(Applied {
                response,
                index: resp.log_id.index,
            })],
            other => same_for_all(
                n,
                Retry::Fail(WriteError::Unavailable(format!(
                    "unexpected answer to a batch: {other:?}"
                ))),
            ),
        },
        // Not appended, or appended and then truncated: never applied, safe to retry.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => same_for_all(
            n,
            Retry::Again(format!("leadership moved to {:?}", f.leader_id)),
        ),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            same_for_all(n, Retry::Fail(WriteError::Unavailable(e.to_string())))
        }
        Err(RaftError::Fatal(_)) => same_for_all(n, Retry::Fail(WriteError::Shutdown)),
    };
    reply_all(replies, answers);
}

/// Forwards a batch to the leader in one request.
async fn forward(node: &RaftNode, leader: NodeId, batch: Vec<Pending>) {
    let (cmds, replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let n = replies.len();
    let Some(url) = node.peer_url_of(leader) else {
        reply_all(
            replies,
            same_for_all(
                n,
                Retry::Again(format!("leader {leader} has no known address")),
            ),
        );
        return;
    };
    let sent = tokio::time::Instant::now();
    let answer: Result<Result<Vec<ForwardedAnswer>, ForwardError>, PeerError> = node
        .peers
        .call(&url, PATH_WRITE, &cmds, node.config.request_timeout)
        .await;
    let answered = tokio::time::Instant::now();
    if let Some(m) = &node.exporter {
        m.forward_seconds.observe((answered - sent).as_secs_f64());
    }
    let answers: Vec<Result<Applied, Retry>> = match answer {
        Ok(Ok(answers)) if answers.len() == n => answers.into_iter().map(from_forwarded).collect(),
        Ok(Ok(answers)) => same_for_all(
            n,
            Retry::Fail(WriteError::Unknown(format!(
                "leader answered {} of {n} writes",
                answers.len()
            ))),
        ),
        Ok(Err(e)) => same_for_all(n, retry_of(e)),
        Err(e) if e.not_sent() => same_for_all(n, Retry::Again(e.to_string())),
        Err(e) => same_for_all(n, Retry::Fail(WriteError::Unknown(e.to_string()))),
    };
    // Read your writes: answer once this node has applied what the leader committed.
    let mut answers = answers;
    if let Some(index) = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|a| a.index)
        .max()
    {
        let applied = node
            .raft
            .wait(Some(node.config.request_timeout))
            .applied_index_at_least(Some(index), "a forwarded write applied here")
            .await;
        if let Err(e) = applied {
            // Committed, but a read here right after the answer could miss it. As etcd when
            // its apply wait times out: the client is told the outcome is unknown (it was
            // committed) rather than given a success it could not read back here.
            tracing::warn!(index, error = %e, "a forwarded write was not applied here in time");
            for answer in answers.iter_mut().filter(|a| a.is_ok()) {
                *answer = Err(Retry::Fail(WriteError::Unknown(format!(
                    "committed at index {index}, but not applied on this node within the \
                     request timeout; a read here may not see it yet"
                ))));
            }
        }
        if let Some(m) = &node.exporter {
            m.forward_apply_wait_seconds
                .observe(answered.elapsed().as_secs_f64());
        }
    }
    reply_all(replies, answers);
}

/// A local outcome in wire form, for the node that forwarded the write.
pub(crate) fn to_forwarded(result: Result<Applied, Retry>) -> ForwardedAnswer {
    match result {
        Ok(resp) => Ok(resp),
        Err(Retry::Again(_)) => Err(ForwardError::NotLeader { leader: None }),
        Err(Retry::Fail(WriteError::Unavailable(msg))) => Err(ForwardError::Invalid(msg)),
        Err(Retry::Fail(WriteError::NoSpace { size, quota })) => {
            Err(ForwardError::NoSpace { size, quota })
        }
        Err(Retry::Fail(e)) => Err(ForwardError::Failed(e.to_string())),
    }
}

fn from_forwarded(answer: ForwardedAnswer) -> Result<Applied, Retry> {
    answer.map_err(retry_of)
}

fn retry_of(e: ForwardError) -> Retry {
    match e {
        ForwardError::NotLeader { leader } => {
            Retry::Again(format!("the leader moved (now {leader:?})"))
        }
        ForwardError::Invalid(msg) => Retry::Fail(WriteError::Unavailable(msg)),
        ForwardError::Failed(msg) => Retry::Fail(WriteError::Unknown(msg)),
        ForwardError::NoSpace { size, quota } => Retry::Fail(WriteError::NoSpace { size, quota }),
    }
}
