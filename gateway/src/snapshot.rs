//! What requests route by: the route table and the clusters it names, published together as one
//! [`Snapshot`]. A request loads one snapshot and resolves its route's clusters in it, so a
//! table and a cluster map from different moments never meet. Removing a cluster waits for a
//! table that no longer routes to it; every snapshot whose table still does keeps the cluster,
//! and a request that loaded such a snapshot just before the swap is still served (loading the
//! table and the clusters separately answered it 503).

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use super::config::types::ClusterConfig;
use super::routing::table::RouteTable;
use super::upstream::cluster::Clusters;

#[derive(Debug, Default)]
pub struct Snapshot {
    pub table: Arc<RouteTable>,
    pub clusters: Arc<Clusters>,
}

/// The cluster changes of one configuration update.
#[derive(Debug, Default)]
pub struct ClusterChanges {
    /// A full listing (after a re-list), replacing every cluster.
    pub replaced: Option<Vec<ClusterConfig>>,
    pub upserts: Vec<ClusterConfig>,
    pub removals: Vec<String>,
}

/// The current snapshot, and the bookkeeping of the two writers (the configuration loop and
/// the table builder), which take turns under one lock so that neither loses the other's change.
#[derive(Debug, Default)]
pub struct Published {
    current: ArcSwap<Snapshot>,
    writer: Mutex<Writer>,
}

#[derive(Debug, Default)]
struct Writer {
    /// Revision of the last update applied, of the domains last handed to the table builder,
    /// and of the domains of the table in place.
    seen: i64,
    sent: i64,
    built: i64,
    /// Cluster removals waiting for a route table that no longer needs them.
    pending: Vec<PendingRemoval>,
}

/// A cluster to remove once the table built from domains at revision `after` is in place.
#[derive(Debug)]
struct PendingRemoval {
    name: String,
    after: i64,
}

impl Published {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding this lock cannot leave the bookkeeping inconsistent (every
        // field is written after the snapshot it describes is stored): take it as is.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the cluster changes of the update at `revision`, after recording whether its
    /// domains go to the table builder (`domains_changed`). Changes apply in revision
    /// order, and a cluster removed after the route that used it was repointed must outlive
    /// every table that still holds that route, so a removal waits for the table of every
    /// domain change before it. Returns whether the current table is that of the latest
    /// domains (this update is then fully served).
    pub fn apply(&self, changes: ClusterChanges, revision: i64, domains_changed: bool) -> bool {
        let mut writer = self.writer();
        writer.seen = revision;
        if domains_changed {
            writer.sent = revision;
        }
        let table_current = writer.built >= writer.sent;
        let ClusterChanges {
            replaced,
            upserts,
            mut removals,
        } = changes;
        if replaced.is_none() && upserts.is_empty() && removals.is_empty() {
            // A domain change alone: the table builder publishes it.
            return table_current;
        }
        let current = self.current.load_full();
        let mut clusters = Clusters::clone(&current.clusters);
        let mut changed = false;
        if let Some(all) = replaced {
            writer.pending.clear();
            removals.extend(clusters.replace_all(all));
            changed = true;
        }
        for config in upserts {
            // A cluster written again is no longer to be removed.
            writer.pending.retain(|p| p.name != config.name);
            changed |= clusters.upsert(config);
        }
        for name in removals {
            if table_current {
                changed |= clusters.remove(&name);
            } else {
                let after = writer.sent;
                writer.pending.push(PendingRemoval { name, after });
            }
        }
        if changed {
            self.current.store(Arc::new(Snapshot {
                table: current.table.clone(),
                clusters: Arc::new(clusters),
            }));
        }
        table_current
    }

    /// Records the nodes a Consul service answered and rebuilds the clusters that discover
    /// from it, under the same lock as configuration changes, so neither loses the other's.
    pub fn set_discovered(&self, service: &str, nodes: Vec<super::config::types::UpstreamNode>) {
        let _writer = self.writer();
        let current = self.current.load_full();
        let mut clusters = Clusters::clone(&current.clusters);
        if clusters.set_discovered(service, nodes) {
            self.current.store(Arc::new(Snapshot {
                table: current.table.clone(),
                clusters: Arc::new(clusters),
            }));
        }
    }

    /// Puts in place a table built from the domains at `revision`, with the removals that
    /// waited for it. Returns the revision now fully served: that of the latest update applied
    /// when no newer domains have been sent to the builder since, else `revision`.
    pub fn install_table(&self, table: RouteTable, revision: i64) -> i64 {
        let mut writer = self.writer();
        let current = self.current.load_full();
        let (due, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.pending)
            .into_iter()
            .partition(|p| p.after <= revision);
        writer.pending = wait;
        let clusters = if due.is_empty() {
            current.clusters.clone()
        } else {
            let mut clusters = Clusters::clone(&current.clusters);
            for p in due {
                clusters.remove(&p.name);
            }
            Arc::new(clusters)
        };
        self.current.store(Arc::new(Snapshot {
            table: Arc::new(table),
            clusters,
        }));
        writer.built = revision;
        if writer.sent == revision {
            writer.seen
        } else {
            revision
        }
    }
}
