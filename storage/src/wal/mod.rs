//! The raft log on disk: a segmented, checksummed, append-only write-ahead log made for
//! openraft's log storage, beside two small files for the vote and the log's metadata.
//!
//! Layout of the log directory (`<data-dir>/raft/`):
//! - `<first index, 20 digits>.wal`: segments of consecutive entries, at most [`SEGMENT_MAX`]
//!   bytes each; only the newest is written to;
//! - `vote`, `meta`: see [`small_file`].
//!
//! Appends are buffered per group and made durable together with one `fdatasync` of the
//! newest segment ([`Wal::sync`]); nothing else is synced on that path. Creating a segment
//! syncs the directory.
//!
//! The newest segment is kept zero-filled [`PREALLOCATE`] bytes past its last record, and
//! groups are written into that space: an `fdatasync` that must also commit a file's new size
//! costs about half as much again as one that overwrites space the file already has (measured
//! by `bench/fsync.sh`: 126 against 79 µs on the reference disk; `fallocate`d space, whose
//! extents must still be converted on the first write, measured 96). The zeros are written
//! between groups ([`Wal::fill_ahead`], [`FILL_CHUNK`] at a time, each synced), never with a
//! group: a group's sync then carries only its own records. On open, zeros
//! from a record boundary to the end of the newest segment are its clean end; a segment that
//! is finished is cut to its last record before the next one is started. The metadata's durable watermark trails the appends by at most
//! [`META_EVERY`] and is exact after a clean stop.
//!
//! On open ([`recover`]) every record's checksum is checked and every index must follow the
//! one before it. A record cut short or damaged at the very end of the newest segment is what a
//! crash in the middle of a write leaves: it is cut off, but only when every entry up to the
//! durable watermark is still there; anything else (damage elsewhere, a missing segment, a log
//! ending before the watermark, a vote older than the log) refuses to open, naming the file.
//!
//! Why not Databend's `raft-log`, the first candidate: probed with damage (raft-log 0.4.6), it
//! treats a zeroed, emptied or deleted newest chunk, and a damaged record length in it, as an
//! interrupted write and opens without those entries, its vote rolled back to an older term;
//! an empty or missing directory opens as a fresh log; a deleted first chunk opens with a hole
//! at the start; a read of an unexpected record panics. Closing those gaps needs framing and a
//! watermark of our own, after which it adds segment files and a flush thread, and brings
//! chrono, chrono-tz and derive_more into the build for its display helpers.

mod error;
pub(crate) mod frame;
mod meta_writer;
mod recover;
pub mod small_file;

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

pub use error::{WalError, RECOVERY};
pub use recover::{recover, Recovered};
use small_file::Meta;

use crate::types::{LogId, Vote};

/// Bytes after which the next append starts a new segment.
pub const SEGMENT_MAX: u64 = 64 << 20;
/// Zero-filled bytes kept ahead of the newest segment's last record; topped up between
/// groups once less than half is left.
pub const PREALLOCATE: u64 = 1 << 20;
/// Zeros written (and synced) per [`Wal::fill_ahead`]. The writer fills only while no append
/// waits, but an append that arrives during a fill waits for it: one chunk bounds that wait
/// (about 0.3 ms on the reference disk, against about 3 ms for the whole 1 MiB, which, paid
/// inside a group's sync, had doubled a three-node cluster's p99).
pub const FILL_CHUNK: u64 = 64 << 10;
/// How often, at most, the durable watermark is written while appends go on.
pub const META_EVERY: Duration = Duration::from_millis(50);

pub fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.wal")
}

/// Where one entry's record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    segment: u64,
    offset: u64,
    len: u32,
}

/// Where every entry of the log lies, shared by the writer and readers.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    /// The index of `entries[0]`.
    first: u64,
    entries: VecDeque<Pos>,
}

impl Positions {
    fn get(&self, index: u64) -> Option<Pos> {
        let i = index.checked_sub(self.first)?;
        self.entries.get(usize::try_from(i).ok()?).copied()
    }

    fn push(&mut self, index: u64, pos: Pos) {
        if self.entries.is_empty() {
            self.first = index;
        }
        self.entries.push_back(pos);
    }

    /// Forgets entries from `index` on.
    fn truncate(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first) as usize;
        self.entries.truncate(keep);
    }

    /// Forgets entries up to `index`.
    fn purge(&mut self, index: u64) {
        while self.first <= index && self.entries.pop_front().is_some() {
            self.first += 1;
        }
        if self.entries.is_empty() {
            self.first = index + 1;
        }
    }
}

