//! Hashes of the store's contents, for etcd's `Hash` and `HashKV`: members that applied the
//! same log hold the same rows and answer the same hash, so a member that differs is found
//! by asking each (`etcdctl endpoint hashkv --cluster`).

use crate::error::StoreError;
use crate::mvcc::key_value::EventType;
use crate::KvStore;

impl KvStore {
    /// A CRC-32 of every history row up to `revision` (0: the current one) after the
    /// compaction floor, leaving out keys under `hidden`; with the floor it covers and the
    /// revision it stops at. Blocking (reads every row).
    pub fn hash_kv(
        &self,
        revision: i64,
        hidden: Option<&[u8]>,
    ) -> Result<(u32, i64, i64), StoreError> {
        let contents = self.export()?;
        let upto = if revision <= 0 {
            contents.revision
        } else {
            revision
        };
        if upto > contents.revision {
            return Err(StoreError::Kv(crate::KvError::FutureRevision));
        }
        if revision > 0 && revision < contents.compact_revision {
            return Err(StoreError::Kv(crate::KvError::Compacted {
                compact_revision: contents.compact_revision,
            }));
        }
        let mut h = crc32fast::Hasher::new();
        for (id, row) in &contents.rows {
            if id.rev > upto || hidden.is_some_and(|p| row.kv.key.starts_with(p)) {
                continue;
            }
            h.update(&id.to_key());
            h.update(&[match row.kind {
                EventType::Put => 0,
                EventType::Delete => 1,
            }]);
            for n in [
                row.kv.create_revision,
                row.kv.mod_revision,
                row.kv.version,
                row.kv.lease,
            ] {
                h.update(&n.to_be_bytes());
            }
            h.update(&(row.kv.key.len() as u64).to_be_bytes());
            h.update(&row.kv.key);
            h.update(&row.kv.value);
        }
        Ok((h.finalize(), contents.compact_revision, upto))
    }
}
