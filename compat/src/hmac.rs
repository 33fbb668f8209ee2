//! HMAC-SHA256 request signing of the control-plane API, in two versions:
//! - **v1**, the original Hermes scheme (contract §4.2) byte for byte, which existing
//!   controllers and scripts send: it signs the method, the decoded path, the timestamp and
//!   the body hash, but not the query string (`?revision=`) nor `X-Hermes-Namespace`, so a
//!   captured request can be pointed at another namespace or revision (§10.1 S4). Accepted
//!   for compatibility and documented as the weaker one.
//! - **v2**, `Authorization: HMAC-SHA256 Credential=<AK>, Version=2, Signature=<sig>`: the
//!   string to sign adds the raw query string, the namespace header and an `X-Hermes-Nonce`
//!   header ([`string_to_sign_v2`]).
//!
//! The server refuses a signature it has seen before within the timestamp window (the caller
//! keeps a [`hermes_raft::replay::ReplayCache`] keyed by signature) for every v2 request and
//! every v1 request with side effects. A v1 read is exempt: it has no nonce, so two identical
//! reads in one second are indistinguishable from a replay, and replaying one changes nothing.
//! The window is the caller's to set. It owns no credentials: the caller looks the access key up (global,
//! by AK) and checks that the credential is enabled before [`verify`]. Nothing here logs a
//! secret or a signature.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256 of the empty body.
pub const EMPTY_BODY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The original's largest accepted `|now - timestamp|`, in seconds.
pub const ORIGINAL_MAX_SKEW_SECS: i64 = 300;

/// The first line of a v2 string to sign.
const V2_TAG: &str = "HERMES-HMAC-SHA256-V2";

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

/// The parts of `Authorization: HMAC-SHA256 Credential=<AK>[, Version=2], Signature=<sig>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub signature: String,
    /// 1 (the original scheme, no `Version` part) or 2.
    pub version: u8,
}

/// What a request signs, besides the secret.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The upper-case method as sent.
    pub method: &'a str,
    /// The decoded URL path (Go's `URL.Path`).
    pub path: &'a str,
    /// The raw query string as sent, without `?` (v2 only).
    pub query: &'a str,
    /// `X-Hermes-Namespace` as sent, empty when absent (v2 only).
    pub namespace: &'a str,
    /// `X-Hermes-Nonce` as sent, empty when absent (v2 only): lets a client send the same
    /// request twice within a second.
    pub nonce: &'a str,
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

/// `HERMES-HMAC-SHA256-V2\nMETHOD\nPATH\nQUERY\nTS\nNAMESPACE\nNONCE\nBODY_HASH`: v1's fields
/// plus the raw query string, the namespace header and the nonce header, each on its own line.
pub fn string_to_sign_v2(req: &Signed<'_>, ts: &str, body_hash: &str) -> String {
    format!(
        "{V2_TAG}\n{}\n{}\n{}\n{ts}\n{}\n{}\n{body_hash}",
        req.method, req.path, req.query, req.namespace, req.nonce
    )
}

/// Whether the server must refuse a second copy of this request: every v2 request, and v1
/// requests with side effects (see the module doc).
pub fn replay_checked(auth: &Authorization, method: &str) -> bool {
    auth.version == 2 || !matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// The headers of a v2 request (`X-Hermes-Namespace` and `X-Hermes-Nonce` are the caller's to
/// send, with the values signed here).
pub fn client_headers_v2(
    access_key: &str,
    secret_key: &str,
    req: &Signed<'_>,
    now: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let ts = now.to_string();
    let body_hash = body_sha256(body);
    let signature = signature_hex(secret_key, &string_to_sign_v2(req, &ts, &body_hash));
    vec![
        (
            "Authorization",
            format!("{SCHEME_PREFIX}Credential={access_key}, Version=2, Signature={signature}"),
        ),
        ("X-Hermes-Timestamp", ts),
        ("X-Hermes-Body-SHA256", body_hash),
    ]
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
/// it at the first `=`; the keys `Credential`, `Signature` and `Version` are case-sensitive,
/// other parts are ignored, order is free (a repeated key: the last wins).
/// [`HmacError::Malformed`] when the key or signature is missing or empty, or the version is
/// not 1 or 2.
pub fn parse_authorization(rest: &str) -> Result<Authorization, HmacError> {
    let mut access_key = "";
    let mut signature = "";
    let mut version = "1";
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", value)) => access_key = value,
            Some(("Signature", value)) => signature = value,
            Some(("Version", value)) => version = value,
            _ => {}
        }
    }
    let version = match version {
        "1" => 1,
        "2" => 2,
        _ => return Err(HmacError::Malformed),
    };
    if access_key.is_empty() || signature.is_empty() {
        return Err(HmacError::Malformed);
    }
    Ok(Authorization {
        access_key: access_key.to_owned(),
        signature: signature.to_owned(),
        version,
    })
}

