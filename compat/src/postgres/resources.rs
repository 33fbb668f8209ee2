//! Namespaces, domains and clusters with their history, and the change log with its audit
//! view, as the original server keeps them (contract §5.2, §5.3): one transaction per write,
//! history versions `MAX(version) + 1`, resource versions counted on the row, one global
//! change-log revision per row, read per namespace.
//!
//! Three places differ from the original, all fixes of its listed bugs: writes to one
//! resource (and imports, to the whole namespace) are serialized with advisory locks among
//! Hermes nodes, so concurrent writes cannot compute one history version twice; a namespace's
//! change-log rows commit in revision order (`LOCK_FEED`), so a reader of the feed never skips
//! one; and an import records a `delete` change for each resource it removes (the original removed them
//! silently, §10.3 C1, so a controller following the feed never deleted their keys).

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::Row;

use super::listen::NOTIFY;
use super::{PgControl, PgError};
use hermes_control::model::{Action, ChangeEntry, HistoryEntry, Kind, Operator, Resource};
use hermes_control::store::{ControlError, Imported, ResourceChange, Result, Written};

/// A stored time as the API shows it: RFC 3339 in UTC, to the second.
const TIME: &str = r#"to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"#;

fn table(kind: Kind) -> &'static str {
    match kind {
        Kind::Domain => "domains",
        Kind::Cluster => "clusters",
    }
}

fn action_of(s: &str) -> Option<Action> {
    Some(match s {
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        "rollback" => Action::Rollback,
        "import" => Action::Import,
        _ => return None,
    })
}

fn not_found(kind: Kind, name: &str) -> ControlError {
    ControlError::NotFound(format!("{} \"{name}\" not found", kind.as_str()))
}

/// Advisory-lock keys: one per resource, one per namespace (taken shared by resource writes
/// and exclusively by imports).
const LOCK_RESOURCE: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
const LOCK_NAMESPACE_SHARED: &str = "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 1))";
const LOCK_NAMESPACE: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))";
/// Held from a namespace's change-log insert to the commit: revisions come from one global
/// sequence, and two writers in one namespace that committed out of sequence order would let
/// a reader that saw the later revision skip the earlier one for good.
const LOCK_FEED: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 2))";

fn resource_lock_key(ns: &str, kind: Kind, name: &str) -> String {
    format!("{ns}\n{}\n{name}", kind.as_str())
}

impl PgControl {
    pub(super) fn corrupt(&self, what: String) -> ControlError {
        PgError::Corrupt {
            server: self.server.clone(),
            what,
        }
        .into()
    }

    pub(super) fn db(&self, e: tokio_postgres::Error) -> ControlError {
        self.error(e).into()
    }

    pub(super) fn column<'a, T: tokio_postgres::types::FromSql<'a>>(
        &self,
        row: &'a Row,
        column: &str,
    ) -> Result<T> {
        row.try_get(column)
            .map_err(|e| self.corrupt(format!("an unreadable {column} column: {e}")))
    }

