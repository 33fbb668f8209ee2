//! Leadership transfer: hand the leader role to a chosen voter, for etcd's `MoveLeader` and
//! for a leader about to restart.
//!
//! openraft 0.9 has no transfer of its own, and its voters refuse any candidate while the
//! leader's lease (the longest election timeout since they last heard from it) runs. So the
//! leader waits until the target has every entry, pauses its own client traffic and
//! heartbeats (both refresh the voters' lease), lets the lease run out, then asks the target
//! to campaign. The target, holding the longest log and campaigning before any voter's own
//! election timer fires (lease plus a random timeout), wins. Client writes and reads that
//! reach the old leader meanwhile wait, then go on against the new one: none is refused.

use std::time::Duration;

use tokio::time::Instant;

use hermes_storage::types::NodeId;

use crate::error::TransferError;
use crate::node::RaftNode;
use crate::peer_client::PeerError;
use crate::peer_proto::{ForwardError, PATH_CAMPAIGN, PATH_TRANSFER_LEADER};

/// How long the target may take to catch up with the leader's log before the transfer is
/// given up (nothing has been paused yet then).
const CATCH_UP: Duration = Duration::from_secs(5);
/// How long, after the lease ran out, the target may take to win. Short: while it runs this
/// leader sends no heartbeats, and past 3 s without a quorum's answer it would start refusing
/// requests as a partitioned leader does (lease 0.8 s + campaign call + this stays under).
const ELECTION: Duration = Duration::from_millis(1500);
/// How long, with heartbeats paused, the entries already handed to raft may take to reach the
/// target: short, for the same reason as [`ELECTION`] (replication answers still reach this
/// leader meanwhile; the quiet time only starts once they settle).
const SETTLE: Duration = Duration::from_millis(500);
/// How long the target may take to answer the request to campaign.
const CAMPAIGN_CALL: Duration = Duration::from_millis(500);

