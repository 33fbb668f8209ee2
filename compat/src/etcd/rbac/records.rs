//! etcd's users, roles and authentication switch, kept in the replicated store under
//! `/hermes/_cp/etcd-auth/` (never visible through the etcd endpoint itself), postcard-encoded.
//! Reads are of this node's state; changes go through raft as compare-and-swap transactions,
//! so that two changes of one record at once cannot lose either.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use hermes_raft::RaftNode;
use hermes_storage::keys::CONTROL_PREFIX;
use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::{
    Command, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};
use hermes_storage::mvcc::response::CommandResponse;
use hermes_storage::{codec, KvStore};

use crate::etcd::error::{Code, EtcdError};

/// etcd's permission types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermKind {
    Read,
    Write,
    ReadWrite,
}

impl PermKind {
    pub fn from_proto(n: i32) -> Option<PermKind> {
        match n {
            0 => Some(PermKind::Read),
            1 => Some(PermKind::Write),
            2 => Some(PermKind::ReadWrite),
            _ => None,
        }
    }

    pub fn to_proto(self) -> i32 {
        match self {
            PermKind::Read => 0,
            PermKind::Write => 1,
            PermKind::ReadWrite => 2,
        }
    }

    pub fn reads(self) -> bool {
        matches!(self, PermKind::Read | PermKind::ReadWrite)
    }

    pub fn writes(self) -> bool {
        matches!(self, PermKind::Write | PermKind::ReadWrite)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perm {
    pub kind: PermKind,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// An argon2id PHC string; `None` for a user added without a password, who cannot sign in.
    pub password_hash: Option<String>,
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Sorted by key, one entry per (key, range end).
    pub perms: Vec<Perm>,
}

/// Whether authentication is on (AuthEnable), and the key tokens are signed with: a new one
/// each time it is turned off, so that disabling revokes every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    pub key: Vec<u8>,
}

fn prefix() -> String {
    format!("{CONTROL_PREFIX}etcd-auth/")
}

/// Read on every etcd request (whether authentication is on), so built once.
static STATE_KEY: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| format!("{}state", prefix()).into_bytes());

pub fn state_key() -> Vec<u8> {
    STATE_KEY.clone()
}

pub fn user_key(name: &str) -> Vec<u8> {
    format!("{}users/{name}", prefix()).into_bytes()
}

pub fn role_key(name: &str) -> Vec<u8> {
    format!("{}roles/{name}", prefix()).into_bytes()
}

fn internal(e: impl std::fmt::Display) -> EtcdError {
    tracing::error!(error = %e, "etcd auth records");
    EtcdError::new(Code::Internal, "etcdserver: internal auth store error")
}

/// A record and the revision it was last changed at (0: absent), as this node holds it.
fn read<T: DeserializeOwned>(store: &KvStore, key: &[u8]) -> Result<(Option<T>, i64), EtcdError> {
    match store.get(key) {
        None => Ok((None, 0)),
        Some(kv) => Ok((
            Some(codec::decode(&kv.value).map_err(internal)?),
            kv.mod_revision,
        )),
    }
}

/// A record another change depends on, at the revision it was read (0: absent).
pub struct Pin {
    pub key: Vec<u8>,
    pub revision: i64,
}

/// A user record with the revision to pin it at.
pub fn user_pinned(store: &KvStore, name: &str) -> Result<(Option<User>, Pin), EtcdError> {
    let key = user_key(name);
    let (user, revision) = read(store, &key)?;
    Ok((user, Pin { key, revision }))
}

/// A role record with the revision to pin it at.
pub fn role_pinned(store: &KvStore, name: &str) -> Result<(Option<Role>, Pin), EtcdError> {
    let key = role_key(name);
    let (role, revision) = read(store, &key)?;
    Ok((role, Pin { key, revision }))
}

/// The auth state record with the revision to pin it at.
pub fn state_pinned(store: &KvStore) -> Result<(Option<AuthState>, Pin), EtcdError> {
    let key = state_key();
    let (state, revision) = read(store, &key)?;
    Ok((state, Pin { key, revision }))
}

pub fn state(store: &KvStore) -> Result<Option<AuthState>, EtcdError> {
    Ok(read(store, &STATE_KEY)?.0)
}

