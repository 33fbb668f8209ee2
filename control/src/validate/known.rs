//! The fields a Domain or Cluster document may have (contract §1.1–§1.4, which the gateway's
//! types mirror). The original decoded bodies into Go structs and silently dropped anything
//! else, so a misspelt `pass_hots` was lost without a word; here it is refused, naming its
//! path. Free-form members (`plugins`, node `metadata`, `discovery_args.metadata_match`) are
//! not looked into.

use serde_json::Value;

use super::Report;

/// What may appear at one place of a document.
enum Shape {
    /// Any value; its type is checked elsewhere.
    Any,
    /// An object with exactly these members (each optional).
    Object(&'static [(&'static str, Shape)]),
    /// An array whose objects have this shape.
    List(&'static [(&'static str, Shape)]),
}

use Shape::{Any, List, Object};

const MATCHER: &[(&str, Shape)] = &[
    ("name", Any),
    ("value", Any),
    ("match_type", Any),
    ("invert", Any),
];
const TRANSFORM: &[(&str, Shape)] = &[("name", Any), ("value", Any), ("action", Any)];
const WEIGHTED: &[(&str, Shape)] = &[("name", Any), ("weight", Any)];
const RATE_LIMIT: &[(&str, Shape)] = &[
    ("mode", Any),
    ("rate", Any),
    ("burst", Any),
    ("count", Any),
    ("time_window", Any),
    ("key", Any),
    ("rejected_code", Any),
];
const ROUTE: &[(&str, Shape)] = &[
    ("id", Any),
    ("name", Any),
    ("uri", Any),
    ("methods", Any),
    ("headers", List(MATCHER)),
    ("priority", Any),
    ("clusters", List(WEIGHTED)),
    ("rate_limit", Object(RATE_LIMIT)),
    ("cluster_override_header", Any),
    ("request_header_transforms", List(TRANSFORM)),
    ("response_header_transforms", List(TRANSFORM)),
    ("max_body_bytes", Any),
    ("enable_compression", Any),
    ("retry_non_idempotent", Any),
    ("status", Any),
    ("plugins", Any),
];
/// `resource_version` rides along on updates (and is stripped before storing).
const DOMAIN: &[(&str, Shape)] = &[
    ("name", Any),
    ("hosts", Any),
    ("routes", List(ROUTE)),
    ("resource_version", Any),
];

const NODE: &[(&str, Shape)] = &[
    ("host", Any),
    ("port", Any),
    ("weight", Any),
    ("metadata", Any),
];
const ACTIVE_CHECK: &[(&str, Shape)] = &[
    ("interval", Any),
    ("path", Any),
    ("port", Any),
    ("healthy_statuses", Any),
    ("healthy_threshold", Any),
    ("unhealthy_threshold", Any),
    ("timeout", Any),
    ("concurrency", Any),
];
const CLUSTER: &[(&str, Shape)] = &[
    ("name", Any),
    ("type", Any),
    (
        "timeout",
        Object(&[("connect", Any), ("send", Any), ("read", Any)]),
    ),
    ("scheme", Any),
    ("pass_host", Any),
    ("upstream_host", Any),
    ("nodes", List(NODE)),
    ("discovery_type", Any),
    ("service_name", Any),
    ("discovery_args", Object(&[("metadata_match", Any)])),
    (
        "keepalive_pool",
        Object(&[("idle_timeout", Any), ("requests", Any), ("size", Any)]),
    ),
    (
        "health_check",
        Object(&[
            ("active", Object(ACTIVE_CHECK)),
            (
                "passive",
                Object(&[
                    ("consecutive_failures", Any),
                    ("ejection_secs", Any),
                    ("max_ejection_secs", Any),
                ]),
            ),
        ]),
    ),
    (
        "retry",
        Object(&[
            ("count", Any),
            ("retry_on_statuses", Any),
            ("retry_on_connect_failure", Any),
            ("retry_on_timeout", Any),
        ]),
    ),
    (
        "circuit_breaker",
        Object(&[
            ("failure_threshold", Any),
            ("success_threshold", Any),
            ("open_duration_secs", Any),
        ]),
    ),
    ("tls_verify", Any),
    ("resource_version", Any),
];

