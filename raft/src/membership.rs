//! Membership changes and cluster status. Changes run on the leader (any member forwards them);
//! status is gathered by asking every member for its own [`NodeInfo`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};

use hermes_storage::types::{Member, NodeId};

use crate::error::MembershipError;
use crate::node::RaftNode;
use crate::peer_client::PeerError;
use crate::peer_proto::{ForwardError, MembershipChange, NodeInfo, PATH_INFO, PATH_MEMBERSHIP};

/// A learner further behind the leader's log than this may not be promoted.
const PROMOTE_MAX_LAG: u64 = 100;

/// How long a status probe of one member may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// A member as listed by `hermes member list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberStatus {
    pub id: NodeId,
    pub peer_url: String,
    pub voter: bool,
    /// What the member says about itself; `None` if it did not answer.
    pub info: Option<NodeInfo>,
    pub error: Option<String>,
}

impl RaftNode {
    /// This node's own view of itself.
    pub fn info(&self) -> NodeInfo {
        let m = self.raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.config.id);
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Follower if voter => "follower",
            ServerState::Follower | ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        NodeInfo {
            id: self.config.id,
            version: env!("CARGO_PKG_VERSION").to_string(),
            peer_url: self.config.advertise_peer_url.clone(),
            admin_url: self.config.admin_url.clone(),
            etcd_url: self.config.etcd_url.clone(),
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: self.commit_index(),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            revision: self.store.revision(),
            db_size: self.db_size(),
            quorum_ack_age_ms: m.millis_since_quorum_ack,
        }
    }

    /// Every member of the current membership, with what each reports about itself.
    pub async fn members(&self) -> Vec<MemberStatus> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let nodes: Vec<(NodeId, Member)> = membership
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let probes = nodes.into_iter().map(|(id, member)| {
            let voter = voters.contains(&id);
            async move {
                let (info, error) = if id == self.config.id {
                    (Some(self.info()), None)
                } else {
                    let answer: Result<NodeInfo, PeerError> = self
                        .peers
                        .call(&member.peer_url, PATH_INFO, &(), PROBE_TIMEOUT)
                        .await;
                    match answer {
                        Ok(info) => (Some(info), None),
                        Err(e) => (None, Some(e.to_string())),
                    }
                };
                MemberStatus {
                    id,
                    peer_url: member.peer_url,
                    voter,
                    info,
                    error,
                }
            }
        });
        futures_util::future::join_all(probes).await
    }

    /// Applies a membership change from any member. `force` skips the quorum safety check.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
        force: bool,
    ) -> Result<(), MembershipError> {
        let deadline = Instant::now() + self.config.request_timeout.max(Duration::from_secs(30));
        loop {
            let leader = self
                .wait_leader(deadline)
                .await
                .map_err(|d| MembershipError::Write(crate::error::WriteError::NoLeader(d)))?;
            let result = if leader == self.config.id {
                self.change_membership_as_leader(change.clone(), force)
                    .await
            } else {
                let url = self.peer_url_of(leader).ok_or_else(|| {
                    MembershipError::Failed(format!("leader {leader} has no known address"))
                })?;
                let remaining = deadline.saturating_duration_since(Instant::now());
                let answer: Result<Result<(), ForwardError>, PeerError> = self
                    .peers
                    .call(&url, PATH_MEMBERSHIP, &(change.clone(), force), remaining)
                    .await;
                match answer {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(ForwardError::Invalid(msg))) => Err(MembershipError::Invalid(msg)),
                    Ok(Err(e)) => Err(MembershipError::Failed(e.to_string())),
                    Err(e) => Err(MembershipError::Failed(e.to_string())),
                }
            };
            match result {
                Err(MembershipError::Failed(why)) if Instant::now() < deadline => {
                    tracing::debug!(%why, "membership change not done yet; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    pub(crate) async fn change_membership_as_leader(
        &self,
        change: MembershipChange,
        force: bool,
    ) -> Result<(), MembershipError> {
        if !self.is_leader() {
            return Err(MembershipError::Failed(
                "this node is no longer the leader".into(),
            ));
        }
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let known = |id: NodeId| membership.membership().get_node(&id).is_some();
        let map = |e: RaftError<NodeId, ClientWriteError<NodeId, Member>>| {
            MembershipError::Failed(e.to_string())
        };
        match change {
            MembershipChange::AddLearner { id, peer_url } => {
                if known(id) {
                    return Err(MembershipError::Invalid(format!(
                        "node {id} is already a member"
                    )));
                }
                self.raft
                    .add_learner(id, Member { peer_url }, false)
                    .await
                    .map_err(map)?;
            }
            MembershipChange::Join { id, peer_url } => {
                if voters.contains(&id) {
                    return Ok(());
                }
                match membership.membership().get_node(&id) {
                    Some(existing) if existing.peer_url != peer_url => {
                        return Err(MembershipError::Invalid(format!(
                            "node {id} is already a member at {}, not {peer_url}",
                            existing.peer_url
                        )));
                    }
                    Some(_) => {}
                    None => {
                        tracing::info!(node = id, %peer_url, "adding joining node as learner");
                        // Blocks until the learner has caught up with the log.
                        self.raft
                            .add_learner(id, Member { peer_url }, true)
                            .await
                            .map_err(map)?;
                    }
                }
                tracing::info!(node = id, "promoting caught-up learner to voter");
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(map)?;
            }
            MembershipChange::Promote { id } => {
                if !known(id) {
                    return Err(MembershipError::UnknownNode(id));
                }
                if voters.contains(&id) {
                    return Ok(());
                }
                self.check_caught_up(id)?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(map)?;
            }
            MembershipChange::Remove { id } => {
                if !known(id) {
                    return Err(MembershipError::UnknownNode(id));
                }
                if voters.contains(&id) {
                    let remaining: BTreeSet<NodeId> =
                        voters.iter().copied().filter(|v| *v != id).collect();
                    if remaining.is_empty() {
                        return Err(MembershipError::Invalid(format!(
                            "node {id} is the last voter; a cluster cannot remove its last voter"
                        )));
                    }
                    if !force {
                        self.check_quorum_after_removal(id, &remaining, voters.len())
                            .await?;
                    }
                    self.raft
                        .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                        .await
                        .map_err(map)?;
                } else {
                    self.raft
                        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                        .await
                        .map_err(map)?;
                }
            }
        }
        Ok(())
    }

    /// Refuses to promote a learner that is not close to the leader's log (as etcd refuses to
    /// promote a learner that is not in sync): a lagging voter would only weaken the quorum.
    fn check_caught_up(&self, id: NodeId) -> Result<(), MembershipError> {
        let m = self.raft.metrics().borrow().clone();
        let last = m.last_log_index.unwrap_or(0);
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).copied().flatten())
            .map(|l| l.index);
        match matched {
            Some(index) if index + PROMOTE_MAX_LAG >= last => Ok(()),
            other => Err(MembershipError::Invalid(format!(
                "node {id} has not caught up with the leader (replicated up to {}, leader at {last}); \
                 start it, wait until it is in sync, then promote it",
                other.map_or("nothing".to_string(), |i| i.to_string())
            ))),
        }
    }

    /// Refuses a removal that would leave fewer healthy voters than the new quorum.
    async fn check_quorum_after_removal(
        &self,
        id: NodeId,
        remaining: &BTreeSet<NodeId>,
        voters: usize,
    ) -> Result<(), MembershipError> {
        let statuses = self.members().await;
        let healthy: BTreeMap<NodeId, bool> =
            statuses.iter().map(|s| (s.id, s.info.is_some())).collect();
        let healthy_remaining = remaining
            .iter()
            .filter(|v| healthy.get(v).copied().unwrap_or(false))
            .count();
        let quorum = remaining.len() / 2 + 1;
        if healthy_remaining < quorum {
            return Err(MembershipError::WouldBreakQuorum {
                id,
                healthy: healthy_remaining,
                voters: voters - 1,
                quorum,
            });
        }
        Ok(())
    }
}
