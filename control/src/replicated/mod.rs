//! [`ControlStore`] on the replicated store. Every operation reads after a read barrier (so it
//! sees every write acknowledged anywhere in the cluster) and writes one transaction whose
//! compares pin each record it read: a write that raced with another is retried from a fresh
//! read, and a business check that no longer holds (the resource version moved on) fails as a
//! conflict. Records are postcard behind a one-byte format version; resource documents stay
//! JSON because gateways read them.

mod records;
mod resources;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use hermes_raft::{RaftNode, ReadError, WriteError};
use hermes_storage::keys;
use hermes_storage::mvcc::key_value::{KeyRange, KeyValue};
use hermes_storage::mvcc::request::RangeRequest;

use crate::auth::token::SigningKey;
use crate::model::{
    ChangeEntry, ControllerStatus, Credential, Dashboard, GroupBinding, HistoryEntry,
    InstanceStatus, Kind, Member, Operator, Resource, User,
};
use crate::seal::Sealer;
use crate::store::{
    ControlError, ControlStore, CredentialUpdate, Imported, ResourceChange, Result, UserChange,
    Written,
};

pub use tx::Tx;

/// Versions of a resource kept in its history by default (the original kept 50).
pub const DEFAULT_HISTORY_RETENTION: usize = 50;
/// Change-log rows kept per namespace (the original never pruned, §10.3 C3); older ones are
/// dropped as new ones are written.
pub const CHANGE_LOG_RETENTION: i64 = 100_000;
/// How often a write that lost a race is tried again from a fresh read.
const ATTEMPTS: usize = 32;

/// What a write that lost [`ATTEMPTS`] races in a row answers.
fn busy() -> ControlError {
    ControlError::Unavailable("too many concurrent writes to the same records; try again".into())
}

/// 2: credentials carry `all_namespaces` and users `token_epoch`. Version-1 records come only
/// from development builds whose data directories this version refuses to open.
const FORMAT_VERSION: u8 = 2;

#[derive(Clone)]
pub struct Replicated {
    node: Arc<RaftNode>,
    history_retention: usize,
    /// Seals credential secrets and signing keys before they enter the store.
    sealer: Arc<Sealer>,
}

impl std::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated")
            .field("history_retention", &self.history_retention)
            .finish()
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![FORMAT_VERSION];
    postcard::to_io(value, &mut out)
        .map_err(|e| ControlError::Internal(format!("encoding a record: {e}")))?;
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_VERSION, rest)) => postcard::from_bytes(rest).map_err(|e| {
            ControlError::Internal(format!(
                "record {} is unreadable: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
        _ => Err(ControlError::Internal(format!(
            "record {} has an unknown format",
            String::from_utf8_lossy(key)
        ))),
    }
}

impl From<ReadError> for ControlError {
    fn from(e: ReadError) -> Self {
        ControlError::Unavailable(e.to_string())
    }
}

impl From<WriteError> for ControlError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Unknown(_) => ControlError::Unknown(e.to_string()),
            WriteError::Rejected(_) => ControlError::Internal(e.to_string()),
            WriteError::NoSpace { .. } => ControlError::NoSpace(e.to_string()),
            _ => ControlError::Unavailable(e.to_string()),
        }
    }
}

impl Replicated {
    pub fn new(node: Arc<RaftNode>, history_retention: usize, sealer: Arc<Sealer>) -> Replicated {
        Replicated {
            node,
            history_retention: history_retention.max(1),
            sealer,
        }
    }

    /// Makes the local state reflect every write acknowledged before the call.
    async fn barrier(&self) -> Result<()> {
        Ok(self.node.read_barrier().await?)
    }

    fn get(&self, key: &str) -> Option<Arc<KeyValue>> {
        self.node.store().get(key.as_bytes())
    }

    fn get_record<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, Arc<KeyValue>)>> {
        match self.get(key) {
            Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv))),
            None => Ok(None),
        }
    }

    /// Every key under `prefix`, in key order, as of the local state.
    async fn scan(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        self.scan_limited(prefix, 0).await
    }

    /// The first `limit` keys under `prefix` (0: all).
    async fn scan_limited(&self, prefix: &str, limit: i64) -> Result<Vec<KeyValue>> {
        let resp = self
            .node
            .store()
            .range(RangeRequest {
                range: KeyRange::prefix(prefix.as_bytes().to_vec()),
                limit,
                serializable: true,
                ..RangeRequest::default()
            })
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        Ok(resp.kvs)
    }

    async fn scan_records<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        self.scan(prefix)
            .await?
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    /// Reads with `plan` (synchronously, after a barrier) and commits the transaction it
    /// builds; when a pinned record changed in between, reads and plans again.
    async fn attempt<T>(&self, plan: impl FnMut(&Self) -> Result<(Tx, T)>) -> Result<T> {
        self.attempt_at(plan).await.map(|(result, _)| result)
    }

    /// [`Replicated::attempt`], also returning the store revision the transaction was applied at.
    async fn attempt_at<T>(
        &self,
        mut plan: impl FnMut(&Self) -> Result<(Tx, T)>,
    ) -> Result<(T, i64)> {
        for _ in 0..ATTEMPTS {
            self.barrier().await?;
            let (tx, result) = plan(self)?;
            if let Some(revision) = tx.commit(&self.node).await? {
                return Ok((result, revision));
            }
        }
        Err(busy())
    }

    fn audit_entry(kind: &str, name: &str, action: &str, operator: &Operator) -> ChangeEntry {
        ChangeEntry {
            revision: 0,
            kind: kind.to_string(),
            name: name.to_string(),
            action: action.to_string(),
            operator: operator.0.clone(),
            timestamp: crate::model::now_rfc3339(),
            doc: None,
        }
    }
}

