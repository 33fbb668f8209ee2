//! The Domain and Cluster documents as stored under `/hermes/domains/` and `/hermes/clusters/`
//! (contracts/hermes.md §1), with the gateway's defaults. `null` is accepted wherever a default
//! exists (the original gateway dropped whole clusters over `retry_on_statuses: null`, §1.8 G8);
//! values that cannot be honoured (negative timeouts, ports out of range) fail to parse, so the
//! previous version of that one resource stays in force.

use std::collections::HashMap;

use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

pub use super::protection::{CircuitBreakerConfig, HealthCheckConfig, RateLimitConfig};

/// Deserializes `null` as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `deserialize_with` helpers that read `null` as the field's own default (not the type's).
macro_rules! null_is_default {
    ($($helper:ident: $ty:ty = $default:ident;)*) => {$(
        fn $helper<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            Ok(Option::<$ty>::deserialize(d)?.unwrap_or_else($default))
        }
    )*};
}

null_is_default! {
    null_status: u8 = default_status;
    null_weight: u32 = default_weight;
    null_lb: String = default_lb;
    null_pass_host: String = default_pass_host;
    null_match_type: String = default_match_type;
    null_action: String = default_action;
    null_sixty: u64 = sixty;
    null_thousand: u64 = thousand;
    null_three_twenty: usize = three_twenty;
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_status() -> u8 {
    1
}
fn default_weight() -> u32 {
    100
}
fn default_lb() -> String {
    "roundrobin".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_pass_host() -> String {
    "pass".into()
}
fn default_match_type() -> String {
    "exact".into()
}
fn default_action() -> String {
    "set".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainConfig {
    pub name: String,
    pub hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    pub uri: String,
    #[serde(default, deserialize_with = "null_default")]
    pub methods: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub headers: Vec<HeaderMatcher>,
    #[serde(default, deserialize_with = "null_default")]
    pub priority: i32,
    pub clusters: Vec<WeightedCluster>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    #[serde(default)]
    pub cluster_override_header: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub request_header_transforms: Vec<HeaderTransform>,
    #[serde(default, deserialize_with = "null_default")]
    pub response_header_transforms: Vec<HeaderTransform>,
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub enable_compression: bool,
    /// Not in the original: whether the cluster's retries may resend this route's requests
    /// whose method is not idempotent (POST, PATCH). Off, only idempotent ones are resent,
    /// except after a failed connect, when nothing was sent.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub retry_non_idempotent: bool,
    #[serde(default = "default_status", deserialize_with = "null_status")]
    pub status: u8,
    #[serde(default)]
    pub plugins: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderMatcher {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
    #[serde(default = "default_match_type", deserialize_with = "null_match_type")]
    pub match_type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub invert: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeaderTransform {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub value: String,
    #[serde(default = "default_action", deserialize_with = "null_action")]
    pub action: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightedCluster {
    pub name: String,
    #[serde(default = "default_weight", deserialize_with = "null_weight")]
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub name: String,
    #[serde(rename = "type", default = "default_lb", deserialize_with = "null_lb")]
    pub lb: String,
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: TimeoutConfig,
    #[serde(default = "default_scheme", deserialize_with = "scheme")]
    pub scheme: String,
    #[serde(default = "default_pass_host", deserialize_with = "null_pass_host")]
    pub pass_host: String,
    #[serde(default, deserialize_with = "upstream_host")]
    pub upstream_host: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub nodes: Vec<UpstreamNode>,
    #[serde(default, deserialize_with = "discovery_type")]
    pub discovery_type: Option<String>,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub discovery_args: Option<DiscoveryArgs>,
    #[serde(default, deserialize_with = "null_default")]
    pub keepalive_pool: KeepalivePoolConfig,
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
    #[serde(default)]
    pub retry: Option<RetryConfig>,
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    #[serde(default, deserialize_with = "null_default")]
    pub tls_verify: bool,
}

/// `consul` (the only discovery there is, §7.17), or none (`null`, `""`).
fn discovery_type<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some("consul") => Ok(Some("consul".into())),
        Some(other) => Err(D::Error::custom(format!(
            "discovery_type must be consul, not {other:?}"
        ))),
    }
}

/// How discovered nodes are chosen (§1.3): every key of `metadata_match` must be in a node's
/// metadata with one of its values. `null` (Go's empty map) means no filter (G8).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiscoveryArgs {
    #[serde(default, deserialize_with = "null_default")]
    pub metadata_match: HashMap<String, Vec<String>>,
}

impl DiscoveryArgs {
    /// Whether a node with `metadata` passes the filter.
    pub fn matches(&self, metadata: &HashMap<String, String>) -> bool {
        self.metadata_match
            .iter()
            .all(|(k, allowed)| metadata.get(k).is_some_and(|v| allowed.contains(v)))
    }
}

impl ClusterConfig {
    /// The Consul service this cluster's nodes come from, if discovered.
    pub fn consul_service(&self) -> Option<&str> {
        match (self.discovery_type.as_deref(), self.service_name.as_deref()) {
            (Some("consul"), Some(name)) if !name.is_empty() => Some(name),
            _ => None,
        }
    }
}

/// `""` (what the original server stored when a client omitted the scheme, G7) means `http`;
/// anything but `http`/`https` is refused.
fn scheme<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = Option::<String>::deserialize(d)?.unwrap_or_default();
    match s.as_str() {
        "" | "http" => Ok("http".into()),
        "https" => Ok("https".into()),
        other => Err(D::Error::custom(format!(
            "scheme must be http or https, not {other:?}"
        ))),
    }
}

/// Seconds, as floats. Negative, zero or non-finite values are refused (they panicked the
/// original gateway, G7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeoutConfig {
    #[serde(default = "six", deserialize_with = "positive_secs")]
    pub connect: f64,
    #[serde(default = "six", deserialize_with = "positive_secs")]
    pub send: f64,
    #[serde(default = "six", deserialize_with = "positive_secs")]
    pub read: f64,
}

fn six() -> f64 {
    6.0
}

fn positive_secs<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(6.0),
        Some(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        Some(v) => Err(D::Error::custom(format!(
            "timeout must be a positive number of seconds (at most a day), not {v}"
        ))),
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig {
            connect: 6.0,
            send: 6.0,
            read: 6.0,
        }
    }
}

