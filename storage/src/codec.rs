//! Versioned binary encoding for everything this crate writes to disk or sends between nodes:
//! one format-version byte followed by `postcard`. A reader refuses a version it does not know
//! instead of misreading it, so a future format change can be rolled out deliberately.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The only format written today.
pub const FORMAT_VERSION: u8 = 1;

/// Why a stored or received blob could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encoded value is empty (expected a format-version byte)")]
    Empty,
    #[error("unsupported format version {found} (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion { found: u8 },
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
}

/// Encodes `value` as `[FORMAT_VERSION, postcard bytes…]`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let out = vec![FORMAT_VERSION];
    Ok(postcard::to_extend(value, out)?)
}

/// Decodes what [`encode`] produced.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_VERSION, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&found, _)) => Err(CodecError::UnsupportedVersion { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(key in proptest::collection::vec(any::<u8>(), 0..64), n in any::<i64>()) {
            let bytes = encode(&(key.clone(), n)).unwrap();
            prop_assert_eq!(bytes[0], FORMAT_VERSION);
            let back: (Vec<u8>, i64) = decode(&bytes).unwrap();
            prop_assert_eq!(back, (key, n));
        }
    }

    #[test]
    fn refuses_unknown_version_and_empty_input() {
        let mut bytes = encode(&7u32).unwrap();
        bytes[0] = 9;
        assert!(matches!(
            decode::<u32>(&bytes),
            Err(CodecError::UnsupportedVersion { found: 9 })
        ));
        assert!(matches!(decode::<u32>(&[]), Err(CodecError::Empty)));
    }
}
