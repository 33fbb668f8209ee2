//! The gateway's configuration from an external etcd: one consistent listing (domains, then
//! clusters at the domains' revision), then one watch on the namespace's root from the next
//! revision. A broken watch resumes from the last revision delivered; a compacted one lists
//! again, which the gateway takes as a whole new configuration (contract §2.3).

use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};

use hermes_gateway::config::source::{Change, ConfigSource, Prefixes, SourceError, Update};

pub struct EtcdSource {
    client: Client,
    prefixes: Prefixes,
    /// The last revision delivered; `None` until listed (and after a compaction).
    revision: Option<i64>,
    stream: Option<WatchStream>,
}

fn external(what: &str, e: etcd_client::Error) -> SourceError {
    SourceError::External(format!("etcd ({what}): {e}"))
}

impl EtcdSource {
    pub fn new(client: Client, prefixes: Prefixes) -> EtcdSource {
        EtcdSource {
            client,
            prefixes,
            revision: None,
            stream: None,
        }
    }

    async fn list(&mut self) -> Result<Update, SourceError> {
        let domains = self
            .client
            .get(
                self.prefixes.domains.as_str(),
                Some(GetOptions::new().with_prefix()),
            )
            .await
            .map_err(|e| external("listing domains", e))?;
        let revision = domains.header().map_or(0, |h| h.revision());
        let clusters = self
            .client
            .get(
                self.prefixes.clusters.as_str(),
                Some(GetOptions::new().with_prefix().with_revision(revision)),
            )
            .await
            .map_err(|e| external("listing clusters", e))?;
        let items = clusters
            .kvs()
            .iter()
            .chain(domains.kvs())
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect();
        self.revision = Some(revision);
        self.stream = None;
        Ok(Update::Full { revision, items })
    }
}

impl ConfigSource for EtcdSource {
    async fn next(&mut self) -> Result<Update, SourceError> {
        loop {
            let Some(revision) = self.revision else {
                return self.list().await;
            };
            if self.stream.is_none() {
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1)
                    .with_progress_notify();
                match self
                    .client
                    .watch(self.prefixes.common().as_str(), Some(options))
                    .await
                {
                    Ok(stream) => self.stream = Some(stream),
                    Err(e) => {
                        super::refresh_after(&self.client, &e).await;
                        return Err(external("watching", e));
                    }
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.stream = None;
                    return Err(SourceError::External("etcd closed the watch".into()));
                }
                Err(e) => {
                    self.stream = None;
                    return Err(external("watch", e));
                }
            };
            if resp.compact_revision() > 0 {
                tracing::warn!(
                    after = revision,
                    compacted = resp.compact_revision(),
                    "etcd compacted past the configuration's revision; listing again"
                );
                self.revision = None;
                self.stream = None;
                continue;
            }
            if resp.canceled() {
                self.stream = None;
                super::refresh_if_auth(&self.client, resp.cancel_reason()).await;
                return Err(SourceError::External(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                )));
            }
            let mut changes = Vec::new();
            let mut reached = revision;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                reached = reached.max(kv.mod_revision());
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                if !self.prefixes.relevant(&key) {
                    continue;
                }
                changes.push(Change {
                    key,
                    value: match event.event_type() {
                        EventType::Put => Some(kv.value().to_vec()),
                        EventType::Delete => None,
                    },
                });
            }
            // A progress notification (not the creation answer, which comes before the past
            // events of a watch that starts in the past): everything up to its revision was
            // sent, so a resumed watch starts there.
            if let Some(header) = resp.header() {
                if resp.events().is_empty() && !resp.created() {
                    reached = reached.max(header.revision());
                }
            }
            self.revision = Some(reached);
            if !changes.is_empty() {
                return Ok(Update::Changes {
                    revision: reached,
                    changes,
                });
            }
        }
    }
}
