//! Validation and normalization of the Domain and Cluster documents the admin API receives
//! (contract §1.7 rules D1–D5, R1–R15, C1–C19, plus the checks §10.3 C7 found missing), and of
//! resource and namespace names. It works on the raw JSON so that a wrong type is reported on
//! its own field, and it applies the gateway's defaults at the API (§10.3 C6). It owns no storage
//! and no HTTP: callers decide what a non-empty error list means for the response.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use serde_json::{json, Map, Value};

/// One problem with a submitted document: the JSON path of the offending field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Checks one Domain document (a JSON value as received by the API) at path prefix `domains[{index}]`.
/// `clusters`: Some(set of known cluster names) to enforce R5 "not found", None to skip that check.
pub fn domain(doc: &Value, index: usize, clusters: Option<&BTreeSet<String>>) -> Vec<FieldError> {
    let mut r = Report::default();
    r.domain(doc, &format!("domains[{index}]"), clusters, None);
    r.errors
}

/// Checks one Cluster document at path prefix `clusters[{index}]`.
pub fn cluster(doc: &Value, index: usize) -> Vec<FieldError> {
    let mut r = Report::default();
    r.cluster(doc, &format!("clusters[{index}]"), None);
    r.errors
}

/// Bulk config {"domains":[...],"clusters":[...]}: cluster errors first (incl. C1 duplicate names),
/// then domain errors (incl. D2 duplicates), cross references checked against the submitted clusters.
pub fn config(domains: &[Value], clusters: &[Value]) -> Vec<FieldError> {
    let mut r = Report::default();
    let mut cluster_names = BTreeSet::new();
    for (i, doc) in clusters.iter().enumerate() {
        r.cluster(doc, &format!("clusters[{i}]"), Some(&mut cluster_names));
    }
    let mut domain_names = BTreeSet::new();
    for (i, doc) in domains.iter().enumerate() {
        let path = format!("domains[{i}]");
        r.domain(doc, &path, Some(&cluster_names), Some(&mut domain_names));
    }
    r.errors
}

/// Applies the gateway's defaults to a Domain document (§10.3 C6): route `status` → 1, weighted
/// cluster `weight` → 100, matcher `match_type` → "exact", transform `action` → "set", `null`
/// collections → `[]`. Everything else is kept as submitted, in its original order.
pub fn normalize_domain(mut doc: Value) -> Value {
    if let Some(d) = doc.as_object_mut() {
        null_to(d, "hosts", json!([]));
        null_to(d, "routes", json!([]));
        for route in objects_mut(d, "routes") {
            normalize_route(route);
        }
    }
    doc
}

/// Applies the gateway's defaults to a Cluster document (§10.3 C6): `scheme` → "http", `type` →
/// "roundrobin", `pass_host` → "pass", `timeout` members → 6, `keepalive_pool` → {60,1000,320},
/// node `weight` → 100, `null` collections → `[]`/`{}`. Everything else is kept as submitted.
pub fn normalize_cluster(mut doc: Value) -> Value {
    let Some(c) = doc.as_object_mut() else {
        return doc;
    };
    default_blank(c, "type", json!("roundrobin"));
    default_blank(c, "scheme", json!("http"));
    default_blank(c, "pass_host", json!("pass"));
    default_members(c, "timeout", &[("connect", 6), ("send", 6), ("read", 6)]);
    let pool = [("idle_timeout", 60), ("requests", 1000), ("size", 320)];
    default_members(c, "keepalive_pool", &pool);
    null_to(c, "nodes", json!([]));
    for node in objects_mut(c, "nodes") {
        default_absent(node, "weight", json!(100));
        null_to(node, "metadata", json!({}));
    }
    if let Some(args) = c.get_mut("discovery_args").and_then(Value::as_object_mut) {
        null_to(args, "metadata_match", json!({}));
    }
    if let Some(retry) = c.get_mut("retry").and_then(Value::as_object_mut) {
        null_to(retry, "retry_on_statuses", json!([]));
    }
    let active = c.get_mut("health_check").and_then(|h| h.get_mut("active"));
    if let Some(active) = active.and_then(Value::as_object_mut) {
        null_to(active, "healthy_statuses", json!([]));
    }
    doc
}

/// Resource names (domain/cluster/route) become etcd key suffixes, so they are restricted to
/// 1-253 characters of `[A-Za-z0-9._-]`, not starting with '.'.
pub fn resource_name(name: &str) -> Result<(), String> {
    let charset = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if name.is_empty() || name.len() > 253 || !name.bytes().all(charset) {
        return Err("must be 1-253 characters of letters, digits, '.', '_' or '-'".into());
    }
    if name.starts_with('.') {
        return Err("must not start with '.'".into());
    }
    Ok(())
}

/// Namespace names per §1.7: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`.
pub fn namespace_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("namespace name is required".into());
    }
    if name.len() > 63 {
        return Err("namespace name must be at most 63 characters".into());
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    let ends_ok =
        bytes.first().is_some_and(|&b| alnum(b)) && bytes.last().is_some_and(|&b| alnum(b));
    if !ends_ok || !bytes.iter().all(|&b| alnum(b) || b == b'-') {
        return Err("namespace name must consist of lowercase alphanumeric characters or hyphens, and must start and end with an alphanumeric character".into());
    }
    Ok(())
}

type Obj = Map<String, Value>;

/// Marks a member whose wrong JSON type has already been reported.
struct Reported;

/// A member read from a document: `Ok(None)` when absent or `null`.
type Read<T> = Result<Option<T>, Reported>;

const LB_TYPES: [&str; 7] = [
    "roundrobin",
    "random",
    "weighted_random",
    "least_request",
    "least_conn",
    "peak_ewma",
    "ewma",
];
const MATCH_TYPES: [&str; 5] = ["", "exact", "prefix", "regex", "present"];
const RATE_KEYS: [&str; 5] = ["", "route", "host_uri", "remote_addr", "uri"];
const GT0: &str = "must be > 0";
const GE0: &str = "must be >= 0";
const STATUS_CODE: &str = "must be a valid HTTP status code (100-599)";

fn at(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn idx(path: &str, j: usize) -> String {
    format!("{path}[{j}]")
}

fn member<'a>(m: &'a Obj, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

/// The length of an array member: absent or `null` count as empty, `None` when not an array.
fn len_of(m: &Obj, key: &str) -> Option<usize> {
    member(m, key).map_or(Some(0), |v| v.as_array().map(Vec::len))
}

/// An integer member; an unsigned value beyond `i64` saturates so that range checks still fire.
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX))
}

