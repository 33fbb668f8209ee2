//! The log against the damage a disk or an operator can do: each must refuse to open (naming
//! the file) unless it is exactly what a crash mid-write leaves.

use super::*;
use crate::codec;
use crate::types::Entry;

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
        payload: openraft::EntryPayload::Blank,
    }
}

fn vote(term: u64) -> Vote {
    let mut v = Vote::new(term, 1);
    v.commit();
    v
}

/// A log with entries 1..=n in term 1 (segments of about `seg` entries if `seg` > 0), synced,
/// its metadata written, as after a clean stop.
fn written(dir: &Path, n: u64) -> Wal {
    let (mut wal, _) = recover(dir, false).unwrap();
    wal.save_vote(&vote(1)).unwrap();
    for i in 1..=n {
        wal.append(i, &codec::encode(&entry(1, i)).unwrap())
            .unwrap();
        if i % 50 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    wal.write_meta_if_due(true).unwrap();
    wal
}

fn read_all(wal: &Wal, from: u64, to: u64) -> Vec<u64> {
    wal.reader()
        .read(from, to)
        .unwrap()
        .iter()
        .map(|p| codec::decode::<Entry>(p).unwrap().log_id.index)
        .collect()
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(segment_name(1))
}

/// Where the newest segment's records end (its zero-filled space follows).
fn end_of(wal: &Wal) -> u64 {
    wal.active.as_ref().unwrap().len
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn appends_survive_a_reopen_and_read_back_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let wal = written(&dir, 300);
    assert_eq!(read_all(&wal, 1, 301), (1..=300).collect::<Vec<_>>());
    drop(wal);
    let (wal, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(300));
    assert_eq!(rec.vote, Some(vote(1)));
    assert_eq!(rec.tail.last().map(|e| e.log_id.index), Some(300));
    assert_eq!(read_all(&wal, 250, 400), (250..=300).collect::<Vec<_>>());
}

#[test]
fn truncate_and_purge_leave_a_log_that_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut wal = written(&dir, 100);
    wal.truncate(61).unwrap();
    for i in 61..=70 {
        wal.append(i, &codec::encode(&entry(2, i)).unwrap())
            .unwrap();
    }
    wal.save_vote(&vote(2)).unwrap();
    wal.sync().unwrap();
    wal.purge(LogId::new(openraft::CommittedLeaderId::new(1, 1), 40))
        .unwrap();
    wal.write_meta_if_due(true).unwrap();
    assert_eq!(read_all(&wal, 41, 200), (41..=70).collect::<Vec<_>>());
    drop(wal);
    let (wal, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.purged.map(|p| p.index), Some(40));
    assert_eq!(rec.last.map(|l| (l.leader_id.term, l.index)), Some((2, 70)));
    assert_eq!(read_all(&wal, 41, 200), (41..=70).collect::<Vec<_>>());
    // Purging past the end leaves an empty log that continues after the purge point.
    let mut wal = wal;
    wal.purge(LogId::new(openraft::CommittedLeaderId::new(2, 1), 90))
        .unwrap();
    wal.append(91, &codec::encode(&entry(2, 91)).unwrap())
        .unwrap();
    wal.sync().unwrap();
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    let (_, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(91));
}

#[test]
fn segments_rotate_and_the_gaps_between_them_are_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let (mut wal, _) = recover(&dir, false).unwrap();
    wal.segment_max = 64 << 10;
    wal.preallocate = 16 << 10;
    wal.save_vote(&vote(1)).unwrap();
    // Big entries, so that a few segments fill up.
    let big = |i: u64| {
        let mut e = entry(1, i);
        e.payload = openraft::EntryPayload::Normal(crate::mvcc::request::Command::Put(
            crate::mvcc::request::PutRequest {
                key: b"k".to_vec(),
                value: vec![7; 10 << 10],
                ..Default::default()
            },
        ));
        codec::encode(&e).unwrap()
    };
    for i in 1..=40 {
        wal.append(i, &big(i)).unwrap();
        wal.sync().unwrap();
    }
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    let segments = list_segments(&dir).unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    let (_, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(40));
    // Finished segments were cut to their last record: zeros after it are damage there.
    let first = dir.join(segment_name(segments[0]));
    let intact = std::fs::read(&first).unwrap();
    let mut padded = intact.clone();
    padded.extend_from_slice(&[0; 64]);
    std::fs::write(&first, &padded).unwrap();
    let e = recover(&dir, true).unwrap_err().to_string();
    assert!(e.contains(&first.display().to_string()), "{e}");
    std::fs::write(&first, &intact).unwrap();
    // A middle segment removed: a gap.
    std::fs::remove_file(dir.join(segment_name(segments[1]))).unwrap();
    let e = recover(&dir, true).unwrap_err();
    assert!(matches!(e, WalError::Gap { .. }), "{e}");
}

