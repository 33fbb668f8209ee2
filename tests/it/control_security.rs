//! Authentication and authorisation of the control-plane API against a real node: bootstrap
//! closing with the first credential, HMAC verification (replay window, body hash, wrong
//! secret), the scope ceiling on minting credentials, built-in users with session tokens and
//! key rotation, the RBAC matrix of §4.5, and the etcd endpoint hiding control-plane records.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{now, Api, Auth};
use crate::harness::*;

/// Every scoped endpoint of §3.2 with the scope that guards it (§4.5) and a harmless body
/// (the authorization check must come before the body is looked at).
const MATRIX: &[(&str, &str, &str, Option<&str>)] = &[
    ("GET", "/api/v1/config", "config:read", None),
    ("GET", "/api/v1/config/revision", "config:read", None),
    ("POST", "/api/v1/config/validate", "config:read", Some("{}")),
    ("GET", "/api/v1/config/watch", "config:watch", None),
    (
        "PUT",
        "/api/v1/config",
        "config:write",
        Some("{\"domains\":[],\"clusters\":[]}"),
    ),
    ("GET", "/api/v1/domains", "config:read", None),
    ("POST", "/api/v1/domains", "config:write", Some("{}")),
    ("GET", "/api/v1/clusters/none", "config:read", None),
    ("DELETE", "/api/v1/clusters/none", "config:write", None),
    ("GET", "/api/v1/status", "status:read", None),
    ("GET", "/api/v1/status/instances", "status:read", None),
    (
        "PUT",
        "/api/v1/status/controller",
        "status:write",
        Some("{\"id\":\"c\",\"status\":\"running\"}"),
    ),
    ("GET", "/api/v1/credentials", "credential:read", None),
    (
        "POST",
        "/api/v1/credentials",
        "credential:write",
        Some("{\"description\":\"x\",\"scopes\":[]}"),
    ),
    ("GET", "/api/v1/members", "member:read", None),
    ("POST", "/api/v1/members", "member:write", Some("{}")),
    ("GET", "/api/v1/group-bindings", "member:read", None),
    ("GET", "/api/v1/audit", "audit:read", None),
    ("GET", "/api/v1/grafana/dashboards", "config:read", None),
    ("GET", "/api/v1/users", "admin:users", None),
    ("GET", "/api/v1/namespaces", "namespace:read", None),
    (
        "POST",
        "/api/v1/namespaces",
        "namespace:write",
        Some("{\"name\":\"\"}"),
    ),
    ("GET", "/api/v1/domains/none", "config:read", None),
    ("GET", "/api/v1/domains/none/history", "config:read", None),
    ("GET", "/api/v1/domains/none/history/1", "config:read", None),
    ("PUT", "/api/v1/domains/none", "config:write", Some("{}")),
    ("DELETE", "/api/v1/domains/none", "config:write", None),
    (
        "POST",
        "/api/v1/domains/none/rollback/1",
        "config:write",
        None,
    ),
    ("GET", "/api/v1/clusters", "config:read", None),
    ("POST", "/api/v1/clusters", "config:write", Some("{}")),
    ("PUT", "/api/v1/clusters/none", "config:write", Some("{}")),
    ("GET", "/api/v1/clusters/none/history", "config:read", None),
    (
        "GET",
        "/api/v1/clusters/none/history/1",
        "config:read",
        None,
    ),
    (
        "POST",
        "/api/v1/clusters/none/rollback/1",
        "config:write",
        None,
    ),
    ("GET", "/api/v1/status/controller", "status:read", None),
    (
        "PUT",
        "/api/v1/status/instances",
        "status:write",
        Some("{\"instances\":[]}"),
    ),
    (
        "POST",
        "/api/v1/grafana/dashboards",
        "config:write",
        Some("{}"),
    ),
    (
        "PUT",
        "/api/v1/grafana/dashboards",
        "config:write",
        Some("{}"),
    ),
    (
        "DELETE",
        "/api/v1/grafana/dashboards/999999",
        "config:write",
        None,
    ),
    (
        "PUT",
        "/api/v1/credentials/999999",
        "credential:write",
        Some("{}"),
    ),
    (
        "DELETE",
        "/api/v1/credentials/999999",
        "credential:write",
        None,
    ),
    ("DELETE", "/api/v1/members/nobody", "member:write", None),
    ("POST", "/api/v1/group-bindings", "member:write", Some("{}")),
    (
        "DELETE",
        "/api/v1/group-bindings/none",
        "member:write",
        None,
    ),
    ("POST", "/api/v1/users", "admin:users", Some("{}")),
    ("PUT", "/api/v1/users/nobody", "admin:users", Some("{}")),
    ("DELETE", "/api/v1/users/nobody", "admin:users", None),
    (
        "PUT",
        "/api/v1/users/nobody/admin",
        "admin:users",
        Some("{\"is_admin\":false}"),
    ),
    (
        "PUT",
        "/api/v1/users/nobody/force-password-change",
        "admin:users",
        Some("{}"),
    ),
    (
        "PUT",
        "/api/v1/users/nobody/reset-password",
        "admin:users",
        Some("{}"),
    ),
    ("POST", "/api/auth/rotate-key", "admin:users", None),
];

