//! Namespaces, domains and clusters with their history, the change log and the audit view of
//! it. A resource write is one transaction: the document at the gateway's key, its history
//! entry, the history counter, its change-log row, the change sequence and the meta revision.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use hermes_storage::mvcc::key_value::{prefix_end, KeyRange, KeyValue};
use hermes_storage::mvcc::request::{RangeRequest, SortOrder};
use hermes_storage::watch::{WatchOptions, Watcher};

use super::{decode, encode, Replicated, Tx};
use crate::model::{now_rfc3339, Action, ChangeEntry, HistoryEntry, Kind, Operator, Resource};
use crate::store::{ControlError, Imported, ResourceChange, Result, Written};
use hermes_storage::keys;

/// The namespace records' value: when it was created.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct NamespaceRecord {
    name: String,
    created_at: String,
}

/// A decimal counter record (0 when absent).
fn parse_counter(kv: Option<&KeyValue>) -> i64 {
    kv.and_then(|kv| std::str::from_utf8(&kv.value).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn not_found(kind: Kind, name: &str) -> ControlError {
    ControlError::NotFound(format!("{} \"{name}\" not found", kind.as_str()))
}

fn doc_json(doc: &Value) -> Result<String> {
    serde_json::to_string(doc).map_err(|e| ControlError::Internal(e.to_string()))
}

impl Replicated {
    pub(super) async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.barrier().await?;
        let mut names: Vec<String> = self
            .scan_records::<NamespaceRecord>(&keys::namespaces())
            .await?
            .into_iter()
            .map(|n| n.name)
            .collect();
        if !names.iter().any(|n| n == "default") {
            names.push("default".into());
        }
        names.sort();
        Ok(names)
    }

    /// Read locally first (namespaces are never deleted, so a hit is final); only a miss
    /// waits for the latest writes, in case the namespace was just created through another
    /// node.
    pub(super) async fn has_namespace(&self, ns: &str) -> Result<bool> {
        if ns == "default" || self.get(&keys::namespace(ns)).is_some() {
            return Ok(true);
        }
        self.barrier().await?;
        Ok(self.get(&keys::namespace(ns)).is_some())
    }

    pub(super) async fn add_namespace(
        &self,
        name: &str,
        owner: Option<&str>,
        operator: &Operator,
    ) -> Result<()> {
        let record = encode(&NamespaceRecord {
            name: name.to_string(),
            created_at: now_rfc3339(),
        })?;
        let audit = Self::audit_entry("namespace", name, "create", operator);
        self.attempt(|s| {
            let key = keys::namespace(name);
            let current = s.get(&key);
            if current.is_some() || name == "default" {
                return Err(ControlError::AlreadyExists(
                    "namespace already exists".into(),
                ));
            }
            let mut tx = Tx::default();
            tx.pin(&key, None);
            tx.put(&key, record.clone());
            s.log_changes(&mut tx, "_global", vec![audit.clone()])?;
            if let Some(sub) = owner {
                s.pin_member_user(&mut tx, sub)?;
                let member = crate::model::Member {
                    namespace: name.to_string(),
                    user_sub: sub.to_string(),
                    role: crate::scopes::Role::Owner.as_str().to_string(),
                };
                tx.put(&keys::member(name, sub), encode(&member)?);
                let action = format!("set_role:{}", member.role);
                let joined = Self::audit_entry("member", sub, &action, operator);
                s.log_changes(&mut tx, name, vec![joined])?;
            }
            Ok((tx, ()))
        })
        .await
    }

    /// The resource at its key, if it exists and is a readable document.
    pub(super) fn read_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
    ) -> Result<Option<(Resource, Arc<KeyValue>)>> {
        let Some(kv) = self.get(&keys::resource(ns, kind, name)) else {
            return Ok(None);
        };
        let doc = serde_json::from_slice(&kv.value).map_err(|e| {
            ControlError::Internal(format!(
                "the stored {} \"{name}\" is not valid JSON: {e}",
                kind.as_str()
            ))
        })?;
        Ok(Some((
            Resource {
                name: name.to_string(),
                doc,
                resource_version: kv.version,
            },
            kv,
        )))
    }

    pub(super) async fn list_resources(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>> {
        self.barrier().await?;
        let prefix = keys::resources(ns, kind);
        let mut out = Vec::new();
        for kv in self.scan(&prefix).await? {
            let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
            if name.contains('/') {
                // A nested key written through the etcd endpoint is not a resource.
                continue;
            }
            match serde_json::from_slice(&kv.value) {
                Ok(doc) => out.push(Resource {
                    name,
                    doc,
                    resource_version: kv.version,
                }),
                Err(e) => tracing::warn!(
                    key = %String::from_utf8_lossy(&kv.key),
                    error = %e,
                    "skipping a stored document that is not JSON"
                ),
            }
        }
        Ok(out)
    }

    /// Adds the writes of one resource version to `tx`: the document (or its deletion), the
    /// history entry and counter, and pruning of history past the retention. Returns the
    /// history version and the change-log row to record.
    #[allow(clippy::too_many_arguments)]
    fn version_resource(
        &self,
        tx: &mut Tx,
        ns: &str,
        kind: Kind,
        name: &str,
        current: Option<&KeyValue>,
        action: Action,
        doc: &Value,
        operator: &Operator,
    ) -> Result<(i64, ChangeEntry)> {
        let key = keys::resource(ns, kind, name);
        tx.pin(&key, current);
        let version = self.next_counter(tx, &keys::history_version(ns, kind, name));
        let text = doc_json(doc)?;
        let now = now_rfc3339();
        if action == Action::Delete {
            tx.delete(&key);
        } else {
            tx.put(&key, text.clone().into_bytes());
        }
        let entry = HistoryEntry {
            version,
            timestamp: now.clone(),
            kind,
            name: name.to_string(),
            action,
            operator: operator.0.clone(),
            doc: Some(text.clone()),
        };
        tx.put(&keys::history(ns, kind, name, version), encode(&entry)?);
        let retention = self.history_retention as i64;
        if version > retention {
            tx.delete_range(
                &keys::history(ns, kind, name, 0),
                &keys::history(ns, kind, name, version - retention + 1),
            );
        }
        let change = ChangeEntry {
            revision: 0,
            kind: kind.as_str().to_string(),
            name: name.to_string(),
            action: action.as_str().to_string(),
            operator: operator.0.clone(),
            timestamp: now,
            doc: (action != Action::Delete).then_some(text),
        };
        Ok((version, change))
    }

    pub(super) async fn change_resource(
        &self,
        ns: &str,
        kind: Kind,
        name: &str,
        change: ResourceChange,
        operator: &Operator,
    ) -> Result<Written> {
        let (mut written, revision) = self
            .attempt_at(|s| {
                let current = s.read_resource(ns, kind, name)?;
                let (action, doc) = match &change {
                    ResourceChange::Create { doc } => {
                        if current.is_some() {
                            return Err(ControlError::AlreadyExists(format!(
                                "{} \"{name}\" already exists",
                                kind.as_str()
                            )));
                        }
                        (Action::Create, doc.clone())
                    }
                    ResourceChange::Update {
                        doc,
                        expected_version,
                    } => {
                        if current
                            .as_ref()
                            .is_none_or(|(r, _)| r.resource_version != *expected_version)
                        {
                            return Err(ControlError::Conflict(format!(
                                "conflict: the {} has been modified by another user, please \
                             refresh and try again",
                                kind.as_str()
                            )));
                        }
                        (Action::Update, doc.clone())
                    }
                    ResourceChange::Put { doc } => match &current {
                        Some(_) => (Action::Update, doc.clone()),
                        None => (Action::Create, doc.clone()),
                    },
                    ResourceChange::Delete => match &current {
                        // History keeps the document as it was before the delete.
                        Some((r, _)) => (Action::Delete, r.doc.clone()),
                        None => return Err(not_found(kind, name)),
                    },
                    ResourceChange::Rollback { version } => {
                        let entry: HistoryEntry = s
                            .get_record(&keys::history(ns, kind, name, *version))?
                            .map(|(h, _)| h)
                            .ok_or_else(|| {
                                ControlError::NotFound(format!(
                                    "{} \"{name}\" version {version} not found",
                                    kind.as_str()
                                ))
                            })?;
                        let doc = entry
                            .doc
                            .as_deref()
                            .map(serde_json::from_str::<Value>)
                            .transpose()
                            .map_err(|e| ControlError::Internal(e.to_string()))?
                            .ok_or_else(|| {
                                ControlError::NotFound(format!(
                                    "{} \"{name}\" version {version} has no document",
                                    kind.as_str()
                                ))
                            })?;
                        (Action::Rollback, doc)
                    }
                };
                let current_kv = current.as_ref().map(|(_, kv)| kv.as_ref());
                let mut tx = Tx::default();
                let (version, entry) = s.version_resource(
                    &mut tx, ns, kind, name, current_kv, action, &doc, operator,
                )?;
                s.log_changes(&mut tx, ns, vec![entry])?;
                let resource_version = match action {
                    Action::Delete => 0,
                    _ => current_kv.map_or(1, |kv| kv.version + 1),
                };
                let stored = (action != Action::Delete).then_some(doc);
                Ok((
                    tx,
                    Written {
                        version,
                        resource_version,
                        doc: stored,
                        revision: 0,
                    },
                ))
            })
            .await?;
        written.revision = revision;
        Ok(written)
    }

    pub(super) async fn replace_all(
        &self,
        ns: &str,
        domains: Vec<Value>,
        clusters: Vec<Value>,
        operator: &Operator,
    ) -> Result<Imported> {
        let name_of = |doc: &Value| doc.get("name").and_then(Value::as_str).map(str::to_string);
        for _ in 0..8 {
            self.barrier().await?;
            let mut tx = Tx::default();
            let mut changes = Vec::new();
            for (kind, docs) in [(Kind::Cluster, &clusters), (Kind::Domain, &domains)] {
                let existing = self.list_resources_unsynced(ns, kind).await?;
                let wanted: Vec<String> = docs.iter().filter_map(name_of).collect();
                for r in existing.iter().filter(|r| !wanted.contains(&r.name)) {
                    let kv = self.get(&keys::resource(ns, kind, &r.name));
                    let (_, entry) = self.version_resource(
                        &mut tx,
                        ns,
                        kind,
                        &r.name,
                        kv.as_deref(),
                        Action::Delete,
                        &r.doc,
                        operator,
                    )?;
                    changes.push(entry);
                }
                for doc in docs {
                    let Some(name) = name_of(doc) else { continue };
                    let kv = self.get(&keys::resource(ns, kind, &name));
                    let (_, entry) = self.version_resource(
                        &mut tx,
                        ns,
                        kind,
                        &name,
                        kv.as_deref(),
                        Action::Import,
                        doc,
                        operator,
                    )?;
                    changes.push(entry);
                }
            }
            self.log_changes(&mut tx, ns, changes)?;
            if let Some(revision) = tx.commit(&self.node).await? {
                return Ok(Imported {
                    domains: domains.len(),
                    clusters: clusters.len(),
                    revision,
                });
            }
        }
        Err(ControlError::Unavailable(
            "the configuration kept changing during the import; try again".into(),
        ))
    }

    async fn list_resources_unsynced(&self, ns: &str, kind: Kind) -> Result<Vec<Resource>> {
        let prefix = keys::resources(ns, kind);
        Ok(self
            .scan(&prefix)
            .await?
            .into_iter()
            .filter_map(|kv| {
                let name = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
                let doc = serde_json::from_slice(&kv.value).ok()?;
                (!name.contains('/')).then_some(Resource {
                    name,
                    doc,
                    resource_version: kv.version,
                })
            })
            .collect())
    }

    /// Appends `entries` to the namespace's change log in one transaction: consecutive
    /// revisions, the sequence pinned and advanced once, the meta revision set when any entry
    /// is configuration, and rows past the retention dropped.
    pub(super) fn log_changes(
        &self,
        tx: &mut Tx,
        ns: &str,
        entries: Vec<ChangeEntry>,
    ) -> Result<i64> {
        let seq_key = keys::change_sequence(ns);
        let seq = self.get(&seq_key);
        tx.pin(&seq_key, seq.as_deref());
        let mut revision = parse_counter(seq.as_deref());
        let mut config = false;
        for mut entry in entries {
            revision += 1;
            entry.revision = revision;
            config |= entry.is_config();
            tx.put(&keys::change(ns, revision), encode(&entry)?);
        }
        tx.put(&seq_key, revision.to_string().into_bytes());
        if config {
            tx.put(&keys::meta_revision(ns), revision.to_string().into_bytes());
        }
        if revision > super::CHANGE_LOG_RETENTION {
            tx.delete_range(
                &keys::change(ns, 0),
                &keys::change(ns, revision - super::CHANGE_LOG_RETENTION + 1),
            );
        }
        Ok(revision)
    }

    /// The next value of a counter record, pinned and advanced in `tx`.
    pub(super) fn next_counter(&self, tx: &mut Tx, key: &str) -> i64 {
        let kv = self.get(key);
        tx.pin(key, kv.as_deref());
        let next = parse_counter(kv.as_deref()) + 1;
        tx.put(key, next.to_string().into_bytes());
        next
    }

    pub(super) fn current_revision(&self, ns: &str) -> i64 {
        parse_counter(self.get(&keys::change_sequence(ns)).as_deref())
    }

    pub(super) async fn list_changes(
        &self,
        ns: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ChangeEntry>> {
        self.barrier().await?;
        let prefix = keys::changes(ns);
        let resp = self
            .node
            .store()
            .range(RangeRequest {
                range: KeyRange::new(
                    keys::change(ns, after.max(0) + 1).into_bytes(),
                    prefix_end(prefix.as_bytes()),
                ),
                limit: limit as i64,
                serializable: true,
                ..RangeRequest::default()
            })
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        resp.kvs
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    pub(super) async fn wait_for_revision(
        &self,
        ns: &str,
        after: i64,
        wait: Duration,
    ) -> Result<i64> {
        self.barrier().await?;
        let key = keys::change_sequence(ns);
        // Subscribe before looking, so a write in between is not missed.
        let mut watcher = Watcher::new(
            self.node.store().clone(),
            WatchOptions {
                range: KeyRange::new(key.into_bytes(), Vec::new()),
                ..WatchOptions::default()
            },
        );
        let now = self.current_revision(ns);
        if now > after || wait.is_zero() {
            return Ok(now);
        }
        let _ = tokio::time::timeout(wait, watcher.next()).await;
        Ok(self.current_revision(ns))
    }

    pub(super) async fn list_audit(
        &self,
        ns: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<ChangeEntry>, usize)> {
        self.barrier().await?;
        let resp = self
            .node
            .store()
            .range(RangeRequest {
                range: KeyRange::prefix(keys::changes(ns).into_bytes()),
                limit: (offset + limit) as i64,
                sort_order: SortOrder::Descend,
                serializable: true,
                ..RangeRequest::default()
            })
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let entries = resp
            .kvs
            .iter()
            .skip(offset)
            .map(|kv| decode(&kv.key, &kv.value))
            .collect::<Result<Vec<ChangeEntry>>>()?;
        Ok((entries, resp.count as usize))
    }
}
