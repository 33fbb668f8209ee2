//! Cluster rules (contract §1.7 C1–C19): [`cluster`] checks one Cluster document — its name,
//! load-balancing type, scheme and host passing, static nodes or service discovery, timeouts,
//! keepalive pool, active health check, retry and circuit breaker — and [`normalize_cluster`]
//! applies the gateway's cluster defaults. The error report, its readers and the name rules come
//! from the parent module; nothing here knows about domains or routes.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{
    as_int, at, default_absent, default_blank, idx, len_of, null_to, objects_mut, FieldError, Obj,
    Read, Report, GE0, GT0,
};

/// Checks one Cluster document at path prefix `clusters[{index}]`.
pub fn cluster(doc: &Value, index: usize) -> Vec<FieldError> {
    let mut r = Report::default();
    r.cluster(doc, &format!("clusters[{index}]"), None);
    r.errors
}

/// Applies the gateway's defaults to a Cluster document (§10.3 C6): `scheme` → "http", `type` →
/// "roundrobin", `pass_host` → "pass", `timeout` members → 6, `keepalive_pool` → {60,1000,320},
/// node `weight` → 100, `null` collections → `[]`/`{}`. Everything else is kept as submitted.
pub fn normalize_cluster(mut doc: Value) -> Value {
    let Some(c) = doc.as_object_mut() else {
        return doc;
    };
    // The original strips the embedded resource_version from what it stores.
    c.remove("resource_version");
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

const LB_TYPES: [&str; 7] = [
    "roundrobin",
    "random",
    "weighted_random",
    "least_request",
    "least_conn",
    "peak_ewma",
    "ewma",
];
const STATUS_CODE: &str = "must be a valid HTTP status code (100-599)";

impl Report {
    /// Absent, null or ≤ 0 → `must be > 0`.
    fn positive_int(&mut self, m: &Obj, key: &str, path: &str) {
        if let Ok(v) = self.int(m, key, path) {
            if v.unwrap_or(0) <= 0 {
                self.add(at(path, key), GT0);
            }
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

    pub(super) fn cluster(&mut self, doc: &Value, p: &str, seen: Option<&mut BTreeSet<String>>) {
        let Some(c) = self.object(doc, p) else {
            return;
        };
        self.known_cluster_fields(doc, p);
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
            let hp = at(p, "health_check");
            let active = self.obj(hc, "active", &hp);
            // Not in the original: passive ejection, which may stand alone.
            let passive = self.obj(hc, "passive", &hp);
            if let Ok(Some(active)) = active {
                self.active_check(active, &at(p, "health_check.active"));
            }
            if let Ok(Some(passive)) = passive {
                for key in ["consecutive_failures", "ejection_secs", "max_ejection_secs"] {
                    self.positive_int(passive, key, &at(p, "health_check.passive"));
                }
            }
            if matches!((active, passive), (Ok(None), Ok(None))) {
                self.add(
                    hp,
                    "active health check is required when health_check is set",
                );
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

/// An absent object gets every member; a present one gets its absent members.
fn default_members(m: &mut Obj, key: &str, members: &[(&str, u64)]) {
    default_absent(m, key, json!({}));
    if let Some(o) = m.get_mut(key).and_then(Value::as_object_mut) {
        for (k, v) in members {
            default_absent(o, k, json!(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::tests::{expect, merge, pairs};

    fn cluster_errs(patch: Value) -> Vec<(String, String)> {
        let base = json!({"name": "c", "nodes": [{"host": "10.0.0.1", "port": 80}]});
        pairs(cluster(&merge(base, patch), 0), "clusters[0]")
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
        // Passive ejection alone is a health check too.
        let passive =
            json!({"consecutive_failures": 3, "ejection_secs": 5, "max_ejection_secs": 60});
        expect(
            cluster_errs(json!({"health_check": {"passive": passive}})),
            &[],
        );
        expect(
            cluster_errs(json!({"health_check": {"passive": {"consecutive_failures": 0}}})),
            &[
                ("health_check.passive.consecutive_failures", "must be > 0"),
                ("health_check.passive.ejection_secs", "must be > 0"),
                ("health_check.passive.max_ejection_secs", "must be > 0"),
            ],
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
}