    // --- namespaces ---

    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT name FROM namespaces ORDER BY name", &[])
            .await
            .map_err(|e| self.db(e))?;
        let mut names = rows
            .iter()
            .map(|r| self.column::<String>(r, "name"))
            .collect::<Result<Vec<_>>>()?;
        if !names.iter().any(|n| n == "default") {
            names.push("default".into());
            names.sort();
        }
        Ok(names)
    }

    pub async fn namespace_exists(&self, ns: &str) -> Result<bool> {
        if ns == "default" {
            return Ok(true);
        }
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT 1 FROM namespaces WHERE name = $1", &[&ns])
            .await
            .map_err(|e| self.db(e))?;
        Ok(row.is_some())
    }

    pub async fn create_namespace(
        &self,
        name: &str,
        owner: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        let inserted = tx
            .execute(
                "INSERT INTO namespaces (name) VALUES ($1) ON CONFLICT DO NOTHING",
                &[&name],
            )
            .await
            .map_err(|e| self.db(e))?;
        if inserted == 0 || name == "default" {
            return Err(ControlError::AlreadyExists(
                "namespace already exists".into(),
            ));
        }
        insert_audit(&tx, "_global", "namespace", name, "create", operator)
            .await
            .map_err(|e| self.db(e))?;
        if let Some(sub) = owner {
            let role = hermes_control::scopes::Role::Owner.as_str();
            self.upsert_member(&tx, name, sub, role).await?;
            let action = format!("set_role:{role}");
            insert_audit(&tx, name, "member", sub, &action, operator)
                .await
                .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        self.changed.notify_waiters();
        Ok(())
    }

    // --- domains and clusters ---

    fn resource_of(&self, row: &Row) -> Result<Resource> {
        Ok(Resource {
            name: self.column(row, "name")?,
            doc: self.column(row, "config")?,
            resource_version: self.column(row, "resource_version")?,
        })
    }

    pub async fn resources(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT name, config, resource_version FROM {} WHERE namespace = $1 ORDER BY name",
            table(kind)
        );
        let rows = client.query(&sql, &[&ns]).await.map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.resource_of(r)).collect()
    }

    pub async fn resource(&self, ns: &str, kind: Kind, name: &str) -> Result<Option<Resource>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT name, config, resource_version FROM {} WHERE namespace = $1 AND name = $2",
            table(kind)
        );
        let row = client
            .query_opt(&sql, &[&ns, &name])
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.resource_of(&r)).transpose()
    }

    pub async fn write_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        change: ResourceChange,
        operator: &Operator,
    ) -> Result<Written> {
        let t = table(kind);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_NAMESPACE_SHARED, &[&ns])
            .await
            .map_err(|e| self.db(e))?;
        tx.execute(LOCK_RESOURCE, &[&resource_lock_key(ns, kind, name)])
            .await
            .map_err(|e| self.db(e))?;
        let (action, doc, resource_version) = match change {
            ResourceChange::Create { doc } => {
                let sql = format!(
                    "INSERT INTO {t} (namespace, name, config, resource_version, updated_at) \
                     VALUES ($1, $2, $3, 1, NOW()) ON CONFLICT (namespace, name) DO NOTHING"
                );
                let n = tx
                    .execute(&sql, &[&ns, &name, &doc])
                    .await
                    .map_err(|e| self.db(e))?;
                if n == 0 {
                    return Err(ControlError::AlreadyExists(format!(
                        "{} \"{name}\" already exists",
                        kind.as_str()
                    )));
                }
                (Action::Create, doc, 1)
            }
            ResourceChange::Update {
                doc,
                expected_version,
            } => {
                let sql = format!(
                    "UPDATE {t} SET config = $3, resource_version = resource_version + 1, \
                     updated_at = NOW() WHERE namespace = $1 AND name = $2 \
                     AND resource_version = $4 RETURNING resource_version"
                );
                let row = tx
                    .query_opt(&sql, &[&ns, &name, &doc, &expected_version])
                    .await
                    .map_err(|e| self.db(e))?;
                let Some(row) = row else {
                    return Err(ControlError::Conflict(format!(
                        "conflict: the {} has been modified by another user, please refresh \
                         and try again",
                        kind.as_str()
                    )));
                };
                let version = self.column(&row, "resource_version")?;
                (Action::Update, doc, version)
            }
            ResourceChange::Put { doc } => {
                let sql = format!(
                    "INSERT INTO {t} (namespace, name, config, resource_version, updated_at) \
                     VALUES ($1, $2, $3, 1, NOW()) ON CONFLICT (namespace, name) DO UPDATE \
                     SET config = EXCLUDED.config, resource_version = {t}.resource_version + 1, \
                     updated_at = NOW() RETURNING resource_version, (xmax = 0) AS inserted"
                );
                let row = tx
                    .query_one(&sql, &[&ns, &name, &doc])
                    .await
                    .map_err(|e| self.db(e))?;
                let inserted: bool = self.column(&row, "inserted")?;
                let action = if inserted {
                    Action::Create
                } else {
                    Action::Update
                };
                (action, doc, self.column(&row, "resource_version")?)
            }
            ResourceChange::Delete => {
                let sql =
                    format!("DELETE FROM {t} WHERE namespace = $1 AND name = $2 RETURNING config");
                let row = tx
                    .query_opt(&sql, &[&ns, &name])
                    .await
                    .map_err(|e| self.db(e))?;
                let Some(row) = row else {
                    return Err(not_found(kind, name));
                };
                // History keeps the document as it was before the delete.
                (Action::Delete, self.column::<Value>(&row, "config")?, 0)
            }
            ResourceChange::Rollback { version } => {
                let row = tx
                    .query_opt(
                        "SELECT config FROM config_history WHERE namespace = $1 AND kind = $2 \
                         AND name = $3 AND version = $4 ORDER BY id DESC LIMIT 1",
                        &[&ns, &kind.as_str(), &name, &version],
                    )
                    .await
                    .map_err(|e| self.db(e))?;
                let Some(row) = row else {
                    return Err(ControlError::NotFound(format!(
                        "{} \"{name}\" version {version} not found",
                        kind.as_str()
                    )));
                };
                let Some(doc) = self.column::<Option<Value>>(&row, "config")? else {
                    return Err(ControlError::NotFound(format!(
                        "{} \"{name}\" version {version} has no document",
                        kind.as_str()
                    )));
                };
                let sql = format!(
                    "INSERT INTO {t} (namespace, name, config, resource_version, updated_at) \
                     VALUES ($1, $2, $3, 1, NOW()) ON CONFLICT (namespace, name) DO UPDATE \
                     SET config = EXCLUDED.config, resource_version = {t}.resource_version + 1, \
                     updated_at = NOW() RETURNING resource_version"
                );
                let row = tx
                    .query_one(&sql, &[&ns, &name, &doc])
                    .await
                    .map_err(|e| self.db(e))?;
                let version = self.column(&row, "resource_version")?;
                (Action::Rollback, doc, version)
            }
        };
        let (version, revision) = record_version(&tx, ns, kind, name, action, &doc, operator)
            .await
            .map_err(|e| self.db(e))?;
        // History past the retention goes in the same transaction (the original pruned after
        // the commit, on another connection; deletes and imports prune nothing, as there).
        if action != Action::Delete && version > self.history_retention {
            tx.execute(
                "DELETE FROM config_history WHERE namespace = $1 AND kind = $2 \
                 AND name = $3 AND version <= $4",
                &[
                    &ns,
                    &kind.as_str(),
                    &name,
                    &(version - self.history_retention),
                ],
            )
            .await
            .map_err(|e| self.db(e))?;
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        self.changed.notify_waiters();
        Ok(Written {
            version,
            resource_version,
            doc: (action != Action::Delete).then_some(doc),
            revision,
        })
    }

    pub async fn replace_config(
        &self,
        ns: &str,
        domains: Vec<Value>,
        clusters: Vec<Value>,
        operator: &Operator,
    ) -> Result<Imported> {
        let name_of = |doc: &Value| doc.get("name").and_then(Value::as_str).map(str::to_string);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        tx.execute(LOCK_NAMESPACE, &[&ns])
            .await
            .map_err(|e| self.db(e))?;
        let mut revision = None;
        for (kind, docs) in [(Kind::Cluster, &clusters), (Kind::Domain, &domains)] {
            let t = table(kind);
            let wanted: Vec<String> = docs.iter().filter_map(name_of).collect();
            let removed = tx
                .query(
                    &format!(
                        "DELETE FROM {t} WHERE namespace = $1 AND NOT (name = ANY($2)) \
                         RETURNING name, config"
                    ),
                    &[&ns, &wanted],
                )
                .await
                .map_err(|e| self.db(e))?;
            for row in &removed {
                let name: String = self.column(row, "name")?;
                let doc: Value = self.column(row, "config")?;
                let (_, at) = record_version(&tx, ns, kind, &name, Action::Delete, &doc, operator)
                    .await
                    .map_err(|e| self.db(e))?;
                revision = Some(at);
            }
            // As the original: every imported resource starts again at resource version 1.
            tx.execute(&format!("DELETE FROM {t} WHERE namespace = $1"), &[&ns])
                .await
                .map_err(|e| self.db(e))?;
            for doc in docs {
                let Some(name) = name_of(doc) else { continue };
                tx.execute(
                    &format!(
                        "INSERT INTO {t} (namespace, name, config, resource_version, updated_at) \
                         VALUES ($1, $2, $3, 1, NOW()) ON CONFLICT (namespace, name) DO UPDATE \
                         SET config = EXCLUDED.config"
                    ),
                    &[&ns, &name, doc],
                )
                .await
                .map_err(|e| self.db(e))?;
                let (_, at) = record_version(&tx, ns, kind, &name, Action::Import, doc, operator)
                    .await
                    .map_err(|e| self.db(e))?;
                revision = Some(at);
            }
        }
        tx.commit().await.map_err(|e| self.db(e))?;
        self.changed.notify_waiters();
        let revision = match revision {
            Some(r) => r,
            // An empty import of an empty namespace wrote nothing.
            None => self.revision(ns).await?,
        };
        Ok(Imported {
            domains: domains.len(),
            clusters: clusters.len(),
            revision,
        })
    }

    fn history_of(&self, row: &Row, kind: Kind, name: &str) -> Result<HistoryEntry> {
        let action: String = self.column(row, "action")?;
        Ok(HistoryEntry {
            version: self.column(row, "version")?,
            timestamp: self.column(row, "ts")?,
            kind,
            name: name.to_string(),
            action: action_of(&action)
                .ok_or_else(|| self.corrupt(format!("a history action \"{action}\"")))?,
            operator: self.column(row, "operator")?,
            doc: self.column(row, "doc")?,
        })
    }

    pub async fn history(&self, ns: &str, kind: Kind, name: &str) -> Result<Vec<HistoryEntry>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT version, action, operator, config::text AS doc, {TIME} AS ts \
             FROM config_history WHERE namespace = $1 AND kind = $2 AND name = $3 \
             ORDER BY version DESC, id DESC LIMIT $4"
        );
        let rows = client
            .query(&sql, &[&ns, &kind.as_str(), &name, &self.history_retention])
            .await
            .map_err(|e| self.db(e))?;
        rows.iter()
            .map(|r| self.history_of(r, kind, name))
            .collect()
    }

    pub async fn history_entry(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        version: i64,
    ) -> Result<Option<HistoryEntry>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT version, action, operator, config::text AS doc, {TIME} AS ts \
             FROM config_history WHERE namespace = $1 AND kind = $2 AND name = $3 \
             AND version = $4 ORDER BY id DESC LIMIT 1"
        );
        let row = client
            .query_opt(&sql, &[&ns, &kind.as_str(), &name, &version])
            .await
            .map_err(|e| self.db(e))?;
        row.map(|r| self.history_of(&r, kind, name)).transpose()
    }

    // --- change log and audit ---

    pub async fn revision(&self, ns: &str) -> Result<i64> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT COALESCE(MAX(revision), 0) AS revision FROM change_log \
                 WHERE namespace = $1",
                &[&ns],
            )
            .await
            .map_err(|e| self.db(e))?;
        self.column(&row, "revision")
    }

    fn change_of(&self, row: &Row) -> Result<ChangeEntry> {
        Ok(ChangeEntry {
            revision: self.column(row, "revision")?,
            kind: self.column(row, "kind")?,
            name: self.column(row, "name")?,
            action: self.column(row, "action")?,
            operator: self.column(row, "operator")?,
            timestamp: self.column(row, "ts")?,
            doc: self.column(row, "doc")?,
        })
    }

    pub async fn changes(&self, ns: &str, after: i64, limit: usize) -> Result<Vec<ChangeEntry>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT revision, kind, name, action, operator, config::text AS doc, {TIME} AS ts \
             FROM change_log WHERE namespace = $1 AND revision > $2 ORDER BY revision LIMIT $3"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(&sql, &[&ns, &after, &limit])
            .await
            .map_err(|e| self.db(e))?;
        rows.iter().map(|r| self.change_of(r)).collect()
    }

    /// Writes through any Hermes node wake the wait at once (this node's directly, others'
    /// by notification); original servers' writes are seen at the next look, every
    /// `foreign_poll`.
    pub async fn wait_revision(&self, ns: &str, after: i64, wait: Duration) -> Result<i64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a write in between is not missed.
            notified.as_mut().enable();
            let now = self.revision(ns).await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if now > after || left.is_zero() {
                return Ok(now);
            }
            let _ = tokio::time::timeout(left.min(self.foreign_poll), notified).await;
        }
    }

    pub async fn audit(
        &self,
        ns: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<ChangeEntry>, usize)> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT revision, kind, name, action, operator, config::text AS doc, {TIME} AS ts \
             FROM change_log WHERE namespace = $1 ORDER BY revision DESC LIMIT $2 OFFSET $3"
        );
        let (limit, offset) = (
            i64::try_from(limit).unwrap_or(i64::MAX),
            i64::try_from(offset).unwrap_or(i64::MAX),
        );
        let rows = client
            .query(&sql, &[&ns, &limit, &offset])
            .await
            .map_err(|e| self.db(e))?;
        let entries = rows
            .iter()
            .map(|r| self.change_of(r))
            .collect::<Result<Vec<_>>>()?;
        let total = client
            .query_one(
                "SELECT COUNT(*) AS total FROM change_log WHERE namespace = $1",
                &[&ns],
            )
            .await
            .map_err(|e| self.db(e))?;
        let total: i64 = self.column(&total, "total")?;
        Ok((entries, usize::try_from(total).unwrap_or(0)))
    }

    pub async fn record(
        &self,
        ns: &str,
        kind: &str,
        name: &str,
        action: &str,
        operator: &Operator,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.db(e))?;
        insert_audit(&tx, ns, kind, name, action, operator)
            .await
            .map_err(|e| self.db(e))?;
        tx.commit().await.map_err(|e| self.db(e))?;
        self.changed.notify_waiters();
        Ok(())
    }
}

