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

/// A per-node circuit breaker (§1.3, §7.8). The cluster's current settings apply to every
/// breaker at each decision, so a change takes effect on live breakers (the original kept the
/// settings a breaker was created with, G11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures that open the breaker.
    #[serde(default = "times::<5>", deserialize_with = "threshold::<_, 5>")]
    pub failure_threshold: u32,
    /// Successful probes, in a row, that close it again; also the most probes let through at
    /// once while half open.
    #[serde(default = "times::<2>", deserialize_with = "threshold::<_, 2>")]
    pub success_threshold: u32,
    /// How long it stays open before probing.
    #[serde(default = "secs::<30>", deserialize_with = "duration_secs::<_, 30>")]
    pub open_duration_secs: u64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: 5,
            success_threshold: 2,
            open_duration_secs: 30,
        }
    }
}

/// `health_check` (§1.3): active probing, passive ejection, or both.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthCheckConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
    /// Not in the original: nodes that fail requests in a row are taken out of rotation for
    /// a while, without probing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
}

/// Probes every node on its own schedule (§7.7, with G1 fixed: both thresholds count
/// consecutive results).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveHealthCheck {
    /// Seconds between probes of a node (the original ignored it and probed every 10 s).
    #[serde(default = "secs::<10>", deserialize_with = "duration_secs::<_, 10>")]
    pub interval: u64,
    #[serde(default = "health_path", deserialize_with = "probe_path")]
    pub path: String,
    /// The port probed instead of the node's own.
    #[serde(default, deserialize_with = "probe_port")]
    pub port: Option<u16>,
    #[serde(default = "healthy_statuses", deserialize_with = "healthy_status_list")]
    pub healthy_statuses: Vec<u16>,
    /// Consecutive successes that bring an unhealthy node back.
    #[serde(default = "times::<3>", deserialize_with = "threshold::<_, 3>")]
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy node out.
    #[serde(default = "times::<3>", deserialize_with = "threshold::<_, 3>")]
    pub unhealthy_threshold: u32,
    /// Seconds a probe may take.
    #[serde(default = "secs::<3>", deserialize_with = "duration_secs::<_, 3>")]
    pub timeout: u64,
    /// Probes of one cluster in flight at once; 0 means the default.
    #[serde(default = "probes_at_once", deserialize_with = "concurrency")]
    pub concurrency: usize,
}

/// Ejects a node after `consecutive_failures` failed requests in a row (connection failures,
/// timeouts, unusable answers and 5xx), for `ejection_secs`, doubled at each ejection that
/// follows without a success in between, up to `max_ejection_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassiveHealthCheck {
    #[serde(default = "times::<5>", deserialize_with = "threshold::<_, 5>")]
    pub consecutive_failures: u32,
    #[serde(default = "secs::<10>", deserialize_with = "duration_secs::<_, 10>")]
    pub ejection_secs: u64,
    #[serde(default = "secs::<300>", deserialize_with = "duration_secs::<_, 300>")]
    pub max_ejection_secs: u64,
}

/// A count's default, `N` (serde's `default` names a function).
fn times<const N: u32>() -> u32 {
    N
}
/// A duration's default, `N` seconds.
fn secs<const N: u64>() -> u64 {
    N
}
fn probes_at_once() -> usize {
    64
}
fn health_path() -> String {
    "/health".into()
}
fn healthy_statuses() -> Vec<u16> {
    vec![200]
}

/// The most a threshold may be: more would never trip in practice.
const MAX_THRESHOLD: i64 = 1_000;

/// A threshold; `null` reads as `DEFAULT`.
fn threshold<'de, D: Deserializer<'de>, const DEFAULT: u32>(d: D) -> Result<u32, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(DEFAULT),
        Some(n) if (1..=MAX_THRESHOLD).contains(&n) => Ok(n as u32),
        Some(n) => Err(D::Error::custom(format!(
            "a threshold must be from 1 to {MAX_THRESHOLD}, not {n}"
        ))),
    }
}

/// Whole seconds; `null` reads as `DEFAULT`.
fn duration_secs<'de, D: Deserializer<'de>, const DEFAULT: u64>(d: D) -> Result<u64, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(DEFAULT),
        Some(n) if (1..=MAX_WINDOW as i64).contains(&n) => Ok(n as u64),
        Some(n) => Err(D::Error::custom(format!(
            "a duration must be from 1 to {MAX_WINDOW} seconds, not {n}"
        ))),
    }
}

fn probe_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = Option::<String>::deserialize(d)?.unwrap_or_else(health_path);
    if !path.starts_with('/') || http::uri::PathAndQuery::try_from(path.as_str()).is_err() {
        return Err(D::Error::custom(format!(
            "health_check.active.path must be a path starting with '/', not {path:?}"
        )));
    }
    Ok(path)
}

fn probe_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(None),
        Some(p) if (1..=65535).contains(&p) => Ok(Some(p as u16)),
        Some(p) => Err(D::Error::custom(format!(
            "health_check.active.port must be 1-65535, not {p}"
        ))),
    }
}

fn healthy_status_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let list = Option::<Vec<i64>>::deserialize(d)?.unwrap_or_else(|| vec![200]);
    if list.is_empty() {
        return Err(D::Error::custom(
            "health_check.active.healthy_statuses needs at least one status",
        ));
    }
    list.into_iter()
        .map(|s| {
            u16::try_from(s)
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| D::Error::custom(format!("{s} is not an HTTP status (100-599)")))
        })
        .collect()
}

fn concurrency<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None | Some(0) => Ok(probes_at_once()),
        Some(n) if (1..=1024).contains(&n) => Ok(n as usize),
        Some(n) => Err(D::Error::custom(format!(
            "health_check.active.concurrency must be from 0 to 1024, not {n}"
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
    fn breaker_and_health_check_defaults_and_refusals() {
        let cb: CircuitBreakerConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(cb, CircuitBreakerConfig::default());
        let nulls = json!({"failure_threshold": null, "success_threshold": null,
            "open_duration_secs": null});
        assert_eq!(
            serde_json::from_value::<CircuitBreakerConfig>(nulls).unwrap(),
            cb
        );
        let hc: HealthCheckConfig =
            serde_json::from_value(json!({"active": {}, "passive": {}})).unwrap();
        let active = hc.active.unwrap();
        assert_eq!(
            (
                active.interval,
                active.path.as_str(),
                active.healthy_statuses.clone()
            ),
            (10, "/health", vec![200])
        );
        assert_eq!(
            (
                active.healthy_threshold,
                active.unhealthy_threshold,
                active.timeout
            ),
            (3, 3, 3)
        );
        assert_eq!(active.concurrency, 64);
        let passive = hc.passive.unwrap();
        assert_eq!(
            (
                passive.consecutive_failures,
                passive.ejection_secs,
                passive.max_ejection_secs
            ),
            (5, 10, 300)
        );
        for bad in [
            json!({"active": {"interval": 0}}),
            json!({"active": {"path": "health"}}),
            json!({"active": {"port": 70000}}),
            json!({"active": {"healthy_statuses": []}}),
            json!({"active": {"healthy_statuses": [99]}}),
            json!({"active": {"unhealthy_threshold": 0}}),
            json!({"active": {"concurrency": -1}}),
            json!({"passive": {"consecutive_failures": 0}}),
        ] {
            assert!(
                serde_json::from_value::<HealthCheckConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        for bad in [
            json!({"failure_threshold": 0}),
            json!({"success_threshold": 2000}),
            json!({"open_duration_secs": -1}),
        ] {
            assert!(
                serde_json::from_value::<CircuitBreakerConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
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
