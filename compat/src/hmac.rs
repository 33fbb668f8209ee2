//! The original Hermes HMAC-SHA256 request signing (contract §4.2), byte for byte: the string
//! to sign, the client's headers, parsing the `Authorization` value and the server's checks
//! after the credential lookup, with the original's messages.
//!
//! It owns no credentials: the caller looks the access key up (global, by AK) and checks that
//! the credential is enabled before [`verify`]. Known limits kept for compatibility (§10.1 S4):
//! no nonce (a captured request replays for ±5 minutes), the query string is not signed and the
//! body hash header is optional. Nothing here logs a secret or a signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256 of the empty body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Largest accepted `|now - timestamp|`, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// The scheme prefix of the `Authorization` header, with its space.
pub const SCHEME_PREFIX: &str = "HMAC-SHA256 ";

/// Why a signed request was rejected; the messages are the original server's 401 bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HmacError {
    #[error("malformed HMAC-SHA256 Authorization header")]
    Malformed,
    #[error("missing X-Hermes-Timestamp header")]
    MissingTimestamp,
    #[error("invalid X-Hermes-Timestamp")]
    InvalidTimestamp,
    #[error("timestamp expired")]
    Expired,
    #[error("body hash mismatch")]
    BodyHashMismatch,
    #[error("invalid signature")]
    BadSignature,
}

/// The two parts of `Authorization: HMAC-SHA256 Credential=<AK>, Signature=<sig>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signature: String,
}

/// Lowercase hex SHA-256 of the exact body bytes.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `METHOD\nPATH\nTS\nBODY_HASH`: the upper-case method as sent, the decoded URL path without
/// query or host, the decimal timestamp and the body's lowercase hex SHA-256.
pub fn string_to_sign(method: &str, path: &str, ts: &str, body_hash: &str) -> String {
    format!("{method}\n{path}\n{ts}\n{body_hash}")
}

/// Lowercase hex HMAC-SHA256 of the [`string_to_sign`], keyed by the secret key string's ASCII
/// bytes (the 64-character hex text itself, not its decoded bytes).
pub fn sign(secret_key: &str, method: &str, path: &str, ts: &str, body: &[u8]) -> String {
    signature_hex(
        secret_key,
        &string_to_sign(method, path, ts, &body_sha256(body)),
    )
}

/// The headers a client sends, as (name, value) pairs: `Authorization`, `X-Hermes-Timestamp`
/// (`now`, unix seconds) and `X-Hermes-Body-SHA256`. `X-Hermes-Namespace` is not signed and is
/// left to the caller.
pub fn client_headers(
    access_key: &str,
    secret_key: &str,
    method: &str,
    path: &str,
    now: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = now.to_string();
    let body_hash = body_sha256(body);
    let signature = signature_hex(secret_key, &string_to_sign(method, path, &ts, &body_hash));
    vec![
        (
            "Authorization",
            format!("{SCHEME_PREFIX}Credential={access_key}, Signature={signature}"),
        ),
        ("X-Hermes-Timestamp", ts),
        ("X-Hermes-Body-SHA256", body_hash),
    ]
}

/// Parses the `Authorization` value after `"HMAC-SHA256 "`: split on `,`, trim each part, split
/// it at the first `=`; the keys `Credential` and `Signature` are case-sensitive, other parts
/// are ignored, order is free (a repeated key: the last wins). [`HmacError::Malformed`] when
/// either value is missing or empty.
pub fn parse_authorization(rest: &str) -> Result<Authorization, HmacError> {
    let mut access_key = "";
    let mut signature = "";
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", value)) => access_key = value,
            Some(("Signature", value)) => signature = value,
            _ => {}
        }
    }
    if access_key.is_empty() || signature.is_empty() {
        return Err(HmacError::Malformed);
    }
    Ok(Authorization {
        access_key: access_key.to_owned(),
        signature: signature.to_owned(),
    })
}

