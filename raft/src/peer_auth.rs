//! Authentication of peer requests with the cluster secret.
//!
//! Every request between nodes carries `x-hermes-peer-auth: <unix seconds>.<hex HMAC-SHA256>`
//! over the method, path, timestamp and body. The secret itself never crosses the wire; a
//! signature is accepted only within [`MAX_SKEW_SECS`] of the receiver's clock, and is checked
//! in constant time. Without a configured secret (a cluster confined to loopback) requests are
//! neither signed nor checked.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER: &str = "x-hermes-peer-auth";

/// How far a signed timestamp may be from the receiver's clock.
pub const MAX_SKEW_SECS: u64 = 30;

#[derive(Clone, Default)]
pub struct PeerAuth {
    secret: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("PeerAuth")
            .field("enabled", &self.secret.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerAuthError {
    #[error("missing {HEADER} header: this cluster requires the cluster secret")]
    Missing,
    #[error("malformed {HEADER} header")]
    Malformed,
    #[error("peer request timestamp is more than {MAX_SKEW_SECS}s away from this node's clock")]
    Expired,
    #[error("peer request signature does not match (wrong cluster secret?)")]
    BadSignature,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PeerAuth {
    pub fn new(secret: Option<Vec<u8>>) -> Self {
        PeerAuth {
            secret: secret.map(Arc::from),
        }
    }

    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    fn mac(secret: &[u8], method: &str, path: &str, ts: u64, body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(b"hermes-peer-v1\n");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(ts.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The header value for a request, or `None` when no secret is configured.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let ts = now_secs();
        let mac = Self::mac(secret, method, path, ts, body);
        Some(format!("{ts}.{}", hex::encode(mac)))
    }

    /// Checks a request's header (if a secret is configured).
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), PeerAuthError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let header = header.ok_or(PeerAuthError::Missing)?;
        let (ts, sig) = header.split_once('.').ok_or(PeerAuthError::Malformed)?;
        let ts: u64 = ts.parse().map_err(|_| PeerAuthError::Malformed)?;
        let sig = hex::decode(sig).map_err(|_| PeerAuthError::Malformed)?;
        if now_secs().abs_diff(ts) > MAX_SKEW_SECS {
            return Err(PeerAuthError::Expired);
        }
        let expected = Self::mac(secret, method, path, ts, body);
        if bool::from(expected.ct_eq(&sig)) {
            Ok(())
        } else {
            Err(PeerAuthError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let auth = PeerAuth::new(Some(b"s3cret".to_vec()));
        let header = auth.sign("POST", "/raft/vote", b"body").unwrap();
        assert_eq!(
            auth.verify("POST", "/raft/vote", Some(&header), b"body"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/raft/vote", Some(&header), b"other"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/raft/append", Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        let other = PeerAuth::new(Some(b"different".to_vec()));
        assert_eq!(
            other.verify("POST", "/raft/vote", Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/x", None, b""),
            Err(PeerAuthError::Missing)
        );
        assert_eq!(
            auth.verify("POST", "/x", Some("zz"), b""),
            Err(PeerAuthError::Malformed)
        );
    }

    #[test]
    fn old_signatures_expire() {
        let auth = PeerAuth::new(Some(b"k".to_vec()));
        let ts = now_secs() - MAX_SKEW_SECS - 5;
        let mac = PeerAuth::mac(b"k", "POST", "/p", ts, b"");
        let header = format!("{ts}.{}", hex::encode(mac));
        assert_eq!(
            auth.verify("POST", "/p", Some(&header), b""),
            Err(PeerAuthError::Expired)
        );
    }

    #[test]
    fn disabled_auth_accepts_everything() {
        let auth = PeerAuth::new(None);
        assert!(auth.sign("POST", "/p", b"").is_none());
        assert_eq!(auth.verify("POST", "/p", None, b""), Ok(()));
    }
}