/// The server's checks after the credential lookup, in the contract's order: the timestamp is
/// present, an integer, and within `max_skew` seconds of `now` (unix seconds); the
/// `X-Hermes-Body-SHA256` header, when given and not empty, equals the body's hash; the
/// signature of `auth.version`, recomputed with the server-computed hash, equals
/// `auth.signature` (constant-time). Returns the signed timestamp, for the replay check.
#[allow(clippy::too_many_arguments)] // one argument per signed input, as the contract lists them
pub fn verify(
    secret_key: &str,
    auth: &Authorization,
    req: &Signed<'_>,
    timestamp: Option<&str>,
    body_sha256_header: Option<&str>,
    body: &[u8],
    now: i64,
    max_skew: u64,
) -> Result<i64, HmacError> {
    let ts_secs = timestamp_within(timestamp, now, max_skew)?;
    let ts = timestamp.unwrap_or_default();
    let body_hash = body_sha256(body);
    // The original reads the header with Go's `Header.Get`: an empty value counts as absent.
    if let Some(claimed) = body_sha256_header.filter(|claimed| !claimed.is_empty()) {
        if claimed != body_hash {
            return Err(HmacError::BodyHashMismatch);
        }
    }
    let signed = match auth.version {
        2 => string_to_sign_v2(req, ts, &body_hash),
        _ => string_to_sign(req.method, req.path, ts, &body_hash),
    };
    let expected = signature_hex(secret_key, &signed);
    if bool::from(expected.as_bytes().ct_eq(auth.signature.as_bytes())) {
        Ok(ts_secs)
    } else {
        Err(HmacError::BadSignature)
    }
}

