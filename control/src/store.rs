//! The [`ControlStore`] trait: everything the admin API persists, with no trace of how. The
//! replicated store implements it ([`crate::replicated`]); a PostgreSQL implementation with
//! the original schema can too. Every write that changes a resource records its history entry
//! and change-log entry and bumps the namespace's revision atomically with it.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::auth::token::SigningKey;
use crate::model::{
    ChangeEntry, ControllerStatus, Credential, Dashboard, GroupBinding, HistoryEntry,
    InstanceStatus, Kind, Member, Operator, Resource, User,
};

/// Why a control-plane operation failed. Messages are the ones clients see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// An optimistic-concurrency check failed.
    #[error("{0}")]
    Conflict(String),
    /// The store cannot serve the request now (no quorum, shutting down); safe to retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The outcome of a write is unknown (timed out after it was handed to the cluster).
    #[error("store write outcome unknown: {0}")]
    Unknown(String),
    #[error("store failure: {0}")]
    Internal(String),
    /// The store is over its quota; deletes still go through.
    #[error("{0}")]
    NoSpace(String),
}

pub type Result<T> = std::result::Result<T, ControlError>;

/// The refusal of a member or binding change whose role is no longer the one its caller saw.
pub fn role_changed(seen: Option<&str>, stored: Option<&str>) -> Result<()> {
    if seen == stored {
        return Ok(());
    }
    Err(ControlError::Conflict(format!(
        "the role changed meanwhile (now {}); read it again and retry",
        stored.unwrap_or("none")
    )))
}

/// A change to a user's record, applied to the record as stored when the write is made (see
/// [`ControlStore::update_user`]). An error refuses the write and is returned as is.
pub type UserChange<'a> = dyn Fn(&mut User) -> Result<()> + Send + Sync + 'a;

/// A change to one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceChange {
    /// Fails with `AlreadyExists` if the resource exists.
    Create { doc: Value },
    /// Fails with `Conflict` unless the resource exists at `expected_version`.
    Update { doc: Value, expected_version: i64 },
    /// Fails with `NotFound` if the resource does not exist.
    Delete,
    /// Restores the document of history `version`, whatever the current state.
    Rollback { version: i64 },
    /// Creates the resource or replaces its document whatever its version (a write through
    /// the etcd endpoint, which has no versions to compare); recorded as a create or an
    /// update.
    Put { doc: Value },
}

/// The outcome of a resource write.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The history version written.
    pub version: i64,
    /// The resource's version after the write (0 after a delete).
    pub resource_version: i64,
    /// The document now stored (`None` after a delete).
    pub doc: Option<Value>,
    /// The store revision the write was applied at (what a gateway following the store must
    /// reach to serve it); 0 when the store has no revisions.
    pub revision: i64,
}

/// What replacing a namespace's configuration wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub domains: usize,
    pub clusters: usize,
    /// As [`Written::revision`].
    pub revision: i64,
}

/// The fields of a credential an update changes (`None`: kept as is; the original overwrote
/// omitted fields with zero values, §10.3 C9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialUpdate {
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub scopes: Option<Vec<String>>,
    /// The scopes the caller's right to change this credential was checked against (`None`:
    /// no check): `Conflict` when the stored scopes are others, so that an editor never
    /// changes a credential an owner widened meanwhile.
    pub checked_scopes: Option<Vec<String>>,
}

/// The refusal of a credential change whose scopes are no longer those it was checked on.
pub fn scopes_changed(checked: Option<&[String]>, stored: &[String]) -> Result<()> {
    match checked {
        Some(checked) if checked != stored => Err(ControlError::Conflict(
            "the credential's scopes changed meanwhile; read it again and retry".into(),
        )),
        _ => Ok(()),
    }
}

/// The audit action of a user record made by an OpenID Connect sign-in.
pub const SYNC_ACTION: &str = "user.sync";

