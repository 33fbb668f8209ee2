//! Authentication of peer requests with the cluster secret.
//!
//! Every request between nodes (and every membership change sent to the admin API) carries
//! `x-hermes-peer-auth: <unix seconds>.<nonce hex>.<body length>.<body SHA-256 hex>.<MAC hex>`,
//! the MAC being HMAC-SHA256 with the cluster secret over the method, path, audience (the
//! receiver's peer address, see below), timestamp, nonce, body length and body digest. The
//! secret itself never crosses the wire. A receiver checks in two steps, so that nobody without
//! the secret makes it read a single body byte:
//! 1. [`PeerAuth::check_header`], before the body: well formed, within [`MAX_SKEW_SECS`] of the
//!    receiver's clock, the declared `Content-Length` equal to the signed length, the MAC right
//!    (compared in constant time), and the nonce not seen within the skew window (a captured
//!    request cannot be replayed here);
//! 2. [`PeerAuth::verify_body`], with the body: its length and digest are the signed ones.
//!
//! The audience binds a request to the node it was sent to: raft calls are signed for the
//! receiver's advertised peer address (`host:port`, as the membership records it), which the
//! receiver checks against its own, so a request captured on its way to one member cannot be
//! replayed to another (each keeps its own nonce cache). Membership changes sent to an admin
//! API are signed for any audience (`""`): the address a client uses for the admin API is not
//! known to the node, and replaying one makes the same change again.
//!
//! Without a configured secret (a cluster confined to loopback) requests are neither signed
//! nor checked.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
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
    #[error(
        "peer request signature does not match (wrong cluster secret, or sent to another node)"
    )]
    BadSignature,
    #[error("peer request body does not match its signed length and digest")]
    BodyMismatch,
    #[error("peer request: {0}")]
    Replay(#[from] ReplayError),
}

/// A header whose signature checked out, waiting for its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    len: u64,
    digest: [u8; 32],
}

