//! The byte layout of the raft log: segment headers, records, and the small checksummed
//! files beside them (vote, meta). Every byte that is read back is covered by a CRC32: a
//! record's length as well as its payload, so a damaged length is found as damage, not taken
//! for a torn tail.
//!
//! - segment header (32 bytes): `HERMWAL1`, the index of its first entry (u64 LE), 12 zero
//!   bytes, CRC32 of the 28 bytes before it (u32 LE);
//! - record: payload length (u32 LE), CRC32 of the length bytes and the payload (u32 LE),
//!   payload (an encoded entry);
//! - small file: an 8-byte magic, the encoded value, CRC32 of magic and value (u32 LE).

pub const SEGMENT_MAGIC: &[u8; 8] = b"HERMWAL1";
pub const SEGMENT_HEADER_LEN: usize = 32;
pub const RECORD_HEADER_LEN: usize = 8;
/// No record is larger: an entry is a batch of at most about 1 MiB of writes.
pub const MAX_RECORD_LEN: usize = 256 << 20;

pub fn segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first index a segment header names, if the header is intact.
pub fn parse_segment_header(h: &[u8]) -> Option<u64> {
    if h.len() < SEGMENT_HEADER_LEN || &h[..8] != SEGMENT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(h[28..32].try_into().ok()?);
    if crc32fast::hash(&h[..28]) != crc {
        return None;
    }
    Some(u64::from_le_bytes(h[8..16].try_into().ok()?))
}

fn record_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record to `out`.
pub fn put_record(out: &mut Vec<u8>, payload: &[u8]) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&record_crc(len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What lies at the start of a byte run that should hold a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Read<'a> {
    /// An intact record and the bytes it took.
    Record { payload: &'a [u8], len: usize },
    /// The run ends inside the record (a torn tail, or a truncated file).
    Short,
    /// The bytes are not a record: wrong checksum, impossible length.
    Damaged,
}

pub fn read_record(buf: &[u8]) -> Read<'_> {
    if buf.len() < RECORD_HEADER_LEN {
        return Read::Short;
    }
    let len_bytes: [u8; 4] = [buf[0], buf[1], buf[2], buf[3]];
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_RECORD_LEN {
        return Read::Damaged;
    }
    let Some(payload) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Read::Short;
    };
    if record_crc(len_bytes, payload) != crc {
        return Read::Damaged;
    }
    Read::Record {
        payload,
        len: RECORD_HEADER_LEN + len,
    }
}

/// A small file's bytes: magic, value, checksum.
pub fn seal_small(magic: &[u8; 8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + value.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The value of a small file, if it is intact and of this kind.
pub fn open_small<'a>(magic: &[u8; 8], bytes: &'a [u8]) -> Option<&'a [u8]> {
    if bytes.len() < 12 || &bytes[..8] != magic {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().ok()?);
    (crc32fast::hash(body) == crc).then_some(&body[8..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_and_small_files_round_trip_and_refuse_damage() {
        let h = segment_header(42);
        assert_eq!(parse_segment_header(&h), Some(42));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(parse_segment_header(&bad), None);
        assert_eq!(parse_segment_header(&[0; SEGMENT_HEADER_LEN]), None);
        let f = seal_small(b"HERMVOTE", b"value");
        assert_eq!(open_small(b"HERMVOTE", &f), Some(&b"value"[..]));
        assert_eq!(open_small(b"HERMMETA", &f), None);
        let mut flipped = f.clone();
        flipped[9] ^= 0x40;
        assert_eq!(open_small(b"HERMVOTE", &flipped), None);
        assert_eq!(open_small(b"HERMVOTE", &f[..f.len() - 1]), None);
        assert_eq!(open_small(b"HERMVOTE", &vec![0; f.len()]), None);
    }

    #[test]
    fn zeros_are_damage_not_records() {
        assert_eq!(read_record(&[0; 64]), Read::Damaged);
        assert_eq!(read_record(&[0; 4]), Read::Short);
    }

    proptest! {
        #[test]
        fn records_round_trip_and_any_flip_or_cut_is_found(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut buf = Vec::new();
            put_record(&mut buf, &payload);
            prop_assert_eq!(read_record(&buf), Read::Record { payload: &payload, len: buf.len() });
            // Any single bit flip anywhere in the record, the length included, is found.
            let i = flip.index(buf.len());
            let mut bad = buf.clone();
            bad[i] ^= 1 << bit;
            let is_record = matches!(read_record(&bad), Read::Record { .. });
            prop_assert!(!is_record, "a flipped bit went unnoticed");
            // A cut record is short, never a record.
            let cut = &buf[..buf.len() - 1];
            let is_record = matches!(read_record(cut), Read::Record { .. });
            prop_assert!(!is_record, "a cut record read as whole");
        }
    }
}
