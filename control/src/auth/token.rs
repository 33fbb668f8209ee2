//! HS256 session tokens of the built-in login mode, in the original server's format (§4.4 of the
//! contract): the signing keys with their rotation grace, issuing, and verifying.
//!
//! Verification adds the checks the original lacked (§10.1 S7): `alg` must be exactly `HS256`,
//! `exp` is required, and `iss`/`aud` must be ours. Storing keys and rotating them (retire the
//! active key with `expires_at = now + ROTATION_GRACE_SECS`, add a new one) belong to the store;
//! this module never logs a token or a secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `iss` of every built-in token.
pub const ISSUER: &str = "hermes-builtin";
/// `aud` of every built-in token.
pub const AUDIENCE: &str = "hermes";
/// How long an issued token is valid, in seconds (24 h; there is no refresh token).
pub const LIFETIME_SECS: i64 = 86_400;
/// How long a retired key still verifies tokens after a rotation, in seconds (24 h, so every
/// token it signed can run out its lifetime).
pub const ROTATION_GRACE_SECS: i64 = 86_400;

/// The only `alg` accepted.
const ALG: &str = "HS256";

/// Whether a signing key signs new tokens or only verifies old ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Signs new tokens (exactly one key is active after a rotation).
    Active,
    /// Only verifies, until `expires_at`.
    Retired,
}

/// One HS256 signing key, as kept in the store (the original's `jwt_signing_keys` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKey {
    /// Key id carried in the token header: `k-` and 16 lowercase hex digits.
    pub kid: String,
    /// Hex of 32 random bytes; the decoded bytes are the HMAC key.
    pub secret: String,
    pub status: KeyStatus,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// End of the key's use, unix seconds; `None` for the active key.
    pub expires_at: Option<i64>,
}

impl SigningKey {
    /// A fresh active key created at `now` (unix seconds), from the thread-local CSPRNG.
    pub fn generate(now: i64) -> SigningKey {
        let kid: [u8; 8] = rand::random();
        let secret: [u8; 32] = rand::random();
        SigningKey {
            kid: format!("k-{}", hex::encode(kid)),
            secret: hex::encode(secret),
            status: KeyStatus::Active,
            created_at: now,
            expires_at: None,
        }
    }

    /// Whether the key may verify tokens at `now`: active, or retired with `expires_at > now`.
    /// An `expires_at` in the past also ends an active key (the original's
    /// `expires_at IS NULL OR > now`).
    pub fn usable(&self, now: i64) -> bool {
        match (self.status, self.expires_at) {
            (KeyStatus::Active, None) => true,
            (_, Some(expires_at)) => expires_at > now,
            (KeyStatus::Retired, None) => false,
        }
    }

    /// The HMAC key bytes: the hex-decoded secret. A secret that is not hex (never written by
    /// [`SigningKey::generate`]) is used as its raw bytes, so issuing stays infallible and
    /// verification agrees with it.
    fn mac(&self) -> HmacSha256 {
        let bytes = hex::decode(&self.secret).unwrap_or_else(|_| self.secret.as_bytes().to_vec());
        match HmacSha256::new_from_slice(&bytes) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        }
    }
}

/// The claims of a built-in token; the field order is the original's JSON order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// `builtin:<lower-cased email>`.
    pub sub: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub preferred_username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Issue time, unix seconds.
    pub iat: i64,
    /// Expiry, unix seconds.
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// Groups named by an OpenID Connect provider (never in built-in tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The user's token epoch when the token was issued (built-in tokens): a password change
    /// or reset moves the user's epoch on, which revokes every token issued before it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
    /// Whether the provider verified `email` (OpenID Connect `email_verified`); never set in
    /// built-in tokens.
    #[serde(skip)]
    pub email_verified: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How far in the future a token's `iat` may be, for clock skew between nodes, in seconds.
pub const MAX_CLOCK_SKEW_SECS: i64 = 60;

