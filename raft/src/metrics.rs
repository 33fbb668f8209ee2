//! `hermes_raft_*` and `hermes_store_*` metrics, refreshed from raft's own metrics feed.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

use crate::node::RaftNode;

#[derive(Clone)]
pub struct RaftMetricsExporter {
    term: IntGauge,
    is_leader: IntGauge,
    leader_id: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    last_log_index: IntGauge,
    quorum_ack_age_ms: IntGauge,
    has_quorum: IntGauge,
    voters: IntGauge,
    learners: IntGauge,
    revision: IntGauge,
    compact_revision: IntGauge,
    keys: IntGauge,
    db_size: IntGauge,
    quota: IntGauge,
    over_quota: IntGauge,
    pub(crate) lease_revokes: IntCounterVec,
    pub(crate) proposal_writes: Histogram,
    pub(crate) proposal_seconds: Histogram,
    pub(crate) forward_seconds: Histogram,
    pub(crate) forward_apply_wait_seconds: Histogram,
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// A leader whose quorum has not acknowledged it for this long reports that it has lost it.
pub const QUORUM_LOST_AFTER_MS: u64 = 3_000;

impl RaftMetricsExporter {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let lease_revokes = IntCounterVec::new(
            Opts::new(
                "hermes_lease_expired_total",
                "Leases revoked by this node as leader after their TTL",
            ),
            &["result"],
        )?;
        registry.register(Box::new(lease_revokes.clone()))?;
        let proposal_writes = Histogram::with_opts(
            HistogramOpts::new(
                "hermes_raft_proposal_writes",
                "Client writes carried by one raft entry (write batching on the leader)",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
        )?;
        registry.register(Box::new(proposal_writes.clone()))?;
        let proposal_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hermes_raft_proposal_duration_seconds",
                "Time from proposing a raft entry on the leader to its being applied",
            )
            .buckets(prometheus::exponential_buckets(0.0002, 2.0, 14)?),
        )?;
        registry.register(Box::new(proposal_seconds.clone()))?;
        let forward_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hermes_raft_forward_duration_seconds",
                "On a follower: time from forwarding a batch of writes to the leader to its answer",
            )
            .buckets(prometheus::exponential_buckets(0.0002, 2.0, 14)?),
        )?;
        registry.register(Box::new(forward_seconds.clone()))?;
        let forward_apply_wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hermes_raft_forward_apply_wait_seconds",
                "On a follower: time from the leader's answer to a forwarded batch to its being \
                 applied here (writes are answered only then, so that reads here see them)",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 14)?),
        )?;
        registry.register(Box::new(forward_apply_wait_seconds.clone()))?;
        Ok(RaftMetricsExporter {
            term: gauge(registry, "hermes_raft_term", "Current raft term")?,
            is_leader: gauge(registry, "hermes_raft_is_leader", "1 if this node is the raft leader")?,
            leader_id: gauge(registry, "hermes_raft_leader_id", "Node id of the known leader, 0 if none")?,
            commit_index: gauge(registry, "hermes_raft_commit_index", "Highest raft log index known committed")?,
            applied_index: gauge(registry, "hermes_raft_applied_index", "Highest raft log index applied to the store")?,
            last_log_index: gauge(registry, "hermes_raft_last_log_index", "Highest raft log index on this node")?,
            quorum_ack_age_ms: gauge(
                registry,
                "hermes_raft_quorum_ack_age_ms",
                "On the leader: milliseconds since a quorum last acknowledged it (-1 if never or not leader)",
            )?,
            has_quorum: gauge(
                registry,
                "hermes_raft_leader_has_quorum",
                "On the leader: 1 if a quorum acknowledged it recently, 0 if it lost contact",
            )?,
            voters: gauge(registry, "hermes_raft_voters", "Voting members in the current membership")?,
            learners: gauge(registry, "hermes_raft_learners", "Non-voting members in the current membership")?,
            revision: gauge(registry, "hermes_store_revision", "Current revision of the key-value store")?,
            compact_revision: gauge(registry, "hermes_store_compact_revision", "Revision history is compacted to")?,
            keys: gauge(registry, "hermes_store_keys", "Live keys in the store")?,
            db_size: gauge(registry, "hermes_store_db_size_bytes", "Size of the state machine on disk")?,
            quota: gauge(registry, "hermes_store_quota_bytes", "The state machine's quota (0: none)")?,
            over_quota: gauge(registry, "hermes_store_alarm_nospace", "1 while the store is over its quota and refuses writes that grow it")?,
            lease_revokes,
            proposal_writes,
            proposal_seconds,
            forward_seconds,
            forward_apply_wait_seconds,
        })
    }

    pub fn refresh(&self, node: &RaftNode) {
        let info = node.info();
        let m = node.raft.metrics().borrow().clone();
        self.term.set(info.term as i64);
        self.is_leader.set(i64::from(info.role == "leader"));
        self.leader_id.set(info.leader.unwrap_or(0) as i64);
        self.commit_index.set(info.commit_index as i64);
        self.applied_index.set(info.applied_index as i64);
        self.last_log_index.set(info.last_log_index as i64);
        self.quorum_ack_age_ms
            .set(info.quorum_ack_age_ms.map_or(-1, |v| v as i64));
        self.has_quorum.set(i64::from(
            info.quorum_ack_age_ms
                .is_some_and(|age| age < QUORUM_LOST_AFTER_MS),
        ));
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        self.voters.set(voters as i64);
        self.learners.set(membership.learner_ids().count() as i64);
        self.revision.set(info.revision);
        self.compact_revision.set(node.store.compact_revision());
        self.keys.set(node.store.key_count() as i64);
        self.db_size.set(info.db_size as i64);
        self.quota.set(node.config.quota_backend_bytes as i64);
        self.over_quota.set(i64::from(node.over_quota()));
    }
}
