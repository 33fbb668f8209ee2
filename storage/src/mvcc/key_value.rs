//! The values the MVCC store hands out: key-value pairs with their revisions, and watch events.

use serde::{Deserialize, Serialize};

/// A key at one of its versions, shaped like etcd's `mvccpb.KeyValue`.
///
/// Byte strings here and in the requests are marked `serde_bytes`: postcard writes them just as
/// it writes a plain `Vec<u8>` (the length, then the bytes), so stored rows and log entries
/// keep their encoding, but in one copy instead of one serializer call per byte. Every applied
/// write encodes its row on the apply path.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// Revision of the write that created this key's current generation.
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Number of writes since creation (1 for a fresh key); reset by deletion.
    pub version: i64,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Lease id the key is attached to, 0 for none.
    pub lease: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Put,
    Delete,
}

/// One change to one key. A delete carries only `key` and `mod_revision` in `kv`, as in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    /// The key's value just before this change, if it existed.
    pub prev_kv: Option<KeyValue>,
}

/// Every event of one revision (one write request or one transaction), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
}

/// A key range as etcd spells it: `range_end` empty means the single `key`; `range_end` of one
/// zero byte means every key `>= key`; otherwise `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRange {
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub range_end: Vec<u8>,
}

impl KeyRange {
    pub fn new(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            key: key.into(),
            range_end: range_end.into(),
        }
    }

    /// The range of every key that starts with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        KeyRange { key, range_end }
    }

    pub fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }

    /// `None` means unbounded above.
    pub fn upper(&self) -> Option<&[u8]> {
        if self.range_end == [0] {
            None
        } else {
            Some(&self.range_end)
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        if self.is_single() {
            return key == self.key.as_slice();
        }
        key >= self.key.as_slice() && self.upper().is_none_or(|end| key < end)
    }

    /// Whether two ranges share at least one key.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let end_a = self.exclusive_end();
        let end_b = other.exclusive_end();
        let a_before_b_end = end_b.as_deref().is_none_or(|e| self.key.as_slice() < e);
        let b_before_a_end = end_a.as_deref().is_none_or(|e| other.key.as_slice() < e);
        a_before_b_end && b_before_a_end
    }

    /// The exclusive upper bound, with a single key `k` turned into `k\0`; `None` = unbounded.
    fn exclusive_end(&self) -> Option<Vec<u8>> {
        if self.is_single() {
            let mut end = self.key.clone();
            end.push(0);
            Some(end)
        } else {
            self.upper().map(<[u8]>::to_vec)
        }
    }
}

/// The smallest key greater than every key with this prefix (etcd's `GetPrefixRangeEnd`):
/// the prefix with its last non-0xff byte incremented, or `\0` (everything) if none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            if let Some(b) = end.last_mut() {
                *b = last + 1;
            }
            return end;
        }
        end.pop();
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// [`KeyValue`] as it was encoded before its byte strings were marked `serde_bytes`.
    #[derive(Serialize)]
    struct PlainKeyValue {
        key: Vec<u8>,
        create_revision: i64,
        mod_revision: i64,
        version: i64,
        value: Vec<u8>,
        lease: i64,
    }

    proptest! {
        #[test]
        fn byte_strings_keep_the_stored_encoding(
            key in proptest::collection::vec(any::<u8>(), 0..300),
            value in proptest::collection::vec(any::<u8>(), 0..300),
            revs in (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        ) {
            let plain = PlainKeyValue {
                key: key.clone(),
                create_revision: revs.0,
                mod_revision: revs.1,
                version: revs.2,
                value: value.clone(),
                lease: revs.3,
            };
            let kv = KeyValue {
                key,
                create_revision: revs.0,
                mod_revision: revs.1,
                version: revs.2,
                value,
                lease: revs.3,
            };
            let stored = crate::codec::encode(&plain).unwrap();
            prop_assert_eq!(&crate::codec::encode(&kv).unwrap(), &stored);
            prop_assert_eq!(crate::codec::decode::<KeyValue>(&stored).unwrap(), kv);
        }
    }

    #[test]
    fn range_forms() {
        let single = KeyRange::new("a", "");
        assert!(single.contains(b"a") && !single.contains(b"a0"));
        let all_from = KeyRange::new("b", vec![0]);
        assert!(all_from.contains(b"zzz") && !all_from.contains(b"a"));
        let prefix = KeyRange::prefix("ab");
        assert_eq!(prefix.range_end, b"ac");
        assert!(prefix.contains(b"ab") && prefix.contains(b"abz") && !prefix.contains(b"ac"));
        assert_eq!(prefix_end(&[0x61, 0xff]), vec![0x62]);
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn overlap() {
        assert!(KeyRange::new("a", "").overlaps(&KeyRange::new("a", "")));
        assert!(!KeyRange::new("a", "").overlaps(&KeyRange::new("b", "")));
        assert!(KeyRange::prefix("a").overlaps(&KeyRange::new("ab", "")));
        assert!(!KeyRange::new("a", "b").overlaps(&KeyRange::new("b", "c")));
        assert!(KeyRange::new("a", vec![0]).overlaps(&KeyRange::new("zz", "")));
    }

    proptest! {
        #[test]
        fn prefix_range_contains_exactly_the_prefixed_keys(
            prefix in proptest::collection::vec(any::<u8>(), 1..4),
            key in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let range = KeyRange::prefix(prefix.clone());
            prop_assert_eq!(range.contains(&key), key.starts_with(&prefix));
        }

        #[test]
        fn overlap_agrees_with_membership(
            a in proptest::collection::vec(0u8..4, 1..3),
            b in proptest::collection::vec(0u8..4, 1..3),
            probe in proptest::collection::vec(0u8..4, 1..3),
        ) {
            let ra = KeyRange::prefix(a);
            let rb = KeyRange::new(b, "");
            if ra.contains(&probe) && rb.contains(&probe) {
                prop_assert!(ra.overlaps(&rb));
            }
        }
    }
}