/// The first of [`verify`]'s checks, which needs no secret: the `X-Hermes-Timestamp` value is
/// present, an integer, and within `max_skew` seconds of `now`. Returns it.
pub fn timestamp_within(
    timestamp: Option<&str>,
    now: i64,
    max_skew: u64,
) -> Result<i64, HmacError> {
    let ts = timestamp.ok_or(HmacError::MissingTimestamp)?;
    let ts_secs: i64 = ts.parse().map_err(|_| HmacError::InvalidTimestamp)?;
    if now.abs_diff(ts_secs) > max_skew {
        return Err(HmacError::Expired);
    }
    Ok(ts_secs)
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
    const SKEW: u64 = ORIGINAL_MAX_SKEW_SECS as u64;

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
            version: 1,
        }
    }

    fn req<'a>(method: &'a str, path: &'a str) -> Signed<'a> {
        Signed {
            method,
            path,
            query: "",
            namespace: "",
            nonce: "",
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
        let v2 = Signed {
            method: "GET",
            path: "/api/v1/config/watch",
            query: "revision=7",
            namespace: "staging",
            nonce: "n1",
        };
        assert_eq!(
            string_to_sign_v2(&v2, "1700000000", EMPTY_BODY_SHA256),
            format!(
                "HERMES-HMAC-SHA256-V2\nGET\n/api/v1/config/watch\nrevision=7\n1700000000\nstaging\nn1\n{EMPTY_BODY_SHA256}"
            )
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
        let r = req("GET", "/api/v1/domains");
        assert_eq!(
            verify(SECRET, &parsed, &r, ts, hash, b"", NOW, SKEW),
            Ok(NOW)
        );
    }

    #[test]
    fn v2_signs_the_query_and_the_namespace() {
        let signed = Signed {
            method: "GET",
            path: "/api/v1/config/watch",
            query: "revision=7",
            namespace: "staging",
            nonce: "n1",
        };
        let headers = client_headers_v2("AK1", SECRET, &signed, NOW, b"");
        let parsed =
            parse_authorization(headers[0].1.strip_prefix(SCHEME_PREFIX).unwrap()).unwrap();
        assert_eq!(parsed.version, 2);
        let ts = Some(headers[1].1.as_str());
        let check = |r: &Signed<'_>| verify(SECRET, &parsed, r, ts, None, b"", NOW, SKEW);
        assert_eq!(check(&signed), Ok(NOW));
        // The same signature pointed elsewhere: another namespace, revision, or none.
        for other in [
            Signed {
                namespace: "default",
                ..signed
            },
            Signed {
                namespace: "",
                ..signed
            },
            Signed {
                query: "revision=0",
                ..signed
            },
            Signed {
                query: "",
                ..signed
            },
            Signed {
                nonce: "n2",
                ..signed
            },
        ] {
            assert_eq!(check(&other), Err(HmacError::BadSignature), "{other:?}");
        }
        // v1 signs neither, which is why it is the weaker scheme.
        let v1 = auth(&sign(
            SECRET,
            "GET",
            "/api/v1/config/watch",
            "1700000000",
            b"",
        ));
        let elsewhere = Signed {
            namespace: "default",
            query: "revision=0",
            ..signed
        };
        assert_eq!(
            verify(SECRET, &v1, &elsewhere, ts, None, b"", NOW, SKEW),
            Ok(NOW)
        );
    }

    #[test]
    fn replays_are_checked_for_v2_and_for_v1_writes() {
        let v1 = auth("x");
        let v2 = Authorization {
            version: 2,
            ..auth("x")
        };
        assert!(!replay_checked(&v1, "GET") && !replay_checked(&v1, "HEAD"));
        assert!(replay_checked(&v1, "POST") && replay_checked(&v1, "DELETE"));
        assert!(replay_checked(&v2, "GET"));
    }

    #[test]
    fn parse_accepts_the_original_variants() {
        let expected = auth("abc");
        for rest in [
            "Credential=AK1, Signature=abc",
            "Credential=AK1,Signature=abc",
            "Signature=abc, Credential=AK1",
            "  Credential=AK1 ,  Signature=abc  ",
            "Credential=AK1, SignedHeaders=host, Signature=abc, junk",
            "Credential=AK1, Version=1, Signature=abc",
        ] {
            assert_eq!(parse_authorization(rest), Ok(expected.clone()), "{rest:?}");
        }
        // Split at the first '=' only.
        assert_eq!(
            parse_authorization("Credential=A=B, Signature=c==").unwrap(),
            Authorization {
                access_key: "A=B".into(),
                signature: "c==".into(),
                version: 1,
            }
        );
        assert_eq!(
            parse_authorization("Credential=AK1, Version=2, Signature=abc").map(|a| a.version),
            Ok(2)
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
            "Credential=AK1, Version=3, Signature=abc",
            "Credential=AK1, Version=, Signature=abc",
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
        let r = req("GET", "/api/v1/domains");
        let check =
            |ts: Option<&str>, now: i64| verify(SECRET, &good, &r, ts, None, b"", now, SKEW);
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
        assert_eq!(check(Some("1700000000"), NOW + 300), Ok(NOW));
        assert_eq!(check(Some("1700000000"), NOW - 300), Ok(NOW));
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
        // A narrower window is the caller's to set.
        let narrow = verify(
            SECRET,
            &good,
            &r,
            Some("1700000000"),
            None,
            b"",
            NOW + 61,
            60,
        );
        assert_eq!(narrow, Err(HmacError::Expired));
    }

    #[test]
    fn body_hash_header_must_match_the_body() {
        let put = auth(PUT_SIGNATURE);
        let r = req("PUT", "/api/v1/status/instances");
        let body = br#"{"a":1}"#;
        let ts = Some("1700000000");
        let check = |header: Option<&str>, body: &[u8]| {
            verify(SECRET, &put, &r, ts, header, body, NOW, SKEW)
        };
        assert_eq!(check(Some(PUT_BODY_SHA256), body), Ok(NOW));
        assert_eq!(check(None, body), Ok(NOW));
        assert_eq!(check(Some(""), body), Ok(NOW));
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
        let check = |secret: &str, a: &Authorization, method: &str, path: &str| {
            verify(secret, a, &req(method, path), ts, None, b"", NOW, SKEW)
        };
        assert_eq!(
            check(&other_secret, &good, "GET", "/api/v1/domains"),
            Err(HmacError::BadSignature)
        );
        assert_eq!(
            check(SECRET, &good, "PUT", "/api/v1/domains"),
            Err(HmacError::BadSignature)
        );
        assert_eq!(
            check(SECRET, &good, "GET", "/api/v1/clusters"),
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
            check(SECRET, &upper, "GET", "/api/v1/domains"),
            Err(HmacError::BadSignature)
        );
    }
}