/// Why a token was rejected. Messages are short: the API prefixes them with `invalid token: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm {0:?}")]
    UnsupportedAlg(String),
    #[error("unknown signing key")]
    UnknownKey,
    #[error("invalid signature")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("audience mismatch")]
    WrongAudience,
    #[error("token lifetime exceeds {LIFETIME_SECS} seconds")]
    TooLong,
    #[error("token issued in the future")]
    NotYetValid,
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The payload as received: `exp` may be missing and `aud` may be an array.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: String,
    #[serde(default)]
    preferred_username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    epoch: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|aud| aud == wanted),
        }
    }
}

/// Signs `claims` with `key`: header `{"alg":"HS256","typ":"JWT","kid":<kid>}`, both parts
/// base64url without padding, signature HMAC-SHA256(hex-decoded secret, `header.payload`).
pub fn issue(key: &SigningKey, claims: &Claims) -> String {
    let header = Header {
        alg: ALG,
        typ: "JWT",
        kid: &key.kid,
    };
    // Serialising plain structs of strings and integers cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let mut mac = key.mac();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies `token` at `now` (unix seconds) against `keys`.
///
/// The key is the one named by the header's `kid`, which must be [`SigningKey::usable`] at
/// `now` (else [`TokenError::UnknownKey`]); a token without `kid` is tried against every usable
/// key. `alg` must be exactly `HS256` (`none` and everything else are rejected before any key is
/// looked at), the signature is compared in constant time, `exp` is required and must be
/// `> now`, `iss` must be [`ISSUER`] and `aud` must be [`AUDIENCE`] or an array containing it.
/// The lifetime is capped here, whatever the token says: `iat` is required, at most
/// [`MAX_CLOCK_SKEW_SECS`] ahead of `now`, and neither `exp` nor `now` may be more than
/// [`LIFETIME_SECS`] after it.
pub fn verify(token: &str, keys: &[SigningKey], now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };

    let header: ReceivedHeader = decode_json(header_b64)?;
    if header.alg != ALG {
        return Err(TokenError::UnsupportedAlg(header.alg));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed)?;

    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    let signed_by = |key: &SigningKey| {
        let mut mac = key.mac();
        mac.update(signing_input.as_bytes());
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature).is_ok()
    };
    let mut candidates = keys.iter().filter(|key| key.usable(now));
    let signed = match header.kid.as_deref().filter(|kid| !kid.is_empty()) {
        Some(kid) => {
            let key = candidates
                .find(|key| key.kid == kid)
                .ok_or(TokenError::UnknownKey)?;
            signed_by(key)
        }
        None => {
            let mut candidates = candidates.peekable();
            if candidates.peek().is_none() {
                return Err(TokenError::UnknownKey);
            }
            candidates.any(signed_by)
        }
    };
    if !signed {
        return Err(TokenError::BadSignature);
    }

    let received: ReceivedClaims = decode_json(payload_b64)?;
    let exp = received.exp.ok_or(TokenError::Malformed)?;
    let iat = received.iat.ok_or(TokenError::Malformed)?;
    if exp <= now {
        return Err(TokenError::Expired);
    }
    if iat > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(TokenError::NotYetValid);
    }
    if exp.saturating_sub(iat) > LIFETIME_SECS || now.saturating_sub(iat) > LIFETIME_SECS {
        return Err(TokenError::TooLong);
    }
    if received.iss.as_deref() != Some(ISSUER) {
        return Err(TokenError::WrongIssuer);
    }
    if !received.aud.is_some_and(|aud| aud.contains(AUDIENCE)) {
        return Err(TokenError::WrongAudience);
    }
    Ok(Claims {
        sub: received.sub,
        preferred_username: received.preferred_username.unwrap_or_default(),
        email: received.email.unwrap_or_default(),
        name: received.name.unwrap_or_default(),
        iat,
        exp,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        groups: Vec::new(),
        epoch: received.epoch.unwrap_or_default(),
        email_verified: false,
    })
}