#[async_trait]
pub trait ControlStore: Send + Sync + 'static {
    /// How new password hashes for this store's users are made.
    fn password_scheme(&self) -> crate::auth::password::Scheme {
        crate::auth::password::Scheme::Argon2id
    }

    // --- consistency ---
    /// Makes this node's later reads reflect every write acknowledged before the call,
    /// wherever it was made. The reads authentication and authorization make on every
    /// request ([`user`](Self::user), [`member`](Self::member),
    /// [`credential_by_access_key`](Self::credential_by_access_key)) may be served from local
    /// state that trails a write made through another node by a replication round; callers
    /// for whom that would be wrong (every change, once its caller has proved who they are; a
    /// sign-in; a token newer than the local record; a signature by an access key unknown or
    /// disabled here, through one catch-up shared by all such requests) call this first.
    async fn catch_up(&self) -> Result<()>;

    // --- namespaces ---
    /// Every namespace, sorted; `default` always among them.
    async fn namespaces(&self) -> Result<Vec<String>>;
    /// Whether `ns` was created (`default` always exists).
    async fn namespace_exists(&self, ns: &str) -> Result<bool>;
    /// Fails with `AlreadyExists` for a namespace that exists. `owner`: a user made the new
    /// namespace's owner in the same step (`NotFound` if no such user is stored).
    async fn create_namespace(
        &self,
        name: &str,
        owner: Option<&str>,
        operator: &Operator,
    ) -> Result<()>;

    // --- domains and clusters ---
    /// Sorted by name.
    async fn resources(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>>;
    async fn resource(&self, ns: &str, kind: Kind, name: &str) -> Result<Option<Resource>>;
    async fn write_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        change: ResourceChange,
        operator: &Operator,
    ) -> Result<Written>;
    /// Replaces every domain and cluster of the namespace in one atomic step: what is not in
    /// the new set is deleted, with a `delete` change each (the original wrote none, §10.3 C1);
    /// the rest is written with action `import`.
    async fn replace_config(
        &self,
        ns: &str,
        domains: Vec<Value>,
        clusters: Vec<Value>,
        operator: &Operator,
    ) -> Result<Imported>;
    /// Newest first, at most the retained number.
    async fn history(&self, ns: &str, kind: Kind, name: &str) -> Result<Vec<HistoryEntry>>;
    async fn history_entry(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        version: i64,
    ) -> Result<Option<HistoryEntry>>;

    // --- change log and audit ---
    /// The namespace's latest change-log revision (0 if none).
    async fn revision(&self, ns: &str) -> Result<i64>;
    /// Up to `limit` change-log rows with revision > `after`, oldest first.
    async fn changes(&self, ns: &str, after: i64, limit: usize) -> Result<Vec<ChangeEntry>>;
    /// Waits until the namespace's revision exceeds `after`, at most `wait`; returns the
    /// revision then.
    async fn wait_revision(&self, ns: &str, after: i64, wait: Duration) -> Result<i64>;
    /// Newest first, and the total number of rows.
    async fn audit(
        &self,
        ns: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<ChangeEntry>, usize)>;
    /// Appends an audit-only row.
    async fn record(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        action: &str,
        operator: &Operator,
    ) -> Result<()>;

    // --- credentials ---
    /// Ordered by id.
    async fn credentials(&self, ns: &str) -> Result<Vec<Credential>>;
    async fn credential_by_access_key(&self, access_key: &str) -> Result<Option<Credential>>;
    /// Whether first-time setup (anonymous loopback access) is still open: no credential and no
    /// user was ever created. Once closed it never reopens, even if every credential and user
    /// is deleted later.
    async fn setup_open(&self) -> Result<bool>;
    /// Assigns `id`, `created_at` and `updated_at`.
    async fn create_credential(
        &self,
        credential: Credential,
        operator: &Operator,
    ) -> Result<Credential>;
    async fn update_credential(
        &self,
        ns: &str,
        id: i64,
        update: CredentialUpdate,
        operator: &Operator,
    ) -> Result<Credential>;
    /// Deletes a credential; `checked_scopes` as in [`CredentialUpdate`].
    async fn delete_credential(
        &self,
        ns: &str,
        id: i64,
        checked_scopes: Option<&[String]>,
        operator: &Operator,
    ) -> Result<()>;

    // --- users ---
    /// Ordered by username.
    async fn users(&self) -> Result<Vec<User>>;
    async fn user(&self, sub: &str) -> Result<Option<User>>;
    /// Creates a user; `AlreadyExists` if the sub is taken. `action` names the audit row.
    ///
    /// With `action` [`SYNC_ACTION`] (a record made by an OpenID Connect sign-in), an admin
    /// flag holds only if no record with this `sub` was ever made before: an initial admin
    /// deleted or demoted does not become admin again by signing in.
    async fn create_user(&self, user: User, action: &str, operator: &Operator) -> Result<()>;
    /// Changes a user's record with `change` and returns it as stored; `NotFound` if absent.
    /// `change` is applied to the stored record at the moment of writing (again, if that
    /// record changes before the write lands), never to a copy read earlier: a sign-in
    /// recording `last_seen` on a node that has not yet applied a password reset or an admin
    /// revocation made elsewhere must not write the old password or flag back. `action` names
    /// the audit row (`None` for bookkeeping such as `last_seen`). `Conflict` when it would
    /// demote the last admin, `AlreadyExists` when another user has the e-mail.
    async fn update_user(
        &self,
        sub: &str,
        action: Option<&str>,
        operator: &Operator,
        change: &UserChange<'_>,
    ) -> Result<User>;
    /// Deletes a user and its memberships; `Conflict` for the last admin.
    async fn delete_user(&self, sub: &str, operator: &Operator) -> Result<()>;
    /// Creates the first built-in admin, exactly once in the cluster's life: false when an
    /// initial admin was created before (even if since deleted).
    async fn create_initial_admin(&self, user: User) -> Result<bool>;

    // --- members and group bindings ---
    async fn members(&self, ns: &str) -> Result<Vec<Member>>;
    async fn member(&self, ns: &str, sub: &str) -> Result<Option<Member>>;
    /// Sets a member's role; `NotFound` when the user does not exist. `seen` is the role the
    /// caller's authorization was decided on (`None`: not a member): `Conflict` when the stored
    /// role is another, so that a change through another node meanwhile (an owner made) is
    /// never overwritten by someone allowed to change only what they saw (an editor).
    async fn set_member(
        &self,
        member: Member,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()>;
    /// Removes a member; `NotFound` if absent, `Conflict` when its role is not `seen`.
    async fn remove_member(
        &self,
        ns: &str,
        sub: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()>;
    async fn group_bindings(&self, ns: &str) -> Result<Vec<GroupBinding>>;
    /// One binding, read for authorization on the request path (local, like [`Self::member`]).
    async fn group_binding(&self, ns: &str, group: &str) -> Result<Option<GroupBinding>>;
    /// Binds a group to a role; `seen` as for [`Self::set_member`].
    async fn set_group_binding(
        &self,
        ns: &str,
        group: &str,
        role: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()>;
    /// Removes a binding; `NotFound` if absent, `Conflict` when its role is not `seen`.
    async fn remove_group_binding(
        &self,
        ns: &str,
        group: &str,
        seen: Option<&str>,
        operator: &Operator,
    ) -> Result<()>;

    // --- session signing keys ---
    async fn signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Creates the first active key if there is none.
    async fn ensure_signing_key(&self, now: i64) -> Result<()>;
    /// Retires the active keys (usable for `grace` more seconds), adds a new active key,
    /// drops keys past their grace; returns the new key.
    async fn rotate_signing_key(&self, now: i64, grace: i64) -> Result<SigningKey>;

    // --- status ---
    async fn put_controller(&self, ns: &str, status: ControllerStatus) -> Result<()>;
    async fn controllers(&self, ns: &str) -> Result<Vec<ControllerStatus>>;
    /// Replaces the namespace's reported instance set.
    async fn put_instances(&self, ns: &str, instances: Vec<InstanceStatus>) -> Result<()>;
    async fn reported_instances(&self, ns: &str) -> Result<Vec<InstanceStatus>>;
    /// Gateway instances registered in this store (`/hermes/instances/`), as JSON documents.
    async fn registered_instances(&self, ns: &str) -> Result<Vec<Value>>;

    // --- grafana dashboards ---
    async fn dashboards(&self, ns: &str) -> Result<Vec<Dashboard>>;
    /// Inserts (id 0) or updates; returns the saved dashboard and whether it was inserted.
    async fn save_dashboard(&self, ns: &str, dashboard: Dashboard) -> Result<(Dashboard, bool)>;
    async fn delete_dashboard(&self, ns: &str, id: i64) -> Result<()>;
}