/// The errors found so far, and readers that report wrong JSON types on the member's path.
#[derive(Default)]
struct Report {
    errors: Vec<FieldError>,
}

impl Report {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let (field, message) = (field.into(), message.into());
        self.errors.push(FieldError { field, message });
    }

    fn read<'a, T>(
        &mut self,
        m: &'a Obj,
        key: &str,
        path: &str,
        want: &str,
        conv: impl Fn(&'a Value) -> Option<T>,
    ) -> Read<T> {
        let Some(v) = member(m, key) else {
            return Ok(None);
        };
        match conv(v) {
            Some(t) => Ok(Some(t)),
            None => {
                self.add(at(path, key), want);
                Err(Reported)
            }
        }
    }

    fn str<'a>(&mut self, m: &'a Obj, key: &str, path: &str) -> Read<&'a str> {
        self.read(m, key, path, "must be a string", Value::as_str)
    }

    fn int(&mut self, m: &Obj, key: &str, path: &str) -> Read<i64> {
        self.read(m, key, path, "must be an integer", as_int)
    }

    fn num(&mut self, m: &Obj, key: &str, path: &str) -> Read<f64> {
        self.read(m, key, path, "must be a number", Value::as_f64)
    }

    fn bool(&mut self, m: &Obj, key: &str, path: &str) -> Read<bool> {
        self.read(m, key, path, "must be a boolean", Value::as_bool)
    }

    fn obj<'a>(&mut self, m: &'a Obj, key: &str, path: &str) -> Read<&'a Obj> {
        self.read(m, key, path, "must be a JSON object", Value::as_object)
    }

    fn arr<'a>(&mut self, m: &'a Obj, key: &str, path: &str, of: &str) -> Read<&'a [Value]> {
        let want = format!("must be an array of {of}");
        self.read(m, key, path, &want, |v| v.as_array().map(Vec::as_slice))
    }

    /// The document itself must be an object.
    fn object<'a>(&mut self, v: &'a Value, path: &str) -> Option<&'a Obj> {
        let m = v.as_object();
        if m.is_none() {
            self.add(path, "must be a JSON object");
        }
        m
    }

    /// Runs `check` on each object of an array member, in order; non-objects are reported.
    fn each_object<'a>(
        &mut self,
        m: &'a Obj,
        key: &str,
        path: &str,
        mut check: impl FnMut(&mut Self, &'a Obj, &str),
    ) {
        let items = self.arr(m, key, path, "objects").ok().flatten();
        for (j, v) in items.unwrap_or_default().iter().enumerate() {
            let p = idx(&at(path, key), j);
            if let Some(o) = self.object(v, &p) {
                check(self, o, &p);
            }
        }
    }

    /// D1/C1/R1 (+ the name charset, + D2/C1/R2 duplicates when `seen` is given).
    fn name(&mut self, m: &Obj, path: &str, seen: Option<&mut BTreeSet<String>>) {
        let p = at(path, "name");
        match self.str(m, "name", path) {
            Ok(None | Some("")) => self.add(p, "required"),
            Ok(Some(name)) => {
                if let Err(msg) = resource_name(name) {
                    self.add(p.clone(), msg);
                }
                if let Some(seen) = seen {
                    if !seen.insert(name.to_string()) {
                        self.add(p, format!("duplicate name: {name}"));
                    }
                }
            }
            Err(Reported) => {}
        }
    }

    /// Absent, null or ≤ 0 → `must be > 0`.
    fn positive_int(&mut self, m: &Obj, key: &str, path: &str) {
        if let Ok(v) = self.int(m, key, path) {
            if v.unwrap_or(0) <= 0 {
                self.add(at(path, key), GT0);
            }
        }
    }

    /// Absent is fine; < 0 → `must be >= 0`.
    fn non_negative_int(&mut self, m: &Obj, key: &str, path: &str) {
        if let Ok(Some(v)) = self.int(m, key, path) {
            if v < 0 {
                self.add(at(path, key), GE0);
            }
        }
    }

    /// A `u32` weight: absent is fine (it defaults to 100).
    fn weight(&mut self, m: &Obj, path: &str) {
        match self.int(m, "weight", path) {
            Ok(Some(w)) if w < 0 => self.add(at(path, "weight"), GE0),
            Ok(Some(w)) if w > i64::from(u32::MAX) => {
                self.add(at(path, "weight"), format!("must be <= {}", u32::MAX));
            }
            _ => {}
        }
    }

    /// C14/C18: each element an HTTP status code. Returns how many there are (absent: 0), or
    /// `None` when the member is not an array.
    fn status_codes(&mut self, m: &Obj, key: &str, path: &str) -> Option<usize> {
        let codes = self.arr(m, key, path, "integers").ok()?.unwrap_or_default();
        for (j, code) in codes.iter().enumerate() {
            if !as_int(code).is_some_and(|c| (100..=599).contains(&c)) {
                self.add(idx(&at(path, key), j), STATUS_CODE);
            }
        }
        Some(codes.len())
    }

    fn domain(
        &mut self,
        doc: &Value,
        p: &str,
        clusters: Option<&BTreeSet<String>>,
        seen: Option<&mut BTreeSet<String>>,
    ) {
        let Some(d) = self.object(doc, p) else {
            return;
        };
        self.name(d, p, seen);
        self.hosts(d, p);
        let mut route_names = BTreeSet::new();
        self.each_object(d, "routes", p, |r, route, rp| {
            r.route(route, rp, clusters, &mut route_names);
        });
    }

    /// D3/D4 plus host syntax and duplicates within the domain.
    fn hosts(&mut self, d: &Obj, p: &str) {
        let hosts = match self.arr(d, "hosts", p, "strings") {
            Ok(hosts) => hosts.unwrap_or_default(),
            Err(Reported) => return,
        };
        if hosts.is_empty() {
            self.add(at(p, "hosts"), "at least one host is required");
        }
        let mut seen = BTreeSet::new();
        for (j, host) in hosts.iter().enumerate() {
            let hp = idx(&at(p, "hosts"), j);
            match host.as_str() {
                None => self.add(hp, "must be a string"),
                Some("") => self.add(hp, "empty host"),
                Some(h) if !host_pattern(h) => self.add(hp, "invalid host pattern"),
                Some(h) if !seen.insert(h.to_ascii_lowercase()) => {
                    self.add(hp, format!("duplicate host: {h}"));
                }
                Some(_) => {}
            }
        }
    }

    fn route(
        &mut self,
        rt: &Obj,
        p: &str,
        clusters: Option<&BTreeSet<String>>,
        names: &mut BTreeSet<String>,
    ) {
        let _ = self.str(rt, "id", p);
        self.name(rt, p, Some(names));
        match self.str(rt, "uri", p) {
            Ok(None | Some("")) => self.add(at(p, "uri"), "required"),
            Ok(Some(uri)) if !uri.starts_with('/') => self.add(at(p, "uri"), "must start with /"),
            _ => {}
        }
        if let Ok(Some(methods)) = self.arr(rt, "methods", p, "strings") {
            for (j, _) in methods.iter().enumerate().filter(|(_, m)| !m.is_string()) {
                self.add(idx(&at(p, "methods"), j), "must be a string");
            }
        }
        self.each_object(rt, "headers", p, Self::header_matcher);
        if let Ok(Some(prio)) = self.int(rt, "priority", p) {
            if i32::try_from(prio).is_err() {
                self.add(at(p, "priority"), "must be a 32-bit integer");
            }
        }
        self.cluster_refs(rt, p, clusters);
        if let Ok(Some(rl)) = self.obj(rt, "rate_limit", p) {
            self.rate_limit(rl, &at(p, "rate_limit"));
        }
        if let Ok(Some(h)) = self.str(rt, "cluster_override_header", p) {
            self.header_name(h, &at(p, "cluster_override_header"), true);
        }
        for key in ["request_header_transforms", "response_header_transforms"] {
            self.each_object(rt, key, p, Self::transform);
        }
        self.non_negative_int(rt, "max_body_bytes", p);
        let _ = self.bool(rt, "enable_compression", p);
        if let Ok(Some(status)) = self.int(rt, "status", p) {
            if status != 0 && status != 1 {
                self.add(at(p, "status"), "must be 0 or 1");
            }
        }
    }

    /// R4–R6.
    fn cluster_refs(&mut self, rt: &Obj, p: &str, clusters: Option<&BTreeSet<String>>) {
        if len_of(rt, "clusters") == Some(0) {
            self.add(
                at(p, "clusters"),
                "at least one cluster reference is required",
            );
        }
        self.each_object(rt, "clusters", p, |r, c, cp| {
            match r.str(c, "name", cp) {
                Ok(None | Some("")) => r.add(at(cp, "name"), "required"),
                Ok(Some(n)) if clusters.is_some_and(|known| !known.contains(n)) => {
                    r.add(at(cp, "name"), format!("cluster \"{n}\" not found"));
                }
                _ => {}
            }
            r.weight(c, cp);
        });
    }

    /// R7/R8 plus header-name syntax and regex compilation.
    fn header_matcher(&mut self, h: &Obj, p: &str) {
        match self.str(h, "name", p) {
            Ok(None | Some("")) => self.add(at(p, "name"), "required"),
            Ok(Some(name)) => self.header_name(name, &at(p, "name"), false),
            Err(Reported) => {}
        }
        let value = self.str(h, "value", p);
        let match_type = self.str(h, "match_type", p);
        let _ = self.bool(h, "invert", p);
        match match_type {
            Ok(Some(mt)) if !MATCH_TYPES.contains(&mt) => self.add(
                at(p, "match_type"),
                "must be 'exact', 'prefix', 'regex', or 'present'",
            ),
            Ok(Some("regex")) => {
                if let Err(err) = regex::Regex::new(value.ok().flatten().unwrap_or_default()) {
                    self.add(
                        at(p, "value"),
                        format!("invalid regex: {}", regex_reason(&err)),
                    );
                }
            }
            _ => {}
        }
    }

    /// R10 plus header name and value syntax.
    fn transform(&mut self, t: &Obj, p: &str) {
        match self.str(t, "name", p) {
            Ok(None | Some("")) => self.add(at(p, "name"), "required"),
            Ok(Some(name)) => self.header_name(name, &at(p, "name"), false),
            Err(Reported) => {}
        }
        let action = match self.str(t, "action", p) {
            Ok(action) => action.unwrap_or("set"),
            Err(Reported) => return,
        };
        match action {
            "" => self.add(at(p, "action"), "required (set, add, or remove)"),
            "set" | "add" => match self.str(t, "value", p) {
                Ok(None | Some("")) => self.add(at(p, "value"), "required for set/add actions"),
                Ok(Some(v)) if !v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) => {
                    self.add(at(p, "value"), "must be a valid HTTP header value");
                }
                _ => {}
            },
            "remove" => {
                let _ = self.str(t, "value", p);
            }
            _ => self.add(at(p, "action"), "must be 'set', 'add', or 'remove'"),
        }
    }

    /// R9/R10 whitespace (when `override_header`, an empty value is its own error), then token syntax.
    fn header_name(&mut self, name: &str, field: &str, override_header: bool) {
        if override_header && name.is_empty() {
            self.add(field, "must be non-empty when set");
        } else if name.contains([' ', '\t', '\r', '\n']) {
            self.add(field, "must not contain whitespace");
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.add(field, "must be a valid HTTP header name");
        }
    }

    /// R11–R13.
    fn rate_limit(&mut self, rl: &Obj, p: &str) {
        match self.str(rl, "mode", p) {
            Ok(Some("req")) => {
                if let Ok(rate) = self.num(rl, "rate", p) {
                    if rate.unwrap_or(0.0) <= 0.0 {
                        self.add(at(p, "rate"), "required for mode=req and must be > 0");
                    }
                }
                self.non_negative_int(rl, "burst", p);
            }
            Ok(Some("count")) => {
                for key in ["count", "time_window"] {
                    if let Ok(v) = self.int(rl, key, p) {
                        if v.unwrap_or(0) <= 0 {
                            self.add(at(p, key), format!("required for mode=count and {GT0}"));
                        }
                    }
                }
            }
            Ok(_) => self.add(at(p, "mode"), "must be 'req' or 'count'"),
            Err(Reported) => {}
        }
        if let Ok(Some(key)) = self.str(rl, "key", p) {
            if !RATE_KEYS.contains(&key) {
                let msg = "must be 'route', 'host_uri', 'remote_addr', or 'uri'";
                self.add(at(p, "key"), msg);
            }
        }
        if let Ok(Some(code)) = self.int(rl, "rejected_code", p) {
            if code != 0 && !(400..=599).contains(&code) {
                self.add(
                    at(p, "rejected_code"),
                    "must be a 4xx or 5xx HTTP status code",
                );
            }
        }
    }

    fn cluster(&mut self, doc: &Value, p: &str, seen: Option<&mut BTreeSet<String>>) {
        let Some(c) = self.object(doc, p) else {
            return;
        };
        self.name(c, p, seen);
        if let Ok(Some(t)) = self.str(c, "type", p) {
            if !t.is_empty() && !LB_TYPES.contains(&t) {
                self.add(
                    at(p, "type"),
                    format!("must be one of {}", LB_TYPES.join(", ")),
                );
            }
        }
        if let Ok(Some(s)) = self.str(c, "scheme", p) {
            if !["", "http", "https"].contains(&s) {
                self.add(at(p, "scheme"), "must be 'http' or 'https'");
            }
        }
        let pass_host = self.str(c, "pass_host", p).ok().flatten();
        if pass_host.is_some_and(|ph| !["", "pass", "node", "rewrite"].contains(&ph)) {
            self.add(at(p, "pass_host"), "must be 'pass', 'node', or 'rewrite'");
        }
        let upstream_host = self.str(c, "upstream_host", p);
        if pass_host == Some("rewrite") && matches!(upstream_host, Ok(None | Some(""))) {
            self.add(
                at(p, "upstream_host"),
                "required when pass_host is 'rewrite'",
            );
        }
        self.discovery(c, p);
        self.timeout(c, p);
        if let Ok(Some(pool)) = self.obj(c, "keepalive_pool", p) {
            for key in ["idle_timeout", "requests", "size"] {
                self.non_negative_int(pool, key, &at(p, "keepalive_pool"));
            }
        }
        if let Ok(Some(hc)) = self.obj(c, "health_check", p) {
            match self.obj(hc, "active", &at(p, "health_check")) {
                Ok(Some(active)) => self.active_check(active, &at(p, "health_check.active")),
                Ok(None) => self.add(
                    at(p, "health_check"),
                    "active health check is required when health_check is set",
                ),
                Err(Reported) => {}
            }
        }
        if let Ok(Some(retry)) = self.obj(c, "retry", p) {
            self.retry(retry, &at(p, "retry"));
        }
        if let Ok(Some(cb)) = self.obj(c, "circuit_breaker", p) {
            for key in [
                "failure_threshold",
                "success_threshold",
                "open_duration_secs",
            ] {
                self.positive_int(cb, key, &at(p, "circuit_breaker"));
            }
        }
        let _ = self.bool(c, "tls_verify", p);
    }

    /// C6 plus node syntax, `discovery_type` value and `discovery_args` shape.
    fn discovery(&mut self, c: &Obj, p: &str) {
        self.each_object(c, "nodes", p, Self::node);
        let discovery_type = self.str(c, "discovery_type", p);
        if let Ok(Some(dt)) = discovery_type {
            if dt != "consul" {
                self.add(at(p, "discovery_type"), "must be 'consul'");
            }
        }
        let service_name = self.str(c, "service_name", p);
        let discovered =
            matches!(discovery_type, Ok(Some(_))) && matches!(service_name, Ok(Some(_)));
        if len_of(c, "nodes") == Some(0) && !discovered {
            self.add(
                p,
                "must have either static nodes or discovery_type+service_name",
            );
        }
        let Ok(Some(args)) = self.obj(c, "discovery_args", p) else {
            return;
        };
        let ap = at(p, "discovery_args");
        if let Ok(Some(mm)) = self.obj(args, "metadata_match", &ap) {
            for (k, values) in mm {
                let all_strings = values
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string));
                if !values.is_null() && !all_strings {
                    self.add(
                        at(&at(&ap, "metadata_match"), k),
                        "must be an array of strings",
                    );
                }
            }
        }
    }

    fn node(&mut self, node: &Obj, p: &str) {
        if let Ok(None | Some("")) = self.str(node, "host", p) {
            self.add(at(p, "host"), "required");
        }
        match self.int(node, "port", p) {
            Ok(None) => self.add(at(p, "port"), "required"),
            Ok(Some(port)) if !(1..=65535).contains(&port) => {
                self.add(at(p, "port"), "must be 1-65535");
            }
            _ => {}
        }
        self.weight(node, p);
        if let Ok(Some(meta)) = self.obj(node, "metadata", p) {
            for k in meta.iter().filter(|(_, v)| !v.is_string()).map(|(k, _)| k) {
                self.add(at(&at(p, "metadata"), k), "must be a string");
            }
        }
    }

    /// C7: absent members default to 6 s; connect and read must be > 0, send >= 0.
    fn timeout(&mut self, c: &Obj, p: &str) {
        let Ok(Some(t)) = self.obj(c, "timeout", p) else {
            return;
        };
        let tp = at(p, "timeout");
        let connect = self.num(t, "connect", &tp);
        let send = self.num(t, "send", &tp);
        let read = self.num(t, "read", &tp);
        if [connect, read]
            .iter()
            .any(|v| matches!(v, Ok(Some(s)) if *s <= 0.0))
        {
            self.add(tp.clone(), "connect and read must be > 0");
        }
        if matches!(send, Ok(Some(s)) if s < 0.0) {
            self.add(at(&tp, "send"), GE0);
        }
    }

    /// C9–C15.
    fn active_check(&mut self, a: &Obj, p: &str) {
        self.positive_int(a, "interval", p);
        match self.str(a, "path", p) {
            Ok(None | Some("")) => self.add(at(p, "path"), "required"),
            Ok(Some(path)) if !path.starts_with('/') => {
                self.add(at(p, "path"), "must start with /")
            }
            _ => {}
        }
        if let Ok(Some(port)) = self.int(a, "port", p) {
            if !(1..=65535).contains(&port) {
                self.add(at(p, "port"), "must be 1-65535");
            }
        }
        for key in ["timeout", "healthy_threshold", "unhealthy_threshold"] {
            self.positive_int(a, key, p);
        }
        if self.status_codes(a, "healthy_statuses", p) == Some(0) {
            self.add(
                at(p, "healthy_statuses"),
                "at least one status code is required",
            );
        }
        self.non_negative_int(a, "concurrency", p);
    }

    /// C16–C18.
    fn retry(&mut self, retry: &Obj, p: &str) {
        self.positive_int(retry, "count", p);
        let no_statuses = self.status_codes(retry, "retry_on_statuses", p) == Some(0);
        let connect = self.bool(retry, "retry_on_connect_failure", p);
        let timeout = self.bool(retry, "retry_on_timeout", p);
        let on = |b: Read<bool>| matches!(b, Ok(Some(true)));
        if no_statuses && !on(connect) && !on(timeout) {
            let msg =
                "at least one retry trigger is required (statuses, connect_failure, or timeout)";
            self.add(p, msg);
        }
    }
}