#[test]
fn a_truncated_log_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let wal = written(&dir, 200);
    let len = end_of(&wal);
    drop(wal);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.set_len(len / 2).unwrap();
    let e = recover(&dir, true).unwrap_err().to_string();
    assert!(e.contains(&segment(&dir).display().to_string()), "{e}");
    assert!(
        e.contains("hermes recover") && e.contains("member remove"),
        "{e}"
    );
    // Cut exactly at a record boundary too: the log ends before the watermark.
    let dir = tmp.path().join("b");
    let wal = written(&dir, 10);
    let one = (end_of(&wal) as usize - frame::SEGMENT_HEADER_LEN) / 10;
    drop(wal);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.set_len((frame::SEGMENT_HEADER_LEN + 9 * one) as u64)
        .unwrap();
    let e = recover(&dir, true).unwrap_err();
    assert!(
        matches!(
            e,
            WalError::Lost {
                last: 9,
                durable: 10,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_flipped_bit_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let wal = written(&dir, 200);
    let at = end_of(&wal) as usize / 3;
    drop(wal);
    let mut bytes = std::fs::read(segment(&dir)).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(segment(&dir), &bytes).unwrap();
    let e = recover(&dir, true).unwrap_err().to_string();
    assert!(
        e.contains("damaged") && e.contains(&segment(&dir).display().to_string()),
        "{e}"
    );
}

#[test]
fn zeroed_or_missing_files_refuse_to_open() {
    for target in ["segment", "vote", "meta"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("raft");
        drop(written(&dir, 100));
        let file = match target {
            "segment" => segment(&dir),
            name => dir.join(name),
        };
        let len = std::fs::metadata(&file).unwrap().len() as usize;
        std::fs::write(&file, vec![0u8; len]).unwrap();
        let e = recover(&dir, true).unwrap_err().to_string();
        assert!(
            e.contains(&file.display().to_string()),
            "zeroed {target}: {e}"
        );
        std::fs::remove_file(&file).unwrap();
        let e = recover(&dir, true).unwrap_err().to_string();
        assert!(
            e.contains(&file.display().to_string()) || e.contains("ends at entry 0"),
            "missing {target}: {e}"
        );
    }
    // The whole directory gone.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    drop(written(&dir, 10));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(
        recover(&dir, true).unwrap_err(),
        WalError::MissingFile { .. }
    ));
}

#[test]
fn a_vote_older_than_the_log_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut wal = written(&dir, 10);
    let old_vote = std::fs::read(dir.join("vote")).unwrap();
    wal.save_vote(&vote(3)).unwrap();
    for i in 11..=12 {
        wal.append(i, &codec::encode(&entry(3, i)).unwrap())
            .unwrap();
    }
    wal.sync().unwrap();
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    std::fs::write(dir.join("vote"), old_vote).unwrap();
    let e = recover(&dir, true).unwrap_err();
    assert!(matches!(e, WalError::VoteRolledBack { .. }), "{e}");
}

#[test]
fn a_torn_write_past_the_watermark_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut wal = written(&dir, 20);
    // Entries written but never synced, the last one half written, as a crash leaves them.
    for i in 21..=25 {
        wal.append(i, &codec::encode(&entry(1, i)).unwrap())
            .unwrap();
    }
    wal.write_out().unwrap();
    let len = end_of(&wal);
    drop(wal);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.set_len(len - 5).unwrap();
    let (mut wal, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(24));
    // And the log goes on from there.
    wal.append(25, &codec::encode(&entry(1, 25)).unwrap())
        .unwrap();
    wal.sync().unwrap();
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    assert_eq!(
        recover(&dir, true).unwrap().1.last.map(|l| l.index),
        Some(25)
    );
}