pub fn user(store: &KvStore, name: &str) -> Result<Option<User>, EtcdError> {
    Ok(read(store, &user_key(name))?.0)
}

pub fn role(store: &KvStore, name: &str) -> Result<Option<Role>, EtcdError> {
    Ok(read(store, &role_key(name))?.0)
}

/// Every record under `kind/` (`users` or `roles`), sorted by name.
async fn list<T: DeserializeOwned>(store: &Arc<KvStore>, kind: &str) -> Result<Vec<T>, EtcdError> {
    let resp = store
        .range(RangeRequest {
            range: KeyRange::prefix(format!("{}{kind}/", prefix()).into_bytes()),
            serializable: true,
            ..RangeRequest::default()
        })
        .await?;
    resp.kvs
        .iter()
        .map(|kv| codec::decode(&kv.value).map_err(internal))
        .collect()
}

pub async fn users(store: &Arc<KvStore>) -> Result<Vec<User>, EtcdError> {
    list(store, "users").await
}

pub async fn roles(store: &Arc<KvStore>) -> Result<Vec<Role>, EtcdError> {
    list(store, "roles").await
}

/// The revision of the latest change to any auth record (etcd's auth revision).
pub async fn revision(store: &Arc<KvStore>) -> Result<u64, EtcdError> {
    let resp = store
        .range(RangeRequest {
            range: KeyRange::prefix(prefix().into_bytes()),
            serializable: true,
            keys_only: true,
            ..RangeRequest::default()
        })
        .await?;
    Ok(resp
        .kvs
        .iter()
        .map(|kv| kv.mod_revision)
        .max()
        .map_or(0, |r| r.max(0) as u64))
}

/// What an update does to a record.
pub enum Change<T> {
    Keep,
    Put(T),
    Delete,
}

/// Reads the record at `key` (after a read barrier), lets `f` decide, and writes the
/// decision only if the record did not change meanwhile; retries a few times if it did.
/// Answers what `f` answered with the change.
pub async fn update<T, R>(
    node: &RaftNode,
    key: &[u8],
    mut f: impl FnMut(Option<T>) -> Result<(Change<T>, R), EtcdError>,
) -> Result<R, EtcdError>
where
    T: Serialize + DeserializeOwned,
{
    update_pinned(node, key, |cur, _| {
        let (change, answer) = f(cur)?;
        Ok((change, answer, Vec::new()))
    })
    .await
}

/// [`update`], where `f` also reads other records (from the store it is given) and names
/// them with the revision it saw: the write happens only if none of those changed either.
pub async fn update_pinned<T, R>(
    node: &RaftNode,
    key: &[u8],
    mut f: impl FnMut(Option<T>, &KvStore) -> Result<(Change<T>, R, Vec<Pin>), EtcdError>,
) -> Result<R, EtcdError>
where
    T: Serialize + DeserializeOwned,
{
    node.read_barrier().await?;
    for _ in 0..5 {
        let (current, seen) = read::<T>(node.store(), key)?;
        let (change, answer, pins) = f(current, node.store())?;
        let op = match change {
            Change::Keep => return Ok(answer),
            Change::Put(value) => RequestOp::Put(PutRequest {
                key: key.to_vec(),
                value: codec::encode(&value).map_err(internal)?,
                ..PutRequest::default()
            }),
            Change::Delete => RequestOp::DeleteRange(DeleteRangeRequest {
                range: KeyRange::new(key.to_vec(), Vec::new()),
                prev_kv: false,
            }),
        };
        let unchanged = |key: Vec<u8>, revision: i64| Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Mod(revision),
            range: KeyRange::new(key, Vec::new()),
        };
        let mut compare = vec![unchanged(key.to_vec(), seen)];
        compare.extend(pins.into_iter().map(|p| unchanged(p.key, p.revision)));
        let txn = TxnRequest {
            compare,
            success: vec![op],
            failure: Vec::new(),
        };
        match node.write(Command::Txn(txn)).await? {
            CommandResponse::Txn(t) if t.succeeded => return Ok(answer),
            CommandResponse::Txn(_) => continue,
            other => return Err(internal(format!("unexpected answer {other:?}"))),
        }
    }
    Err(EtcdError::new(
        Code::Unavailable,
        "etcdserver: the auth record kept changing; try again",
    ))
}
