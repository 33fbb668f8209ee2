//! The two small files beside the segments, each replaced atomically (written to a temporary
//! file, synced, renamed over the old one, directory synced) and checksummed:
//! - `vote`: the raft vote, written on every change (rare: elections and new leaders);
//! - `meta`: the purge point, the last known committed id, and the durable watermark (the
//!   index up to which entries were synced to disk), written when the purge point moves, on a
//!   truncation, and at most every [`super::META_EVERY`] while appends go on.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::WalError;
use super::frame::{open_small, seal_small};
use crate::codec;
use crate::types::{LogId, Vote};

pub const VOTE_FILE: &str = "vote";
pub const META_FILE: &str = "meta";
const VOTE_MAGIC: &[u8; 8] = b"HERMVOTE";
const META_MAGIC: &[u8; 8] = b"HERMMETA";

/// What `meta` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub purged: Option<LogId>,
    pub committed: Option<LogId>,
    /// Every entry below this index was synced to disk (and may have been acknowledged).
    pub durable_next: u64,
    /// Where the log starts while nothing was purged: 0 for a log raft initialized, else the
    /// first entry a leader sent.
    pub start: u64,
}

impl Meta {
    /// The first index the log must hold.
    pub fn first_index(&self) -> u64 {
        self.purged.map_or(self.start, |p| p.index + 1)
    }
}

/// Fsyncs a directory, so that a created, renamed or removed name in it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io("syncing the directory", dir))
}

fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), WalError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(WalError::io("replacing", &path))?;
    sync_dir(dir)
}

/// `Ok(None)` when the file does not exist; an error when it exists and is damaged.
fn read<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
) -> Result<Option<T>, WalError> {
    let path = dir.join(name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WalError::io("reading", &path)(e)),
    };
    let damaged = |what: String| WalError::Damaged {
        file: path.clone(),
        offset: 0,
        what,
    };
    let value = open_small(magic, &bytes).ok_or_else(|| damaged("checksum mismatch".into()))?;
    codec::decode(value)
        .map(Some)
        .map_err(|e| damaged(e.to_string()))
}

pub fn write_vote(dir: &Path, vote: &Vote) -> Result<(), WalError> {
    let value = codec::encode(vote).map_err(|e| WalError::Invalid(e.to_string()))?;
    replace(dir, VOTE_FILE, &seal_small(VOTE_MAGIC, &value))
}

pub fn read_vote(dir: &Path) -> Result<Option<Vote>, WalError> {
    read(dir, VOTE_FILE, VOTE_MAGIC)
}

pub fn write_meta(dir: &Path, meta: &Meta) -> Result<(), WalError> {
    let value = codec::encode(meta).map_err(|e| WalError::Invalid(e.to_string()))?;
    replace(dir, META_FILE, &seal_small(META_MAGIC, &value))
}

pub fn read_meta(dir: &Path) -> Result<Option<Meta>, WalError> {
    read(dir, META_FILE, META_MAGIC)
}

pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
