//! Bad input on every endpoint of the control-plane API that takes input: broken JSON, a body
//! of the wrong type, fields of the wrong type, unknown fields, invalid names, bodies over the
//! 1 MiB cap, malformed path parameters and namespaces. Each answer is a 4xx with the documented
//! error shape (`{"error": "<message>"}`), and the store's revision, which every write moves
//! (control-plane records included), is the same afterwards: nothing was stored.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{now, Api};
use crate::harness::*;

/// Endpoints taking a body, each with bodies that are wrong for it: (method, path, [body]).
/// The generic cases (broken JSON, wrong body type, too large) are added for all of them.
fn cases(cred_id: i64) -> Vec<(&'static str, String, Vec<Value>)> {
    let s = |p: &str| p.to_string();
    vec![
        (
            "POST",
            s("/api/v1/domains"),
            vec![
                json!({"name": 5}),
                json!({"name": "bad name!", "hosts": ["a.example"]}),
                json!({"name": "d2", "hosts": "a.example"}),
                json!({"name": "d2", "hosts": ["a.example"], "bogus": 1}),
                json!({"name": "d2", "hosts": ["a.example"],
                       "routes": [{"name": "r", "uri": "/", "clusters": [{"name": "c", "wieght": 1}]}]}),
                json!({"name": "d2", "hosts": ["a.example"],
                       "routes": [{"name": "r", "uri": "/", "priority": "high", "clusters": [{"name": "c"}]}]}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/domains/d"),
            vec![
                json!({"hosts": ["a.example"]}),
                json!({"hosts": ["a.example"], "resource_version": "1"}),
                json!({"hosts": [5], "resource_version": 1}),
                json!({"hosts": ["a.example"], "resource_version": 1, "rootes": []}),
            ],
        ),
        (
            "POST",
            s("/api/v1/clusters"),
            vec![
                json!({"name": "../x", "nodes": []}),
                json!({"name": "c2", "nodes": [{"host": "h", "port": "80"}]}),
                json!({"name": "c2", "nodes": [{"host": "h", "port": 70000}]}),
                json!({"name": "c2", "pass_hots": "node"}),
                json!({"name": "c2", "timeout": {"connect": -1}}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/clusters/c"),
            vec![
                json!({"resource_version": 1, "type": 5}),
                json!({"nodes": []}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/config"),
            vec![
                json!({"domains": {}}),
                json!({"clusters": [{"name": ""}]}),
                json!({"domains": [], "clusters": [], "domian": []}),
            ],
        ),
        (
            "POST",
            s("/api/v1/config/validate"),
            vec![json!({"domains": "x"})],
        ),
        (
            "PUT",
            s("/api/v1/status/controller"),
            vec![
                json!({"id": 5}),
                json!({"id": "c", "is_leader": "yes"}),
                json!({"id": "c", "bogus": 1}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/status/instances"),
            vec![
                json!({"instances": "x"}),
                json!({"instances": [{"status": "up"}]}),
                json!({"instances": [], "bogus": 1}),
                json!({"instances": [{"id": "i", "config_revision": "7"}]}),
            ],
        ),
        (
            "POST",
            s("/api/v1/grafana/dashboards"),
            vec![
                json!({"name": 5, "url": "http://g"}),
                json!({"name": "n", "url": "http://g", "bogus": 1}),
                json!({"name": "", "url": "http://g"}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/grafana/dashboards"),
            vec![json!({"id": "one", "name": "n", "url": "u"})],
        ),
        (
            "POST",
            s("/api/v1/credentials"),
            vec![
                json!({"description": 5, "scopes": []}),
                json!({"description": "x", "scopes": "config:read"}),
                json!({"description": "x", "scopes": ["config:everything"]}),
                json!({"description": "x", "scopes": [], "secret_key": "mine"}),
            ],
        ),
        (
            "PUT",
            format!("/api/v1/credentials/{cred_id}"),
            vec![
                json!({"enabled": "no"}),
                json!({"scopes": ["nope"]}),
                json!({"access_key": "x"}),
            ],
        ),
        (
            "POST",
            s("/api/v1/members"),
            vec![
                json!({"user_sub": 5, "role": "viewer"}),
                json!({"user_sub": "builtin:u@example.com", "role": "god"}),
                json!({"user_sub": "", "role": "viewer"}),
                json!({"user_sub": "builtin:u@example.com", "role": "viewer", "bogus": 1}),
            ],
        ),
        (
            "POST",
            s("/api/v1/group-bindings"),
            vec![
                json!({"group": "", "role": "viewer"}),
                json!({"group": "g", "role": "root"}),
                json!({"group": ["g"], "role": "viewer"}),
                json!({"group": "g", "role": "viewer", "bogus": 1}),
            ],
        ),
        (
            "POST",
            s("/api/v1/users"),
            vec![
                json!({"email": "not-an-email", "password": "secret1"}),
                json!({"email": "v@example.com", "password": "12345"}),
                json!({"email": "v@example.com", "password": "secret1", "is_admin": "true"}),
                json!({"email": "v@example.com", "password": "secret1", "role": "admin"}),
                json!({"email": 5, "password": "secret1"}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/users/builtin:u@example.com"),
            vec![
                json!({"name": 5}),
                json!({"password": "x"}),
                json!({"is_admin": 1}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/users/builtin:u@example.com/admin"),
            vec![
                json!({"is_admin": "yes"}),
                json!({}),
                json!({"is_admin": true, "x": 1}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/users/builtin:u@example.com/force-password-change"),
            vec![
                json!({"must_change_password": "yes"}),
                json!({"bogus": true}),
            ],
        ),
        (
            "PUT",
            s("/api/v1/users/builtin:u@example.com/reset-password"),
            vec![
                json!({"new_password": 123456}),
                json!({"new_password": "12345"}),
                json!({"password": "secret12"}),
            ],
        ),
        (
            "POST",
            s("/api/v1/namespaces"),
            vec![
                json!({"name": "Bad_NS"}),
                json!({"name": ""}),
                json!({"name": 5}),
                json!({"name": "ok", "owner": "x"}),
                json!({"name": "x".repeat(64)}),
            ],
        ),
        (
            "POST",
            s("/api/auth/login"),
            vec![
                json!({"email": 5, "password": "x"}),
                json!({"email": "", "password": ""}),
                json!({"email": "a@b.c", "password": "x", "otp": 1}),
            ],
        ),
    ]
}

fn assert_refused(what: &str, s: u16, b: &Value) {
    assert!((400..500).contains(&s), "{what}: {s} {b}");
    assert!(
        b["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: the error shape is {{\"error\": …}}, got {b}"
    );
}

#[test]
fn bad_input_on_every_endpoint_is_refused_and_stores_nothing() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let admin = Api::anonymous(&node.admin())
        .initial_admin(&node.data_dir)
        .admin_credential();

    // Something of every kind to update, so updates reach their checks.
    let (s, b) = admin.post(
        "/api/v1/clusters",
        &json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": 9, "weight": 1}]}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = admin.post(
        "/api/v1/domains",
        &json!({"name": "d", "hosts": ["d.example"],
                "routes": [{"name": "r", "uri": "/", "clusters": [{"name": "c"}]}]}),
    );
    assert_eq!(s, 201, "{b}");
    let (s, b) = admin.post(
        "/api/v1/users",
        &json!({"email": "u@example.com", "password": "secret1", "name": "U"}),
    );
    assert_eq!(s / 100, 2, "{b}");
    let (s, cred) = admin.post(
        "/api/v1/credentials",
        &json!({"description": "target", "scopes": ["config:read"]}),
    );
    assert_eq!(s, 201, "{cred}");
    let cred_id = cred["id"].as_i64().unwrap();
    // Let the first-start bookkeeping (signing key, initial admin) finish first.
    wait_for("the initial admin", Duration::from_secs(10), || {
        let (_, users) = admin.get("/api/v1/users");
        users["users"]
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["email"] == "admin@hermes.local"))
            .then_some(())
    });
    let before = node.revision(false);

    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(1 << 20));
    let mut checked = 0;
    for (method, path, bodies) in cases(cred_id) {
        let generic = ["{not json", "[]", "\"text\"", &huge];
        for body in generic {
            let (s, b) = admin.call_at(method, &path, Some(body), now());
            let what = format!("{method} {path} with {:.40}", body);
            assert_refused(&what, s, &b);
            if body.len() > 1 << 20 {
                assert_eq!(s, 413, "{what}");
            }
            checked += 1;
        }
        for body in bodies {
            let (s, b) = admin.call(method, &path, Some(&body));
            assert_refused(&format!("{method} {path} with {body}"), s, &b);
            checked += 1;
        }
    }

    // Malformed path parameters and namespaces.
    for (method, path) in [
        ("GET", "/api/v1/domains/d/history/abc"),
        ("GET", "/api/v1/clusters/c/history/-1"),
        ("POST", "/api/v1/domains/d/rollback/x"),
        ("POST", "/api/v1/clusters/c/rollback/1.5"),
        ("DELETE", "/api/v1/credentials/abc"),
        ("PUT", "/api/v1/credentials/1e3"),
        ("DELETE", "/api/v1/grafana/dashboards/one"),
        ("GET", "/api/v1/config/watch?revision=x"),
        ("GET", "/api/v1/config/watch?revision=0&wait=forever"),
        ("GET", "/api/v1/audit?limit=lots"),
        ("POST", "/api/v1/domains/bad%20name/rollback/1"),
    ] {
        let (s, b) = admin.call_at(method, path, Some("{}"), now());
        assert_refused(&format!("{method} {path}"), s, &b);
        checked += 1;
    }
    for ns in ["Bad_NS", "-x", "a.b", &"n".repeat(64)] {
        let (s, b) = admin.in_ns(ns).get("/api/v1/domains");
        assert_eq!(s, 400, "namespace {ns:?}: {b}");
        let (s, b) = admin
            .in_ns(ns)
            .post("/api/v1/clusters", &json!({"name": "c9", "nodes": []}));
        assert_eq!(s, 400, "namespace {ns:?}: {b}");
        checked += 2;
    }

    // A well-formed namespace that was never created (§10.3 C13): 404, nothing written.
    let ghost = admin.in_ns("ghost");
    let (s, b) = ghost.post("/api/v1/clusters", &json!({"name": "c9", "nodes": []}));
    assert_eq!(
        (s, b["error"].as_str()),
        (404, Some("namespace \"ghost\" not found"))
    );
    assert_eq!(ghost.get("/api/v1/domains").0, 404);
    assert_eq!(
        ghost
            .post(
                "/api/v1/credentials",
                &json!({"description": "x", "scopes": []})
            )
            .0,
        404
    );

    assert!(checked > 150, "only {checked} cases ran");
    assert_eq!(
        node.revision(false),
        before,
        "a refused request changed the store"
    );
    // And the documents are as they were.
    let (_, d) = admin.get("/api/v1/domains/d");
    assert_eq!(d["resource_version"], 1, "{d}");
    assert!(d["domain"].get("rootes").is_none());
}

/// One validator: nothing the API accepts is refused, skipped or changed by the gateway later.
/// Each document here was once accepted by the API and then refused or altered by the proxy.
#[test]
fn what_the_gateway_would_refuse_is_refused_by_the_api() {
    let c = Cluster::start(1);
    let node = c.node(1);
    let admin = Api::anonymous(&node.admin()).admin_credential();
    let node_at =
        |host: &str| json!({"name": "c1", "nodes": [{"host": host, "port": 80, "weight": 1}]});
    let with = |patch: Value| {
        let mut doc = node_at("10.0.0.1");
        doc.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        doc
    };
    for (what, doc) in [
        (
            "a timeout of 1e308 s",
            with(json!({"timeout": {"connect": 1, "read": 1e308}})),
        ),
        ("CR/LF in a node host", node_at("h\r\nx-injected: 1")),
        ("a space in a node host", node_at("a b")),
        (
            "CR/LF in upstream_host",
            with(json!({"pass_host": "rewrite", "upstream_host": "h\r\nx: 1"})),
        ),
        (
            "retry.count 2^31",
            with(json!({"retry": {"count": 2147483648i64, "retry_on_timeout": true}})),
        ),
    ] {
        let (s, b) = admin.post("/api/v1/clusters", &doc);
        assert_eq!(s, 400, "{what}: {b}");
    }
    // A member named twice means different things to different parsers.
    let dup = r#"{"name":"c2","name":"c3","nodes":[{"host":"10.0.0.1","port":80}]}"#;
    let (s, b) = admin.call_at("POST", "/api/v1/clusters", Some(dup), now());
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"].as_str().unwrap().contains("duplicate key name"),
        "{b}"
    );
    // A header transform the proxy would skip.
    assert_eq!(admin.post("/api/v1/clusters", &node_at("10.0.0.1")).0, 201);
    let domain = json!({"name": "d", "hosts": ["d.test"], "routes": [{
        "name": "r", "uri": "/", "clusters": [{"name": "c1", "weight": 100}],
        "request_header_transforms": [{"name": "x-a", "value": "line\u{7f}break", "action": "set"}]}]});
    let (s, b) = admin.post("/api/v1/domains", &domain);
    assert_eq!(s, 400, "{b}");
    // The bulk path says the same.
    let (s, b) = admin.post(
        "/api/v1/config/validate",
        &json!({"domains": [], "clusters": [node_at("a b")]}),
    );
    assert_eq!((s, b["valid"].as_bool()), (200, Some(false)), "{b}");
    let (s, b) = admin.put(
        "/api/v1/config",
        &json!({"domains": [], "clusters": [node_at("a\nb")]}),
    );
    assert_eq!(s, 400, "{b}");
    // None of it reached the store.
    let stored = node.range_prefix("/hermes/clusters/", false);
    assert_eq!(
        stored.keys().collect::<Vec<_>>(),
        vec!["/hermes/clusters/c1"]
    );
}
