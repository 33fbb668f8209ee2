//! Secrets at rest: credential secret keys and session signing keys are sealed (ChaCha20-
//! Poly1305) before they enter the replicated store, so neither a copy of the raft log or the
//! state machine nor a captured peer message yields them (§10.1 S5).
//!
//! The key never enters the store. With a cluster secret (required whenever the peer port is
//! reachable from other hosts) it is derived from it, so every member has it. A cluster without
//! one lives on one host, and its key is derived from the host's `/etc/machine-id`, which every
//! member there shares: that protects copies of the data directory taken off the host, not the
//! host's own disk. A sealed value names its key (the first bytes of the key's hash), so a
//! cluster that gets a secret later still opens what was sealed before, and re-seals it at the
//! next write. A value without the seal prefix is taken as plaintext (records the original
//! server stored, or written before sealing).

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use sha2::{Digest, Sha256};

/// Marks a sealed value: `sealed1:` + base64(key id, nonce, ciphertext and tag).
const PREFIX: &str = "sealed1:";
const KEY_ID_LEN: usize = 4;

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the value was sealed with a key this node does not have (another cluster secret?)")]
    UnknownKey,
    #[error("the sealed value is damaged or was not sealed for this cluster")]
    Damaged,
    #[error("sealing failed")]
    Seal,
}

struct Key {
    id: [u8; KEY_ID_LEN],
    aead: LessSafeKey,
}

/// The keys of one node: the first seals, any opens.
pub struct Sealer {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        f.debug_struct("Sealer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn derive(material: &[u8], label: &str) -> [u8; 32] {
    let mut mac = match Hmac::<Sha256>::new_from_slice(material) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

fn key(bytes: [u8; 32]) -> Result<Key, SealError> {
    let digest = Sha256::digest(bytes);
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes).map_err(|_| SealError::Seal)?;
    Ok(Key {
        id,
        aead: LessSafeKey::new(unbound),
    })
}

/// Where a node's sealing keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    ClusterSecret,
    MachineId,
}

impl Sealer {
    /// The sealer of a node: keyed by the cluster secret when there is one, and always able to
    /// open what the host's `machine_id` sealed.
    pub fn new(cluster_secret: Option<&[u8]>, machine_id: &[u8]) -> Result<Sealer, SealError> {
        let mut keys = Vec::new();
        if let Some(secret) = cluster_secret {
            keys.push(key(derive(
                secret,
                "hermes at-rest key v1 (cluster secret)",
            ))?);
        }
        keys.push(key(derive(
            machine_id,
            "hermes at-rest key v1 (machine id)",
        ))?);
        Ok(Sealer { keys })
    }

    /// Which key seals new values.
    pub fn source(&self) -> KeySource {
        if self.keys.len() > 1 {
            KeySource::ClusterSecret
        } else {
            KeySource::MachineId
        }
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(PREFIX)
    }

    /// Seals `plain` under the first key, with a fresh random nonce.
    pub fn seal(&self, plain: &str) -> Result<String, SealError> {
        let key = self.keys.first().ok_or(SealError::Seal)?;
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut buf = plain.as_bytes().to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.id),
                &mut buf,
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + buf.len());
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{}", STANDARD_NO_PAD.encode(out)))
    }

    /// Opens a sealed value; a value without the seal prefix is returned as it is.
    pub fn open(&self, value: &str) -> Result<String, SealError> {
        let Some(encoded) = value.strip_prefix(PREFIX) else {
            return Ok(value.to_string());
        };
        let bytes = STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| SealError::Damaged)?;
        if bytes.len() < KEY_ID_LEN + NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (id, rest) = bytes.split_at(KEY_ID_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(SealError::UnknownKey)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(key.id), &mut buf)
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }

    /// Whether `value` is sealed under the key that seals new values (else it is re-sealed at
    /// its next write).
    pub fn is_current(&self, value: &str) -> bool {
        let Some(encoded) = value.strip_prefix(PREFIX) else {
            return false;
        };
        let Some(first) = self.keys.first() else {
            return false;
        };
        STANDARD_NO_PAD
            .decode(encoded)
            .ok()
            .is_some_and(|b| b.get(..KEY_ID_LEN) == Some(&first.id[..]))
    }
}

/// The host's machine id (`/etc/machine-id`, else D-Bus's copy); empty when the host has none.
pub fn machine_id() -> Vec<u8> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .map(|b| b.trim_ascii().to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_and_hide_the_plaintext() {
        let s = Sealer::new(Some(b"a cluster secret of some length"), b"machine").unwrap();
        assert_eq!(s.source(), KeySource::ClusterSecret);
        let sealed = s.seal("0123456789abcdef-secret").unwrap();
        assert!(Sealer::is_sealed(&sealed) && s.is_current(&sealed));
        assert!(!sealed.contains("0123456789abcdef"));
        assert_ne!(
            sealed,
            s.seal("0123456789abcdef-secret").unwrap(),
            "fresh nonces"
        );
        assert_eq!(s.open(&sealed).unwrap(), "0123456789abcdef-secret");
        // Plaintext passes through (the original server's rows).
        assert_eq!(s.open("plain").unwrap(), "plain");
    }

    #[test]
    fn other_keys_and_damage_are_refused() {
        let a = Sealer::new(Some(b"secret a, long enough"), b"m").unwrap();
        let b = Sealer::new(Some(b"secret b, long enough"), b"other machine").unwrap();
        let sealed = a.seal("x").unwrap();
        assert_eq!(b.open(&sealed), Err(SealError::UnknownKey));
        let mut bytes = STANDARD_NO_PAD
            .decode(sealed.strip_prefix(PREFIX).unwrap())
            .unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let flipped = format!("{PREFIX}{}", STANDARD_NO_PAD.encode(bytes));
        assert_eq!(a.open(&flipped), Err(SealError::Damaged));
        assert_eq!(a.open("sealed1:!!"), Err(SealError::Damaged));
        assert_eq!(a.open("sealed1:AAAA"), Err(SealError::Damaged));
    }

    #[test]
    fn a_cluster_that_gets_a_secret_still_opens_what_it_sealed_before() {
        let before = Sealer::new(None, b"machine").unwrap();
        assert_eq!(before.source(), KeySource::MachineId);
        let old = before.seal("kept").unwrap();
        let after = Sealer::new(Some(b"the new cluster secret"), b"machine").unwrap();
        assert_eq!(after.open(&old).unwrap(), "kept");
        assert!(!after.is_current(&old));
        assert!(after.is_current(&after.seal("kept").unwrap()));
    }
}
