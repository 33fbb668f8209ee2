//! The protection settings of routes and clusters (contracts/hermes.md §1.3–§1.4), with the
//! gateway's defaults. As for the other documents, `null` reads as the default and a value the
//! gateway cannot honour fails to parse (the admin API refuses it with the parser's message,
//! and a document written straight to the store keeps its previous version): every setting
//! that parses has an effect.

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

/// A route's rate limit (§1.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    /// `req`: token bucket; `count`: sliding window.
    #[serde(default = "default_mode", deserialize_with = "mode")]
    pub mode: String,
    /// Tokens per second (`req`); 100 when absent.
    #[serde(default, deserialize_with = "rate")]
    pub rate: Option<f64>,
    /// Tokens the bucket holds beyond one second's worth (`req`); the rate's when absent.
    #[serde(default, deserialize_with = "burst")]
    pub burst: Option<u64>,
    /// Requests per window (`count`); 1000 when absent.
    #[serde(default, deserialize_with = "count")]
    pub count: Option<u64>,
    /// Window length in seconds (`count`); 1 when absent.
    #[serde(default, deserialize_with = "time_window")]
    pub time_window: Option<u64>,
    /// What one limit is counted per: `route`, `host_uri` (default), `remote_addr`, `uri`.
    #[serde(default = "default_key", deserialize_with = "key")]
    pub key: String,
    /// The status of a refusal; 0 means 429.
    #[serde(default = "too_many_requests", deserialize_with = "rejected_code")]
    pub rejected_code: u16,
}

/// The largest rate or count a limit may name: far beyond what one cluster serves, and small
/// enough that the arithmetic on it stays exact.
pub const MAX_RATE: f64 = 1e9;
/// The longest window, in seconds: a day.
pub const MAX_WINDOW: u64 = 86_400;

fn default_mode() -> String {
    "req".into()
}
fn too_many_requests() -> u16 {
    429
}
fn default_key() -> String {
    "host_uri".into()
}

fn mode<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") | Some("req") => Ok("req".into()),
        Some("count") => Ok("count".into()),
        Some(other) => Err(D::Error::custom(format!(
            "rate_limit.mode must be 'req' or 'count', not {other:?}"
        ))),
    }
}

fn key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") | Some("host_uri") => Ok("host_uri".into()),
        Some(k @ ("route" | "remote_addr" | "uri")) => Ok(k.into()),
        Some(other) => Err(D::Error::custom(format!(
            "rate_limit.key must be 'route', 'host_uri', 'remote_addr' or 'uri', not {other:?}"
        ))),
    }
}

fn rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= MAX_RATE) => Err(D::Error::custom(format!(
            "rate_limit.rate must be above 0 and at most {MAX_RATE}, not {r}"
        ))),
        r => Ok(r),
    }
}

/// A whole number from 0 (or 1) to `max`, or `null`.
fn bounded<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    min: i64,
    max: i64,
) -> Result<Option<u64>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        Some(n) if n < min || n > max => Err(D::Error::custom(format!(
            "rate_limit.{field} must be from {min} to {max}, not {n}"
        ))),
        n => Ok(n.map(|n| n as u64)),
    }
}

fn burst<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, "burst", 0, MAX_RATE as i64)
}
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, "count", 1, MAX_RATE as i64)
}
fn time_window<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    bounded(d, "time_window", 1, MAX_WINDOW as i64)
}

fn rejected_code<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None | Some(0) => Ok(429),
        Some(c) if (400..=599).contains(&c) => Ok(c as u16),
        Some(c) => Err(D::Error::custom(format!(
            "rate_limit.rejected_code must be a 4xx or 5xx status, not {c}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<RateLimitConfig, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_nulls_and_refusals() {
        let all_null = parse(
            json!({"mode": null, "rate": null, "burst": null, "count": null,
            "time_window": null, "key": null, "rejected_code": null}),
        )
        .unwrap();
        assert_eq!(all_null, parse(json!({})).unwrap());
        assert_eq!(all_null.mode, "req");
        assert_eq!(all_null.key, "host_uri");
        assert_eq!(all_null.rejected_code, 429);
        let go_zero = parse(json!({"mode": "", "key": "", "rejected_code": 0})).unwrap();
        assert_eq!(go_zero, all_null);
        for (bad, field) in [
            (json!({"mode": "leaky"}), "mode"),
            (json!({"key": "cookie"}), "key"),
            (json!({"rate": 0}), "rate"),
            (json!({"rate": -1}), "rate"),
            (json!({"rate": 1e300}), "rate"),
            (json!({"burst": -1}), "burst"),
            (json!({"count": 0}), "count"),
            (json!({"time_window": 0}), "time_window"),
            (json!({"time_window": 86401}), "time_window"),
            (json!({"rejected_code": 200}), "rejected_code"),
            (json!({"rejected_code": 70000}), "rejected_code"),
        ] {
            let e = parse(bad.clone()).unwrap_err();
            assert!(e.contains(&format!("rate_limit.{field}")), "{bad}: {e}");
        }
    }
}
