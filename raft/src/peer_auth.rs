//! Authentication of peer requests with the cluster secret.
//!
//! Every request between nodes (and every membership change sent to the admin API) carries
//! `x-hermes-peer-auth: <unix seconds>.<nonce hex>.<hex HMAC-SHA256>` over the method, path,
//! timestamp, nonce and body. The secret itself never crosses the wire. A receiver checks in
//! two steps, so that nobody without the secret makes it read a body:
//! 1. [`PeerAuth::check_header`], before the body: present, well formed, and within
//!    [`MAX_SKEW_SECS`] of the receiver's clock;
//! 2. [`PeerAuth::verify`], with the body: the signature (compared in constant time), then
//!    the nonce, which must not have been seen within the skew window: a captured request
//!    cannot be replayed, to this node or (with its own nonce cache) any other within the
//!    window it would already have reached.
//!
//! Without a configured secret (a cluster confined to loopback) requests are neither signed
//! nor checked.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const HEADER: &str = "x-hermes-peer-auth";

/// How far a signed timestamp may be from the receiver's clock.
pub const MAX_SKEW_SECS: u64 = 30;

/// Nonces remembered at most; past it new requests are refused until old ones age out. A
/// cluster sends a few thousand requests a second at most: this is minutes of headroom.
const MAX_NONCES: usize = 1 << 20;

use crate::replay::{ReplayCache, ReplayError};

#[derive(Clone)]
pub struct PeerAuth {
    secret: Option<Arc<[u8]>>,
    seen: Arc<ReplayCache<[u8; 16]>>,
}

impl Default for PeerAuth {
    fn default() -> Self {
        PeerAuth::new(None)
    }
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
    #[error("peer request: {0}")]
    Replay(#[from] ReplayError),
}

/// A checked header, waiting for its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    ts: u64,
    nonce: [u8; 16],
    mac: Vec<u8>,
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
            // A nonce signed more than the skew ago can no longer pass `check_header`.
            seen: Arc::new(ReplayCache::new(MAX_SKEW_SECS, MAX_NONCES)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.secret.is_some()
    }

    fn mac(secret: &[u8], method: &str, path: &str, ts: u64, nonce: &[u8], body: &[u8]) -> Vec<u8> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(b"hermes-peer-v2\n");
        mac.update(method.as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(ts.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(nonce);
        mac.update(b"\n");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }

    /// The header value for a request, or `None` when no secret is configured.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let ts = now_secs();
        let nonce: [u8; 16] = rand::random();
        let mac = Self::mac(secret, method, path, ts, &nonce, body);
        Some(format!("{ts}.{}.{}", hex::encode(nonce), hex::encode(mac)))
    }

    /// Step 1, before the body is read: `Ok(None)` when no secret is configured.
    pub fn check_header(&self, header: Option<&str>) -> Result<Option<Signed>, PeerAuthError> {
        if self.secret.is_none() {
            return Ok(None);
        }
        let header = header.ok_or(PeerAuthError::Missing)?;
        let mut parts = header.split('.');
        let (Some(ts), Some(nonce), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PeerAuthError::Malformed);
        };
        let ts: u64 = ts.parse().map_err(|_| PeerAuthError::Malformed)?;
        let nonce: [u8; 16] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(PeerAuthError::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| PeerAuthError::Malformed)?;
        if now_secs().abs_diff(ts) > MAX_SKEW_SECS {
            return Err(PeerAuthError::Expired);
        }
        Ok(Some(Signed { ts, nonce, mac }))
    }

    /// Step 2, with the body: the signature, then that the request is not a replay.
    pub fn verify_body(
        &self,
        signed: Option<&Signed>,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(), PeerAuthError> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let signed = signed.ok_or(PeerAuthError::Missing)?;
        let expected = Self::mac(secret, method, path, signed.ts, &signed.nonce, body);
        if !bool::from(expected.ct_eq(&signed.mac)) {
            return Err(PeerAuthError::BadSignature);
        }
        Ok(self.seen.first_time(signed.nonce, signed.ts, now_secs())?)
    }

    /// Both steps at once, for callers that have the body anyway.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), PeerAuthError> {
        let signed = self.check_header(header)?;
        self.verify_body(signed.as_ref(), method, path, body)
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
            auth.verify("POST", "/raft/append", Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/raft/vote", Some(&header), b"other"),
            Err(PeerAuthError::BadSignature)
        );
        let other = PeerAuth::new(Some(b"different".to_vec()));
        assert_eq!(
            other.verify("POST", "/raft/vote", Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/raft/vote", Some(&header), b"body"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/x", None, b""),
            Err(PeerAuthError::Missing)
        );
        for bad in [
            "zz",
            "1.2",
            "1.00.ab",
            "x.00112233445566778899aabbccddeeff.ab",
            "1.2.3.4",
        ] {
            assert_eq!(
                auth.verify("POST", "/x", Some(bad), b""),
                Err(PeerAuthError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_request_is_accepted_once() {
        let auth = PeerAuth::new(Some(b"s3cret".to_vec()));
        let header = auth.sign("POST", "/peer/write", b"cmd").unwrap();
        assert_eq!(
            auth.verify("POST", "/peer/write", Some(&header), b"cmd"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/peer/write", Some(&header), b"cmd"),
            Err(PeerAuthError::Replay(ReplayError::Replayed))
        );
        // A fresh signature of the same request is fine.
        let again = auth.sign("POST", "/peer/write", b"cmd").unwrap();
        assert_eq!(
            auth.verify("POST", "/peer/write", Some(&again), b"cmd"),
            Ok(())
        );
    }

    #[test]
    fn old_signatures_expire_before_the_body_is_read() {
        let auth = PeerAuth::new(Some(b"k".to_vec()));
        let ts = now_secs() - MAX_SKEW_SECS - 5;
        let nonce = [7u8; 16];
        let mac = PeerAuth::mac(b"k", "POST", "/p", ts, &nonce, b"");
        let header = format!("{ts}.{}.{}", hex::encode(nonce), hex::encode(mac));
        assert_eq!(
            auth.check_header(Some(&header)),
            Err(PeerAuthError::Expired)
        );
    }

    #[test]
    fn disabled_auth_accepts_everything() {
        let auth = PeerAuth::new(None);
        assert!(auth.sign("POST", "/p", b"").is_none());
        assert_eq!(auth.verify("POST", "/p", None, b""), Ok(()));
        assert_eq!(auth.check_header(Some("junk")), Ok(None));
    }
}
