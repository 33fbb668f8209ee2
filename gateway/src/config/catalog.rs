//! The configuration the gateway serves: every domain and cluster document by key, applied in
//! revision order. A document that fails to parse is reported (log, metric, [`Catalog::errors`])
//! and the previous version of that one resource stays in force. Domains are ordered by name, so
//! the route table never depends on arrival order.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::source::{Change, Prefixes, Update};
use super::types::{ClusterConfig, DomainConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Domain,
    Cluster,
}

/// What applying an update changed.
#[derive(Debug, Default)]
pub struct Applied {
    pub domains_changed: bool,
    pub cluster_upserts: Vec<ClusterConfig>,
    pub cluster_removals: Vec<String>,
    /// After a full listing: the complete cluster set replaces the old one.
    pub clusters_replaced: Option<Vec<ClusterConfig>>,
    pub accepted: u64,
    pub refused: u64,
}

#[derive(Debug)]
pub struct Catalog {
    prefixes: Prefixes,
    domains: BTreeMap<String, Arc<DomainConfig>>,
    clusters: BTreeMap<String, ClusterConfig>,
    /// Key → why its current value was refused.
    errors: BTreeMap<String, String>,
}

impl Catalog {
    pub fn new(prefixes: Prefixes) -> Self {
        Catalog {
            prefixes,
            domains: BTreeMap::new(),
            clusters: BTreeMap::new(),
            errors: BTreeMap::new(),
        }
    }

    pub fn domains(&self) -> Vec<Arc<DomainConfig>> {
        self.domains.values().cloned().collect()
    }

    pub fn errors(&self) -> &BTreeMap<String, String> {
        &self.errors
    }

    /// Which resource a key names: legacy `/history/` keys and nested keys are not resources.
    fn classify(&self, key: &str) -> Option<(Kind, String)> {
        if key.contains("/history/") {
            return None;
        }
        let (kind, name) = if let Some(n) = key.strip_prefix(&self.prefixes.domains) {
            (Kind::Domain, n)
        } else if let Some(n) = key.strip_prefix(&self.prefixes.clusters) {
            (Kind::Cluster, n)
        } else {
            return None;
        };
        (!name.is_empty() && !name.contains('/')).then(|| (kind, name.to_string()))
    }

    fn parse<T: serde::de::DeserializeOwned>(
        name: &str,
        value: &[u8],
        json_name: impl Fn(&T) -> &str,
    ) -> Result<T, String> {
        let doc: T = serde_json::from_slice(value).map_err(|e| e.to_string())?;
        // The key names the resource; a document claiming another name would be unremovable.
        if json_name(&doc) != name {
            return Err(format!(
                "document name {:?} does not match its key's name {name:?}",
                json_name(&doc)
            ));
        }
        Ok(doc)
    }

    fn put(&mut self, key: &str, value: &[u8], out: &mut Applied) {
        let Some((kind, name)) = self.classify(key) else {
            return;
        };
        let result = match kind {
            Kind::Domain => Self::parse::<DomainConfig>(&name, value, |d| &d.name).map(|d| {
                if d.hosts.is_empty() {
                    return Err("domain has no hosts".to_string());
                }
                self.domains.insert(name.clone(), Arc::new(d));
                out.domains_changed = true;
                Ok(())
            }),
            Kind::Cluster => Self::parse::<ClusterConfig>(&name, value, |c| &c.name).map(|c| {
                self.clusters.insert(name.clone(), c.clone());
                out.cluster_upserts.push(c);
                Ok(())
            }),
        };
        match result.and_then(|r| r) {
            Ok(()) => {
                self.errors.remove(key);
                out.accepted += 1;
            }
            Err(reason) => {
                tracing::warn!(%key, %reason, "configuration document refused; its previous version stays in force");
                self.errors.insert(key.to_string(), reason);
                out.refused += 1;
            }
        }
    }

    fn delete(&mut self, key: &str, out: &mut Applied) {
        let Some((kind, name)) = self.classify(key) else {
            return;
        };
        self.errors.remove(key);
        match kind {
            Kind::Domain => {
                if self.domains.remove(&name).is_some() {
                    out.domains_changed = true;
                }
            }
            Kind::Cluster => {
                if self.clusters.remove(&name).is_some() {
                    out.cluster_removals.push(name);
                }
            }
        }
        out.accepted += 1;
    }

