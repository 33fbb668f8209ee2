//! The control plane's records, as a [`crate::store::ControlStore`] keeps them. They mirror the
//! original server's tables (contracts/hermes.md §5) without their storage details. Resource
//! documents are JSON text: the gateway reads exactly what the API stored. Times are RFC 3339
//! strings in UTC, as the original emitted them.

use serde::{Deserialize, Serialize};

pub use hermes_storage::keys::Kind;

/// A domain or cluster as stored, with its optimistic-concurrency version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub name: String,
    pub doc: serde_json::Value,
    /// Increases by one on every write to the resource; 1 when (re)created.
    pub resource_version: i64,
}

/// What happened to a resource, as recorded in its history and the change log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Create,
    Update,
    Delete,
    Rollback,
    Import,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Rollback => "rollback",
            Action::Import => "import",
        }
    }
}

/// One version of one resource (§3.5 `HistoryEntry`). For deletes, `doc` is the document as
/// it was before the delete, so a rollback can restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: i64,
    pub timestamp: String,
    pub kind: Kind,
    pub name: String,
    pub action: Action,
    pub operator: String,
    /// JSON text of the document.
    pub doc: Option<String>,
}

/// One row of a namespace's change log: configuration changes (kinds `domain`, `cluster`)
/// and audit-only records (`credential`, `member`, `group_binding`, `user`, `namespace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// Monotonic within the namespace.
    pub revision: i64,
    pub kind: String,
    pub name: String,
    pub action: String,
    pub operator: String,
    pub timestamp: String,
    /// JSON text of the document after the change; `None` for deletes and audit records.
    pub doc: Option<String>,
}

impl ChangeEntry {
    /// Whether controllers need this row (the rest is audit only).
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Domain.as_str() || self.kind == Kind::Cluster.as_str()
    }
}

/// An HMAC access key pair (§3.7 `APICredential`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: i64,
    /// The namespace the credential was created in, and the only one it acts in unless
    /// `all_namespaces` is set.
    pub namespace: String,
    pub access_key: String,
    pub secret_key: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub enabled: bool,
    /// Acts in every namespace (only an admin can create such a credential). The original
    /// applied every credential to every namespace (contracts §4.1, §10.1 S1).
    pub all_namespaces: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// A person: signed in through OIDC, or a built-in user (`sub` = `builtin:<email>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub name: String,
    pub is_admin: bool,
    pub must_change_password: bool,
    pub last_seen: String,
    /// argon2id PHC string (or a bcrypt hash carried over from the original); empty when the
    /// user has no password (OIDC).
    pub password_hash: String,
    /// Bumped by a password change or reset: session tokens carry the epoch they were issued
    /// in, and a token from an older epoch is refused.
    pub token_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub namespace: String,
    pub user_sub: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupBinding {
    pub id: i64,
    pub namespace: String,
    pub group: String,
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dashboard {
    pub id: i64,
    pub name: String,
    pub url: String,
}

/// A controller's heartbeat (§3.6), kept for compatibility with the original controller.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControllerStatus {
    pub id: String,
    pub status: String,
    pub is_leader: bool,
    pub started_at: String,
    pub last_heartbeat_at: String,
    pub config_revision: i64,
    pub updated_at: String,
}

/// A gateway instance as a controller reported it (§3.6).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: String,
    pub status: String,
    pub started_at: String,
    pub registered_at: String,
    pub last_keepalive_at: String,
    pub config_revision: i64,
    pub last_seen_at: String,
    pub updated_at: String,
}

/// Who made a change, for history, the change log and the audit log (§4.6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Operator(pub String);

/// The current time as RFC 3339 in UTC, as every record stores it.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
