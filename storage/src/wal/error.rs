//! Why the raft log cannot be opened or written. Damage is never repaired silently: each error
//! names the file (and offset) and what to do, because a node that rebuilt its log from less
//! than it had acknowledged would let the cluster lose acknowledged writes.

use std::path::PathBuf;

/// What an operator does about a damaged or missing log (docs/cluster.md, "Recovering a
/// node").
pub const RECOVERY: &str = "this node cannot be trusted to rejoin with it. In a cluster of \
    several nodes, remove it (`hermes member remove <id>` on a healthy member), move its data \
    directory aside, and add it back with an empty one (`--join`); it receives everything from \
    the leader. A single-node cluster can be restarted from what its state machine holds with \
    `hermes recover --data-dir <dir> --id <id>`, accepting the loss of whatever the log held \
    beyond it. See docs/cluster.md, \"Recovering a node\"";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error(
        "the raft log {dir} is missing, but this data directory has held a cluster member \
         (its marker {marker} exists): {RECOVERY}"
    )]
    Missing { dir: PathBuf, marker: PathBuf },
    #[error("the raft log file {file} is missing: {RECOVERY}")]
    MissingFile { file: PathBuf },
    #[error("the raft log file {file} is damaged at byte {offset} ({what}): {RECOVERY}")]
    Damaged {
        file: PathBuf,
        offset: u64,
        what: String,
    },
    #[error(
        "the raft log {dir} ends at entry {last}, but entry {durable} had been written to disk \
         and acknowledged (a file was truncated or removed): {RECOVERY}"
    )]
    Lost {
        dir: PathBuf,
        last: u64,
        durable: u64,
    },
    #[error(
        "the raft log {dir} is missing entries {from} to {to} (a segment file was removed): \
         {RECOVERY}"
    )]
    Gap { dir: PathBuf, from: u64, to: u64 },
    #[error(
        "the vote in {file} (term {vote_term}) is older than the log's last entry (term \
         {entry_term}): the file was rolled back or replaced: {RECOVERY}"
    )]
    VoteRolledBack {
        file: PathBuf,
        vote_term: u64,
        entry_term: u64,
    },
    #[error("raft log I/O on {path} while {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("raft log: {0}")]
    Invalid(String),
}

impl WalError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> WalError {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}
