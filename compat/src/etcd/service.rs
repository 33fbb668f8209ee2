//! What every etcd request does to the store, whichever front end decoded it: the checks etcd
//! makes before proposing, the read barrier, the write, and the header of the answer. The JSON
//! gateway and the gRPC services are codecs around these functions, so that they cannot drift.

use hermes_raft::Header;
use hermes_storage::mvcc::request::{
    Command, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use hermes_storage::mvcc::response::{
    CommandResponse, DeleteRangeResponse, LeaseGrantResponse, PutResponse, RangeResponse,
    TxnResponse,
};
use hermes_storage::mvcc::state::{validate_txn, MAX_TXN_OPS};
use hermes_storage::KvError;

use super::decode::{request_size, MAX_REQUEST_BYTES};
use super::error::{Code, EtcdError};
use super::rbac::Caller;
use super::{config_writes, hidden, Api};
use hermes_storage::mvcc::key_value::{KeyRange, KeyValue};

/// A lease's time to live as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// Seconds left; -1 for a lease that does not exist (etcd's answer, not an error).
    pub ttl: i64,
    pub granted_ttl: i64,
    pub keys: Vec<Vec<u8>>,
}

/// `Maintenance.Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub version: &'static str,
    pub db_size: i64,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub raft_applied_index: u64,
    pub is_learner: bool,
}

/// One member as etcd's `MemberList` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// etcd's checks of a delete: write on the range, and read too when the deleted values are
/// asked for.
fn check_delete(who: &Caller, d: &DeleteRangeRequest) -> Result<(), EtcdError> {
    who.write(&d.range.key, &d.range.range_end)?;
    if d.prev_kv {
        who.read(&d.range.key, &d.range.range_end)?;
    }
    Ok(())
}

fn unexpected(resp: CommandResponse) -> EtcdError {
    tracing::error!(?resp, "state machine answered with the wrong response kind");
    EtcdError::new(Code::Internal, "etcdserver: unexpected response")
}

/// Checks what etcd checks before proposing: size and shape of a write.
fn check_write(cmd: &Command) -> Result<(), EtcdError> {
    if request_size(cmd) > MAX_REQUEST_BYTES {
        return Err(KvError::RequestTooLarge.into());
    }
    match cmd {
        Command::Put(p) if p.key.is_empty() => Err(KvError::EmptyKey.into()),
        Command::DeleteRange(d) if d.range.key.is_empty() => Err(KvError::EmptyKey.into()),
        Command::Txn(t) => {
            if t.compare.len() > MAX_TXN_OPS {
                return Err(KvError::TooManyOps.into());
            }
            validate_txn(t).map_err(EtcdError::from)
        }
        _ => Ok(()),
    }?;
    hidden::check_write(cmd)
}

impl Api {
    /// etcd's checks of a put: write on the key, read too for the previous value, and write
    /// on every key already attached to a lease it attaches.
    fn check_put(&self, who: &Caller, p: &PutRequest) -> Result<(), EtcdError> {
        if matches!(who, Caller::Root { .. }) {
            return Ok(());
        }
        who.write(&p.key, &[])?;
        if p.lease != 0 {
            self.check_lease_keys(who, p.lease)?;
        }
        if p.prev_kv {
            who.read(&p.key, &[])?;
        }
        Ok(())
    }