impl Report {
    pub(super) fn known_domain_fields(&mut self, doc: &Value, p: &str) {
        self.known(doc, p, DOMAIN);
    }

    pub(super) fn known_cluster_fields(&mut self, doc: &Value, p: &str) {
        self.known(doc, p, CLUSTER);
    }

    /// Reports members of the object `v` not in `fields`, then looks into the known ones.
    /// Values of the wrong type are left to the field checks.
    fn known(&mut self, v: &Value, p: &str, fields: &[(&str, Shape)]) {
        let Some(obj) = v.as_object() else {
            return;
        };
        for (key, value) in obj {
            let path = format!("{p}.{key}");
            match fields.iter().find(|(k, _)| k == key) {
                None => self.add(&path, "unknown field"),
                Some((_, Any)) => {}
                Some((_, Object(inner))) => self.known(value, &path, inner),
                Some((_, List(inner))) => {
                    for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                        self.known(item, &format!("{path}[{i}]"), inner);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{cluster, domain};
    use serde_json::json;

    fn fields(errors: Vec<super::super::FieldError>) -> Vec<String> {
        errors
            .into_iter()
            .filter(|e| e.message == "unknown field")
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn unknown_members_are_named_at_any_depth() {
        let d = json!({"name": "d", "hosts": ["a.example"], "bogus": 1, "resource_version": 3,
            "routes": [{"name": "r", "uri": "/", "clusters": [{"name": "c", "weigth": 5}],
                        "headers": [{"name": "x", "match": "exact"}],
                        "rate_limit": {"mode": "req", "rps": 1},
                        "plugins": {"anything": {"goes": true}}}]});
        assert_eq!(
            fields(domain(&d, 0, None)),
            vec![
                "domains[0].bogus",
                "domains[0].routes[0].clusters[0].weigth",
                "domains[0].routes[0].headers[0].match",
                "domains[0].routes[0].rate_limit.rps",
            ]
        );
        let c = json!({"name": "c", "pass_hots": "node", "timeout": {"connect": 1, "idle": 2},
            "nodes": [{"host": "h", "port": 1, "metadata": {"zone": "a"}, "wieght": 1}],
            "health_check": {"active": {"path": "/h", "intervall": 1}}});
        assert_eq!(
            fields(cluster(&c, 0)),
            vec![
                "clusters[0].pass_hots",
                "clusters[0].timeout.idle",
                "clusters[0].nodes[0].wieght",
                "clusters[0].health_check.active.intervall",
            ]
        );
    }

    #[test]
    fn resource_version_is_accepted_but_never_stored() {
        let d = super::super::normalize_domain(json!({"name": "d", "resource_version": 2}));
        assert!(d.get("resource_version").is_none(), "{d}");
        let c = super::super::normalize_cluster(json!({"name": "c", "resource_version": 2}));
        assert!(c.get("resource_version").is_none(), "{c}");
    }

    #[test]
    fn the_full_example_of_the_contract_has_no_unknown_member() {
        let c = json!({"name": "c", "type": "roundrobin", "timeout": {"connect": 6, "send": 6, "read": 6},
            "scheme": "http", "pass_host": "pass", "upstream_host": "x", "nodes": [],
            "discovery_type": "consul", "service_name": "s", "discovery_args": {"metadata_match": {}},
            "keepalive_pool": {"idle_timeout": 60, "requests": 1000, "size": 320},
            "health_check": {"active": {"interval": 10, "path": "/health", "port": 1,
                "healthy_statuses": [200], "healthy_threshold": 3, "unhealthy_threshold": 3,
                "timeout": 3, "concurrency": 64}},
            "retry": {"count": 2, "retry_on_statuses": [502], "retry_on_connect_failure": true,
                "retry_on_timeout": true},
            "circuit_breaker": {"failure_threshold": 5, "success_threshold": 2, "open_duration_secs": 30},
            "tls_verify": false});
        assert!(fields(cluster(&c, 0)).is_empty());
    }
}
