//! Write batching on the leader. Client writes queue here; a proposal takes everything queued
//! (up to a limit) and proposes it as one raft entry, so that under load one log append, one
//! fsync, one replication round and one apply serve many writes. Each write still gets its own
//! revision and answer ([`Command::Batch`]). At most [`MAX_IN_FLIGHT`] proposals are
//! outstanding; while they are, new writes accumulate into the next batch. A lone write when
//! nothing is in flight is proposed at once, so batching adds no latency at low load.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use hermes_storage::mvcc::request::Command;
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::types::TypeConfig;

use crate::error::WriteError;
use crate::metrics::RaftMetricsExporter;
use crate::node::Retry;

/// Proposals outstanding at once.
pub const MAX_IN_FLIGHT: usize = 1;
/// Writes per proposal.
const MAX_BATCH: usize = 256;
/// Approximate payload per proposal; a batch stops growing past it.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Writes waiting for a proposal before submitters wait for room.
pub const QUEUE: usize = 4096;

pub(crate) struct Pending {
    pub cmd: Command,
    pub reply: oneshot::Sender<Result<CommandResponse, Retry>>,
}

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
    raft: Raft<TypeConfig>,
    metrics: Option<RaftMetricsExporter>,
    mut rx: mpsc::Receiver<Pending>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let first = tokio::select! {
            item = rx.recv() => match item {
                Some(item) => item,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        let mut bytes = approx_size(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(item) => {
                    bytes += approx_size(&item.cmd);
                    batch.push(item);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        let metrics = metrics.clone();
        in_flight.spawn(async move {
            let started = std::time::Instant::now();
            let writes = batch.len();
            propose(&raft, batch).await;
            drop(permit);
            if let Some(m) = metrics {
                m.proposal_writes.observe(writes as f64);
                m.proposal_seconds.observe(started.elapsed().as_secs_f64());
            }
        });
    }
    in_flight.abort_all();
}

async fn propose(raft: &Raft<TypeConfig>, mut batch: Vec<Pending>) {
    let single = batch.len() == 1;
    let (cmd, replies): (Command, Vec<_>) = if single {
        let Some(p) = batch.pop() else { return };
        (p.cmd, vec![p.reply])
    } else {
        let (cmds, replies) = batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
        (Command::Batch(cmds), replies)
    };
    let failure = |e: Retry| -> Vec<Result<CommandResponse, Retry>> {
        let mut out = Vec::with_capacity(replies.len());
        for _ in 0..replies.len() {
            out.push(Err(e.clone()));
        }
        out
    };
    let answers: Vec<Result<CommandResponse, Retry>> = match raft.client_write(cmd).await {
        Ok(resp) => match resp.data {
            CommandResponse::Batch(answers) if !single => answers.into_iter().map(Ok).collect(),
            answer if single => vec![Ok(answer)],
            other => failure(Retry::Fail(WriteError::Unavailable(format!(
                "unexpected answer to a batch: {other:?}"
            )))),
        },
        // Not appended, or appended and then truncated: never applied, safe to retry.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => failure(Retry::Again(
            format!("leadership moved to {:?}", f.leader_id),
        )),
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            failure(Retry::Fail(WriteError::Unavailable(e.to_string())))
        }
        Err(RaftError::Fatal(_)) => failure(Retry::Fail(WriteError::Shutdown)),
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A waiter that gave up (timed out) is fine to skip.
        let _ = reply.send(answer);
    }
}