/// An audit-only change-log row (no document).
pub(super) async fn insert_audit(
    tx: &tokio_postgres::Transaction<'_>,
    ns: &str,
    kind: &str,
    name: &str,
    action: &str,
    operator: &Operator,
) -> std::result::Result<(), tokio_postgres::Error> {
    tx.execute(LOCK_FEED, &[&ns]).await?;
    tx.execute(NOTIFY, &[&ns]).await?;
    tx.execute(
        "INSERT INTO change_log (namespace, kind, name, action, operator) \
             VALUES ($1, $2, $3, $4, $5)",
        &[&ns, &kind, &name, &action, &operator.0],
    )
    .await
    .map(|_| ())
}

/// The history row and change-log row of one resource write; returns the history version and
/// the change-log revision.
async fn record_version(
    tx: &tokio_postgres::Transaction<'_>,
    ns: &str,
    kind: Kind,
    name: &str,
    action: Action,
    doc: &Value,
    operator: &Operator,
) -> std::result::Result<(i64, i64), tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) + 1 AS version FROM config_history \
             WHERE namespace = $1 AND kind = $2 AND name = $3",
            &[&ns, &kind.as_str(), &name],
        )
        .await?;
    let version: i64 = row.try_get("version")?;
    tx.execute(
        "INSERT INTO config_history (namespace, kind, name, version, action, operator, config) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &ns,
            &kind.as_str(),
            &name,
            &version,
            &action.as_str(),
            &operator.0,
            doc,
        ],
    )
    .await?;
    let logged: Option<&Value> = (action != Action::Delete).then_some(doc);
    tx.execute(LOCK_FEED, &[&ns]).await?;
    tx.execute(NOTIFY, &[&ns]).await?;
    let row = tx
        .query_one(
            "INSERT INTO change_log (namespace, kind, name, action, operator, config) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING revision",
            &[
                &ns,
                &kind.as_str(),
                &name,
                &action.as_str(),
                &operator.0,
                &logged,
            ],
        )
        .await?;
    Ok((version, row.try_get("revision")?))
}
