//! Backups: the store's whole MVCC state at one revision (every retained history row, the
//! leases, the compaction floor), without the raft position or membership, as one
//! self-checking file. `hermes snapshot save` and etcd's `Maintenance.Snapshot` write it;
//! `hermes snapshot restore` starts a new single-node cluster from it
//! ([`crate::single_node::restore`]).
//!
//! Layout: the magic `HERMBKUP`, a format version (u32, little-endian), the length of what
//! follows (u64, little-endian), the postcard-encoded [`Backup`], zeros up to a multiple of
//! 512 bytes, then the SHA-256 of everything before it. The last two are etcd's: its
//! snapshot is a bbolt file of 512-byte multiples followed by its SHA-256, and etcdctl's
//! `snapshot save` checks exactly that shape.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec;
use crate::error::StoreError;
use crate::mvcc::rows::{HistoryRow, LeaseRow, RowId};
use crate::KvStore;

pub const MAGIC: &[u8; 8] = b"HERMBKUP";
const VERSION: u32 = 1;
const DIGEST: usize = 32;
const HEADER: usize = 8 + 4 + 8;
const ALIGN: usize = 512;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub revision: i64,
    pub compact_revision: i64,
    pub rows: Vec<(RowId, HistoryRow)>,
    pub leases: Vec<LeaseRow>,
}

/// Why a file is not a usable backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "not a hermes backup (it does not start with {:?})",
        String::from_utf8_lossy(MAGIC)
    )]
    NotABackup,
    #[error("backup format {0}; this build reads format {VERSION}")]
    Version(u32),
    #[error("the backup is damaged or truncated: its SHA-256 does not match its contents")]
    Checksum,
    #[error("the backup's contents do not decode: {0}")]
    Decode(String),
}

impl KvStore {
    /// A backup of the current state, leaving out every key under `hidden` (the etcd
    /// endpoint's backups leave out the control plane's keys, which that endpoint never
    /// shows). Consistent: one revision, taken under the store's history lock. Blocking.
    pub fn backup(&self, hidden: Option<&[u8]>) -> Result<Vec<u8>, StoreError> {
        let contents = self.export()?;
        let is_hidden = |key: &[u8]| hidden.is_some_and(|h| key.starts_with(h));
        let leases = shown_leases(&contents.rows, contents.leases, is_hidden);
        let rows = contents
            .rows
            .into_iter()
            .filter(|(_, row)| !is_hidden(&row.kv.key))
            .collect();
        let backup = Backup {
            revision: contents.revision,
            compact_revision: contents.compact_revision,
            rows,
            leases,
        };
        Ok(encode(&backup)?)
    }
}

/// The leases a backup without the hidden keys keeps: a lease only hidden keys use is left out
/// with them (a restore would otherwise hold it with nothing attached); a lease no key uses is
/// a client's, and stays.
fn shown_leases(
    rows: &[(RowId, HistoryRow)],
    leases: Vec<LeaseRow>,
    is_hidden: impl Fn(&[u8]) -> bool,
) -> Vec<LeaseRow> {
    let mut used_hidden = std::collections::HashSet::new();
    let mut used_shown = std::collections::HashSet::new();
    for (_, row) in rows.iter().filter(|(_, r)| r.kv.lease != 0) {
        if is_hidden(&row.kv.key) {
            used_hidden.insert(row.kv.lease);
        } else {
            used_shown.insert(row.kv.lease);
        }
    }
    leases
        .into_iter()
        .filter(|l| used_shown.contains(&l.id) || !used_hidden.contains(&l.id))
        .collect()
}

/// The file form of `backup`.
pub fn encode(backup: &Backup) -> Result<Vec<u8>, codec::CodecError> {
    let payload = codec::encode(backup)?;
    let padded = (HEADER + payload.len()).div_ceil(ALIGN) * ALIGN;
    let mut out = Vec::with_capacity(padded + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.resize(padded, 0);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Reads a backup file, checking magic, version and checksum before decoding anything.
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    if bytes.len() < HEADER + DIGEST || &bytes[..MAGIC.len()] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
    if Sha256::digest(body).as_slice() != digest {
        return Err(BackupError::Checksum);
    }
    let mut version = [0u8; 4];
    version.copy_from_slice(&body[8..12]);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(BackupError::Version(version));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&body[12..HEADER]);
    let payload = usize::try_from(u64::from_le_bytes(len))
        .ok()
        .and_then(|len| body.get(HEADER..HEADER.checked_add(len)?))
        .ok_or_else(|| BackupError::Decode("its length runs past its end".into()))?;
    codec::decode(payload).map_err(|e| BackupError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        encode(&Backup {
            revision: 7,
            compact_revision: 2,
            rows: Vec::new(),
            leases: vec![LeaseRow { id: 5, ttl: 60 }],
        })
        .unwrap()
    }

    #[test]
    fn a_backup_reads_back_in_the_shape_etcdctl_checks() {
        let bytes = sample();
        assert_eq!(bytes.len() % 512, 32, "512-byte pages, then the SHA-256");
        let b = decode(&bytes).unwrap();
        assert_eq!((b.revision, b.compact_revision), (7, 2));
        assert_eq!(b.leases, vec![LeaseRow { id: 5, ttl: 60 }]);
    }

    #[test]
    fn leases_only_hidden_keys_use_stay_out_of_a_backup_without_them() {
        let row = |rev: i64, key: &str, lease: i64| {
            (
                RowId { rev, sub: 0 },
                HistoryRow {
                    kind: crate::mvcc::key_value::EventType::Put,
                    kv: crate::mvcc::key_value::KeyValue {
                        key: key.as_bytes().to_vec(),
                        lease,
                        ..Default::default()
                    },
                },
            )
        };
        let rows = [row(1, "/cp/a", 1), row(2, "/app/b", 2), row(3, "/cp/c", 2)];
        let leases = (1..=3).map(|id| LeaseRow { id, ttl: 60 }).collect();
        let kept = shown_leases(&rows, leases, |k| k.starts_with(b"/cp/"));
        // 1: only a hidden key's; 2: a shown key's too; 3: nobody's, a client's own.
        let ids: Vec<i64> = kept.iter().map(|l| l.id).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn every_damage_is_caught_before_decoding() {
        let good = sample();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flipping byte {i} went unnoticed");
        }
        for len in 0..good.len() {
            assert!(
                decode(&good[..len]).is_err(),
                "a {len}-byte prefix was taken"
            );
        }
        assert!(matches!(
            decode(b"not a backup at all, really"),
            Err(BackupError::NotABackup)
        ));
    }
}