    /// etcd's checks of a transaction: read on every compared range, and each operation of
    /// both branches as on its own (a put with its previous value and its lease, as newer etcd
    /// checks it; 3.4 checked write only). Nested transactions are checked too, which etcd
    /// 3.4 forgets.
    fn check_txn(&self, who: &Caller, t: &TxnRequest) -> Result<(), EtcdError> {
        if matches!(who, Caller::Root { .. }) {
            return Ok(());
        }
        for c in &t.compare {
            who.read(&c.range.key, &c.range.range_end)?;
        }
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Range(r) => who.read(&r.range.key, &r.range.range_end)?,
                RequestOp::Put(p) => self.check_put(who, p)?,
                RequestOp::DeleteRange(d) => check_delete(who, d)?,
                RequestOp::Txn(inner) => self.check_txn(who, inner)?,
            }
        }
        Ok(())
    }

    /// Write on every key attached to lease `id` (etcd's `checkLeasePuts`).
    pub(crate) fn check_lease_keys(&self, who: &Caller, id: i64) -> Result<(), EtcdError> {
        if matches!(who, Caller::Root { .. }) {
            return Ok(());
        }
        let keys = self
            .node
            .store()
            .lease(id)
            .map(|(_, k)| k)
            .unwrap_or_default();
        keys.iter().try_for_each(|k| who.write(k, &[]))
    }

    pub fn header(&self, revision: i64) -> Header {
        self.node.header(revision)
    }

    /// The header of an answer about the current state.
    pub fn current_header(&self) -> Header {
        self.node.header(self.node.store().revision())
    }

    /// Reads that must see every acknowledged write wait for the leader's read index first.
    async fn barrier(&self, serializable: bool) -> Result<(), EtcdError> {
        if !serializable {
            self.node.read_barrier().await?;
        }
        Ok(())
    }

    pub async fn range(
        &self,
        who: &Caller,
        req: RangeRequest,
    ) -> Result<(Header, RangeResponse), EtcdError> {
        if req.range.key.is_empty() {
            return Err(KvError::EmptyKey.into());
        }
        who.read(&req.range.key, &req.range.range_end)?;
        self.barrier(req.serializable).await?;
        let resp = hidden::range(self.node.store(), req).await?;
        Ok((self.header(resp.revision), resp))
    }

    /// The visible keys of `range` now (linearizable), for a write that must know them first.
    async fn current(&self, range: KeyRange) -> Result<Vec<KeyValue>, EtcdError> {
        self.barrier(false).await?;
        let resp = hidden::range(
            self.node.store(),
            config_writes::ConfigWrites::read_before(&range),
        )
        .await?;
        Ok(resp.kvs)
    }

    pub async fn put(
        &self,
        who: &Caller,
        req: PutRequest,
    ) -> Result<(Header, PutResponse), EtcdError> {
        self.check_put(who, &req)?;
        if let Some(writes) = &self.config_writes {
            if let Some(target) = config_writes::classify(&req.key) {
                // Boxed: this future is large and rare, and would otherwise make every
                // put's future as large, moved whole at each of the boxes on its way.
                return Box::pin(self.put_config(writes, target, req)).await;
            }
        }
        let cmd = Command::Put(req);
        check_write(&cmd)?;
        match self.node.write(cmd).await? {
            CommandResponse::Put(r) => Ok((self.header(r.revision), r)),
            other => Err(unexpected(other)),
        }
    }

    /// A put of a compat-mode configuration key, which goes to the configuration store.
    async fn put_config(
        &self,
        writes: &config_writes::ConfigWrites,
        target: config_writes::ConfigKey,
        req: PutRequest,
    ) -> Result<(Header, PutResponse), EtcdError> {
        check_write(&Command::Put(req.clone()))?;
        let prev = if req.prev_kv {
            self.current(KeyRange::new(req.key.clone(), Vec::new()))
                .await?
                .into_iter()
                .next()
        } else {
            None
        };
        let mut r = writes.put(target, &req, prev).await?;
        if r.revision == 0 {
            r.revision = self.node.store().revision();
        }
        Ok((self.header(r.revision), r))
    }

    pub async fn delete_range(
        &self,
        who: &Caller,
        req: DeleteRangeRequest,
    ) -> Result<(Header, DeleteRangeResponse), EtcdError> {
        check_delete(who, &req)?;
        if let Some(writes) = &self.config_writes {
            if config_writes::may_hold_config(&req.range) {
                check_write(&Command::DeleteRange(req.clone()))?;
                let found = self.current(req.range.clone()).await?;
                if found
                    .iter()
                    .any(|kv| config_writes::classify(&kv.key).is_some())
                {
                    let node = self.node.clone();
                    let plain = move |key: Vec<u8>| {
                        let node = node.clone();
                        async move {
                            let cmd = Command::DeleteRange(DeleteRangeRequest {
                                range: KeyRange::new(key, Vec::new()),
                                prev_kv: false,
                            });
                            match node.write(cmd).await? {
                                CommandResponse::DeleteRange(r) => Ok(r.revision),
                                other => Err(unexpected(other)),
                            }
                        }
                    };
                    let mut r = writes.delete(&req, found, plain).await?;
                    if r.revision == 0 {
                        r.revision = self.node.store().revision();
                    }
                    return Ok((self.header(r.revision), r));
                }
            }
        }
        let cmd = Command::DeleteRange(req);
        check_write(&cmd)?;
        match self.node.write(cmd).await? {
            CommandResponse::DeleteRange(r) => Ok((self.header(r.revision), r)),
            other => Err(unexpected(other)),
        }
    }

    /// Every transaction goes through raft, even one that only reads: compares and reads are
    /// then evaluated atomically at one linearizable point, and a read-only transaction
    /// creates no revision.
    pub async fn txn(
        &self,
        who: &Caller,
        req: TxnRequest,
    ) -> Result<(Header, TxnResponse), EtcdError> {
        self.check_txn(who, &req)?;
        if self.config_writes.is_some() {
            config_writes::check_txn(&req)?;
        }
        let cmd = Command::Txn(req);
        check_write(&cmd)?;
        match self.node.write(cmd).await? {
            CommandResponse::Txn(r) => Ok((self.header(r.revision), r)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn compact(&self, revision: i64) -> Result<Header, EtcdError> {
        match self.node.write(Command::Compact { revision }).await? {
            CommandResponse::Compact(r) => Ok(self.header(r.revision)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
    ) -> Result<(Header, LeaseGrantResponse), EtcdError> {
        if id < 0 {
            return Err(EtcdError::invalid(
                "etcdserverpb.LeaseGrantRequest.ID: must not be negative",
            ));
        }
        let r = self.node.lease_grant(id, ttl).await?;
        Ok((self.header(r.revision), r))
    }

    /// Revokes a lease; the caller must be allowed to delete every key attached to it.
    pub async fn lease_revoke(&self, who: &Caller, id: i64) -> Result<Header, EtcdError> {
        self.check_lease_keys(who, id)?;
        let revision = self.node.lease_revoke(id).await?;
        Ok(self.header(revision))
    }

    /// Renews a lease; answers its TTL, 0 for a lease that is gone (no error, as etcd).
    pub async fn lease_keepalive(&self, id: i64) -> Result<(Header, i64), EtcdError> {
        let ttl = self.node.lease_keepalive(id).await?;
        Ok((self.current_header(), ttl))
    }

    /// A lease's time to live, and with `with_keys` the keys attached to it: each must be
    /// readable by the caller (etcd's fix of CVE-2023-32082; 3.4 before .26 showed them all).
    pub async fn lease_time_to_live(
        &self,
        who: &Caller,
        id: i64,
        with_keys: bool,
    ) -> Result<(Header, LeaseTimeToLive), EtcdError> {
        let ttl = self.node.lease_time_to_live(id).await?;
        let header = self.current_header();
        let Some(ttl) = ttl else {
            return Ok((
                header,
                LeaseTimeToLive {
                    id,
                    ttl: -1,
                    granted_ttl: 0,
                    keys: Vec::new(),
                },
            ));
        };
        let keys = if with_keys {
            let mut keys = self
                .node
                .store()
                .lease(id)
                .map(|(_, k)| k)
                .unwrap_or_default();
            keys.retain(|k| !hidden::is_hidden(k));
            keys.iter().try_for_each(|k| who.read(k, &[]))?;
            keys
        } else {
            Vec::new()
        };
        Ok((
            header,
            LeaseTimeToLive {
                id,
                ttl: ttl.remaining,
                granted_ttl: ttl.granted,
                keys,
            },
        ))
    }

    /// The ids of every live lease, as of a linearizable point.
    pub async fn leases(&self) -> Result<(Header, Vec<i64>), EtcdError> {
        self.node.read_barrier().await?;
        let ids = self.node.store().leases().into_iter().map(|(id, _)| id);
        Ok((self.current_header(), ids.collect()))
    }

    pub fn status(&self) -> (Header, Status) {
        let info = self.node.info();
        let size = i64::try_from(info.db_size).unwrap_or(i64::MAX);
        (
            self.header(info.revision),
            Status {
                version: super::ETCD_VERSION,
                db_size: size,
                leader: info.leader.unwrap_or(0),
                raft_index: info.last_log_index,
                raft_term: info.term,
                raft_applied_index: info.applied_index,
                is_learner: info.role == "learner",
            },
        )
    }

    /// The raised alarms: NOSPACE on this member while the store is over its quota. The
    /// quota's alarm is raised and cleared by the store's size itself, so asking to deactivate
    /// it changes nothing, as etcd answers after a disarm while still full.
    pub fn alarms(&self) -> (Header, Vec<u64>) {
        let raised = if self.node.over_quota() {
            vec![self.node.id()]
        } else {
            Vec::new()
        };
        (self.current_header(), raised)
    }

    /// The raft members, named and addressed as etcd lists members. etcd leaves the revision
    /// out of a member list's header.
    pub async fn member_list(&self) -> (Header, Vec<Member>) {
        let members = self.node.members().await;
        let list = members
            .into_iter()
            .map(|m| Member {
                id: m.id,
                name: format!("hermes-{}", m.id),
                client_urls: m.info.and_then(|i| i.etcd_url).into_iter().collect(),
                peer_urls: vec![m.peer_url],
                is_learner: !m.voter,
            })
            .collect();
        (self.header(0), list)
    }

    /// Hands raft leadership to the member `target` (a voter), from any member. etcd takes
    /// `MoveLeader` only on the leader; here a follower forwards it, which is what a client
    /// that found the leader first gets too.
    pub async fn move_leader(&self, who: &Caller, target: u64) -> Result<Header, EtcdError> {
        // etcd 3.4 lets any user move the leader; here it is the root role's, as the
        // membership changes are.
        who.admin()?;
        self.node.transfer_leader(target).await?;
        Ok(self.current_header())
    }

    /// A backup of every key this endpoint shows (`/hermes/_cp/` left out, as everywhere
    /// here), at a revision that includes every write acknowledged before the call
    /// (`hermes snapshot restore` reads it).
    pub async fn snapshot(&self, who: &Caller) -> Result<(Header, Vec<u8>), EtcdError> {
        who.admin()?;
        self.barrier(false).await?;
        let bytes = self
            .node
            .store()
            .read_whole(|s| s.backup(Some(hermes_storage::keys::CONTROL_PREFIX.as_bytes())))
            .await?;
        Ok((self.current_header(), bytes))
    }

    /// etcd's HashKV: a hash of the history the endpoint shows up to `revision` (0: now),
    /// equal on members that applied the same log; with the compaction floor and the
    /// revision it covers.
    pub async fn hash_kv(
        &self,
        who: &Caller,
        revision: i64,
    ) -> Result<(Header, u32, i64, i64), EtcdError> {
        who.admin()?;
        let (hash, compacted, upto) = self
            .node
            .store()
            .read_whole(move |s| {
                s.hash_kv(
                    revision,
                    Some(hermes_storage::keys::CONTROL_PREFIX.as_bytes()),
                )
            })
            .await?;
        Ok((self.header(upto), hash, compacted, upto))
    }

    /// etcd's Hash: a hash of this member's whole store (the control plane included).
    pub async fn hash(&self, who: &Caller) -> Result<(Header, u32), EtcdError> {
        who.admin()?;
        let (hash, _, upto) = self.node.store().read_whole(|s| s.hash_kv(0, None)).await?;
        Ok((self.header(upto), hash))
    }
}