    pub fn apply(&mut self, update: Update) -> Applied {
        let mut out = Applied::default();
        match update {
            Update::Full { items, .. } => {
                // A re-list replaces everything, but a refused document still leaves the
                // previous version of its resource in force.
                let previous_domains = std::mem::take(&mut self.domains);
                let previous_clusters = std::mem::take(&mut self.clusters);
                self.errors.clear();
                for (key, value) in &items {
                    self.put(key, value, &mut out);
                }
                for key in self.errors.keys().cloned().collect::<Vec<_>>() {
                    if let Some((kind, name)) = self.classify(&key) {
                        match kind {
                            Kind::Domain => {
                                if let Some(d) = previous_domains.get(&name) {
                                    self.domains.insert(name, d.clone());
                                }
                            }
                            Kind::Cluster => {
                                if let Some(c) = previous_clusters.get(&name) {
                                    self.clusters.insert(name, c.clone());
                                }
                            }
                        }
                    }
                }
                out.domains_changed = true;
                out.cluster_upserts.clear();
                out.clusters_replaced = Some(self.clusters.values().cloned().collect());
            }
            Update::Changes { changes, .. } => {
                for Change { key, value } in changes {
                    match value {
                        Some(v) => self.put(&key, &v, &mut out),
                        None => self.delete(&key, &mut out),
                    }
                }
            }
        }
        out
    }

    /// Routes of all loaded domains, enabled or not (`gateway_config_routes_total`).
    pub fn route_count(&self) -> usize {
        self.domains.values().map(|d| d.routes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, json: &str) -> Change {
        Change {
            key: key.into(),
            value: Some(json.as_bytes().to_vec()),
        }
    }

    #[test]
    fn refused_documents_keep_the_previous_version() {
        let mut c = Catalog::new(Prefixes::for_namespace("default"));
        let full = Update::Full {
            revision: 5,
            items: vec![
                (
                    "/hermes/clusters/api".into(),
                    br#"{"name":"api","nodes":[{"host":"a","port":1}]}"#.to_vec(),
                ),
                (
                    "/hermes/domains/web".into(),
                    br#"{"name":"web","hosts":["w"],"routes":[]}"#.to_vec(),
                ),
                ("/hermes/domains/history/old".into(), b"junk".to_vec()),
            ],
        };
        let applied = c.apply(full);
        assert_eq!((applied.accepted, applied.refused), (2, 0));
        let applied = c.apply(Update::Changes {
            revision: 6,
            changes: vec![put(
                "/hermes/clusters/api",
                r#"{"name":"api","timeout":{"read":-1}}"#,
            )],
        });
        assert_eq!(applied.refused, 1);
        assert!(applied.cluster_upserts.is_empty());
        assert_eq!(c.clusters["api"].nodes[0].host, "a");
        assert!(c.errors().contains_key("/hermes/clusters/api"));
        // A re-list that still carries the bad document keeps the old version too.
        c.apply(Update::Full {
            revision: 7,
            items: vec![("/hermes/clusters/api".into(), b"{not json".to_vec())],
        });
        assert_eq!(c.clusters["api"].nodes[0].host, "a");
        assert!(c.domains.is_empty(), "the domain was gone from the listing");
        // Fixing it clears the error.
        c.apply(Update::Changes {
            revision: 8,
            changes: vec![put(
                "/hermes/clusters/api",
                r#"{"name":"api","nodes":[{"host":"b","port":2}]}"#,
            )],
        });
        assert!(c.errors().is_empty());
        assert_eq!(c.clusters["api"].nodes[0].host, "b");
    }

    #[test]
    fn names_must_match_keys_and_nested_keys_are_ignored() {
        let mut c = Catalog::new(Prefixes::for_namespace("default"));
        let applied = c.apply(Update::Changes {
            revision: 1,
            changes: vec![
                put("/hermes/domains/a", r#"{"name":"b","hosts":["h"]}"#),
                put("/hermes/domains/x/y", r#"{"name":"y","hosts":["h"]}"#),
                put("/hermes/domains/c", r#"{"name":"c","hosts":[]}"#),
            ],
        });
        assert_eq!(applied.refused, 2);
        assert!(c.domains.is_empty());
        c.apply(Update::Changes {
            revision: 2,
            changes: vec![Change {
                key: "/hermes/domains/a".into(),
                value: None,
            }],
        });
        assert!(c.errors().keys().all(|k| k != "/hermes/domains/a"));
    }
}