/// The useful line of a `regex` error (its Display spans several lines).
fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    line.trim().trim_start_matches("error: ").to_string()
}

/// Exact names, `*.suffix`, `prefix.*`, `_`, or `[ipv6]`, each with an optional `:port`.
fn host_pattern(h: &str) -> bool {
    let port_ok =
        |p: &str| p.len() <= 5 && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    if h == "_" {
        return true;
    }
    if let Some(rest) = h.strip_prefix('[') {
        let Some((addr, tail)) = rest.split_once(']') else {
            return false;
        };
        let tail_ok = tail.is_empty() || tail.strip_prefix(':').is_some_and(port_ok);
        return addr.parse::<Ipv6Addr>().is_ok() && tail_ok;
    }
    let name = match h.rsplit_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return false,
        None => h,
    };
    let name = name
        .strip_prefix("*.")
        .or_else(|| name.strip_suffix(".*"))
        .unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

fn objects_mut<'a>(m: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    let items = m.get_mut(key).and_then(Value::as_array_mut);
    items.into_iter().flatten().filter_map(Value::as_object_mut)
}

/// A `null` member becomes `empty`; an absent one stays absent.
fn null_to(m: &mut Obj, key: &str, empty: Value) {
    if m.get(key).is_some_and(Value::is_null) {
        m.insert(key.to_string(), empty);
    }
}