/// A host name or IP address as a URI host can carry it: letters, digits, `.`, `-`, `_`, or an
/// IPv6 literal in brackets, at most 253 characters. Anything else (spaces, CR/LF, `/`, `@`)
/// would end up in a request line or `Host` header.
pub fn host_syntax(host: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => !host.is_empty() && host.len() <= 253 && host.chars().all(plain),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not a host name or IP address"))
    }
}

fn node_host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let host = String::deserialize(d)?;
    // A bare IPv6 address is how nodes are usually written; it is a host too.
    if host.parse::<std::net::Ipv6Addr>().is_err() {
        host_syntax(&host).map_err(D::Error::custom)?;
    }
    Ok(host)
}

/// `upstream_host` (what `pass_host: rewrite` sends as `Host`): a host, with an optional port.
fn upstream_host<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let Some(value) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    if value.is_empty() {
        return Ok(Some(value));
    }
    let bad = || D::Error::custom(format!("upstream_host: {value:?} is not host[:port]"));
    let host = match value.strip_prefix('[') {
        Some(rest) => {
            let (v6, tail) = rest.split_once(']').ok_or_else(bad)?;
            let port_ok = tail.is_empty()
                || tail
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad());
            }
            format!("[{v6}]")
        }
        None => match value.rsplit_once(':') {
            Some((h, p)) if p.parse::<u16>().is_ok() => h.to_string(),
            Some(_) => return Err(bad()),
            None => value.clone(),
        },
    };
    host_syntax(&host)
        .map(|()| Some(value.clone()))
        .map_err(|e| D::Error::custom(format!("upstream_host: {e}")))
}

