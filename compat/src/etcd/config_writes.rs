//! Writes to configuration keys through the etcd endpoint, on a node whose control store is
//! this raft store. Such a write is a change of the control plane like one made through the
//! API, by operator `etcd`: a value the gateway would refuse is refused here, with the reason
//! (rather than stored and skipped by every gateway), and the write records its history
//! version, its change-log row and the namespace's revision with it, so a controller
//! following `/api/v1/config/watch` hears of it and `…/history` shows it. The API's stricter
//! document rules (contract §1.7) stay the API's: the etcd endpoint accepts what the gateway
//! serves, as an external etcd does.
//!
//! The keys: `/hermes/{domains,clusters}/<name>` (namespace `default`) and
//! `/hermes/ns/<ns>/{domains,clusters}/<name>`; the name is the document's. The meta revision
//! key (`…/meta/config_revision`) belongs to the control plane and is not written from here.
//! What the control plane cannot record is refused rather than written unrecorded: a lease on
//! a configuration key (its expiry would delete the resource with no record), `ignore_value`
//! and `ignore_lease`, a key nested below a resource's, and a transaction that writes any of
//! these keys (write them one by one, or replace a namespace's configuration through the API).
//! A delete of a range records one delete per resource in it; other keys in the range are
//! deleted as plain keys; the deletes are not one atomic step.

use std::sync::Arc;

use serde_json::Value;

use hermes_control::model::{Kind, Operator};
use hermes_control::store::{ControlError, ControlStore, ResourceChange};
use hermes_control::validate;
use hermes_storage::mvcc::key_value::{KeyRange, KeyValue};
use hermes_storage::mvcc::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use hermes_storage::mvcc::response::{DeleteRangeResponse, PutResponse};

use super::error::{Code, EtcdError};

/// Where configuration keys live: `default`'s, and every namespace's root.
const CONFIG_PREFIXES: [&str; 4] = [
    "/hermes/domains/",
    "/hermes/clusters/",
    "/hermes/meta/",
    "/hermes/ns/",
];

/// Who the control plane records as the author of these writes.
const OPERATOR: &str = "etcd";

/// What a key is to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigKey {
    /// A domain's or cluster's document.
    Resource {
        ns: String,
        kind: Kind,
        name: String,
    },
    /// A namespace's meta revision.
    Meta,
    /// Under a resource prefix, but not a resource (a nested key).
    Nested,
}

/// Classifies `key`; `None` for a key that is not the control plane's configuration.
pub fn classify(key: &[u8]) -> Option<ConfigKey> {
    let Ok(key) = std::str::from_utf8(key) else {
        // Not UTF-8: no resource has such a name, but under a configuration prefix the gateway
        // (reading keys lossily) would still take it for one.
        let under = CONFIG_PREFIXES
            .iter()
            .any(|p| key.starts_with(p.as_bytes()));
        return under.then_some(ConfigKey::Nested);
    };
    let (ns, rest) = match key.strip_prefix("/hermes/ns/") {
        Some(rest) => {
            let (ns, rest) = rest.split_once('/')?;
            (ns.to_string(), rest)
        }
        None => ("default".to_string(), key.strip_prefix("/hermes/")?),
    };
    if rest == "meta/config_revision" {
        return Some(ConfigKey::Meta);
    }
    let (kind, name) = if let Some(name) = rest.strip_prefix("domains/") {
        (Kind::Domain, name)
    } else if let Some(name) = rest.strip_prefix("clusters/") {
        (Kind::Cluster, name)
    } else {
        return None;
    };
    if name.is_empty() || name.contains('/') || validate::resource_name(name).is_err() {
        return Some(ConfigKey::Nested);
    }
    Some(ConfigKey::Resource {
        ns,
        kind,
        name: name.to_string(),
    })
}

/// Whether `range` may hold configuration keys: those of `default`, or any namespace's.
pub fn may_hold_config(range: &KeyRange) -> bool {
    CONFIG_PREFIXES
        .iter()
        .any(|p| range.overlaps(&KeyRange::prefix(p.as_bytes().to_vec())))
}

fn refused(message: impl Into<String>) -> EtcdError {
    EtcdError::new(Code::FailedPrecondition, message)
}

fn invalid(key: &str, message: impl std::fmt::Display) -> EtcdError {
    EtcdError::invalid(format!("etcdserver: {key}: {message}"))
}

fn meta_refused() -> EtcdError {
    refused(
        "etcdserver: the meta revision key is the control plane's: it moves with every \
         recorded change",
    )
}