/// The segment being written.
#[derive(Debug)]
struct Active {
    first: u64,
    file: File,
    /// Bytes up to the end of the last record.
    len: u64,
    /// Bytes in the file: past `len`, zeros.
    allocated: u64,
}

/// The writing side, owned by one thread.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    positions: Arc<RwLock<Positions>>,
    active: Option<Active>,
    /// This group's bytes, for the active segment, and where their entries will lie.
    buf: Vec<u8>,
    buffered: Vec<(u64, Pos)>,
    /// The index the next append must carry; `None` while the log has held nothing (its first
    /// entry may have any index: 0 when raft initializes, else what the leader sends).
    next: Option<u64>,
    meta: Meta,
    meta_dirty: bool,
    meta_written: Instant,
    meta_writer: meta_writer::MetaWriter,
    /// [`SEGMENT_MAX`], smaller in tests.
    segment_max: u64,
    /// [`PREALLOCATE`], smaller in tests.
    preallocate: u64,
    /// Topping the zero-filled space back up to [`PREALLOCATE`], a chunk per call.
    refilling: bool,
}

fn write_lock(p: &RwLock<Positions>) -> std::sync::RwLockWriteGuard<'_, Positions> {
    // Poisoning means a panic while holding it; the positions are replaced whole per step.
    p.write().unwrap_or_else(|e| e.into_inner())
}

fn read_lock(p: &RwLock<Positions>) -> std::sync::RwLockReadGuard<'_, Positions> {
    p.read().unwrap_or_else(|e| e.into_inner())
}

impl Wal {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A reader sharing this log's positions.
    pub fn reader(&self) -> WalReader {
        WalReader {
            dir: self.dir.clone(),
            positions: self.positions.clone(),
        }
    }

    /// Buffers one entry; nothing reaches the disk before [`Wal::sync`].
    pub fn append(&mut self, index: u64, payload: &[u8]) -> Result<(), WalError> {
        match self.next {
            Some(next) if next != index => {
                return Err(WalError::Invalid(format!(
                    "append of entry {index} where entry {next} was expected"
                )))
            }
            Some(_) => {}
            // The log's very first entry: where it starts is recorded before it is written,
            // so that a missing oldest segment is found later.
            None => {
                self.meta.start = index;
                self.meta_dirty = true;
                self.write_meta_if_due(true)?;
            }
        }
        let full = self
            .active
            .as_ref()
            .is_none_or(|a| a.len + self.buf.len() as u64 >= self.segment_max);
        if full {
            self.rotate(index)?;
        }
        let Some(active) = &self.active else {
            return Err(WalError::Invalid("no segment to append to".into()));
        };
        let offset = active.len + self.buf.len() as u64;
        let before = self.buf.len();
        frame::put_record(&mut self.buf, payload);
        let len = (self.buf.len() - before) as u32;
        self.buffered.push((
            index,
            Pos {
                segment: active.first,
                offset,
                len,
            },
        ));
        self.next = Some(index + 1);
        Ok(())
    }

    /// Starts a segment whose first entry is `index`, after making the current one durable
    /// and cutting off its zeros (only the newest segment may end in zeros).
    fn rotate(&mut self, index: u64) -> Result<(), WalError> {
        if self.active.is_some() {
            self.sync()?;
        }
        if let Some(active) = &mut self.active {
            if active.allocated > active.len {
                let path = self.dir.join(segment_name(active.first));
                active
                    .file
                    .set_len(active.len)
                    .and_then(|()| active.file.sync_data())
                    .map_err(WalError::io(
                        "cutting the zeros off a finished segment",
                        &path,
                    ))?;
                active.allocated = active.len;
            }
        }
        let path = self.dir.join(segment_name(index));
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .read(true)
            .open(&path)
            .map_err(WalError::io("creating a segment", &path))?;
        let mut start = frame::segment_header(index).to_vec();
        // A first stretch only: the rest is filled between groups (`fill_ahead`).
        start.resize(start.len() + FILL_CHUNK.min(self.preallocate) as usize, 0);
        file.write_all_at(&start, 0)
            .and_then(|()| file.sync_data())
            .map_err(WalError::io("writing a segment header", &path))?;
        small_file::sync_dir(&self.dir)?;
        self.active = Some(Active {
            first: index,
            file,
            len: frame::SEGMENT_HEADER_LEN as u64,
            allocated: start.len() as u64,
        });
        Ok(())
    }

