//! The leader's copy of the control store's configuration into etcd (contract §6.2, §6.3):
//! a full reconcile that removes drift, then the change feed applied in order, the meta
//! revision key published after each batch, and a reconcile again every interval. A batch of
//! changes goes to etcd in transactions, each key once with its last value.
//!
//! Two departures from the original, both fixes: the revision the feed resumes from is read
//! *before* the reconcile lists the resources (the original read it after, so a change landing
//! in between waited for the next reconcile); and a change etcd refused is retried rather than
//! skipped, so the feed never passes a change it did not apply.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::Value;

use super::{Controller, ControllerError, Stage};
use hermes_control::model::{ChangeEntry, Kind};
use hermes_storage::keys;

/// Changes read from the feed at once.
const BATCH: usize = 500;
/// Keys written in one etcd transaction at most (etcd's default `--max-txn-ops`).
const TXN_OPS: usize = 128;
/// Longest a revision wait lasts before it is asked again (a wait is cheap).
const WAIT: Duration = Duration::from_secs(30);
/// Pause after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// The leader's election key and its creation revision. Every write to etcd is a transaction
/// that holds only while that key is there, so a controller that lost its leadership (paused
/// past its lease, or with a write in flight as it stepped down) cannot overwrite what its
/// successor wrote.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    key: Vec<u8>,
    rev: i64,
}

impl Fence {
    pub(crate) fn new(key: &[u8], rev: i64) -> Fence {
        Fence {
            key: key.to_vec(),
            rev,
        }
    }

    fn holds(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.rev)
    }
}

/// What a reconcile changed in etcd.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Keys written because they were missing or differed.
    pub written: usize,
    /// Keys removed because the control store has no such resource.
    pub deleted: usize,
}

/// Whether two documents are the same configuration: equal after decoding, numbers compared
/// by value (`1` and `1.0` are one number, as Go's float64 canonical form has it).
pub(crate) fn same_doc(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_doc(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_doc(v, w)))
        }
        _ => a == b,
    }
}

fn kind_of(kind: &str) -> Option<Kind> {
    match kind {
        "domain" => Some(Kind::Domain),
        "cluster" => Some(Kind::Cluster),
        _ => None,
    }
}