#[async_trait]
impl ControlStore for Replicated {
    async fn namespaces(&self) -> Result<Vec<String>> {
        self.list_namespaces().await
    }
    async fn namespace_exists(&self, ns: &str) -> Result<bool> {
        self.has_namespace(ns).await
    }
    async fn create_namespace(
        &self,
        name: &str,
        owner: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.add_namespace(name, owner, operator).await
    }
    async fn resources(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>> {
        self.list_resources(ns, kind).await
    }
    async fn resource(&self, ns: &str, kind: Kind, name: &str) -> Result<Option<Resource>> {
        self.barrier().await?;
        self.read_resource(ns, kind, name)
            .map(|r| r.map(|(r, _)| r))
    }
    async fn write_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        change: ResourceChange,
        operator: &Operator,
    ) -> Result<Written> {
        self.change_resource(ns, kind, name, change, operator).await
    }
    async fn replace_config(
        &self,
        ns: &str,
        domains: Vec<Value>,
        clusters: Vec<Value>,
        operator: &Operator,
    ) -> Result<Imported> {
        self.replace_all(ns, domains, clusters, operator).await
    }
    async fn history(&self, ns: &str, kind: Kind, name: &str) -> Result<Vec<HistoryEntry>> {
        self.barrier().await?;
        let mut all: Vec<HistoryEntry> =
            self.scan_records(&keys::history_of(ns, kind, name)).await?;
        all.reverse();
        all.truncate(self.history_retention);
        Ok(all)
    }
    async fn history_entry(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        version: i64,
    ) -> Result<Option<HistoryEntry>> {
        self.barrier().await?;
        Ok(self
            .get_record(&keys::history(ns, kind, name, version))?
            .map(|(h, _)| h))
    }
    async fn revision(&self, ns: &str) -> Result<i64> {
        self.barrier().await?;
        Ok(self.current_revision(ns))
    }
    async fn changes(&self, ns: &str, after: i64, limit: usize) -> Result<Vec<ChangeEntry>> {
        self.list_changes(ns, after, limit).await
    }
    async fn wait_revision(&self, ns: &str, after: i64, wait: Duration) -> Result<i64> {
        self.wait_for_revision(ns, after, wait).await
    }
    async fn audit(
        &self,
        ns: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<ChangeEntry>, usize)> {
        self.list_audit(ns, limit, offset).await
    }
    async fn record(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        action: &str,
        operator: &Operator,
    ) -> Result<()> {
        let entry = Self::audit_entry(kind, name, action, operator);
        self.attempt(|s| {
            let mut tx = Tx::default();
            s.log_changes(&mut tx, ns, vec![entry.clone()])?;
            Ok((tx, ()))
        })
        .await
    }
    async fn credentials(&self, ns: &str) -> Result<Vec<Credential>> {
        self.list_credentials(ns).await
    }
    async fn credential_by_access_key(&self, access_key: &str) -> Result<Option<Credential>> {
        // Served from local state without a barrier: this runs on every signed request, and
        // a credential change reaches every node within one replication round.
        self.get_record(&keys::credential(access_key))?
            .map(|(c, _)| self.opened_credential(c))
            .transpose()
    }
    async fn setup_open(&self) -> Result<bool> {
        self.setup_is_open().await
    }
    async fn create_credential(
        &self,
        credential: Credential,
        operator: &Operator,
    ) -> Result<Credential> {
        self.add_credential(credential, operator).await
    }
    async fn update_credential(
        &self,
        ns: &str,
        id: i64,
        update: CredentialUpdate,
        operator: &Operator,
    ) -> Result<Credential> {
        self.change_credential(ns, id, update, operator).await
    }
    async fn delete_credential(
        &self,
        ns: &str,
        id: i64,
        checked_scopes: Option<&[String]>,
        operator: &Operator,
    ) -> Result<()> {
        self.remove_credential(ns, id, checked_scopes, operator)
            .await
    }
    async fn users(&self) -> Result<Vec<User>> {
        self.barrier().await?;
        let mut users: Vec<User> = self.scan_records(&keys::users()).await?;
        users.sort_by(|a, b| a.username.cmp(&b.username).then(a.sub.cmp(&b.sub)));
        Ok(users)
    }
    async fn catch_up(&self) -> Result<()> {
        self.barrier().await
    }
    async fn user(&self, sub: &str) -> Result<Option<User>> {
        Ok(self.get_record(&keys::user(sub))?.map(|(u, _)| u))
    }
    async fn create_user(&self, user: User, action: &str, operator: &Operator) -> Result<()> {
        self.add_user(user, action, operator).await
    }
    async fn update_user(
        &self,
        sub: &str,
        action: Option<&str>,
        operator: &Operator,
        change: &UserChange<'_>,
    ) -> Result<User> {
        self.change_user(sub, action, operator, change).await
    }
    async fn delete_user(&self, sub: &str, operator: &Operator) -> Result<()> {
        self.remove_user(sub, operator).await
    }
    async fn create_initial_admin(&self, user: User) -> Result<bool> {
        self.add_initial_admin(user).await
    }
    async fn members(&self, ns: &str) -> Result<Vec<Member>> {
        self.barrier().await?;
        self.scan_records(&keys::members(ns)).await
    }
    async fn member(&self, ns: &str, sub: &str) -> Result<Option<Member>> {
        Ok(self.get_record(&keys::member(ns, sub))?.map(|(m, _)| m))
    }
    async fn set_member(
        &self,
        member: Member,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.put_member(member, seen, operator).await
    }
    async fn remove_member(
        &self,
        ns: &str,
        sub: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.delete_member(ns, sub, seen, operator).await
    }
    async fn group_bindings(&self, ns: &str) -> Result<Vec<GroupBinding>> {
        self.barrier().await?;
        self.scan_records(&keys::group_bindings(ns)).await
    }
    async fn group_binding(&self, ns: &str, group: &str) -> Result<Option<GroupBinding>> {
        Ok(self
            .get_record(&keys::group_binding(ns, group))?
            .map(|(b, _)| b))
    }
    async fn set_group_binding(
        &self,
        ns: &str,
        group: &str,
        role: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.put_group_binding(ns, group, role, seen, operator)
            .await
    }
    async fn remove_group_binding(
        &self,
        ns: &str,
        group: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        self.delete_group_binding(ns, group, seen, operator).await
    }
    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        self.scan_records::<SigningKey>(&keys::signing_keys())
            .await?
            .into_iter()
            .map(|k| self.opened_key(k))
            .collect()
    }
    async fn ensure_signing_key(&self, now: i64) -> Result<()> {
        self.first_signing_key(now).await
    }
    async fn rotate_signing_key(&self, now: i64, grace: i64) -> Result<SigningKey> {
        self.rotate_keys(now, grace).await
    }
    async fn put_controller(&self, ns: &str, status: ControllerStatus) -> Result<()> {
        let key = keys::controller(ns, &status.id);
        let value = encode(&status)?;
        self.attempt(|_| {
            let mut tx = Tx::default();
            tx.put(&key, value.clone());
            Ok((tx, ()))
        })
        .await
    }
    async fn controllers(&self, ns: &str) -> Result<Vec<ControllerStatus>> {
        self.barrier().await?;
        self.scan_records(&keys::controllers(ns)).await
    }
    async fn put_instances(&self, ns: &str, instances: Vec<InstanceStatus>) -> Result<()> {
        let mut tx = Tx::default();
        let prefix = keys::instances(ns);
        tx.delete_prefix(&prefix);
        for i in &instances {
            tx.put(&keys::instance(ns, &i.id), encode(i)?);
        }
        if tx.commit(&self.node).await?.is_some() {
            Ok(())
        } else {
            Err(ControlError::Internal("replacing instances failed".into()))
        }
    }
    async fn reported_instances(&self, ns: &str) -> Result<Vec<InstanceStatus>> {
        self.barrier().await?;
        self.scan_records(&keys::instances(ns)).await
    }
    async fn registered_instances(&self, ns: &str) -> Result<Vec<Value>> {
        self.barrier().await?;
        Ok(self
            .scan(&keys::registered_instances(ns))
            .await?
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }
    async fn dashboards(&self, ns: &str) -> Result<Vec<Dashboard>> {
        self.barrier().await?;
        self.scan_records(&keys::dashboards(ns)).await
    }
    async fn save_dashboard(&self, ns: &str, dashboard: Dashboard) -> Result<(Dashboard, bool)> {
        self.put_dashboard(ns, dashboard).await
    }
    async fn delete_dashboard(&self, ns: &str, id: i64) -> Result<()> {
        self.remove_dashboard(ns, id).await
    }
}
