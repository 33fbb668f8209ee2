//! Keeps an access log written to a regular file from filling the page cache: every
//! [`TRIM_EVERY`] bytes written, the writer advises the kernel that it will not read the log
//! back (`POSIX_FADV_DONTNEED`) up to the mark before last. That call starts writeback of the
//! range and drops its pages that are clean, which by then (one trim period later) is nearly
//! all of them; it never waits for the disk. Freed pages are reused by the next writes.
//!
//! Why: a busy gateway writes gigabytes of log an hour, which would otherwise push the pages
//! other programs read out of the cache. And on virtual machines whose free memory goes back
//! to the host (virtio-balloon free page reporting, as on the machine of BENCHMARKS.md), each
//! new page of cache costs a fault on the host: writing 100 MB at a gateway's pace took 0.29 s
//! of kernel time with fresh pages against 0.05 s with trimmed ones reused.
//!
//! A reader following the file (`tail -f`, a log shipper) finds the last one to two periods
//! still cached; older lines are read from disk.

use std::fs::File;
use std::io::Seek;
use std::num::NonZeroU64;
use std::os::fd::AsFd;

/// Bytes written between trims.
pub const TRIM_EVERY: u64 = 8 << 20;

pub struct Trim {
    file: File,
    /// The last two positions a trim was made at; the older is where the next one starts.
    marks: [u64; 2],
}

impl Trim {
    /// A trimmer for what is written to `fd`, when it is a regular file whose position can be
    /// read (not a pipe, terminal or socket, which have no page cache to fill).
    pub fn for_fd(fd: impl AsFd) -> Option<Trim> {
        let mut file = File::from(fd.as_fd().try_clone_to_owned().ok()?);
        if !file.metadata().ok()?.file_type().is_file() {
            return None;
        }
        let at = file.stream_position().ok()?;
        Some(Trim {
            file,
            marks: [at, at],
        })
    }

    /// Called after each write: trims once [`TRIM_EVERY`] bytes have been written since the
    /// last trim.
    pub fn after_write(&mut self) {
        let Ok(at) = self.file.stream_position() else {
            return;
        };
        if at < self.marks[1] {
            // Truncated by someone else (log rotation with `copytruncate`): start again.
            self.marks = [at, at];
            return;
        }
        if at - self.marks[1] < TRIM_EVERY {
            return;
        }
        let from = self.marks[0];
        if let Some(len) = NonZeroU64::new(at - from) {
            // Advice only: if the kernel refuses, the pages stay cached, as without it.
            let _ = rustix::fs::fadvise(&self.file, from, Some(len), rustix::fs::Advice::DontNeed);
        }
        self.marks = [self.marks[1], at];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn only_regular_files_are_trimmed_and_trims_follow_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut file = File::create(&path).unwrap();
        let mut trim = Trim::for_fd(&file).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..20 {
            file.write_all(&chunk).unwrap();
            trim.after_write();
        }
        // Trims at 8 and 16 MiB.
        assert_eq!(trim.marks, [8 << 20, 16 << 20]);
        // Truncated under it: it starts again from the new position.
        file.set_len(0).unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        trim.after_write();
        assert_eq!(trim.marks, [0, 0]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

        let (reader, _writer) = std::io::pipe().unwrap();
        assert!(Trim::for_fd(&reader).is_none());
    }
}