const ROLE_SCOPES: &[(&str, &[&str])] = &[
    (
        "owner",
        &[
            "config:read",
            "config:write",
            "config:watch",
            "status:read",
            "status:write",
            "credential:read",
            "credential:write",
            "member:read",
            "member:write",
            "audit:read",
            "namespace:read",
            "namespace:write",
        ],
    ),
    (
        "editor",
        &[
            "config:read",
            "config:write",
            "status:read",
            "credential:read",
            "credential:write",
            "member:read",
            "member:write",
            "audit:read",
            "namespace:read",
        ],
    ),
    (
        "viewer",
        &[
            "config:read",
            "status:read",
            "credential:read",
            "member:read",
            "audit:read",
            "namespace:read",
        ],
    ),
    ("none", &[]),
];

fn check_matrix(who: &str, api: &Api, held: &[&str]) {
    for (method, path, scope, body) in MATRIX {
        let (s, b) = api.call_at(method, path, *body, now());
        if held.contains(scope) {
            assert!(
                s != 401 && s != 403,
                "{who}: {method} {path} needs {scope}, which it holds: {s} {b}"
            );
        } else {
            assert_eq!(s, 403, "{who}: {method} {path} needs {scope}: {b}");
            assert_eq!(b["error"], format!("scope \"{scope}\" required"));
        }
    }
}

fn login(api: &Api, email: &str, password: &str) -> (u16, Value) {
    api.post(
        "/api/auth/login",
        &json!({"email": email, "password": password}),
    )
}