/// When and how often a request is tried again on another node (contracts §1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Further attempts after the first, 1 to [`MAX_RETRIES`].
    #[serde(default = "two", deserialize_with = "retry_count")]
    pub count: u32,
    /// `null` is Go's empty list, and reads as one.
    #[serde(default = "retry_statuses", deserialize_with = "status_list")]
    pub retry_on_statuses: Vec<u16>,
    #[serde(default = "yes", deserialize_with = "null_yes")]
    pub retry_on_connect_failure: bool,
    #[serde(default = "yes", deserialize_with = "null_yes")]
    pub retry_on_timeout: bool,
}

/// The most attempts after the first a cluster may ask for.
pub const MAX_RETRIES: u32 = 10;

fn two() -> u32 {
    2
}
fn yes() -> bool {
    true
}
fn retry_statuses() -> Vec<u16> {
    vec![502, 503, 504]
}
fn null_yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

fn retry_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(2),
        Some(n) if (1..=i64::from(MAX_RETRIES)).contains(&n) => Ok(n as u32),
        Some(n) => Err(D::Error::custom(format!(
            "retry.count must be from 1 to {MAX_RETRIES}, not {n}"
        ))),
    }
}

fn status_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let list = Option::<Vec<i64>>::deserialize(d)?.unwrap_or_default();
    list.into_iter()
        .map(|s| {
            u16::try_from(s)
                .ok()
                .filter(|s| (100..=599).contains(s))
                .ok_or_else(|| D::Error::custom(format!("{s} is not an HTTP status (100-599)")))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamNode {
    #[serde(deserialize_with = "node_host")]
    pub host: String,
    pub port: u16,
    #[serde(default = "default_weight", deserialize_with = "null_weight")]
    pub weight: u32,
    #[serde(default, deserialize_with = "null_default")]
    pub metadata: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepalivePoolConfig {
    /// Seconds an idle pooled connection is kept.
    #[serde(default = "sixty", deserialize_with = "null_sixty")]
    pub idle_timeout: u64,
    /// Requests per upstream connection before it is closed (nginx's `keepalive_requests`; the
    /// original gateway ignored it).
    #[serde(default = "thousand", deserialize_with = "null_thousand")]
    pub requests: u64,
    /// Idle connections kept per upstream node.
    #[serde(default = "three_twenty", deserialize_with = "null_three_twenty")]
    pub size: usize,
}

fn sixty() -> u64 {
    60
}
fn thousand() -> u64 {
    1000
}
fn three_twenty() -> usize {
    320
}

impl Default for KeepalivePoolConfig {
    fn default() -> Self {
        KeepalivePoolConfig {
            idle_timeout: 60,
            requests: 1000,
            size: 320,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contract_examples_parse_with_defaults() {
        let d: DomainConfig = serde_json::from_value(json!({
            "name": "user-service",
            "hosts": ["api.example.com", "*.staging.example.com"],
            "routes": [{"name": "users-api", "uri": "/v1/users/*", "methods": null,
                        "clusters": [{"name": "prod", "weight": 90}, {"name": "canary"}]}]
        }))
        .unwrap();
        let r = &d.routes[0];
        assert_eq!(r.status, 1, "an omitted status means enabled");
        assert!(r.methods.is_empty() && r.headers.is_empty());
        assert_eq!(r.clusters[1].weight, 100);
        let c: ClusterConfig = serde_json::from_value(json!({
            "name": "prod", "nodes": [{"host": "10.0.0.1", "port": 8080}],
            "scheme": "", "retry": {"retry_on_statuses": null}, "keepalive_pool": null
        }))
        .unwrap();
        assert_eq!(
            (c.lb.as_str(), c.scheme.as_str(), c.pass_host.as_str()),
            ("roundrobin", "http", "pass")
        );
        assert_eq!(c.timeout, TimeoutConfig::default());
        assert_eq!(c.keepalive_pool, KeepalivePoolConfig::default());
        assert_eq!(c.nodes[0].weight, 100);
        let null_routes: DomainConfig =
            serde_json::from_value(json!({"name": "d", "hosts": ["_"], "routes": null})).unwrap();
        assert!(null_routes.routes.is_empty());
    }

    #[test]
    fn null_means_the_fields_own_default() {
        let d: DomainConfig = serde_json::from_value(json!({
            "name": "d", "hosts": ["_"],
            "routes": [{"name": "r", "uri": "/", "status": null,
                        "clusters": [{"name": "c", "weight": null}],
                        "headers": [{"name": "X-A", "value": "1", "match_type": null}],
                        "request_header_transforms": [{"name": "X-B", "value": "2", "action": null}]}]
        }))
        .unwrap();
        let r = &d.routes[0];
        assert_eq!((r.status, r.clusters[0].weight), (1, 100));
        assert_eq!(r.headers[0].match_type, "exact");
        assert_eq!(r.request_header_transforms[0].action, "set");
        let c: ClusterConfig = serde_json::from_value(json!({
            "name": "c", "type": null, "pass_host": null,
            "nodes": [{"host": "10.0.0.1", "port": 80, "weight": null}],
            "keepalive_pool": {"idle_timeout": null, "requests": null, "size": null}
        }))
        .unwrap();
        assert_eq!(
            (c.lb.as_str(), c.pass_host.as_str()),
            ("roundrobin", "pass")
        );
        assert_eq!(c.nodes[0].weight, 100);
        assert_eq!(c.keepalive_pool, KeepalivePoolConfig::default());
    }

    #[test]
    fn unusable_values_are_refused() {
        for bad in [
            json!({"name": "c", "timeout": {"connect": -1}}),
            json!({"name": "c", "timeout": {"read": 0}}),
            json!({"name": "c", "nodes": [{"host": "h", "port": 70000}]}),
            json!({"name": "c", "scheme": "ftp"}),
            json!({"name": "c", "nodes": [{"host": "h", "port": 80, "weight": -1}]}),
            json!({"name": "c", "nodes": [{"host": "h\r\nx-evil: 1", "port": 80}]}),
            json!({"name": "c", "nodes": [{"host": "a b", "port": 80}]}),
            json!({"name": "c", "nodes": [{"host": "", "port": 80}]}),
            json!({"name": "c", "upstream_host": "h\r\nx: 1"}),
            json!({"name": "c", "timeout": {"read": 1e308}}),
            json!({"name": "c", "retry": {"count": 2147483648i64}}),
            json!({"name": "c", "retry": {"count": 0}}),
            json!({"name": "c", "retry": {"retry_on_statuses": [42]}}),
        ] {
            assert!(
                serde_json::from_value::<ClusterConfig>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<DomainConfig>(json!({"name": "d", "hosts": null})).is_err()
        );
        for good in [
            json!({"name": "c", "nodes": [{"host": "::1", "port": 80}]}),
            json!({"name": "c", "nodes": [{"host": "svc-1.ns_x.internal", "port": 80}]}),
            json!({"name": "c", "upstream_host": "api.example.com:8443"}),
            json!({"name": "c", "upstream_host": "[::1]:8443"}),
            json!({"name": "c", "retry": {"count": 3, "retry_on_statuses": null}}),
        ] {
            assert!(
                serde_json::from_value::<ClusterConfig>(good.clone()).is_ok(),
                "{good}"
            );
        }
        assert!(serde_json::from_value::<DomainConfig>(
            json!({"name": "d", "hosts": ["a"], "routes": [{"uri": "/", "clusters": null}]})
        )
        .is_err());
    }
}