impl RaftNode {
    /// Makes `target` the leader, from any member (a follower forwards to the leader).
    /// Returns once `target` leads, as this node sees it.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<(), TransferError> {
        self.check_transferee(target)?;
        let deadline = Instant::now() + self.transfer_budget();
        let leader = self
            .wait_leader(deadline)
            .await
            .map_err(TransferError::NoLeader)?;
        if leader == self.config.id {
            return self.transfer_leader_as_leader(target).await;
        }
        let url = self.peer_url_of(leader).ok_or_else(|| {
            TransferError::Failed(format!("leader {leader} has no known address"))
        })?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let answer: Result<Result<(), ForwardError>, PeerError> = self
            .peers
            .call(&url, PATH_TRANSFER_LEADER, &target, remaining)
            .await;
        match answer {
            Ok(Ok(())) => {
                // The old leader saw the new one; wait until this node does too, so that a
                // caller reading the member list right after sees the change.
                self.wait_for_leader(target, ELECTION).await
            }
            Ok(Err(ForwardError::Invalid(msg))) => Err(TransferError::Invalid(msg)),
            Ok(Err(e)) => Err(TransferError::Failed(e.to_string())),
            Err(e) => Err(TransferError::Failed(e.to_string())),
        }
    }

    /// The longest a transfer may take: catching up, the lease, the election, and margin.
    fn transfer_budget(&self) -> Duration {
        CATCH_UP + self.config.election_timeout.1 * 2 + ELECTION + Duration::from_secs(1)
    }

    pub(crate) async fn transfer_leader_as_leader(
        &self,
        target: NodeId,
    ) -> Result<(), TransferError> {
        if !self.is_leader() {
            return Err(TransferError::Failed(
                "this node is no longer the leader".into(),
            ));
        }
        if target == self.config.id {
            return Ok(());
        }
        let peer_url = self.check_transferee(target)?;
        // One transfer at a time: a second would turn heartbeats back on under the first.
        let Ok(_one) = self.transfer_lock.try_lock() else {
            return Err(TransferError::Failed(
                "a leadership transfer is already in progress".into(),
            ));
        };
        self.wait_caught_up(target, CATCH_UP).await?;

        tracing::info!(
            from = self.config.id,
            to = target,
            "transferring leadership"
        );
        let _paused = Paused::new(self);
        // Entries already handed to raft may still be replicating; the lease runs from the
        // last message each voter got, so wait for replication to settle first.
        self.wait_caught_up(target, SETTLE).await?;
        tokio::time::sleep(self.config.election_timeout.1 + self.config.heartbeat_interval).await;

        let answer: Result<Result<(), ForwardError>, PeerError> = self
            .peers
            .call(&peer_url, PATH_CAMPAIGN, &(), CAMPAIGN_CALL)
            .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(TransferError::Failed(e.to_string())),
            Err(e) => return Err(TransferError::Failed(e.to_string())),
        }
        self.wait_for_leader(target, ELECTION).await
    }

    /// On a planned stop: if this node leads other voters, hands leadership to the one
    /// furthest along the log, so that the cluster does not wait out an election timeout and
    /// the writes in flight here finish on the new leader. Returns the new leader.
    pub async fn hand_off_leadership(&self) -> Option<NodeId> {
        if !self.is_leader() {
            return None;
        }
        let m = self.raft.metrics().borrow().clone();
        let target = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != self.config.id)
            .max_by_key(|v| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(v).copied().flatten())
                    .map(|l| l.index)
            })?;
        match self.transfer_leader_as_leader(target).await {
            Ok(()) => Some(target),
            Err(e) => {
                tracing::warn!(error = %e, to = target, "could not hand leadership over before stopping");
                None
            }
        }
    }

    /// Checks that `target` is a voter of the current membership; returns its peer URL.
    fn check_transferee(&self, target: NodeId) -> Result<String, TransferError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let Some(member) = membership.membership().get_node(&target) else {
            return Err(TransferError::UnknownNode(target));
        };
        if !membership.membership().voter_ids().any(|v| v == target) {
            return Err(TransferError::Invalid(format!(
                "node {target} is a learner; only a voter can lead (promote it first)"
            )));
        }
        Ok(member.peer_url.clone())
    }

    /// Target side: start an election now.
    pub(crate) async fn campaign(&self) -> Result<(), ForwardError> {
        let voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.config.id);
        if !voter {
            return Err(ForwardError::Invalid(format!(
                "node {} is not a voter",
                self.config.id
            )));
        }
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| ForwardError::Failed(e.to_string()))
    }

    /// Waits until the leader's replication to `target` has reached the leader's last entry.
    async fn wait_caught_up(&self, target: NodeId, within: Duration) -> Result<(), TransferError> {
        self.raft
            .wait(Some(within))
            .metrics(
                |m| {
                    let last = m.last_log_index;
                    let matched = m
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&target).copied().flatten())
                        .map(|l| l.index);
                    last.is_some() && matched == last
                },
                "transfer target caught up",
            )
            .await
            .map(|_| ())
            .map_err(|_| {
                TransferError::Failed(format!(
                    "node {target} did not catch up with the leader's log within {within:?}"
                ))
            })
    }

    async fn wait_for_leader(&self, target: NodeId, within: Duration) -> Result<(), TransferError> {
        self.raft
            .wait(Some(within))
            .metrics(|m| m.current_leader == Some(target), "new leader seen")
            .await
            .map(|_| ())
            .map_err(|_| TransferError::TimedOut {
                target,
                leader: self.current_leader(),
            })
    }

    /// Holds a client write or read that would otherwise go to raft while this node hands
    /// its leadership over; returns at once when no transfer runs.
    pub(crate) async fn wait_transfer(&self) {
        let mut rx = self.transferring.subscribe();
        // An error means the sender is gone: the node is shutting down and nothing waits.
        let _ = rx.wait_for(|t| !*t).await;
    }
}

/// While alive: heartbeats off and client traffic held. Dropping it (the transfer's end,
/// however it ends) turns both back on.
struct Paused<'a> {
    node: &'a RaftNode,
}

impl<'a> Paused<'a> {
    fn new(node: &'a RaftNode) -> Self {
        node.transferring.send_replace(true);
        node.raft.runtime_config().heartbeat(false);
        Paused { node }
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.node.raft.runtime_config().heartbeat(true);
        self.node.transferring.send_replace(false);
    }
}