fn control_error(e: ControlError) -> EtcdError {
    match e {
        ControlError::NotFound(m) => EtcdError::new(Code::NotFound, format!("etcdserver: {m}")),
        ControlError::Unavailable(m) | ControlError::Unknown(m) => {
            EtcdError::new(Code::Unavailable, format!("etcdserver: {m}"))
        }
        ControlError::NoSpace(_) => EtcdError::new(
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded",
        ),
        ControlError::Conflict(m) | ControlError::AlreadyExists(m) => {
            EtcdError::new(Code::FailedPrecondition, format!("etcdserver: {m}"))
        }
        ControlError::Internal(m) => EtcdError::new(Code::Internal, format!("etcdserver: {m}")),
    }
}

/// Refuses a transaction that writes a configuration key (compares and reads are fine).
pub fn check_txn(t: &TxnRequest) -> Result<(), EtcdError> {
    for op in t.success.iter().chain(&t.failure) {
        let writes = match op {
            RequestOp::Put(p) => classify(&p.key).is_some(),
            RequestOp::DeleteRange(d) => may_hold_config(&d.range),
            RequestOp::Txn(inner) => {
                check_txn(inner)?;
                false
            }
            RequestOp::Range(_) => false,
        };
        if writes {
            return Err(refused(
                "etcdserver: configuration keys are written one by one (put, del) or through \
                 the API, not in a transaction: the control plane records each change",
            ));
        }
    }
    Ok(())
}

/// Writes through the control store.
pub struct ConfigWrites {
    store: Arc<dyn ControlStore>,
    /// The API's `--max-document-bytes`.
    max_document_bytes: usize,
}

impl ConfigWrites {
    pub fn new(store: Arc<dyn ControlStore>, max_document_bytes: usize) -> ConfigWrites {
        ConfigWrites {
            store,
            max_document_bytes,
        }
    }

    /// The document a put of `value` at `name` stores: what the gateway would serve (its own
    /// check, after its defaults), as a value in an external etcd; the API's stricter rules
    /// (contract §1.7) are the API's.
    fn document(
        &self,
        key: &str,
        kind: Kind,
        name: &str,
        value: &[u8],
    ) -> Result<Value, EtcdError> {
        let mut doc: Value = serde_json::from_slice(value)
            .map_err(|e| invalid(key, format!("the value is not a JSON document: {e}")))?;
        let Some(obj) = doc.as_object_mut() else {
            return Err(invalid(key, "the value must be a JSON object"));
        };
        match obj.get("name") {
            None => {
                obj.insert("name".into(), Value::String(name.to_string()));
            }
            Some(Value::String(n)) if n == name => {}
            Some(other) => {
                return Err(invalid(
                    key,
                    format!("the document's name {other} is not the key's {name:?}"),
                ))
            }
        }
        let doc = match kind {
            Kind::Domain => validate::normalize_domain(doc),
            Kind::Cluster => validate::normalize_cluster(doc),
        };
        let size = serde_json::to_vec(&doc).map_or(usize::MAX, |v| v.len());
        if size > self.max_document_bytes {
            return Err(invalid(
                key,
                format!(
                    "the document is {size} bytes, more than the {} this cluster stores",
                    self.max_document_bytes
                ),
            ));
        }
        let servable = match kind {
            Kind::Domain => hermes_gateway::config::check::domain(&doc),
            Kind::Cluster => hermes_gateway::config::check::cluster(&doc),
        };
        servable.map_err(|m| invalid(key, format!("the gateway would refuse it: {m}")))?;
        Ok(doc)
    }

