//! The snapshot format: the complete MVCC state (every retained history row, leases, revision,
//! compaction floor, cluster id) and the raft position it corresponds to. A node that installs a
//! snapshot can serve watches and historical reads from anywhere after the compaction floor.

use serde::{Deserialize, Serialize};

use crate::mvcc::rows::{HistoryRow, LeaseRow, RowId};
use crate::types::{LogId, StoredMembership};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotContents {
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub cluster_id: u64,
    pub revision: i64,
    pub compact_revision: i64,
    pub rows: Vec<(RowId, HistoryRow)>,
    pub leases: Vec<LeaseRow>,
}