/// What one request's MAC covers.
struct Signing<'a> {
    method: &'a str,
    path: &'a str,
    audience: &'a str,
    ts: u64,
    nonce: &'a [u8],
    len: u64,
    digest: &'a [u8],
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The audience of a request to `url`: its `host:port`, lower-cased.
pub fn audience_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
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

    fn mac(secret: &[u8], s: &Signing<'_>) -> Vec<u8> {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(b"hermes-peer-v3\n");
        for part in [
            s.method.as_bytes(),
            s.path.as_bytes(),
            s.audience.as_bytes(),
        ] {
            mac.update(part);
            mac.update(b"\n");
        }
        mac.update(s.ts.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(s.nonce);
        mac.update(b"\n");
        mac.update(s.len.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(s.digest);
        mac.finalize().into_bytes().to_vec()
    }

    /// The header value for a request to `audience` (see the module's doc), or `None` when no
    /// secret is configured.
    pub fn sign(&self, method: &str, path: &str, audience: &str, body: &[u8]) -> Option<String> {
        let secret = self.secret.as_ref()?;
        let ts = now_secs();
        let nonce: [u8; 16] = rand::random();
        let digest: [u8; 32] = Sha256::digest(body).into();
        let signing = Signing {
            method,
            path,
            audience,
            ts,
            nonce: &nonce,
            len: body.len() as u64,
            digest: &digest,
        };
        let mac = Self::mac(secret, &signing);
        Some(format!(
            "{ts}.{}.{}.{}.{}",
            hex::encode(nonce),
            body.len(),
            hex::encode(digest),
            hex::encode(mac)
        ))
    }

    /// Step 1, before the body is read: the whole signature, for a request to `audience`
    /// (this node's) whose declared `Content-Length` is `declared`. `Ok(None)` when no secret
    /// is configured.
    pub fn check_header(
        &self,
        method: &str,
        path: &str,
        audience: &str,
        header: Option<&str>,
        declared: Option<u64>,
    ) -> Result<Option<Signed>, PeerAuthError> {
        let Some(secret) = &self.secret else {
            return Ok(None);
        };
        let header = header.ok_or(PeerAuthError::Missing)?;
        let mut parts = header.split('.');
        let (Some(ts), Some(nonce), Some(len), Some(digest), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(PeerAuthError::Malformed);
        };
        let ts: u64 = ts.parse().map_err(|_| PeerAuthError::Malformed)?;
        let len: u64 = len.parse().map_err(|_| PeerAuthError::Malformed)?;
        let nonce: [u8; 16] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(PeerAuthError::Malformed)?;
        let digest: [u8; 32] = hex::decode(digest)
            .ok()
            .and_then(|d| d.try_into().ok())
            .ok_or(PeerAuthError::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| PeerAuthError::Malformed)?;
        let now = now_secs();
        if now.abs_diff(ts) > MAX_SKEW_SECS {
            return Err(PeerAuthError::Expired);
        }
        // The body's length must be declared, and be the signed one: a reader then never
        // reads more than a signer meant.
        if declared != Some(len) {
            return Err(PeerAuthError::BodyMismatch);
        }
        let signing = Signing {
            method,
            path,
            audience,
            ts,
            nonce: &nonce,
            len,
            digest: &digest,
        };
        let expected = Self::mac(secret, &signing);
        if !bool::from(expected.ct_eq(&mac)) {
            return Err(PeerAuthError::BadSignature);
        }
        self.seen.first_time(nonce, ts, now)?;
        Ok(Some(Signed { len, digest }))
    }

    /// Step 2, with the body: its length and digest are the signed ones.
    pub fn verify_body(&self, signed: Option<&Signed>, body: &[u8]) -> Result<(), PeerAuthError> {
        if self.secret.is_none() {
            return Ok(());
        }
        let signed = signed.ok_or(PeerAuthError::Missing)?;
        let digest: [u8; 32] = Sha256::digest(body).into();
        if body.len() as u64 != signed.len || !bool::from(digest.ct_eq(&signed.digest)) {
            return Err(PeerAuthError::BodyMismatch);
        }
        Ok(())
    }

    /// Both steps at once, for callers that have the body anyway.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        audience: &str,
        header: Option<&str>,
        body: &[u8],
    ) -> Result<(), PeerAuthError> {
        let signed = self.check_header(method, path, audience, header, Some(body.len() as u64))?;
        self.verify_body(signed.as_ref(), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "10.0.0.2:9081";

    #[test]
    fn sign_and_verify() {
        let auth = PeerAuth::new(Some(b"s3cret".to_vec()));
        let header = auth.sign("POST", "/raft/vote", ME, b"body").unwrap();
        assert_eq!(
            auth.verify("POST", "/raft/append", ME, Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        // (A header that checks out is spent, even if its body then does not.)
        let spent = auth.sign("POST", "/raft/vote", ME, b"body").unwrap();
        assert_eq!(
            auth.verify("POST", "/raft/vote", ME, Some(&spent), b"othr"),
            Err(PeerAuthError::BodyMismatch)
        );
        let other = PeerAuth::new(Some(b"different".to_vec()));
        assert_eq!(
            other.verify("POST", "/raft/vote", ME, Some(&header), b"body"),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/raft/vote", ME, Some(&header), b"body"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/x", ME, None, b""),
            Err(PeerAuthError::Missing)
        );
        for bad in [
            "zz",
            "1.2",
            "1.00.ab",
            "x.00112233445566778899aabbccddeeff.0.00.ab",
            "1.2.3.4.5.6",
        ] {
            assert_eq!(
                auth.verify("POST", "/x", ME, Some(bad), b""),
                Err(PeerAuthError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_forged_header_is_refused_before_any_body() {
        // Right format, fresh timestamp, a length matching what is declared: without the
        // secret the MAC is wrong, and that is known from the header alone.
        let auth = PeerAuth::new(Some(b"s3cret".to_vec()));
        let forged = format!(
            "{}.{}.{}.{}.{}",
            now_secs(),
            hex::encode([1u8; 16]),
            128 << 20,
            hex::encode([2u8; 32]),
            hex::encode([3u8; 32])
        );
        assert_eq!(
            auth.check_header("POST", "/raft/append", ME, Some(&forged), Some(128 << 20)),
            Err(PeerAuthError::BadSignature)
        );
        // A real header with a longer body declared than signed is refused too.
        let header = auth.sign("POST", "/raft/append", ME, b"small").unwrap();
        assert_eq!(
            auth.check_header("POST", "/raft/append", ME, Some(&header), Some(1 << 20)),
            Err(PeerAuthError::BodyMismatch)
        );
        assert_eq!(
            auth.check_header("POST", "/raft/append", ME, Some(&header), None),
            Err(PeerAuthError::BodyMismatch)
        );
    }

    #[test]
    fn a_request_is_accepted_once_and_only_by_its_addressee() {
        let auth = PeerAuth::new(Some(b"s3cret".to_vec()));
        let header = auth.sign("POST", "/peer/write", ME, b"cmd").unwrap();
        // Another member, with its own nonce cache, refuses what was sent to this one.
        let elsewhere = PeerAuth::new(Some(b"s3cret".to_vec()));
        assert_eq!(
            elsewhere.verify(
                "POST",
                "/peer/write",
                "10.0.0.3:9081",
                Some(&header),
                b"cmd"
            ),
            Err(PeerAuthError::BadSignature)
        );
        assert_eq!(
            auth.verify("POST", "/peer/write", ME, Some(&header), b"cmd"),
            Ok(())
        );
        assert_eq!(
            auth.verify("POST", "/peer/write", ME, Some(&header), b"cmd"),
            Err(PeerAuthError::Replay(ReplayError::Replayed))
        );
        // A fresh signature of the same request is fine.
        let again = auth.sign("POST", "/peer/write", ME, b"cmd").unwrap();
        assert_eq!(
            auth.verify("POST", "/peer/write", ME, Some(&again), b"cmd"),
            Ok(())
        );
    }

    #[test]
    fn old_signatures_expire_before_the_body_is_read() {
        let auth = PeerAuth::new(Some(b"k".to_vec()));
        let ts = now_secs() - MAX_SKEW_SECS - 5;
        let nonce = [7u8; 16];
        let digest: [u8; 32] = Sha256::digest(b"").into();
        let signing = Signing {
            method: "POST",
            path: "/p",
            audience: ME,
            ts,
            nonce: &nonce,
            len: 0,
            digest: &digest,
        };
        let mac = PeerAuth::mac(b"k", &signing);
        let header = format!(
            "{ts}.{}.0.{}.{}",
            hex::encode(nonce),
            hex::encode(digest),
            hex::encode(mac)
        );
        assert_eq!(
            auth.check_header("POST", "/p", ME, Some(&header), Some(0)),
            Err(PeerAuthError::Expired)
        );
    }

    #[test]
    fn audiences_are_the_url_authority() {
        assert_eq!(audience_of("http://10.0.0.2:9081"), "10.0.0.2:9081");
        assert_eq!(
            audience_of("http://Node-2.example:9081/"),
            "node-2.example:9081"
        );
        assert_eq!(audience_of("http://[::1]:9081/raft"), "[::1]:9081");
    }

    #[test]
    fn disabled_auth_accepts_everything() {
        let auth = PeerAuth::new(None);
        assert!(auth.sign("POST", "/p", ME, b"").is_none());
        assert_eq!(auth.verify("POST", "/p", ME, None, b""), Ok(()));
        assert_eq!(
            auth.check_header("POST", "/p", ME, Some("junk"), None),
            Ok(None)
        );
    }
}