    /// A put of a configuration key: `prev` is the key's current value when the request asks
    /// for it (read just before the write). Revision 0: nothing was written (the document is
    /// the one stored); the caller answers with the store's current revision.
    pub async fn put(
        &self,
        target: ConfigKey,
        req: &PutRequest,
        prev: Option<KeyValue>,
    ) -> Result<PutResponse, EtcdError> {
        let key = String::from_utf8_lossy(&req.key).into_owned();
        let (ns, kind, name) =
            match target {
                ConfigKey::Resource { ns, kind, name } => (ns, kind, name),
                ConfigKey::Meta => return Err(meta_refused()),
                ConfigKey::Nested => return Err(invalid(
                    &key,
                    "not a resource key: a domain or cluster is /hermes/[ns/<ns>/]domains/<name> \
                     or …/clusters/<name>, with a name the API accepts",
                )),
            };
        if req.lease != 0 {
            return Err(invalid(
                &key,
                "a configuration key cannot be attached to a lease: its expiry would delete \
                 the resource without a record",
            ));
        }
        if req.ignore_value || req.ignore_lease {
            return Err(invalid(
                &key,
                "ignore_value and ignore_lease are not supported on configuration keys",
            ));
        }
        let doc = self.document(&key, kind, &name, &req.value)?;
        if !self
            .store
            .namespace_exists(&ns)
            .await
            .map_err(control_error)?
        {
            return Err(EtcdError::new(
                Code::NotFound,
                format!("etcdserver: namespace {ns:?} does not exist"),
            ));
        }
        // The same document again (a controller copying back what it read, a tool re-putting
        // a value) is no change: nothing is recorded, so nothing loops.
        let current = self
            .store
            .resource(&ns, kind, &name)
            .await
            .map_err(control_error)?;
        if current.is_some_and(|r| crate::controller::same_doc(&r.doc, &doc)) {
            return Ok(PutResponse {
                revision: 0,
                prev_kv: prev.filter(|_| req.prev_kv),
            });
        }
        let written = self
            .store
            .write_resource(
                &ns,
                kind,
                &name,
                ResourceChange::Put { doc },
                &Operator(OPERATOR.into()),
            )
            .await
            .map_err(control_error)?;
        Ok(PutResponse {
            revision: written.revision,
            prev_kv: prev.filter(|_| req.prev_kv),
        })
    }

    /// Deletes each key of `found` (the range's keys, read just before): resources through
    /// the control store, other keys with `plain`. The meta key refuses the whole request
    /// before anything is deleted.
    pub async fn delete<F, Fut>(
        &self,
        req: &DeleteRangeRequest,
        found: Vec<KeyValue>,
        plain: F,
    ) -> Result<DeleteRangeResponse, EtcdError>
    where
        F: Fn(Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<i64, EtcdError>>,
    {
        if found
            .iter()
            .any(|kv| classify(&kv.key) == Some(ConfigKey::Meta))
        {
            return Err(meta_refused());
        }
        let mut revision = 0;
        let mut deleted = 0;
        for kv in &found {
            match classify(&kv.key) {
                Some(ConfigKey::Resource { ns, kind, name }) => {
                    let written = self
                        .store
                        .write_resource(
                            &ns,
                            kind,
                            &name,
                            ResourceChange::Delete,
                            &Operator(OPERATOR.into()),
                        )
                        .await;
                    match written {
                        Ok(w) => {
                            revision = revision.max(w.revision);
                            deleted += 1;
                        }
                        // Deleted meanwhile by someone else: nothing left to do.
                        Err(ControlError::NotFound(_)) => {}
                        Err(e) => return Err(control_error(e)),
                    }
                }
                _ => {
                    revision = revision.max(plain(kv.key.clone()).await?);
                    deleted += 1;
                }
            }
        }
        Ok(DeleteRangeResponse {
            revision,
            deleted,
            prev_kvs: if req.prev_kv { found } else { Vec::new() },
        })
    }

    /// The request to read a range's current keys before a delete.
    pub fn read_before(range: &KeyRange) -> RangeRequest {
        RangeRequest {
            range: range.clone(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_as_the_gateway_reads_them() {
        let r = |ns: &str, kind, name: &str| {
            Some(ConfigKey::Resource {
                ns: ns.into(),
                kind,
                name: name.into(),
            })
        };
        assert_eq!(
            classify(b"/hermes/domains/web"),
            r("default", Kind::Domain, "web")
        );
        assert_eq!(
            classify(b"/hermes/ns/team-a/clusters/be"),
            r("team-a", Kind::Cluster, "be")
        );
        assert_eq!(
            classify(b"/hermes/meta/config_revision"),
            Some(ConfigKey::Meta)
        );
        assert_eq!(
            classify(b"/hermes/ns/team-a/meta/config_revision"),
            Some(ConfigKey::Meta)
        );
        assert_eq!(classify(b"/hermes/domains/a/b"), Some(ConfigKey::Nested));
        assert_eq!(classify(b"/hermes/domains/"), Some(ConfigKey::Nested));
        assert_eq!(classify(b"/hermes/instances/gw-1"), None);
        assert_eq!(classify(b"/app/x"), None);
        assert_eq!(classify(b"/hermes/domains/\xff"), Some(ConfigKey::Nested));
        assert_eq!(classify(b"/app/\xff"), None);
        assert!(may_hold_config(&KeyRange::prefix(b"/hermes/".to_vec())));
        assert!(!may_hold_config(&KeyRange::prefix(
            b"/hermes/instances/".to_vec()
        )));
    }
}
