//! The on-disk row layout of the state machine tree.
//!
//! Every change is one history row keyed by its revision, so a watch replays history with a
//! sequential scan and a snapshot is the set of rows plus leases and metadata:
//!
//! | key | value |
//! |---|---|
//! | `h` + main revision (u64 BE) + sub revision (u32 BE) | [`HistoryRow`] |
//! | `l` + lease id (u64 BE) | [`LeaseRow`] |
//! | `m` + name | metadata (applied log id, membership, revision, compaction, cluster id) |

use serde::{Deserialize, Serialize};

use super::key_value::{Event, EventType, KeyValue};

/// Where one change sits in history: the revision of its request and its index within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RowId {
    pub rev: i64,
    pub sub: u32,
}

impl RowId {
    pub const PREFIX: u8 = b'h';

    pub fn to_key(self) -> Vec<u8> {
        let mut key = Vec::with_capacity(13);
        key.push(Self::PREFIX);
        // Revisions are never negative, so the two's complement bytes sort like the numbers.
        key.extend_from_slice(&self.rev.to_be_bytes());
        key.extend_from_slice(&self.sub.to_be_bytes());
        key
    }

    pub fn from_key(key: &[u8]) -> Option<RowId> {
        if key.len() != 13 || key[0] != Self::PREFIX {
            return None;
        }
        let rev = i64::from_be_bytes(key[1..9].try_into().ok()?);
        let sub = u32::from_be_bytes(key[9..13].try_into().ok()?);
        Some(RowId { rev, sub })
    }

    /// The first row key of revision `rev`.
    pub fn first_key_of(rev: i64) -> Vec<u8> {
        RowId { rev, sub: 0 }.to_key()
    }
}

/// One change as stored: the key's new version, or a tombstone (`kv` with key and revision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub kind: EventType,
    pub kv: KeyValue,
}

impl HistoryRow {
    pub fn into_event(self, prev_kv: Option<KeyValue>) -> Event {
        Event {
            kind: self.kind,
            kv: self.kv,
            prev_kv,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRow {
    pub id: i64,
    pub ttl: i64,
}

pub const LEASE_PREFIX: u8 = b'l';

pub fn lease_key(id: i64) -> Vec<u8> {
    let mut key = vec![LEASE_PREFIX];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

pub const META_PREFIX: u8 = b'm';

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META_PREFIX];
    key.extend_from_slice(name.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn row_keys_sort_like_row_ids(a in (0i64..i64::MAX, any::<u32>()), b in (0i64..i64::MAX, any::<u32>())) {
            let (ra, rb) = (RowId { rev: a.0, sub: a.1 }, RowId { rev: b.0, sub: b.1 });
            prop_assert_eq!(ra.cmp(&rb), ra.to_key().cmp(&rb.to_key()));
            prop_assert_eq!(RowId::from_key(&ra.to_key()), Some(ra));
        }
    }
}