    /// Writes the buffered group to the active segment, without syncing it.
    fn write_out(&mut self) -> Result<(), WalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(active) = &mut self.active else {
            return Err(WalError::Invalid("buffered entries but no segment".into()));
        };
        let path = self.dir.join(segment_name(active.first));
        // Positioned writes: the file's end is zeros, not the log's end.
        active
            .file
            .write_all_at(&self.buf, active.len)
            .map_err(WalError::io("appending to", &path))?;
        active.len += self.buf.len() as u64;
        // A group that ran past the zero-filled space grew the file (its sync commits the new
        // size); [`Wal::fill_ahead`] catches up after it.
        active.allocated = active.allocated.max(active.len);
        self.buf.clear();
        let mut positions = write_lock(&self.positions);
        for (index, pos) in self.buffered.drain(..) {
            positions.push(index, pos);
        }
        Ok(())
    }

    /// Zero-fills one [`FILL_CHUNK`] past the newest segment's zero-filled space and syncs it.
    /// Once less than half of [`PREALLOCATE`] is left ahead of the records, calls fill until
    /// the whole of it is there again (never past [`SEGMENT_MAX`]: a full segment is cut to
    /// its records, and zeros there would go to waste). Returns whether it wrote. For the
    /// writer to call while no append is waiting; under a load that never leaves it idle,
    /// groups run past the zeros and each sync commits the file's new size, as with no
    /// preallocation at all.
    pub fn fill_ahead(&mut self) -> Result<bool, WalError> {
        let (preallocate, segment_max) = (self.preallocate, self.segment_max);
        let Some(active) = &mut self.active else {
            return Ok(false);
        };
        let ahead = active.allocated - active.len;
        let room = segment_max.saturating_sub(active.allocated);
        if ahead >= preallocate || room == 0 {
            self.refilling = false;
        } else if ahead < preallocate / 2 {
            self.refilling = true;
        }
        if !self.refilling || !self.buf.is_empty() {
            return Ok(false);
        }
        let chunk = FILL_CHUNK.min(preallocate).min(room);
        let path = self.dir.join(segment_name(active.first));
        let zeros = vec![0u8; chunk as usize];
        active
            .file
            .write_all_at(&zeros, active.allocated)
            .and_then(|()| active.file.sync_data())
            .map_err(WalError::io("zero-filling the space ahead of", &path))?;
        active.allocated += chunk;
        Ok(true)
    }

    /// Makes every buffered entry durable: one write and one `fdatasync`. The watermark moves
    /// with it, on disk at the next [`Wal::write_meta_if_due`].
    pub fn sync(&mut self) -> Result<(), WalError> {
        let had = !self.buf.is_empty();
        self.write_out()?;
        if !had {
            return Ok(());
        }
        if let Some(active) = &self.active {
            active.file.sync_data().map_err(WalError::io(
                "syncing",
                self.dir.join(segment_name(active.first)),
            ))?;
        }
        self.meta.durable_next = self.next.unwrap_or(0);
        self.meta_dirty = true;
        Ok(())
    }

    /// Writes `meta` when it changed and [`META_EVERY`] has passed, on the metadata thread (off
    /// the acknowledgement path); with `now`, at once, and returns once it is durable.
    pub fn write_meta_if_due(&mut self, now: bool) -> Result<(), WalError> {
        if self.meta_dirty && (now || self.meta_written.elapsed() >= META_EVERY) {
            self.meta_writer.write(self.meta, now)?;
            self.meta_dirty = false;
            self.meta_written = Instant::now();
        }
        Ok(())
    }

    /// The index after the last entry made durable by this writer (lowered by a truncation).
    pub fn durable_next(&self) -> u64 {
        self.meta.durable_next
    }

    /// Records the committed id (advisory: raft learns it again from the leader); written
    /// with the next metadata write.
    pub fn set_committed(&mut self, committed: Option<LogId>) {
        if self.meta.committed != committed {
            self.meta.committed = committed;
            self.meta_dirty = true;
        }
    }

    pub fn save_vote(&self, vote: &Vote) -> Result<(), WalError> {
        small_file::write_vote(&self.dir, vote)
    }

    /// Removes the entries from `index` on (a follower dropping a tail the leader replaced).
    pub fn truncate(&mut self, index: u64) -> Result<(), WalError> {
        self.write_out()?;
        if self.next.is_none_or(|n| index >= n) {
            return Ok(());
        }
        // The watermark first: afterwards the log ends before it.
        self.meta.durable_next = self.meta.durable_next.min(index);
        self.write_meta_if_due(true)?;
        let (first, pos) = {
            let p = read_lock(&self.positions);
            (p.first, p.get(index))
        };
        match pos {
            Some(pos) if index > first => {
                for seg in self.segments()?.into_iter().filter(|f| *f > pos.segment) {
                    self.remove_segment(seg)?;
                }
                let path = self.dir.join(segment_name(pos.segment));
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .read(true)
                    .open(&path)
                    .map_err(WalError::io("opening a segment", &path))?;
                file.set_len(pos.offset)
                    .and_then(|()| file.sync_all())
                    .map_err(WalError::io("truncating a segment", &path))?;
                self.active = Some(Active {
                    first: pos.segment,
                    file,
                    len: pos.offset,
                    allocated: pos.offset,
                });
            }
            // From the first entry on (or before it): nothing is left.
            _ => {
                for seg in self.segments()? {
                    self.remove_segment(seg)?;
                }
            }
        }
        small_file::sync_dir(&self.dir)?;
        write_lock(&self.positions).truncate(index);
        self.next = Some(index);
        Ok(())
    }

    fn remove_segment(&mut self, first: u64) -> Result<(), WalError> {
        if self.active.as_ref().is_some_and(|a| a.first == first) {
            self.active = None;
        }
        let path = self.dir.join(segment_name(first));
        std::fs::remove_file(&path).map_err(WalError::io("removing a segment", &path))
    }

    /// Forgets the entries up to `upto` (a snapshot holds them): whole segments are removed.
    pub fn purge(&mut self, upto: LogId) -> Result<(), WalError> {
        self.write_out()?;
        if self.meta.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        let purged_next = upto.index + 1;
        // The purge point first: a crash in between leaves extra entries, never a hole.
        self.meta.purged = Some(upto);
        self.meta.durable_next = self.meta.durable_next.max(purged_next);
        self.write_meta_if_due(true)?;
        let segments = self.segments()?;
        let everything = self.next.is_none_or(|n| purged_next >= n);
        for (i, first) in segments.iter().enumerate() {
            // A segment ends where the next begins; the newest at the log's end.
            let end = segments.get(i + 1).copied().or(self.next).unwrap_or(0);
            if everything || end <= purged_next {
                self.remove_segment(*first)?;
            }
        }
        small_file::sync_dir(&self.dir)?;
        write_lock(&self.positions).purge(upto.index);
        if everything {
            self.next = Some(purged_next);
        }
        Ok(())
    }

    /// The first indexes of the segment files, in order.
    fn segments(&self) -> Result<Vec<u64>, WalError> {
        list_segments(&self.dir)
    }

    /// Bytes the log's files take.
    pub fn size_on_disk(&self) -> u64 {
        dir_size(&self.dir)
    }
}

pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(WalError::io("listing", dir))?;
    for entry in entries {
        let entry = entry.map_err(WalError::io("listing", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if stem.len() == 20 {
            if let Ok(first) = stem.parse::<u64>() {
                out.push(first);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

pub(crate) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The reading side: any thread, any number of them.
#[derive(Debug, Clone)]
pub struct WalReader {
    dir: PathBuf,
    positions: Arc<RwLock<Positions>>,
}

impl WalReader {
    /// The payloads of entries `[from, to)` that are written out, checked, in order; stops at
    /// the first one the log does not hold. Blocking.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, WalError> {
        let wanted: Vec<Pos> = {
            let positions = read_lock(&self.positions);
            (from..to).map_while(|i| positions.get(i)).collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        let mut open: Option<(u64, File)> = None;
        for pos in wanted {
            let path = self.dir.join(segment_name(pos.segment));
            if open.as_ref().is_none_or(|(s, _)| *s != pos.segment) {
                let file = File::open(&path).map_err(WalError::io("opening a segment", &path))?;
                open = Some((pos.segment, file));
            }
            let Some((_, file)) = &open else {
                return Err(WalError::Invalid("no open segment".into()));
            };
            let mut buf = vec![0u8; pos.len as usize];
            file.read_exact_at(&mut buf, pos.offset)
                .map_err(WalError::io("reading a record", &path))?;
            match frame::read_record(&buf) {
                frame::Read::Record { payload, .. } => out.push(payload.to_vec()),
                _ => {
                    return Err(WalError::Damaged {
                        file: path,
                        offset: pos.offset,
                        what: "record checksum mismatch on read".into(),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