impl Controller {
    /// `ops` in transactions of at most [`TXN_OPS`], each applied only while `fence` holds.
    async fn write(&self, fence: &Fence, ops: Vec<TxnOp>) -> Result<(), ControllerError> {
        let mut etcd = self.etcd.clone();
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let chunk: Vec<TxnOp> = ops.by_ref().take(TXN_OPS).collect();
            let done = etcd
                .txn(Txn::new().when([fence.holds()]).and_then(chunk))
                .await?;
            if !done.succeeded() {
                return Err(ControllerError::NotLeader);
            }
        }
        Ok(())
    }

    /// Makes etcd's configuration keys what the control store holds.
    pub(crate) async fn reconcile(&self, fence: &Fence) -> Result<Repaired, ControllerError> {
        let ns = &self.config.namespace;
        let mut etcd = self.etcd.clone();
        let mut repaired = Repaired::default();
        let mut ops = Vec::new();
        for kind in [Kind::Domain, Kind::Cluster] {
            let desired: BTreeMap<String, Value> = self
                .control
                .resources(ns, kind)
                .await?
                .into_iter()
                .map(|r| (keys::resource(ns, kind, &r.name), r.doc))
                .collect();
            let prefix = keys::resources(ns, kind);
            let actual = etcd
                .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                .await?;
            let mut present = BTreeMap::new();
            for kv in actual.kvs() {
                present.insert(kv.key().to_vec(), kv.value().to_vec());
            }
            for (key, doc) in &desired {
                let current = present.remove(key.as_bytes());
                let same = current
                    .as_deref()
                    .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                    .is_some_and(|v| same_doc(&v, doc));
                if !same {
                    let value = serde_json::to_vec(doc)
                        .map_err(|e| ControllerError::Document(format!("{key}: {e}")))?;
                    ops.push(TxnOp::put(key.as_str(), value, None));
                    repaired.written += 1;
                }
            }
            // What is left has no resource behind it (foreign and nested keys included).
            for key in present.keys() {
                ops.push(TxnOp::delete(key.clone(), None));
                repaired.deleted += 1;
            }
        }
        self.write(fence, ops).await?;
        self.config
            .metrics
            .reconciled(repaired.written, repaired.deleted);
        if repaired != Repaired::default() {
            tracing::info!(
                written = repaired.written,
                deleted = repaired.deleted,
                namespace = %ns,
                "reconcile repaired etcd"
            );
        }
        Ok(repaired)
    }

    /// Writes a batch of changes to etcd, in transactions of at most [`TXN_OPS`] keys: the
    /// last change of each key (etcd refuses a transaction that names a key twice, and the
    /// last is what the key must hold). Audit-only rows have nothing to write.
    async fn apply(&self, fence: &Fence, changes: &[ChangeEntry]) -> Result<(), ControllerError> {
        let mut writes: Vec<(String, Option<&str>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for change in changes {
            let Some(kind) = kind_of(&change.kind) else {
                continue;
            };
            let key = keys::resource(&self.config.namespace, kind, &change.name);
            let value = if change.action == "delete" {
                None
            } else {
                match &change.doc {
                    Some(doc) => Some(doc.as_str()),
                    None => {
                        tracing::warn!(
                            revision = change.revision,
                            %key,
                            action = %change.action,
                            "a change without its document; the next reconcile writes the key"
                        );
                        continue;
                    }
                }
            };
            match at.get(&key) {
                Some(&i) => writes[i].1 = value,
                None => {
                    at.insert(key.clone(), writes.len());
                    writes.push((key, value));
                }
            }
        }
        let ops = writes
            .iter()
            .map(|(key, value)| match value {
                Some(doc) => TxnOp::put(key.as_str(), *doc, None),
                None => TxnOp::delete(key.as_str(), None),
            })
            .collect();
        self.write(fence, ops).await
    }

    /// `/hermes/meta/config_revision` = `revision`, as ASCII decimal.
    async fn publish(&self, fence: &Fence, revision: i64) -> Result<(), ControllerError> {
        let meta = keys::meta_revision(&self.config.namespace);
        let op = TxnOp::put(meta, revision.to_string(), None);
        self.write(fence, vec![op]).await
    }

    /// Applies every change after `revision`, advancing it past each one applied, then
    /// publishes the revision reached (unless `published` is there already).
    async fn catch_up(
        &self,
        fence: &Fence,
        revision: &AtomicI64,
        published: &mut i64,
    ) -> Result<(), ControllerError> {
        let ns = &self.config.namespace;
        loop {
            let from = revision.load(Ordering::Acquire);
            let batch = self.control.changes(ns, from, BATCH).await?;
            self.apply(fence, &batch).await?;
            self.config.metrics.applied(batch.len());
            if let Some(last) = batch.last() {
                self.synced_to(revision, last.revision);
            }
            if batch.len() < BATCH {
                break;
            }
        }
        let reached = revision.load(Ordering::Acquire);
        if reached > *published {
            self.publish(fence, reached).await?;
            *published = reached;
        }
        Ok(())
    }

    /// Etcd holds the control store's changes up to `to`: recorded where the heartbeat reads
    /// it (`revision`) and in the metrics, always together.
    fn synced_to(&self, revision: &AtomicI64, to: i64) {
        revision.store(to, Ordering::Release);
        self.config.metrics.synced(to);
    }

    /// The leader's sync loop; returns when etcd says this controller no longer leads (its
    /// fence failed), and otherwise runs until dropped (step-down or stop).
    pub(super) async fn sync(&self, revision: Arc<AtomicI64>, fence: Fence) {
        let ns = self.config.namespace.clone();
        // Start: where the feed resumes, then the full picture, then the meta key.
        loop {
            let started = async {
                let from = self.control.revision(&ns).await?;
                self.reconcile(&fence).await?;
                self.publish(&fence, from).await?;
                Ok::<i64, ControllerError>(from)
            }
            .await;
            match started {
                Ok(from) => {
                    self.synced_to(&revision, from);
                    break;
                }
                Err(ControllerError::NotLeader) => return,
                Err(e) => {
                    self.config.metrics.failed(Stage::Start);
                    tracing::warn!(error = %e, "controller start-up sync failed; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        let mut published = revision.load(Ordering::Acquire);
        let mut reconcile = tokio::time::interval(self.config.reconcile_every);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        loop {
            let after = revision.load(Ordering::Acquire);
            // A batch applied but not yet published (etcd refused the meta key): again now.
            let behind = published < after;
            tokio::select! {
                _ = reconcile.tick() => {
                    match self.reconcile(&fence).await {
                        Ok(_) => {}
                        Err(ControllerError::NotLeader) => return,
                        Err(e) => {
                            self.config.metrics.failed(Stage::Reconcile);
                            tracing::warn!(error = %e, "reconcile failed; the next one tries again");
                        }
                    }
                    continue;
                }
                waited = self.control.wait_revision(&ns, after, WAIT), if !behind => match waited {
                    Ok(now) if now > after => self.config.metrics.seen(now),
                    Ok(_) => continue,
                    Err(e) => {
                        self.config.metrics.failed(Stage::Feed);
                        tracing::warn!(error = %e, "reading the change feed failed; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                },
                _ = std::future::ready(()), if behind => {}
            }
            match self.catch_up(&fence, &revision, &mut published).await {
                Ok(()) => {}
                Err(ControllerError::NotLeader) => return,
                Err(e) => {
                    self.config.metrics.failed(match e {
                        ControllerError::Control(_) => Stage::Feed,
                        _ => Stage::Apply,
                    });
                    tracing::warn!(
                    error = %e,
                    revision = revision.load(Ordering::Acquire),
                    "applying the change feed to etcd failed; retrying"
                    );
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_doc;
    use serde_json::json;

    #[test]
    fn documents_compare_as_go_canonical_forms_do() {
        assert!(same_doc(
            &json!({"a": 1, "b": [1, {"c": "x"}]}),
            &serde_json::from_str(r#"{"b":[1.0,{"c":"x"}],"a":1.0}"#).unwrap()
        ));
        assert!(!same_doc(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!same_doc(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!same_doc(&json!([1, 2]), &json!([2, 1])));
        assert!(!same_doc(&json!({"a": "1"}), &json!({"a": 1})));
    }
}