#[test]
fn credentials_signatures_sessions_and_the_rbac_matrix() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    node.wait_ready(Duration::from_secs(10));
    let anon = Api::anonymous(&node.admin());

    phase(
        1,
        "The built-in admin exists from the first start, so first-time setup never opened.",
    );
    let (s, b) = anon.get("/api/v1/domains");
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("authentication required"))
    );
    let admin = anon.initial_admin(&node.data_dir).admin_credential();
    let (s, b) = admin.get("/api/v1/whoami");
    assert_eq!((s, b["source"].as_str()), (200, Some("hmac")), "{b}");
    assert!(b["subject"].as_str().unwrap().starts_with("credential:"));

    phase(2, "Signatures: wrong secret, unknown key, a timestamp outside the window (60 s by default; the original's 300 s is a setting away), a body that is not the one signed, a header of another scheme, replays, and what v2 signs that v1 does not.");
    let Auth::Hmac {
        access_key,
        secret_key,
    } = admin.auth.clone()
    else {
        unreachable!()
    };
    let wrong = admin.with(Auth::Hmac {
        access_key: access_key.clone(),
        secret_key: "0".repeat(64),
    });
    assert_eq!(wrong.get("/api/v1/domains").1["error"], "invalid signature");
    let unknown = admin.with(Auth::Hmac {
        access_key: "f".repeat(32),
        secret_key: secret_key.clone(),
    });
    assert_eq!(
        unknown.get("/api/v1/domains").1["error"],
        "invalid access key"
    );
    let (s, b) = admin.call_at("GET", "/api/v1/domains", None, now() - 61);
    assert_eq!((s, b["error"].as_str()), (401, Some("timestamp expired")));
    assert_eq!(
        admin.call_at("GET", "/api/v1/domains", None, now() - 50).0,
        200
    );
    phase(
        3,
        "The original's scheme still works, for existing controllers.",
    );
    let v1 = admin.with(Auth::HmacV1 {
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
    });
    assert_eq!(v1.get("/api/v1/domains").0, 200);
    phase(4, "A captured write is accepted once, in either scheme.");
    let replay = |headers: &[(&str, String)], body: &str| {
        let mut req = ureq::post(&format!("{}/api/v1/namespaces", node.admin()))
            .set("content-type", "application/json");
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.send_string(body) {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let body = r#"{"name":"replayed"}"#;
    let captured = hermes_compat::hmac::client_headers(
        &access_key,
        &secret_key,
        "POST",
        "/api/v1/namespaces",
        now(),
        body.as_bytes(),
    );
    assert_eq!(replay(&captured, body).0, 201);
    let (s, b) = replay(&captured, body);
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("replay"), "{b}");
    let signed = hermes_compat::hmac::Signed {
        method: "GET",
        path: "/api/v1/domains",
        query: "",
        namespace: "default",
        nonce: "n-1",
    };
    let mut v2 =
        hermes_compat::hmac::client_headers_v2(&access_key, &secret_key, &signed, now(), b"");
    v2.push(("X-Hermes-Namespace", "default".into()));
    v2.push(("X-Hermes-Nonce", "n-1".into()));
    let get = |headers: &[(&str, String)], path: &str| {
        let mut req = ureq::get(&format!("{}{path}", node.admin()));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(get(&v2, "/api/v1/domains").0, 200);
    assert_eq!(
        get(&v2, "/api/v1/domains").0,
        401,
        "a v2 read is accepted once"
    );
    phase(
        5,
        "The namespace and the query are signed: the same signature cannot be pointed elsewhere.",
    );
    let mut elsewhere = v2.clone();
    elsewhere.retain(|(k, _)| *k != "X-Hermes-Namespace");
    elsewhere.push(("X-Hermes-Namespace", "staging".into()));
    let (s, b) = get(&elsewhere, "/api/v1/domains");
    assert_eq!((s, b.contains("invalid signature")), (401, true), "{b}");
    let (s, b) = get(&v2, "/api/v1/domains?namespace=staging");
    assert_eq!((s, b.contains("invalid signature")), (401, true), "{b}");
    let headers = hermes_compat::hmac::client_headers(
        &access_key,
        &secret_key,
        "POST",
        "/api/v1/domains",
        now(),
        b"{\"name\":\"signed\"}",
    );
    let mut req = ureq::post(&format!("{}/api/v1/domains", node.admin()));
    for (k, v) in &headers {
        if *k != "X-Hermes-Body-SHA256" {
            req = req.set(k, v);
        }
    }
    match req.send_string("{\"name\":\"tampered\",\"hosts\":[\"h\"]}") {
        Err(ureq::Error::Status(401, r)) => {
            assert!(r.into_string().unwrap().contains("invalid signature"))
        }
        other => panic!("a tampered body was accepted: {other:?}"),
    }
    let (s, b) = admin
        .with(Auth::Bearer("nonsense".into()))
        .get("/api/v1/domains");
    assert_eq!(s, 401, "{b}");

    phase(
        6,
        "Scope ceiling: an editor-like credential cannot mint admin:users.",
    );
    let editor = admin.credential(ROLE_SCOPES[1].1);
    let (s, b) = editor.post(
        "/api/v1/credentials",
        &json!({"description": "escalate", "scopes": ["admin:users"]}),
    );
    assert_eq!(s, 403, "{b}");
    let (s, _) = editor.post(
        "/api/v1/credentials",
        &json!({"description": "ok", "scopes": ["config:read"]}),
    );
    assert_eq!(s, 201);
    assert_eq!(
        admin
            .post("/api/v1/credentials", &json!({"scopes": ["config:admin"]}))
            .1["error"],
        "invalid scope: config:admin"
    );

    phase(
        7,
        "A credential of another namespace without namespace:write cannot act here.",
    );
    assert_eq!(
        admin
            .post("/api/v1/namespaces", &json!({"name": "staging"}))
            .0,
        201
    );
    assert_eq!(
        admin
            .post("/api/v1/namespaces", &json!({"name": "staging"}))
            .0,
        409
    );
    assert_eq!(
        admin
            .post("/api/v1/namespaces", &json!({"name": "INVALID_NS"}))
            .0,
        400
    );
    let staging = admin.in_ns("staging").credential(&["config:read"]);
    assert_eq!(staging.in_ns("staging").get("/api/v1/domains").0, 200);
    assert_eq!(
        staging.in_ns("default").get("/api/v1/domains").0,
        403,
        "bound to its own namespace"
    );

    phase(8, "Disabling a credential locks it out at once.");
    let (_, list) = admin.get("/api/v1/credentials");
    assert!(
        list["credentials"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c.get("secret_key").is_none()),
        "no secrets in lists"
    );
    let reader = admin.credential(&["config:read"]);
    let Auth::Hmac {
        access_key: reader_key,
        ..
    } = reader.auth.clone()
    else {
        unreachable!()
    };
    let id = admin.get("/api/v1/credentials").1["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["access_key"] == reader_key.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(reader.get("/api/v1/domains").0, 200);
    assert_eq!(
        admin
            .put(
                &format!("/api/v1/credentials/{id}"),
                &json!({"enabled": false})
            )
            .0,
        200
    );
    assert_eq!(
        reader.get("/api/v1/domains").1["error"],
        "credential is disabled"
    );
    assert_eq!(
        admin
            .put("/api/v1/credentials/99999", &json!({"enabled": false}))
            .0,
        404
    );

    phase(
        9,
        "Every single scope on its own, and the matrix per scope.",
    );
    for scope in crate::api_client::ALL_SCOPES {
        let one = admin.credential(&[scope]);
        check_matrix(scope, &one, &[scope]);
    }

    phase(
        10,
        "Built-in users: the initial admin's password file, login, and roles by membership.",
    );
    let password = std::fs::read_to_string(node.data_dir.join("initial-admin-password")).unwrap();
    let (s, b) = login(&anon, "admin@hermes.local", password.trim());
    assert_eq!(s, 200, "{b}");
    let root = anon.with(Auth::Bearer(
        b["access_token"].as_str().unwrap().to_string(),
    ));
    assert_eq!(login(&anon, "admin@hermes.local", "wrong-password").0, 401);
    check_matrix(
        "admin",
        &root,
        &MATRIX.iter().map(|m| m.2).collect::<Vec<_>>(),
    );
    for (role, scopes) in ROLE_SCOPES {
        let email = format!("{role}@example.test");
        let (s, b) = root.post(
            "/api/v1/users",
            &json!({"email": email, "password": "secret-123"}),
        );
        assert_eq!(s, 201, "{b}");
        if *role != "none" {
            let (s, b) = root.post(
                "/api/v1/members",
                &json!({"user_sub": format!("builtin:{email}"), "role": role}),
            );
            assert_eq!(s, 200, "{b}");
        }
        let (s, b) = login(&anon, &email, "secret-123");
        assert_eq!((s, b["must_change_password"].as_bool()), (200, Some(true)));
        let user = anon.with(Auth::Bearer(
            b["access_token"].as_str().unwrap().to_string(),
        ));
        check_matrix(role, &user, scopes);
    }
    assert_eq!(
        root.post(
            "/api/v1/users",
            &json!({"email": "owner@example.test", "password": "secret-123"})
        )
        .0,
        409
    );
    assert_eq!(
        root.post(
            "/api/v1/members",
            &json!({"user_sub": "builtin:nobody@x", "role": "editor"})
        )
        .0,
        404
    );
    assert_eq!(
        root.post(
            "/api/v1/members",
            &json!({"user_sub": "builtin:owner@example.test", "role": "admin"})
        )
        .0,
        400
    );

    phase(
        11,
        "An owner of `default` who creates a namespace owns the new one too, in the same step.",
    );
    let (_, b) = login(&anon, "owner@example.test", "secret-123");
    let owner = anon.with(Auth::Bearer(
        b["access_token"].as_str().unwrap().to_string(),
    ));
    assert_eq!(
        owner
            .post("/api/v1/namespaces", &json!({"name": "team-a"}))
            .0,
        201
    );
    let (s, b) = owner.in_ns("team-a").get("/api/v1/members");
    assert_eq!(
        (s, b["members"][0]["role"].as_str()),
        (200, Some("owner")),
        "{b}"
    );
    let cluster = json!({"name": "c", "nodes": [{"host": "h", "port": 1}]});
    assert_eq!(
        owner.in_ns("team-a").post("/api/v1/clusters", &cluster).0,
        201
    );
    assert_eq!(
        owner.in_ns("staging").get("/api/v1/domains").0,
        403,
        "no role in staging"
    );

    phase(
        12,
        "Key rotation: old tokens stay valid through the grace period, new ones differ.",
    );
    let (s, b) = root.post("/api/auth/rotate-key", &json!({}));
    assert_eq!(
        (s, b["grace_period"].as_str()),
        (200, Some("24h0m0s")),
        "{b}"
    );
    assert_eq!(
        root.get("/api/v1/users").0,
        200,
        "a token of the retired key still works"
    );
    let (_, fresh) = login(&anon, "admin@hermes.local", password.trim());
    let root2 = anon.with(Auth::Bearer(
        fresh["access_token"].as_str().unwrap().to_string(),
    ));
    assert_eq!(root2.get("/api/v1/users").0, 200);
    let Auth::Bearer(old) = &root.auth else {
        unreachable!()
    };
    assert_ne!(fresh["access_token"].as_str().unwrap(), old);

    phase(
        13,
        "The etcd endpoint shows none of it, and refuses to write it.",
    );
    let everything = node.range_prefix("/", false);
    assert!(
        everything.keys().all(|k| !k.starts_with("/hermes/_cp/")),
        "{:?}",
        everything.keys().collect::<Vec<_>>()
    );
    assert!(
        !everything.values().any(|v| v.contains(&secret_key)),
        "a secret leaked through etcd"
    );
    let (s, _) = node.put("/hermes/_cp/users/builtin:evil@x", "{}").unwrap();
    assert_eq!(s, 403);
    phase(
        14,
        "A range spanning the hidden keys keeps etcd's limit, count and `more` over what is left.",
    );
    for k in ["/hermes/a", "/hermes/zz", "/hermes/zzz"] {
        node.put(k, "v").unwrap();
    }
    let range = |extra: Value| {
        let mut req = json!({"key": b64("/hermes/"), "range_end": b64(&prefix_end("/hermes/"))});
        req.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, r) = post(&format!("{}/v3/kv/range", node.etcd()), &req).unwrap();
        assert_eq!(s, 200, "{r}");
        r
    };
    let keys = |r: &Value| -> Vec<String> {
        r["kvs"]
            .as_array()
            .map_or(vec![], |a| a.iter().map(|kv| unb64(&kv["key"])).collect())
    };
    let all = range(json!({"sort_order": "DESCEND"}));
    let visible = keys(&all);
    assert!(
        visible.len() >= 3 && visible.iter().all(|k| !k.starts_with("/hermes/_cp/")),
        "{visible:?}"
    );
    assert_eq!(
        all["count"].as_str(),
        Some(visible.len().to_string().as_str())
    );
    let two = range(json!({"sort_order": "DESCEND", "limit": 2}));
    assert_eq!(keys(&two), visible[..2].to_vec());
    assert_eq!(
        (two["more"].as_bool(), two["count"].clone()),
        (Some(true), all["count"].clone())
    );
    let counted = range(json!({"count_only": true}));
    assert_eq!(counted["count"], all["count"]);
    assert!(counted.get("kvs").is_none());
    let single =
        range(json!({"key": b64("/hermes/_cp/bootstrap/initial_admin"), "range_end": null}));
    assert!(
        single.get("kvs").is_none() && single.get("count").is_none(),
        "{single}"
    );
}

/// S1/S2: on a fresh system (no credential anywhere) anonymous requests are bootstrap access
/// only from loopback; the same request from another address, here a network namespace on a
/// veth pair, is 401.
#[test]
fn anonymous_access_from_another_address_is_refused_even_on_a_fresh_system() {
    let ns = crate::netns::NetNs::create();
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::new(dir.path(), 1);
    node.admin_host = "0.0.0.0".into();
    node.start();
    node.wait_ready(Duration::from_secs(30));
    let remote = format!("http://{}:{}", ns.host_addr, node.admin_port);

    let (s, body) = ns.curl(&format!("{remote}/api/v1/domains"));
    assert_eq!(s, 401, "{body}");
    assert!(body.contains("authentication required"), "{body}");
    let (s, _) = ns.curl(&format!("{remote}/api/v1/users"));
    assert_eq!(s, 401);
    // Public endpoints still answer there, and loopback still has bootstrap access.
    assert_eq!(ns.curl(&format!("{remote}/api/v1/scopes")).0, 200);
    let local = Api::anonymous(&node.admin());
    assert_eq!(local.get("/api/v1/domains").0, 200);
    assert_eq!(ns.curl(&format!("{remote}/api/v1/domains")).0, 401);
}
