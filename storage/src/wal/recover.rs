//! Opening the log: every segment read back and checked before a single entry is served (see
//! the rules in [`super`]).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

use super::error::WalError;
use super::frame::{self, Read};
use super::small_file::{self, Meta};
use super::{list_segments, segment_name, Active, Pos, Positions, Wal};
use crate::codec;
use crate::types::{Entry, LogId, Vote};

/// What the log held when it was opened.
#[derive(Debug)]
pub struct Recovered {
    pub vote: Option<Vote>,
    pub purged: Option<LogId>,
    pub committed: Option<LogId>,
    /// The last entry's id (or the purge point when no entry is left).
    pub last: Option<LogId>,
    /// The newest entries, oldest first, to warm the reader's cache.
    pub tail: Vec<Entry>,
}

/// Entries kept for [`Recovered::tail`].
const TAIL: usize = 1024;

/// What scanning the segments found.
struct Scan {
    positions: Positions,
    tail: VecDeque<Entry>,
    last: Option<LogId>,
    /// The index after the last entry read (`None`: no entry at all).
    next: Option<u64>,
    active: Option<Active>,
}

/// Opens the log in `dir`. `must_exist`: the data directory has held a member, so a missing
/// log or metadata file is damage, not a first start. Blocking.
pub fn recover(dir: &Path, must_exist: bool) -> Result<(Wal, Recovered), WalError> {
    if !dir.exists() {
        if must_exist {
            return Err(WalError::MissingFile {
                file: dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(dir).map_err(WalError::io("creating", dir))?;
        small_file::write_meta(dir, &Meta::default())?;
        if let Some(parent) = dir.parent() {
            small_file::sync_dir(parent)?;
        }
    }
    let meta = match small_file::read_meta(dir)? {
        Some(m) => m,
        None if must_exist => {
            return Err(WalError::MissingFile {
                file: small_file::path(dir, small_file::META_FILE),
            })
        }
        None => {
            small_file::write_meta(dir, &Meta::default())?;
            Meta::default()
        }
    };
    let vote = small_file::read_vote(dir)?;
    let scan = scan(dir, &meta)?;

    let purged_next = meta.first_index();
    let next = scan
        .next
        .map(|n| n.max(purged_next))
        .or(meta.purged.map(|_| purged_next));
    if next.unwrap_or(0) < meta.durable_next {
        return Err(WalError::Lost {
            dir: dir.to_path_buf(),
            last: next.unwrap_or(0).saturating_sub(1),
            durable: meta.durable_next.saturating_sub(1),
        });
    }
    if let (Some(v), Some(l)) = (vote, scan.last) {
        if l.leader_id.term > v.leader_id().term {
            return Err(WalError::VoteRolledBack {
                file: small_file::path(dir, small_file::VOTE_FILE),
                vote_term: v.leader_id().term,
                entry_term: l.leader_id.term,
            });
        }
    }
    // Raft saves a vote before any entry after the very first (index 0, which initializing
    // appends just before its first election).
    if vote.is_none() && must_exist && next.is_some_and(|n| n > 1) {
        return Err(WalError::MissingFile {
            file: small_file::path(dir, small_file::VOTE_FILE),
        });
    }
    let wal = Wal {
        dir: dir.to_path_buf(),
        positions: Arc::new(RwLock::new(scan.positions)),
        active: scan.active,
        buf: Vec::new(),
        buffered: Vec::new(),
        next,
        meta: Meta {
            durable_next: next.unwrap_or(0),
            ..meta
        },
        meta_dirty: true,
        meta_written: Instant::now(),
        meta_writer: super::meta_writer::MetaWriter::start(dir.to_path_buf())?,
        segment_max: super::SEGMENT_MAX,
        preallocate: super::PREALLOCATE,
        refilling: false,
    };
    Ok((
        wal,
        Recovered {
            vote,
            purged: meta.purged,
            committed: meta.committed,
            last: scan.last.or(meta.purged),
            tail: scan.tail.into_iter().collect(),
        },
    ))
}

/// Reads every segment, checking each record, the order of the indexes and the segments'
/// continuity; cuts off a torn tail of the newest segment when it lies past the watermark.
fn scan(dir: &Path, meta: &Meta) -> Result<Scan, WalError> {
    let purged_next = meta.first_index();
    let segments = list_segments(dir)?;
    let mut out = Scan {
        positions: Positions {
            first: purged_next,
            ..Positions::default()
        },
        tail: VecDeque::new(),
        last: None,
        next: None,
        active: None,
    };
    for (n, first) in segments.iter().copied().enumerate() {
        let newest = n + 1 == segments.len();
        let path = dir.join(segment_name(first));
        let bytes = std::fs::read(&path).map_err(WalError::io("reading", &path))?;
        let damaged = |offset: usize, what: &str| WalError::Damaged {
            file: path.clone(),
            offset: offset as u64,
            what: what.to_string(),
        };
        // Where this segment must start: after the previous one, or, for the oldest, at the
        // log's first index or before it (the first index moves on with purges).
        let expected = out.next.unwrap_or(purged_next);
        let fits = match out.next {
            Some(next) => first == next,
            None => first <= purged_next,
        };
        match frame::parse_segment_header(&bytes) {
            Some(named) if named != first => {
                return Err(damaged(
                    0,
                    &format!("its header names entry {named}, not {first}"),
                ))
            }
            Some(_) => {}
            // A crash while a new segment was being started leaves its header unwritten;
            // nothing in it was ever synced, so nothing is lost by removing it.
            None if newest && fits && first >= meta.durable_next => {
                tracing::warn!(file = %path.display(), "removed a segment whose creation a crash interrupted");
                std::fs::remove_file(&path).map_err(WalError::io("removing", &path))?;
                small_file::sync_dir(dir)?;
                break;
            }
            None => return Err(damaged(0, "segment header")),
        }
        if !fits {
            return Err(WalError::Gap {
                dir: dir.to_path_buf(),
                from: expected,
                to: first.saturating_sub(1),
            });
        }
        let mut index = first;
        let mut offset = frame::SEGMENT_HEADER_LEN;
        let mut torn_at = None;
        let mut zeros_at = None;
        while offset < bytes.len() {
            match frame::read_record(&bytes[offset..]) {
                Read::Record { payload, len } => {
                    let entry: Entry = codec::decode(payload)
                        .map_err(|e| damaged(offset, &format!("undecodable entry: {e}")))?;
                    if entry.log_id.index != index {
                        return Err(damaged(
                            offset,
                            &format!("holds entry {} where {index} belongs", entry.log_id.index),
                        ));
                    }
                    if index >= purged_next {
                        out.positions.push(
                            index,
                            Pos {
                                segment: first,
                                offset: offset as u64,
                                len: len as u32,
                            },
                        );
                        out.last = Some(entry.log_id);
                        out.tail.push_back(entry);
                        if out.tail.len() > TAIL {
                            out.tail.pop_front();
                        }
                    }
                    index += 1;
                    offset += len;
                }
                // The newest segment's preallocated space: its clean end.
                Read::Short | Read::Damaged
                    if newest && bytes[offset..].iter().all(|b| *b == 0) =>
                {
                    zeros_at = Some(offset);
                    break;
                }
                Read::Short | Read::Damaged if newest => {
                    torn_at = Some(offset);
                    break;
                }
                Read::Short => return Err(damaged(offset, "a record cut short")),
                Read::Damaged => return Err(damaged(offset, "record checksum mismatch")),
            }
        }
        out.next = Some(index);
        let end = torn_at.or(zeros_at).unwrap_or(bytes.len());
        if let Some(at) = torn_at {
            // What a crash mid-write leaves, when it lies past everything synced; cut off
            // below. Below the watermark it is damage to acknowledged entries.
            if index < meta.durable_next {
                return Err(damaged(
                    at,
                    &format!(
                        "entry {index} is unreadable, and entries up to {} had been synced",
                        meta.durable_next - 1
                    ),
                ));
            }
            tracing::warn!(
                file = %path.display(),
                offset = at,
                bytes = bytes.len() - at,
                "cut off an incompletely written record at the end of the raft log (a crash mid-write)"
            );
        }
        if newest {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .open(&path)
                .map_err(WalError::io("opening", &path))?;
            let mut allocated = bytes.len() as u64;
            if torn_at.is_some() {
                file.set_len(end as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(WalError::io("cutting off a torn tail", &path))?;
                allocated = end as u64;
            }
            out.active = Some(Active {
                first,
                file,
                len: end as u64,
                allocated,
            });
        }
    }
    Ok(out)
}