fn default_absent(m: &mut Obj, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

fn default_blank(m: &mut Obj, key: &str, value: Value) {
    if m.get(key)
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        m.insert(key.to_string(), value);
    }
}

/// An absent object gets every member; a present one gets its absent members.
fn default_members(m: &mut Obj, key: &str, members: &[(&str, u64)]) {
    default_absent(m, key, json!({}));
    if let Some(o) = m.get_mut(key).and_then(Value::as_object_mut) {
        for (k, v) in members {
            default_absent(o, k, json!(v));
        }
    }
}

fn normalize_route(route: &mut Obj) {
    for key in [
        "methods",
        "headers",
        "clusters",
        "request_header_transforms",
        "response_header_transforms",
    ] {
        null_to(route, key, json!([]));
    }
    default_absent(route, "status", json!(1));
    for c in objects_mut(route, "clusters") {
        default_absent(c, "weight", json!(100));
    }
    for h in objects_mut(route, "headers") {
        default_blank(h, "match_type", json!("exact"));
    }
    for key in ["request_header_transforms", "response_header_transforms"] {
        for t in objects_mut(route, key) {
            default_absent(t, "action", json!("set"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(errors: Vec<FieldError>, prefix: &str) -> Vec<(String, String)> {
        let strip = |f: &str| {
            f.strip_prefix(prefix)
                .unwrap_or(f)
                .trim_start_matches('.')
                .to_string()
        };
        errors
            .into_iter()
            .map(|e| (strip(&e.field), e.message))
            .collect()
    }

    fn expect(got: Vec<(String, String)>, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    fn merge(mut base: Value, patch: Value) -> Value {
        let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
            panic!("merge needs objects");
        };
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
        base
    }

    fn route_errs(patch: Value) -> Vec<(String, String)> {
        let route = merge(
            json!({"name": "r", "uri": "/", "clusters": [{"name": "c"}]}),
            patch,
        );
        let doc = json!({"name": "d", "hosts": ["a.com"], "routes": [route]});
        pairs(domain(&doc, 0, None), "domains[0].routes[0]")
    }

    fn cluster_errs(patch: Value) -> Vec<(String, String)> {
        let base = json!({"name": "c", "nodes": [{"host": "10.0.0.1", "port": 80}]});
        pairs(cluster(&merge(base, patch), 0), "clusters[0]")
    }

    fn example_domain() -> Value {
        json!({
          "name": "user-service",
          "hosts": ["api.example.com", "*.staging.example.com"],
          "routes": [{
            "id": "", "name": "users-api", "uri": "/v1/users/*", "methods": ["GET","POST"],
            "headers": [{"name":"X-Canary","value":"true","match_type":"exact","invert":false}],
            "priority": 10,
            "clusters": [{"name":"prod","weight":90},{"name":"canary","weight":10}],
            "rate_limit": {"mode":"req","rate":1000,"burst":200,"key":"remote_addr","rejected_code":429},
            "cluster_override_header": "X-Override",
            "request_header_transforms": [{"name":"X-Env","value":"canary","action":"set"}],
            "response_header_transforms": [{"name":"X-Debug","action":"remove"}],
            "max_body_bytes": 1048576, "enable_compression": true, "status": 1
          }]
        })
    }

    fn example_cluster(name: &str) -> Value {
        json!({
          "name": name, "type": "least_request",
          "timeout": {"connect": 3, "send": 5, "read": 10},
          "scheme": "https", "pass_host": "rewrite", "upstream_host": "api.internal",
          "nodes": [{"host":"10.0.0.1","port":8080,"weight":100,"metadata":{"zone":"a"}}],
          "keepalive_pool": {"idle_timeout":60,"requests":1000,"size":320},
          "health_check": {"active":{"interval":10,"path":"/healthz","port":8081,"healthy_statuses":[200,204],
                           "healthy_threshold":2,"unhealthy_threshold":1,"timeout":2,"concurrency":32}},
          "retry": {"count":2,"retry_on_statuses":[502,503,504],"retry_on_connect_failure":true,"retry_on_timeout":true},
          "circuit_breaker": {"failure_threshold":5,"success_threshold":2,"open_duration_secs":30},
          "tls_verify": false
        })
    }

    fn consul_cluster() -> Value {
        json!({"name":"api-consul","type":"roundrobin","discovery_type":"consul",
               "service_name":"api-svc","discovery_args":{"metadata_match":{"env":["prod","canary"]}},
               "timeout":{"connect":6,"send":6,"read":6}})
    }

    #[test]
    fn contract_examples_validate_clean() {
        assert_eq!(domain(&example_domain(), 0, None), []);
        assert_eq!(cluster(&example_cluster("prod"), 0), []);
        assert_eq!(cluster(&consul_cluster(), 0), []);
        let clusters = [
            example_cluster("prod"),
            example_cluster("canary"),
            consul_cluster(),
        ];
        assert_eq!(config(&[example_domain()], &clusters), []);
        let normalized = normalize_cluster(example_cluster("prod"));
        assert_eq!(
            normalized,
            example_cluster("prod"),
            "complete documents are unchanged"
        );
    }

    #[test]
    fn non_objects_and_wrong_types_are_reported_per_field() {
        expect(
            pairs(domain(&json!(3), 0, None), ""),
            &[("domains[0]", "must be a JSON object")],
        );
        expect(
            pairs(cluster(&json!([]), 2), ""),
            &[("clusters[2]", "must be a JSON object")],
        );
        let doc = json!({"name": 1, "hosts": "a.com", "routes": {}});
        expect(
            pairs(domain(&doc, 0, None), "domains[0]"),
            &[
                ("name", "must be a string"),
                ("hosts", "must be an array of strings"),
                ("routes", "must be an array of objects"),
            ],
        );
        expect(
            route_errs(json!({"priority": "high", "methods": ["GET", 1], "status": true})),
            &[
                ("methods[1]", "must be a string"),
                ("priority", "must be an integer"),
                ("status", "must be an integer"),
            ],
        );
        expect(
            route_errs(json!({"priority": 1.5})),
            &[("priority", "must be an integer")],
        );
    }

    #[test]
    fn domain_name_and_hosts() {
        let errs = |doc: Value| pairs(domain(&doc, 0, None), "domains[0]");
        expect(
            errs(json!({"name": "", "hosts": []})),
            &[
                ("name", "required"),
                ("hosts", "at least one host is required"),
            ],
        );
        expect(
            errs(json!({"name": "a/b", "hosts": null})),
            &[
                (
                    "name",
                    "must be 1-253 characters of letters, digits, '.', '_' or '-'",
                ),
                ("hosts", "at least one host is required"),
            ],
        );
        expect(
            errs(json!({"name": "d", "hosts": ["", 7, "a..b", "a.com", "A.com"]})),
            &[
                ("hosts[0]", "empty host"),
                ("hosts[1]", "must be a string"),
                ("hosts[2]", "invalid host pattern"),
                ("hosts[4]", "duplicate host: A.com"),
            ],
        );
    }

    #[test]
    fn host_patterns() {
        for ok in [
            "api.example.com",
            "*.example.com",
            "www.example.*",
            "_",
            "Example.COM:8443",
            "10.0.0.1",
            "[::1]",
            "[2001:db8::1]:8080",
            "localhost",
        ] {
            assert!(host_pattern(ok), "{ok} should be accepted");
        }
        for bad in [
            "a..b", "*", "*.*.a", "*.a.*", "foo*.com", "a b", "a/b", "a:0", "a:99999", "a:",
            "[zz]", "[::1", ".a.com", "a.com.",
        ] {
            assert!(!host_pattern(bad), "{bad} should be rejected");
        }
    }

    #[test]
    fn route_name_uri_and_duplicates() {
        expect(
            route_errs(json!({"name": "", "uri": ""})),
            &[("name", "required"), ("uri", "required")],
        );
        expect(
            route_errs(json!({"uri": "v1"})),
            &[("uri", "must start with /")],
        );
        let route = json!({"name": "r", "uri": "/", "clusters": [{"name": "c"}]});
        let doc = json!({"name": "d", "hosts": ["a.com"], "routes": [route.clone(), route, 5]});
        expect(
            pairs(domain(&doc, 0, None), "domains[0]"),
            &[
                ("routes[1].name", "duplicate name: r"),
                ("routes[2]", "must be a JSON object"),
            ],
        );
    }

    #[test]
    fn route_cluster_references() {
        let r4 = "at least one cluster reference is required";
        expect(route_errs(json!({"clusters": []})), &[("clusters", r4)]);
        expect(route_errs(json!({"clusters": null})), &[("clusters", r4)]);
        expect(
            route_errs(
                json!({"clusters": [{"weight": -1}, {"name": "c", "weight": 4294967296u64}]}),
            ),
            &[
                ("clusters[0].name", "required"),
                ("clusters[0].weight", "must be >= 0"),
                ("clusters[1].weight", "must be <= 4294967295"),
            ],
        );
        let doc = json!({"name": "d", "hosts": ["a"], "routes": [
            {"name": "r", "uri": "/", "clusters": [{"name": "c"}, {"name": "gone"}]}]});
        let known = BTreeSet::from(["c".to_string()]);
        expect(
            pairs(domain(&doc, 0, Some(&known)), "domains[0].routes[0]"),
            &[("clusters[1].name", "cluster \"gone\" not found")],
        );
        assert_eq!(
            domain(&doc, 0, None),
            [],
            "no cluster set, no cross-reference check"
        );
    }

    #[test]
    fn route_header_matchers() {
        let headers = json!([
            {"name": ""},
            {"name": "X A", "match_type": "glob"},
            {"name": "X(A)", "match_type": "regex", "value": "("},
            {"name": "X-Ok", "match_type": "regex", "value": "^v[0-9]+$"},
            {"name": "X-P", "match_type": "present", "invert": true},
            {"name": "X-E", "match_type": ""}
        ]);
        let errs = route_errs(json!({"headers": headers}));
        assert_eq!(errs.len(), 5, "{errs:?}");
        expect(
            errs[..4].to_vec(),
            &[
                ("headers[0].name", "required"),
                ("headers[1].name", "must not contain whitespace"),
                (
                    "headers[1].match_type",
                    "must be 'exact', 'prefix', 'regex', or 'present'",
                ),
                ("headers[2].name", "must be a valid HTTP header name"),
            ],
        );
        assert_eq!(errs[4].0, "headers[2].value");
        assert!(errs[4].1.starts_with("invalid regex: "), "{}", errs[4].1);
        assert!(!errs[4].1.contains('\n'));
    }

    #[test]
    fn route_override_header_and_transforms() {
        expect(
            route_errs(json!({"cluster_override_header": ""})),
            &[("cluster_override_header", "must be non-empty when set")],
        );
        expect(
            route_errs(json!({"cluster_override_header": "X Over"})),
            &[("cluster_override_header", "must not contain whitespace")],
        );
        let transforms = json!([
            {"name": "X-A", "value": "v"},
            {"name": "", "action": "remove"},
            {"name": "X\tB", "action": "", "value": "v"},
            {"name": "X-C", "action": "replace", "value": "v"},
            {"name": "X-D", "action": "add"},
            {"name": "X-E", "action": "set", "value": "a\r\nb"},
            {"name": "X:F", "action": "remove"}
        ]);
        expect(
            route_errs(json!({"response_header_transforms": transforms})),
            &[
                ("response_header_transforms[1].name", "required"),
                (
                    "response_header_transforms[2].name",
                    "must not contain whitespace",
                ),
                (
                    "response_header_transforms[2].action",
                    "required (set, add, or remove)",
                ),
                (
                    "response_header_transforms[3].action",
                    "must be 'set', 'add', or 'remove'",
                ),
                (
                    "response_header_transforms[4].value",
                    "required for set/add actions",
                ),
                (
                    "response_header_transforms[5].value",
                    "must be a valid HTTP header value",
                ),
                (
                    "response_header_transforms[6].name",
                    "must be a valid HTTP header name",
                ),
            ],
        );
    }

    #[test]
    fn route_rate_limit() {
        let rl = |v: Value| route_errs(json!({"rate_limit": v}));
        expect(
            rl(json!({"mode": "req", "rate": 0, "burst": -1, "key": "ip", "rejected_code": 302})),
            &[
                ("rate_limit.rate", "required for mode=req and must be > 0"),
                ("rate_limit.burst", "must be >= 0"),
                (
                    "rate_limit.key",
                    "must be 'route', 'host_uri', 'remote_addr', or 'uri'",
                ),
                (
                    "rate_limit.rejected_code",
                    "must be a 4xx or 5xx HTTP status code",
                ),
            ],
        );
        expect(
            rl(json!({"mode": "count", "time_window": -2})),
            &[
                (
                    "rate_limit.count",
                    "required for mode=count and must be > 0",
                ),
                (
                    "rate_limit.time_window",
                    "required for mode=count and must be > 0",
                ),
            ],
        );
        expect(
            rl(json!({"rate": 5})),
            &[("rate_limit.mode", "must be 'req' or 'count'")],
        );
        expect(
            rl(json!({"mode": "count", "count": 10, "time_window": 1, "rejected_code": 0})),
            &[],
        );
        expect(rl(json!({"mode": "req", "rate": 0.5, "key": ""})), &[]);
    }

    #[test]
    fn route_numbers_and_status() {
        expect(
            route_errs(json!({"max_body_bytes": -1})),
            &[("max_body_bytes", "must be >= 0")],
        );
        expect(
            route_errs(json!({"status": 2})),
            &[("status", "must be 0 or 1")],
        );
        expect(route_errs(json!({"status": 0, "priority": -5})), &[]);
        expect(
            route_errs(json!({"priority": 2147483648u64})),
            &[("priority", "must be a 32-bit integer")],
        );
        expect(
            route_errs(json!({"enable_compression": "yes"})),
            &[("enable_compression", "must be a boolean")],
        );
        expect(route_errs(json!({"plugins": {"anything": [1, 2]}})), &[]);
    }

    #[test]
    fn cluster_name_type_scheme_pass_host() {
        expect(cluster_errs(json!({"name": ""})), &[("name", "required")]);
        expect(
            cluster_errs(json!({"name": ".hidden"})),
            &[("name", "must not start with '.'")],
        );
        expect(
            cluster_errs(json!({"type": "", "scheme": "", "pass_host": ""})),
            &[],
        );
        expect(
            cluster_errs(json!({"type": "fastest", "scheme": "ftp", "pass_host": "keep"})),
            &[
                (
                    "type",
                    "must be one of roundrobin, random, weighted_random, least_request, least_conn, peak_ewma, ewma",
                ),
                ("scheme", "must be 'http' or 'https'"),
                ("pass_host", "must be 'pass', 'node', or 'rewrite'"),
            ],
        );
        expect(
            cluster_errs(json!({"pass_host": "rewrite", "upstream_host": ""})),
            &[("upstream_host", "required when pass_host is 'rewrite'")],
        );
        expect(
            cluster_errs(json!({"pass_host": "rewrite"})),
            &[("upstream_host", "required when pass_host is 'rewrite'")],
        );
    }

    #[test]
    fn cluster_nodes_and_discovery() {
        let c6 = "must have either static nodes or discovery_type+service_name";
        expect(cluster_errs(json!({"nodes": []})), &[("", c6)]);
        expect(
            cluster_errs(json!({"nodes": null, "discovery_type": "consul"})),
            &[("", c6)],
        );
        expect(
            cluster_errs(json!({"nodes": [], "discovery_type": "dns", "service_name": ""})),
            &[("discovery_type", "must be 'consul'")],
        );
        let nodes = json!([
            {"host": "", "port": 0},
            {"host": "b", "port": 65536, "weight": -1},
            {"host": "c", "weight": 4294967296u64, "metadata": {"zone": 1}},
            {"host": "d", "port": 65535, "weight": 0, "metadata": {}}
        ]);
        expect(
            cluster_errs(json!({"nodes": nodes})),
            &[
                ("nodes[0].host", "required"),
                ("nodes[0].port", "must be 1-65535"),
                ("nodes[1].port", "must be 1-65535"),
                ("nodes[1].weight", "must be >= 0"),
                ("nodes[2].port", "required"),
                ("nodes[2].weight", "must be <= 4294967295"),
                ("nodes[2].metadata.zone", "must be a string"),
            ],
        );
        let args = json!({"metadata_match": {"env": "prod"}});
        expect(
            cluster_errs(json!({"discovery_args": args})),
            &[(
                "discovery_args.metadata_match.env",
                "must be an array of strings",
            )],
        );
        expect(
            cluster_errs(json!({"discovery_args": {"metadata_match": null}})),
            &[],
        );
    }

    #[test]
    fn cluster_timeout_and_keepalive() {
        let msg = "connect and read must be > 0";
        expect(
            cluster_errs(json!({"timeout": {"connect": 0}})),
            &[("timeout", msg)],
        );
        expect(
            cluster_errs(json!({"timeout": {"connect": 1, "read": -1}})),
            &[("timeout", msg)],
        );
        expect(
            cluster_errs(json!({"timeout": {"send": -0.5}})),
            &[("timeout.send", "must be >= 0")],
        );
        expect(
            cluster_errs(json!({"timeout": {"send": 0, "read": 0.25}})),
            &[],
        );
        expect(
            cluster_errs(json!({"timeout": {"read": "6"}})),
            &[("timeout.read", "must be a number")],
        );
        expect(
            cluster_errs(
                json!({"keepalive_pool": {"idle_timeout": -1, "requests": 0, "size": 1.5}}),
            ),
            &[
                ("keepalive_pool.idle_timeout", "must be >= 0"),
                ("keepalive_pool.size", "must be an integer"),
            ],
        );
    }

    #[test]
    fn cluster_health_check() {
        expect(
            cluster_errs(json!({"health_check": {}})),
            &[(
                "health_check",
                "active health check is required when health_check is set",
            )],
        );
        let active = json!({"path": "health", "port": 70000, "healthy_statuses": [200, 99],
                            "concurrency": -1, "healthy_threshold": 1});
        expect(
            cluster_errs(json!({"health_check": {"active": active}})),
            &[
                ("health_check.active.interval", "must be > 0"),
                ("health_check.active.path", "must start with /"),
                ("health_check.active.port", "must be 1-65535"),
                ("health_check.active.timeout", "must be > 0"),
                ("health_check.active.unhealthy_threshold", "must be > 0"),
                ("health_check.active.healthy_statuses[1]", STATUS_CODE),
                ("health_check.active.concurrency", "must be >= 0"),
            ],
        );
        let active = json!({"interval": 1, "path": "", "timeout": 1, "healthy_threshold": 1,
                            "unhealthy_threshold": 1, "healthy_statuses": []});
        expect(
            cluster_errs(json!({"health_check": {"active": active}})),
            &[
                ("health_check.active.path", "required"),
                (
                    "health_check.active.healthy_statuses",
                    "at least one status code is required",
                ),
            ],
        );
    }

    #[test]
    fn cluster_retry_and_circuit_breaker() {
        let trigger =
            "at least one retry trigger is required (statuses, connect_failure, or timeout)";
        expect(
            cluster_errs(json!({"retry": {"retry_on_statuses": null}})),
            &[("retry.count", "must be > 0"), ("retry", trigger)],
        );
        expect(
            cluster_errs(json!({"retry": {"count": 1, "retry_on_statuses": [503, 600]}})),
            &[("retry.retry_on_statuses[1]", STATUS_CODE)],
        );
        expect(
            cluster_errs(json!({"retry": {"count": 1, "retry_on_timeout": true}})),
            &[],
        );
        expect(
            cluster_errs(
                json!({"circuit_breaker": {"failure_threshold": 0, "success_threshold": 1}}),
            ),
            &[
                ("circuit_breaker.failure_threshold", "must be > 0"),
                ("circuit_breaker.open_duration_secs", "must be > 0"),
            ],
        );
    }

    #[test]
    fn resource_and_namespace_names() {
        for ok in ["a", "user-service", "_default", "v1.2_x", &"a".repeat(253)] {
            assert_eq!(resource_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a/b", "a b", "ü", &"a".repeat(254)] {
            assert!(resource_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            resource_name(".."),
            Err("must not start with '.'".to_string())
        );
        assert_eq!(namespace_name("team-a1"), Ok(()));
        assert_eq!(namespace_name(&"a".repeat(63)), Ok(()));
        assert_eq!(
            namespace_name(""),
            Err("namespace name is required".to_string())
        );
        assert_eq!(
            namespace_name(&"a".repeat(64)),
            Err("namespace name must be at most 63 characters".to_string())
        );
        for bad in ["-a", "a-", "Team", "a_b", "a.b"] {
            let err = namespace_name(bad).expect_err(bad);
            assert!(
                err.starts_with("namespace name must consist of lowercase"),
                "{bad}"
            );
        }
    }

    #[test]
    fn normalize_domain_applies_gateway_defaults_in_place() {
        let doc = json!({"name": "d", "hosts": ["a"], "routes": [{
            "name": "r", "uri": "/", "methods": null, "headers": [{"name": "X", "match_type": ""}],
            "clusters": [{"name": "c"}, {"name": "z", "weight": 0}], "plugins": {"p": 1},
            "request_header_transforms": [{"name": "X", "value": "v"}], "response_header_transforms": null
        }]});
        let norm = normalize_domain(doc);
        let route = &norm["routes"][0];
        assert_eq!(route["status"], 1);
        assert_eq!(route["methods"], json!([]));
        assert_eq!(route["headers"][0]["match_type"], "exact");
        assert_eq!(
            route["clusters"],
            json!([{"name": "c", "weight": 100}, {"name": "z", "weight": 0}])
        );
        assert_eq!(route["request_header_transforms"][0]["action"], "set");
        assert_eq!(route["response_header_transforms"], json!([]));
        assert_eq!(route["plugins"], json!({"p": 1}));
        let keys: Vec<&str> = route
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "uri",
                "methods",
                "headers",
                "clusters",
                "plugins",
                "request_header_transforms",
                "response_header_transforms",
                "status"
            ],
            "existing members keep their place, defaults are appended"
        );
        let explicit = json!({"name": "d", "hosts": ["a"], "routes": [{"name": "r", "status": 0}]});
        assert_eq!(normalize_domain(explicit.clone()), explicit);
        assert_eq!(
            normalize_domain(json!({"name": "d", "routes": null}))["routes"],
            json!([])
        );
        assert_eq!(normalize_domain(json!("x")), json!("x"));
    }

    #[test]
    fn normalize_cluster_applies_gateway_defaults() {
        let doc = json!({"name": "c", "scheme": "", "timeout": {"read": 10}, "nodes": [{"host": "h", "port": 1}],
                         "discovery_args": {"metadata_match": null}, "retry": {"retry_on_statuses": null}});
        let norm = normalize_cluster(doc);
        assert_eq!(norm["scheme"], "http");
        assert_eq!(norm["type"], "roundrobin");
        assert_eq!(norm["pass_host"], "pass");
        assert_eq!(
            norm["timeout"],
            json!({"read": 10, "connect": 6, "send": 6})
        );
        assert_eq!(
            norm["keepalive_pool"],
            json!({"idle_timeout": 60, "requests": 1000, "size": 320})
        );
        assert_eq!(norm["nodes"][0]["weight"], 100);
        assert_eq!(norm["discovery_args"]["metadata_match"], json!({}));
        assert_eq!(norm["retry"]["retry_on_statuses"], json!([]));
        let keys: Vec<&str> = norm
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys[..3], ["name", "scheme", "timeout"]);
        assert_eq!(
            normalize_cluster(json!({"nodes": null}))["nodes"],
            json!([])
        );
    }

    #[test]
    fn normalized_minimal_documents_validate_clean() {
        let d = json!({"name": "d", "hosts": ["_"], "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": "c"}]}]});
        let c = json!({"name": "c", "nodes": [{"host": "h", "port": 80}]});
        assert_eq!(config(&[normalize_domain(d)], &[normalize_cluster(c)]), []);
    }

    #[test]
    fn config_orders_cluster_errors_first_and_checks_duplicates_and_references() {
        let c = json!({"name": "c", "nodes": [{"host": "h", "port": 80}]});
        let route =
            json!({"name": "r", "uri": "/", "clusters": [{"name": "c"}, {"name": "missing"}]});
        let d = json!({"name": "d", "hosts": ["a"], "routes": [route]});
        let errs = config(
            &[d.clone(), d],
            &[
                c.clone(),
                json!({"name": "x", "scheme": "ftp", "nodes": [{"host": "h", "port": 1}]}),
                c,
            ],
        );
        expect(
            pairs(errs, ""),
            &[
                ("clusters[1].scheme", "must be 'http' or 'https'"),
                ("clusters[2].name", "duplicate name: c"),
                (
                    "domains[0].routes[0].clusters[1].name",
                    "cluster \"missing\" not found",
                ),
                ("domains[1].name", "duplicate name: d"),
                (
                    "domains[1].routes[0].clusters[1].name",
                    "cluster \"missing\" not found",
                ),
            ],
        );
    }
}
