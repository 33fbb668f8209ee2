//! Lease operations on any member: grants and revocations are raft writes; keep-alives and
//! time-to-live queries are answered by the leader's [`LeaseKeeper`](crate::lease_keeper).

use tokio::time::Instant;

use hermes_storage::mvcc::request::Command;
use hermes_storage::mvcc::response::{CommandResponse, LeaseGrantResponse};
use hermes_storage::KvError;

use crate::error::WriteError;
use crate::lease_keeper::LeaseTtl;
use crate::node::RaftNode;
use crate::peer_client::PeerError;
use crate::peer_proto::{ForwardError, PATH_LEASE_KEEPALIVE, PATH_LEASE_TTL};

/// etcd's largest lease TTL (`MaxLeaseTTL`), in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

impl RaftNode {
    /// Grants a lease. `id` 0 lets the node choose; `ttl` is raised to the minimum TTL.
    pub async fn lease_grant(&self, id: i64, ttl: i64) -> Result<LeaseGrantResponse, WriteError> {
        if ttl > MAX_LEASE_TTL {
            return Err(WriteError::Rejected(KvError::LeaseTtlTooLarge));
        }
        let ttl = ttl.max(self.config.min_lease_ttl());
        let chosen = id == 0;
        let mut attempts = 0;
        loop {
            let lease_id = if chosen {
                // Positive, non-zero, like etcd's generated ids.
                (rand::random::<u64>() >> 1).max(1) as i64
            } else {
                id
            };
            match self.write(Command::LeaseGrant { id: lease_id, ttl }).await {
                Ok(CommandResponse::LeaseGrant(resp)) => {
                    self.leases.granted(resp.id, resp.ttl);
                    return Ok(resp);
                }
                Ok(other) => {
                    return Err(WriteError::Unavailable(format!(
                        "unexpected answer to a lease grant: {other:?}"
                    )))
                }
                Err(WriteError::Rejected(KvError::LeaseExists)) if chosen && attempts < 3 => {
                    attempts += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn lease_revoke(&self, id: i64) -> Result<i64, WriteError> {
        match self.write(Command::LeaseRevoke { id }).await? {
            CommandResponse::LeaseRevoke(r) => {
                self.leases.forget(id);
                Ok(r.revision)
            }
            other => Err(WriteError::Unavailable(format!(
                "unexpected answer to a lease revoke: {other:?}"
            ))),
        }
    }

    /// Renews a lease; returns its TTL, or 0 if it does not exist.
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64, WriteError> {
        self.ask_leader(PATH_LEASE_KEEPALIVE, id, |node| {
            node.keepalive_as_leader(id)
        })
        .await
    }

    /// Remaining and granted TTL, or `None` for an unknown or expired lease.
    pub async fn lease_time_to_live(&self, id: i64) -> Result<Option<LeaseTtl>, WriteError> {
        self.ask_leader(PATH_LEASE_TTL, id, |node| node.ttl_as_leader(id))
            .await
    }

    pub(crate) fn keepalive_as_leader(&self, id: i64) -> Result<i64, ForwardError> {
        self.require_lease_authority()?;
        Ok(self.leases.renew(id, self.granted_ttl(id)))
    }

    pub(crate) fn ttl_as_leader(&self, id: i64) -> Result<Option<LeaseTtl>, ForwardError> {
        self.require_lease_authority()?;
        Ok(self.leases.ttl(id, self.granted_ttl(id)))
    }

    /// The TTL the lease was granted with, from the applied state; `None` if it does not exist.
    fn granted_ttl(&self, id: i64) -> Option<i64> {
        self.store.lease(id).map(|(ttl, _)| ttl)
    }

    fn require_lease_authority(&self) -> Result<(), ForwardError> {
        if self.is_leader() && self.leases.is_active() {
            Ok(())
        } else {
            Err(ForwardError::NotLeader {
                leader: self.current_leader(),
            })
        }
    }

    /// Runs an idempotent query on the leader (locally or by forwarding), retrying until the
    /// request timeout while leadership is unsettled.
    async fn ask_leader<T, F>(&self, path: &str, arg: i64, local: F) -> Result<T, WriteError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&RaftNode) -> Result<T, ForwardError>,
    {
        let deadline = Instant::now() + self.config.request_timeout;
        loop {
            let leader = self
                .wait_leader(deadline)
                .await
                .map_err(WriteError::NoLeader)?;
            let why = if leader == self.config.id {
                match local(self) {
                    Ok(v) => return Ok(v),
                    Err(e) => e.to_string(),
                }
            } else if let Some(url) = self.peer_url_of(leader) {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let answer: Result<Result<T, ForwardError>, PeerError> =
                    self.peers.call(&url, path, &arg, remaining).await;
                match answer {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                }
            } else {
                format!("leader {leader} has no known address")
            };
            if Instant::now() + std::time::Duration::from_millis(50) >= deadline {
                return Err(WriteError::Unavailable(why));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
