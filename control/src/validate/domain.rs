//! Domain and route rules (contract §1.7 D1–D5, R1–R15): [`domain`] checks one Domain document —
//! its name, host patterns and routes (URI, methods, header matchers, cluster references and
//! weights, rate limit, override header, header transforms, body limit, status) — and
//! [`normalize_domain`] applies the gateway's route defaults. The error report, its readers and
//! the name rules come from the parent module; clusters are known here only by name.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use serde_json::{json, Value};

use super::{
    at, default_absent, default_blank, idx, len_of, null_to, objects_mut, FieldError, Obj, Report,
    Reported, GT0,
};

/// Checks one Domain document (a JSON value as received by the API) at path prefix `domains[{index}]`.
/// `clusters`: Some(set of known cluster names) to enforce R5 "not found", None to skip that check.
pub fn domain(doc: &Value, index: usize, clusters: Option<&BTreeSet<String>>) -> Vec<FieldError> {
    let mut r = Report::default();
    r.domain(doc, &format!("domains[{index}]"), clusters, None);
    r.errors
}

/// Applies the gateway's defaults to a Domain document (§10.3 C6): route `status` → 1, weighted
/// cluster `weight` → 100, matcher `match_type` → "exact", transform `action` → "set", `null`
/// collections → `[]`. Everything else is kept as submitted, in its original order.
pub fn normalize_domain(mut doc: Value) -> Value {
    if let Some(d) = doc.as_object_mut() {
        // The original strips the embedded resource_version from what it stores.
        d.remove("resource_version");
        null_to(d, "hosts", json!([]));
        null_to(d, "routes", json!([]));
        for route in objects_mut(d, "routes") {
            normalize_route(route);
        }
    }
    doc
}

const MATCH_TYPES: [&str; 5] = ["", "exact", "prefix", "regex", "present"];
const RATE_KEYS: [&str; 5] = ["", "route", "host_uri", "remote_addr", "uri"];

impl Report {
    pub(super) fn domain(
        &mut self,
        doc: &Value,
        p: &str,
        clusters: Option<&BTreeSet<String>>,
        seen: Option<&mut BTreeSet<String>>,
    ) {
        let Some(d) = self.object(doc, p) else {
            return;
        };
        self.known_domain_fields(doc, p);
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
        // Ours: a cluster's retries may resend this route's POST and PATCH requests.
        let _ = self.bool(rt, "retry_non_idempotent", p);
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
    use crate::validate::tests::{expect, pairs, route_errs};

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
}