/// The claims of a token for a built-in user, issued at `now` (unix seconds) and valid for
/// [`LIFETIME_SECS`], in the user's token `epoch`.
pub fn claims_for(
    sub: &str,
    username: &str,
    email: &str,
    name: &str,
    now: i64,
    epoch: u64,
) -> Claims {
    Claims {
        sub: sub.to_owned(),
        preferred_username: username.to_owned(),
        email: email.to_owned(),
        name: name.to_owned(),
        iat: now,
        exp: now + LIFETIME_SECS,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        groups: Vec::new(),
        epoch,
        email_verified: false,
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;

    fn alice(now: i64) -> Claims {
        claims_for(
            "builtin:alice@example.com",
            "alice",
            "alice@example.com",
            "alice",
            now,
            3,
        )
    }

    /// A token with an arbitrary header and payload, signed with `key`.
    fn forge(key: &SigningKey, header: serde_json::Value, payload: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let mut mac = key.mac();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn payload_with(field: &str, value: serde_json::Value) -> serde_json::Value {
        let mut payload = serde_json::to_value(alice(NOW)).unwrap();
        payload[field] = value;
        payload
    }

    fn header(key: &SigningKey) -> serde_json::Value {
        json!({"alg": "HS256", "typ": "JWT", "kid": key.kid})
    }

    #[test]
    fn generated_keys_have_the_original_shape() {
        let key = SigningKey::generate(NOW);
        assert_eq!(key.kid.len(), 18);
        assert!(key.kid.starts_with("k-"));
        assert!(key.kid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(hex::decode(&key.secret).unwrap().len(), 32);
        assert_eq!(key.status, KeyStatus::Active);
        assert_eq!(key.created_at, NOW);
        assert_eq!(key.expires_at, None);
        assert_ne!(key, SigningKey::generate(NOW));
        let json = serde_json::to_value(&key).unwrap();
        assert_eq!(json["status"], "active");
    }

    #[test]
    fn issued_token_verifies_and_has_the_original_header() {
        let key = SigningKey::generate(NOW);
        let token = issue(&key, &alice(NOW));
        assert_eq!(
            verify(&token, std::slice::from_ref(&key), NOW + 60),
            Ok(alice(NOW))
        );

        let header_b64 = token.split('.').next().unwrap();
        let header = String::from_utf8(URL_SAFE_NO_PAD.decode(header_b64).unwrap()).unwrap();
        assert_eq!(
            header,
            format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{}"}}"#, key.kid)
        );
        assert!(!token.contains('='));
    }

    #[test]
    fn tampered_payload_is_a_bad_signature() {
        let key = SigningKey::generate(NOW);
        let token = issue(&key, &alice(NOW));
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = alice(NOW);
        claims.sub = "builtin:mallory@example.com".into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            verify(&tampered, &[key], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn alg_none_and_others_are_rejected() {
        let key = SigningKey::generate(NOW);
        let payload = serde_json::to_value(alice(NOW)).unwrap();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        assert_eq!(
            verify(&none, std::slice::from_ref(&key), NOW),
            Err(TokenError::UnsupportedAlg("none".into()))
        );
        for alg in ["HS512", "hs256", "RS256"] {
            let token = forge(&key, json!({"alg": alg, "kid": key.kid}), payload.clone());
            assert_eq!(
                verify(&token, std::slice::from_ref(&key), NOW),
                Err(TokenError::UnsupportedAlg(alg.into()))
            );
        }
    }

    #[test]
    fn expired_and_exp_less_tokens_are_rejected() {
        let key = SigningKey::generate(NOW);
        let token = issue(&key, &alice(NOW));
        assert!(verify(&token, std::slice::from_ref(&key), NOW + LIFETIME_SECS - 1).is_ok());
        assert_eq!(
            verify(&token, std::slice::from_ref(&key), NOW + LIFETIME_SECS),
            Err(TokenError::Expired)
        );

        let mut payload = serde_json::to_value(alice(NOW)).unwrap();
        payload.as_object_mut().unwrap().remove("exp");
        let token = forge(&key, header(&key), payload);
        assert_eq!(verify(&token, &[key], NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn the_lifetime_is_capped_whatever_the_token_says() {
        let key = SigningKey::generate(NOW);
        let keys = [key.clone()];
        let long = forge(
            &key,
            header(&key),
            payload_with("exp", json!(NOW + LIFETIME_SECS + 1)),
        );
        assert_eq!(verify(&long, &keys, NOW), Err(TokenError::TooLong));
        let future = forge(
            &key,
            header(&key),
            payload_with("iat", json!(NOW + MAX_CLOCK_SKEW_SECS + 1)),
        );
        assert_eq!(verify(&future, &keys, NOW), Err(TokenError::NotYetValid));
        let mut no_iat = serde_json::to_value(alice(NOW)).unwrap();
        no_iat.as_object_mut().unwrap().remove("iat");
        let no_iat = forge(&key, header(&key), no_iat);
        assert_eq!(verify(&no_iat, &keys, NOW), Err(TokenError::Malformed));
        // The epoch travels in the token.
        assert_eq!(
            verify(&issue(&key, &alice(NOW)), &keys, NOW).unwrap().epoch,
            3
        );
    }

    #[test]
    fn wrong_issuer_or_audience_is_rejected() {
        let key = SigningKey::generate(NOW);
        let keys = [key.clone()];
        let wrong_iss = forge(&key, header(&key), payload_with("iss", json!("someone")));
        assert_eq!(verify(&wrong_iss, &keys, NOW), Err(TokenError::WrongIssuer));
        let wrong_aud = forge(&key, header(&key), payload_with("aud", json!("other")));
        assert_eq!(
            verify(&wrong_aud, &keys, NOW),
            Err(TokenError::WrongAudience)
        );
        let no_aud = forge(&key, header(&key), payload_with("aud", json!(null)));
        assert_eq!(verify(&no_aud, &keys, NOW), Err(TokenError::WrongAudience));

        let aud_array = forge(
            &key,
            header(&key),
            payload_with("aud", json!(["other", "hermes"])),
        );
        assert_eq!(verify(&aud_array, &keys, NOW), Ok(alice(NOW)));
    }

    #[test]
    fn retired_key_verifies_within_the_grace_only() {
        let mut old = SigningKey::generate(NOW);
        let token = issue(&old, &alice(NOW));
        old.status = KeyStatus::Retired;
        old.expires_at = Some(NOW + ROTATION_GRACE_SECS);
        let keys = [SigningKey::generate(NOW), old];
        assert!(verify(&token, &keys, NOW + ROTATION_GRACE_SECS - 1).is_ok());

        let long_lived = issue(&keys[1], &alice(NOW + ROTATION_GRACE_SECS));
        assert_eq!(
            verify(&long_lived, &keys, NOW + ROTATION_GRACE_SECS),
            Err(TokenError::UnknownKey)
        );
        assert!(!keys[1].usable(NOW + ROTATION_GRACE_SECS));
    }

    #[test]
    fn unknown_kid_is_rejected() {
        let key = SigningKey::generate(NOW);
        let token = issue(&key, &alice(NOW));
        assert_eq!(
            verify(&token, &[SigningKey::generate(NOW)], NOW),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(verify(&token, &[], NOW), Err(TokenError::UnknownKey));
    }

    #[test]
    fn token_without_kid_is_tried_against_every_usable_key() {
        let key = SigningKey::generate(NOW);
        let payload = serde_json::to_value(alice(NOW)).unwrap();
        let token = forge(&key, json!({"alg": "HS256", "typ": "JWT"}), payload);
        let keys = [SigningKey::generate(NOW), key, SigningKey::generate(NOW)];
        assert_eq!(verify(&token, &keys, NOW), Ok(alice(NOW)));
        assert_eq!(
            verify(&token, &[keys[0].clone()], NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let key = SigningKey::generate(NOW);
        let keys = [key.clone()];
        for token in ["", "a", "a.b", "a.b.c.d", "!!.??.##"] {
            assert_eq!(
                verify(token, &keys, NOW),
                Err(TokenError::Malformed),
                "{token}"
            );
        }
        let token = issue(&key, &alice(NOW));
        assert_eq!(
            verify(&format!("{token}="), &keys, NOW),
            Err(TokenError::Malformed)
        );
    }
}