/// The server's checks after the credential lookup, in the contract's order: the timestamp is
/// present, an integer, and within [`MAX_SKEW_SECS`] of `now` (unix seconds); the
/// `X-Hermes-Body-SHA256` header, when given and not empty, equals the body's hash; the
/// signature recomputed with the server-computed hash equals `auth.signature` (constant-time).
#[allow(clippy::too_many_arguments)] // one argument per signed input, as the contract lists them
pub fn verify(
    secret_key: &str,
    auth: &Authorization,
    method: &str,
    path: &str,
    timestamp: Option<&str>,
    body_sha256_header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), HmacError> {
    let ts = timestamp.ok_or(HmacError::MissingTimestamp)?;
    let ts_secs: i64 = ts.parse().map_err(|_| HmacError::InvalidTimestamp)?;
    if now.abs_diff(ts_secs) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(HmacError::Expired);
    }
    let body_hash = body_sha256(body);
    // The original reads the header with Go's `Header.Get`: an empty value counts as absent.
    if let Some(claimed) = body_sha256_header.filter(|claimed| !claimed.is_empty()) {
        if claimed != body_hash {
            return Err(HmacError::BodyHashMismatch);
        }
    }
    let expected = signature_hex(secret_key, &string_to_sign(method, path, ts, &body_hash));
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(())
    } else {
        Err(HmacError::BadSignature)
    }
}