#[test]
fn a_fresh_directory_opens_empty_unless_a_member_was_here() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    assert!(matches!(
        recover(&dir, true).unwrap_err(),
        WalError::MissingFile { .. }
    ));
    let (_, rec) = recover(&dir, false).unwrap();
    assert!(rec.last.is_none() && rec.vote.is_none());
}

#[test]
fn syncs_overwrite_zero_filled_space_whose_zeros_are_the_clean_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut wal = written(&dir, 20);
    // The writer fills between groups, a chunk per call.
    while wal.fill_ahead().unwrap() {}
    let size = file_len(&segment(&dir));
    assert!(size >= end_of(&wal) + PREALLOCATE / 2, "{size}");
    // More groups land inside the space: the file's size, which each sync would otherwise
    // commit, does not move.
    for i in 21..=40 {
        wal.append(i, &codec::encode(&entry(1, i)).unwrap())
            .unwrap();
        wal.sync().unwrap();
    }
    assert_eq!(file_len(&segment(&dir)), size);
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    // Reopened: every entry, the zeros kept as they are, and the log goes on in them.
    let (mut wal, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(40));
    assert_eq!(file_len(&segment(&dir)), size);
    wal.append(41, &codec::encode(&entry(1, 41)).unwrap())
        .unwrap();
    wal.sync().unwrap();
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    let (wal, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(41));
    assert_eq!(read_all(&wal, 1, 100), (1..=41).collect::<Vec<_>>());
}

#[test]
fn the_space_grows_ahead_of_the_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let (mut wal, _) = recover(&dir, false).unwrap();
    wal.preallocate = 512;
    wal.save_vote(&vote(1)).unwrap();
    let mut sizes = Vec::new();
    for i in 1..=200 {
        wal.append(i, &codec::encode(&entry(1, i)).unwrap())
            .unwrap();
        // A group's sync writes its records and no zeros: where it runs past the space, the
        // file ends with its last record.
        let before = file_len(&segment(&dir));
        wal.sync().unwrap();
        let size = file_len(&segment(&dir));
        assert!(
            size == before || size == end_of(&wal),
            "entry {i}: the sync wrote more than its records ({before} -> {size})"
        );
        while wal.fill_ahead().unwrap() {}
        let size = file_len(&segment(&dir));
        assert!(
            size >= end_of(&wal) + 512 / 2,
            "entry {i}: the zero-filled space was not topped up"
        );
        sizes.push(size);
    }
    sizes.dedup();
    assert!(sizes.len() > 3, "grew {} times", sizes.len());
    wal.write_meta_if_due(true).unwrap();
    drop(wal);
    assert_eq!(
        recover(&dir, true).unwrap().1.last.map(|l| l.index),
        Some(200)
    );
}

#[test]
fn a_torn_write_into_zero_filled_space_is_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let mut wal = written(&dir, 20);
    for i in 21..=25 {
        wal.append(i, &codec::encode(&entry(1, i)).unwrap())
            .unwrap();
    }
    wal.write_out().unwrap();
    let end = end_of(&wal);
    drop(wal);
    // The last record's final bytes never reached the disk: zeros where they belong.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.write_all_at(&[0; 3], end - 3).unwrap();
    drop(f);
    let (_, rec) = recover(&dir, true).unwrap();
    assert_eq!(rec.last.map(|l| l.index), Some(24));
    // Zeros over synced entries are lost entries, not a clean end.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("raft");
    let wal = written(&dir, 20);
    let end = end_of(&wal);
    drop(wal);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment(&dir))
        .unwrap();
    f.write_all_at(&[0; 40], end - 40).unwrap();
    drop(f);
    let e = recover(&dir, true).unwrap_err();
    assert!(
        matches!(e, WalError::Damaged { .. } | WalError::Lost { .. }),
        "{e}"
    );
}
