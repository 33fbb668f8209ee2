//! Validation and normalization of the Domain and Cluster documents the admin API receives
//! (contract §1.7 rules D1–D5, R1–R15, C1–C19, plus the checks §10.3 C7 found missing), and of
//! resource and namespace names. It works on the raw JSON so that a wrong type is reported on
//! its own field, and it applies the gateway's defaults at the API (§10.3 C6). It owns no storage
//! and no HTTP: callers decide what a non-empty error list means for the response.
//!
//! This file owns [`FieldError`], the bulk [`config`] check, the resource and namespace name
//! rules, and what both document kinds share: field paths, the error report with its
//! type-checked readers, and the normalization helpers. The Domain and route rules live in
//! `domain`, the Cluster rules in `cluster`.

mod cluster;
mod domain;
mod duplicates;
mod known;

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub use self::cluster::{cluster, normalize_cluster};
pub use self::domain::{domain, normalize_domain};
pub use self::duplicates::duplicate_key;

/// One problem with a submitted document: the JSON path of the offending field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
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

const GT0: &str = "must be > 0";
const GE0: &str = "must be >= 0";

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    pub(super) fn pairs(errors: Vec<FieldError>, prefix: &str) -> Vec<(String, String)> {
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

    pub(super) fn expect(got: Vec<(String, String)>, want: &[(&str, &str)]) {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(f, m)| (f.to_string(), m.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    pub(super) fn merge(mut base: Value, patch: Value) -> Value {
        let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
            panic!("merge needs objects");
        };
        for (k, v) in p {
            b.insert(k.clone(), v.clone());
        }
        base
    }

    pub(super) fn route_errs(patch: Value) -> Vec<(String, String)> {
        let route = merge(
            json!({"name": "r", "uri": "/", "clusters": [{"name": "c"}]}),
            patch,
        );
        let doc = json!({"name": "d", "hosts": ["a.com"], "routes": [route]});
        pairs(domain(&doc, 0, None), "domains[0].routes[0]")
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