fn signature_hex(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret_key.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_700_000_000;

    /// `printf 'GET\n/api/v1/domains\n1700000000\ne3b0…b855' | openssl dgst -sha256 -hmac "$SECRET"`
    const GET_DOMAINS_SIGNATURE: &str =
        "06d1f86f544d09e8e2813237f7eaff2900d784b09ea79de573df8ad046f96e22";

    /// The same with `PUT /api/v1/status/instances` and the body `{"a":1}`.
    const PUT_BODY_SHA256: &str =
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862";
    const PUT_SIGNATURE: &str = "827c788ddfda7e33951f6fa36be98674afbce933c2e3023ce109a3721ad2fc14";

    fn auth(signature: &str) -> Authorization {
        Authorization {
            access_key: "AK1".into(),
            signature: signature.into(),
        }
    }

    #[test]
    fn known_answer_vectors() {
        assert_eq!(body_sha256(b""), EMPTY_BODY_SHA256);
        assert_eq!(
            string_to_sign("GET", "/api/v1/domains", "1700000000", EMPTY_BODY_SHA256),
            format!("GET\n/api/v1/domains\n1700000000\n{EMPTY_BODY_SHA256}")
        );
        assert_eq!(
            sign(SECRET, "GET", "/api/v1/domains", "1700000000", b""),
            GET_DOMAINS_SIGNATURE
        );
        assert_eq!(body_sha256(br#"{"a":1}"#), PUT_BODY_SHA256);
        assert_eq!(
            sign(
                SECRET,
                "PUT",
                "/api/v1/status/instances",
                "1700000000",
                br#"{"a":1}"#
            ),
            PUT_SIGNATURE
        );
    }

    #[test]
    fn client_headers_verify_on_the_server() {
        let headers = client_headers("AK1", SECRET, "GET", "/api/v1/domains", NOW, b"");
        assert_eq!(
            headers,
            vec![
                (
                    "Authorization",
                    format!("HMAC-SHA256 Credential=AK1, Signature={GET_DOMAINS_SIGNATURE}")
                ),
                ("X-Hermes-Timestamp", "1700000000".to_owned()),
                ("X-Hermes-Body-SHA256", EMPTY_BODY_SHA256.to_owned()),
            ]
        );
        let rest = headers[0].1.strip_prefix(SCHEME_PREFIX).unwrap();
        let parsed = parse_authorization(rest).unwrap();
        assert_eq!(parsed, auth(GET_DOMAINS_SIGNATURE));
        let ts = Some(headers[1].1.as_str());
        let hash = Some(headers[2].1.as_str());
        assert_eq!(
            verify(
                SECRET,
                &parsed,
                "GET",
                "/api/v1/domains",
                ts,
                hash,
                b"",
                NOW
            ),
            Ok(())
        );
    }

    #[test]
    fn parse_accepts_the_original_variants() {
        let expected = Authorization {
            access_key: "AK1".into(),
            signature: "abc".into(),
        };
        for rest in [
            "Credential=AK1, Signature=abc",
            "Credential=AK1,Signature=abc",
            "Signature=abc, Credential=AK1",
            "  Credential=AK1 ,  Signature=abc  ",
            "Credential=AK1, SignedHeaders=host, Signature=abc, junk",
        ] {
            assert_eq!(parse_authorization(rest), Ok(expected.clone()), "{rest:?}");
        }
        // Split at the first '=' only.
        assert_eq!(
            parse_authorization("Credential=A=B, Signature=c==").unwrap(),
            Authorization {
                access_key: "A=B".into(),
                signature: "c==".into(),
            }
        );
    }

    #[test]
    fn parse_rejects_missing_or_empty_parts() {
        for rest in [
            "",
            "Credential=AK1",
            "Credential=AK1, Signature=",
            "Signature=abc",
            "Credential=, Signature=abc",
            "credential=AK1, signature=abc",
            "Credential AK1, Signature abc",
        ] {
            assert_eq!(
                parse_authorization(rest),
                Err(HmacError::Malformed),
                "{rest:?}"
            );
        }
    }

    #[test]
    fn timestamp_must_be_present_integer_and_fresh() {
        let good = auth(GET_DOMAINS_SIGNATURE);
        let check = |ts: Option<&str>, now: i64| {
            verify(SECRET, &good, "GET", "/api/v1/domains", ts, None, b"", now)
        };
        assert_eq!(check(None, NOW), Err(HmacError::MissingTimestamp));
        for ts in [
            "",
            "abc",
            "1700000000.5",
            " 1700000000",
            "99999999999999999999",
        ] {
            assert_eq!(
                check(Some(ts), NOW),
                Err(HmacError::InvalidTimestamp),
                "{ts:?}"
            );
        }
        assert_eq!(check(Some("1700000000"), NOW + 300), Ok(()));
        assert_eq!(check(Some("1700000000"), NOW - 300), Ok(()));
        assert_eq!(
            check(Some("1700000000"), NOW + 301),
            Err(HmacError::Expired)
        );
        assert_eq!(
            check(Some("1700000000"), NOW - 301),
            Err(HmacError::Expired)
        );
        assert_eq!(
            check(Some("-9223372036854775808"), i64::MAX),
            Err(HmacError::Expired)
        );
    }

    #[test]
    fn body_hash_header_must_match_the_body() {
        let put = auth(PUT_SIGNATURE);
        let path = "/api/v1/status/instances";
        let body = br#"{"a":1}"#;
        let ts = Some("1700000000");
        let check = |header: Option<&str>, body: &[u8]| {
            verify(SECRET, &put, "PUT", path, ts, header, body, NOW)
        };
        assert_eq!(check(Some(PUT_BODY_SHA256), body), Ok(()));
        assert_eq!(check(None, body), Ok(()));
        assert_eq!(check(Some(""), body), Ok(()));
        assert_eq!(
            check(Some(EMPTY_BODY_SHA256), body),
            Err(HmacError::BodyHashMismatch)
        );
        // A matching header for a different body: the signature uses the server's own hash.
        assert_eq!(
            check(Some(EMPTY_BODY_SHA256), b""),
            Err(HmacError::BadSignature)
        );
        assert_eq!(check(None, br#"{"a":2}"#), Err(HmacError::BadSignature));
    }

    #[test]
    fn wrong_secret_or_inputs_are_bad_signatures() {
        let good = auth(GET_DOMAINS_SIGNATURE);
        let ts = Some("1700000000");
        let other_secret = SECRET.replace('0', "1");
        assert_eq!(
            verify(
                &other_secret,
                &good,
                "GET",
                "/api/v1/domains",
                ts,
                None,
                b"",
                NOW
            ),
            Err(HmacError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &good, "PUT", "/api/v1/domains", ts, None, b"", NOW),
            Err(HmacError::BadSignature)
        );
        assert_eq!(
            verify(SECRET, &good, "GET", "/api/v1/clusters", ts, None, b"", NOW),
            Err(HmacError::BadSignature)
        );
        // The secret is keyed as text, not as its decoded bytes.
        let decoded = String::from_utf8_lossy(&hex::decode(SECRET).unwrap()).into_owned();
        assert_ne!(
            sign(&decoded, "GET", "/api/v1/domains", "1700000000", b""),
            GET_DOMAINS_SIGNATURE
        );
        let upper = auth(&GET_DOMAINS_SIGNATURE.to_uppercase());
        assert_eq!(
            verify(SECRET, &upper, "GET", "/api/v1/domains", ts, None, b"", NOW),
            Err(HmacError::BadSignature)
        );
    }
}
