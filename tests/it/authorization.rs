//! The control plane from the attacker's side: a namespace editor trying every step that once
//! led to full admin, first-time setup that must happen once, the last admin, revoked
//! sessions, password guessing, and configuration that must not reach anonymous eyes. Every
//! attempt must end in a refusal.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::{Api, Auth};
use crate::harness::*;

const EDITOR_SCOPES: &[&str] = &[
    "config:read",
    "config:write",
    "status:read",
    "credential:read",
    "credential:write",
    "member:read",
    "member:write",
    "audit:read",
    "namespace:read",
];

/// Creates a built-in user and, when `role` is given, makes it a member of `ns`.
fn user(root: &Api, email: &str, ns: &str, role: Option<&str>) -> String {
    let (s, b) = root.post(
        "/api/v1/users",
        &json!({"email": email, "password": "secret-123"}),
    );
    assert_eq!(s, 201, "{b}");
    let sub = format!("builtin:{email}");
    if let Some(role) = role {
        let (s, b) = root
            .in_ns(ns)
            .post("/api/v1/members", &json!({"user_sub": sub, "role": role}));
        assert_eq!(s, 200, "{b}");
    }
    sub
}

fn refused(what: &str, (s, b): (u16, Value)) {
    assert!(s == 401 || s == 403, "{what} was not refused: {s} {b}");
}

/// A route on the proxy of `node` for `host` to one upstream node at 127.0.0.1:`port` whose
/// requests lose every forwarding header a transform can remove.
fn sneak_route(editor: &Api, name: &str, host: &str, port: u16) {
    let cluster =
        json!({"name": name, "nodes": [{"host": "localhost", "port": port, "weight": 1}]});
    let (s, b) = editor.post("/api/v1/clusters", &cluster);
    assert_eq!(s, 201, "{b}");
    let strip: Vec<Value> = ["via", "x-forwarded-for", "x-real-ip", "forwarded"]
        .iter()
        .map(|h| json!({"name": h, "action": "remove"}))
        .collect();
    let domain = json!({"name": name, "hosts": [host], "routes": [{
        "name": "all", "uri": "/*", "status": 1,
        "clusters": [{"name": name, "weight": 100}],
        "request_header_transforms": strip,
    }]});
    let (s, b) = editor.post("/api/v1/domains", &domain);
    assert_eq!(s, 201, "{b}");
}

#[test]
fn a_namespace_editor_cannot_climb_to_admin() {
    let c = Cluster::start_with(
        1,
        &[
            "--initial-admin",
            "admin@hermes.local",
            "--namespace",
            "team",
        ],
    );
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    let root = anon.initial_admin(&node.data_dir);
    assert_eq!(
        root.post("/api/v1/namespaces", &json!({"name": "team"})).0,
        201
    );
    let eve_sub = user(&root, "eve@example.test", "team", Some("editor"));
    let olga_sub = user(&root, "olga@example.test", "team", Some("owner"));
    let owner_key = root.in_ns("team").credential(&[
        "config:read",
        "config:write",
        "config:watch",
        "status:write",
        "namespace:write",
    ]);
    let Auth::Hmac {
        access_key: owner_ak,
        ..
    } = owner_key.auth.clone()
    else {
        unreachable!()
    };
    let eve = anon.sign_in("eve@example.test", "secret-123");
    let e = eve.in_ns("team");

    phase(
        1,
        "Roles above her own, for herself or others, and demoting or removing an owner.",
    );
    refused(
        "eve makes herself owner",
        e.post(
            "/api/v1/members",
            &json!({"user_sub": eve_sub, "role": "owner"}),
        ),
    );
    refused(
        "eve demotes the owner",
        e.post(
            "/api/v1/members",
            &json!({"user_sub": olga_sub, "role": "viewer"}),
        ),
    );
    refused(
        "eve removes the owner",
        e.delete(&format!("/api/v1/members/{olga_sub}")),
    );
    refused(
        "eve binds a group to owner",
        e.post(
            "/api/v1/group-bindings",
            &json!({"group": "everyone", "role": "owner"}),
        ),
    );
    phase(
        2,
        "Credentials with scopes she lacks, or for all namespaces.",
    );
    for scopes in [
        json!(["namespace:write"]),
        json!(["admin:users"]),
        json!(["config:watch"]),
    ] {
        refused(
            &format!("eve mints {scopes}"),
            e.post("/api/v1/credentials", &json!({"scopes": scopes})),
        );
    }
    refused(
        "eve mints an all-namespaces credential",
        e.post(
            "/api/v1/credentials",
            &json!({"scopes": ["config:read"], "all_namespaces": true}),
        ),
    );
    phase(3, "Disabling, editing or deleting the owner's credential.");
    let (_, list) = e.get("/api/v1/credentials");
    let owner_id = list["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["access_key"] == owner_ak.as_str())
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    for (what, answer) in [
        (
            "disable",
            e.put(
                &format!("/api/v1/credentials/{owner_id}"),
                &json!({"enabled": false}),
            ),
        ),
        (
            "rescope",
            e.put(
                &format!("/api/v1/credentials/{owner_id}"),
                &json!({"scopes": ["config:read"]}),
            ),
        ),
        (
            "delete",
            e.delete(&format!("/api/v1/credentials/{owner_id}")),
        ),
    ] {
        refused(
            &format!("eve tries to {what} the owner's credential"),
            answer,
        );
    }
    assert_eq!(owner_key.in_ns("team").get("/api/v1/domains").0, 200);
    phase(4, "What she may mint acts in her namespace only.");
    let minted = e.credential(EDITOR_SCOPES);
    assert_eq!(minted.in_ns("team").get("/api/v1/domains").0, 200);
    refused(
        "her credential in default",
        minted.in_ns("default").get("/api/v1/domains"),
    );
    refused(
        "her credential in default",
        minted.in_ns("default").get("/api/v1/credentials"),
    );
    refused(
        "her credential creates a namespace",
        minted.post("/api/v1/namespaces", &json!({"name": "mine"})),
    );

    phase(5, "The proxy as a way in: routes to the node's own control listeners, stripped of every forwarding header a transform can remove.");
    sneak_route(&e, "admin", "admin.sneak", node.admin_port);
    sneak_route(&e, "peer", "peer.sneak", node.peer_port);
    sneak_route(&e, "etcd", "etcd.sneak", node.etcd_port);
    wait_for("the sneak routes", Duration::from_secs(10), || {
        (node.proxy_get("etcd.sneak", "/").status != 404).then_some(())
    });
    let through = |host: &str, method: &str, path: &str| {
        proxy_request(
            &node.proxy(),
            method,
            host,
            path,
            &[("content-type", "application/json")],
        )
    };
    for (host, method, path) in [
        ("admin.sneak", "GET", "/api/v1/users"),
        ("admin.sneak", "POST", "/api/v1/credentials"),
        ("admin.sneak", "POST", "/api/v1/cluster/members"),
        ("peer.sneak", "POST", "/peer/write"),
        ("etcd.sneak", "POST", "/v3/kv/range"),
    ] {
        let answer = through(host, method, path);
        assert_eq!(answer.status, 502, "{host}{path} reached: {}", answer.body);
    }
    assert!(node
        .log()
        .contains("refused an upstream that is a control listener"));

    phase(
        6,
        "Deleting every credential does not reopen first-time setup.",
    );
    for c in root.in_ns("team").get("/api/v1/credentials").1["credentials"]
        .as_array()
        .unwrap()
    {
        let id = c["id"].as_i64().unwrap();
        assert_eq!(
            root.in_ns("team")
                .delete(&format!("/api/v1/credentials/{id}"))
                .0,
            200
        );
    }
    refused(
        "anonymous after every credential is gone",
        anon.get("/api/v1/users"),
    );
    refused(
        "anonymous after every credential is gone",
        anon.post("/api/v1/credentials", &json!({"scopes": ["admin:users"]})),
    );
    phase(7, "And at the end of it all, she is still an editor.");
    refused("eve lists users", eve.get("/api/v1/users"));
    refused(
        "eve makes herself admin",
        eve.put(
            &format!("/api/v1/users/{eve_sub}/admin"),
            &json!({"is_admin": true}),
        ),
    );
    let (_, who) = e.get("/api/v1/whoami");
    assert_eq!(
        (who["role"].as_str(), who["is_admin"].as_bool()),
        (Some("editor"), Some(false))
    );
}

#[test]
fn first_time_setup_happens_once_for_local_json_callers_only() {
    let c = Cluster::start(1);
    let node = c.node(1);
    let base = node.admin();
    let anon = Api::anonymous(&base);
    let raw = |method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>| {
        let mut req = agent().request(method, &format!("{base}{path}"));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let r = match body {
            Some(b) => req.send_string(b),
            None => req.call(),
        };
        match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    };
    // DNS rebinding: the browser names the attacker's host.
    assert_eq!(
        raw(
            "GET",
            "/api/v1/users",
            &[("host", "evil.example:9080")],
            None
        ),
        403
    );
    // A cross-site form post.
    let form = [("content-type", "text/plain")];
    assert_eq!(raw("POST", "/api/v1/credentials", &form, Some("{}")), 415);
    // Through a proxy (any forwarding mark): not a local client.
    for mark in ["via", "x-forwarded-for", "forwarded", "x-real-ip"] {
        assert_eq!(
            raw("GET", "/api/v1/users", &[(mark, "1.1 proxy")], None),
            401,
            "{mark}"
        );
    }
    let member = json!({"id": 9, "peer_url": "http://127.0.0.1:1"}).to_string();
    let json_via = [("content-type", "application/json"), ("via", "1.1 proxy")];
    assert_eq!(
        raw("POST", "/api/v1/cluster/members", &json_via, Some(&member)),
        401
    );
    // The real thing, once.
    assert_eq!(anon.get("/api/v1/users").0, 200);
    let admin = anon.admin_credential();
    refused(
        "anonymous after the first credential",
        anon.get("/api/v1/users"),
    );
    // The credential deletes itself: setup stays closed.
    let (_, list) = admin.get("/api/v1/credentials");
    let id = list["credentials"][0]["id"].as_i64().unwrap();
    assert_eq!(admin.delete(&format!("/api/v1/credentials/{id}")).0, 200);
    refused(
        "anonymous after the last credential went",
        anon.get("/api/v1/users"),
    );
    refused(
        "anonymous minting after the last credential went",
        anon.post("/api/v1/credentials", &json!({"scopes": ["admin:users"]})),
    );
}

#[test]
fn admins_emails_and_sessions() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    let root = anon.initial_admin(&node.data_dir);
    let root_sub = "builtin:admin@hermes.local";

    // The last admin can be neither demoted nor deleted.
    let (s, b) = root.put(
        &format!("/api/v1/users/{root_sub}/admin"),
        &json!({"is_admin": false}),
    );
    assert_eq!(s, 409, "{b}");
    let (s, b) = root.put(
        &format!("/api/v1/users/{root_sub}"),
        &json!({"is_admin": false}),
    );
    assert_eq!(s, 409, "{b}");
    let second = user(&root, "second@example.test", "default", None);
    assert_eq!(
        root.put(
            &format!("/api/v1/users/{second}/admin"),
            &json!({"is_admin": true})
        )
        .0,
        200
    );
    let two = anon.sign_in("second@example.test", "secret-123");
    assert_eq!(two.delete(&format!("/api/v1/users/{root_sub}")).0, 200);
    let (s, b) = two.put(
        &format!("/api/v1/users/{second}/admin"),
        &json!({"is_admin": false}),
    );
    assert_eq!(s, 409, "now the last admin: {b}");

    // E-mails are unique.
    let third = user(&two, "third@example.test", "default", None);
    let (s, b) = two.put(
        &format!("/api/v1/users/{third}"),
        &json!({"email": "second@example.test"}),
    );
    assert_eq!(s, 409, "{b}");

    // Sessions end with a password change (all of them), a reset, and a rotation without grace.
    let t1 = anon.sign_in("third@example.test", "secret-123");
    let t2 = anon.sign_in("third@example.test", "secret-123");
    assert_eq!(t1.get("/api/v1/whoami").0, 200);
    let (s, b) = t1.post(
        "/api/auth/change-password",
        &json!({"old_password": "secret-123", "new_password": "secret-456"}),
    );
    assert_eq!(s, 200, "{b}");
    for t in [&t1, &t2] {
        let (s, b) = t.get("/api/v1/whoami");
        assert_eq!(s, 401, "{b}");
        assert!(b["error"].as_str().unwrap().contains("revoked"), "{b}");
    }
    let t3 = anon.sign_in("third@example.test", "secret-456");
    assert_eq!(t3.get("/api/v1/whoami").0, 200);
    assert_eq!(
        two.put(
            &format!("/api/v1/users/{third}/reset-password"),
            &json!({"new_password": "secret-789"})
        )
        .0,
        200
    );
    assert_eq!(t3.get("/api/v1/whoami").0, 401);
    let t4 = anon.sign_in("third@example.test", "secret-789");
    assert_eq!(two.post("/api/auth/rotate-key?grace=x", &json!({})).0, 400);
    assert_eq!(
        two.post("/api/auth/rotate-key?grace=90000", &json!({})).0,
        400
    );
    let (s, b) = two.post("/api/auth/rotate-key?grace=0", &json!({}));
    assert_eq!((s, b["grace_period"].as_str()), (200, Some("0s")), "{b}");
    assert_eq!(t4.get("/api/v1/whoami").0, 401, "revoked with the old key");
    assert_eq!(
        two.get("/api/v1/whoami").0,
        401,
        "the rotating admin's own token too"
    );
    let fresh = anon.sign_in("third@example.test", "secret-789");
    assert_eq!(fresh.get("/api/v1/whoami").0, 200);
}

#[test]
fn password_guessing_is_throttled_and_bounded() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    let login = |email: &str, pw: &str| {
        anon.post("/api/auth/login", &json!({"email": email, "password": pw}))
    };
    // 64 guesses at once: hashing runs a few at a time, so memory stays bounded.
    let before = node.rss_kib();
    let guesses: Vec<_> = (0..64)
        .map(|i| {
            let anon = anon.clone();
            std::thread::spawn(move || {
                anon.post(
                    "/api/auth/login",
                    &json!({"email": format!("nobody{i}@example.test"), "password": "guess"}),
                )
                .0
            })
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    // A burst gets no more guesses than a sequence: this client's five free failures and
    // the one that locks it out, the rest refused before any hashing.
    let guessed = statuses.iter().filter(|s| **s == 401).count();
    assert!(guessed <= 6, "{guessed} guesses were checked: {statuses:?}");
    let peak = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    assert!(
        peak < 300 * 1024,
        "peak RSS {peak} KiB (before the guesses {before} KiB)"
    );

    // Whatever the burst left of them, six wrong guesses in all lock this client out.
    let mut checked = guessed;
    let (s, b) = loop {
        let (s, b) = login("admin@hermes.local", "wrong");
        if s != 401 {
            break (s, b);
        }
        checked += 1;
    };
    assert_eq!(s, 429, "{b}");
    assert!(checked <= 6, "{checked} wrong guesses before the lockout");
    assert!(b["error"].as_str().unwrap().contains("try again"), "{b}");
    // The right password is no way around a lockout.
    let pw = std::fs::read_to_string(node.data_dir.join("initial-admin-password")).unwrap();
    assert_eq!(login("admin@hermes.local", pw.trim()).0, 429);
}

#[test]
fn gateway_views_need_config_read_and_hide_secrets_from_readers() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    let root = anon.initial_admin(&node.data_dir);
    let cluster = json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": 9, "weight": 1}]});
    assert_eq!(root.post("/api/v1/clusters", &cluster).0, 201);
    let domain = json!({"name": "d", "hosts": ["d.test"], "routes": [{
        "name": "r", "uri": "/", "status": 1, "clusters": [{"name": "c", "weight": 100}],
        "request_header_transforms": [{"name": "authorization", "value": "Bearer upstream-s3cret", "action": "set"}],
    }]});
    assert_eq!(root.post("/api/v1/domains", &domain).0, 201);
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("d.test", "/").status != 404).then_some(())
    });
    for path in [
        "/api/v1/gateway/routes",
        "/api/v1/gateway/domains",
        "/api/v1/gateway/upstreams",
    ] {
        refused(path, anon.get(path));
    }
    user(&root, "viewer@example.test", "default", Some("viewer"));
    let viewer = anon.sign_in("viewer@example.test", "secret-123");
    for path in [
        "/api/v1/gateway/domains",
        "/api/v1/domains",
        "/api/v1/domains/d",
        "/api/v1/domains/d/history",
        "/api/v1/domains/d/history/1",
        "/api/v1/config",
    ] {
        let (s, b) = viewer.get(path);
        assert_eq!(s, 200, "{path}: {b}");
        let text = b.to_string();
        assert!(!text.contains("upstream-s3cret"), "{path} leaks: {text}");
        assert!(text.contains("<redacted>"), "{path}: {text}");
    }
    assert_eq!(viewer.get("/api/v1/gateway/routes").0, 200);
    assert_eq!(viewer.get("/api/v1/gateway/upstreams").0, 200);
    let (_, b) = root.get("/api/v1/domains/d");
    assert!(
        b.to_string().contains("upstream-s3cret"),
        "writers see values"
    );
}

#[test]
fn traffic_needs_status_read_and_an_hmac_caller_sees_one_node() {
    let c = Cluster::start_with(3, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    refused("/api/v1/traffic", anon.get("/api/v1/traffic"));
    // The leader makes the initial admin once elected; its data directory holds the password.
    let admin_dir = wait_for("the initial admin", Duration::from_secs(20), || {
        c.nodes
            .iter()
            .find(|n| n.data_dir.join("initial-admin-password").exists())
            .map(|n| n.data_dir.clone())
    });
    let root = Api::anonymous(&node.admin()).initial_admin(&admin_dir);
    refused(
        "/api/v1/traffic without status:read",
        root.credential(&["config:read"]).get("/api/v1/traffic"),
    );
    let (s, b) = root.get("/api/v1/traffic?node=all");
    assert_eq!(s, 400, "{b}");
    assert!(b.to_string().contains("node"), "{b}");
    // A session token is passed on: every node answers.
    let (s, b) = root.get("/api/v1/traffic");
    assert_eq!(s, 200, "{b}");
    let nodes = b["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{b}");
    assert!(nodes.iter().all(|n| n["ok"] == true), "{b}");
    // An HMAC signature is for one request: the other nodes are listed with the reason.
    let (s, b) = root.credential(&["status:read"]).get("/api/v1/traffic");
    assert_eq!(s, 200, "{b}");
    let nodes = b["nodes"].as_array().unwrap();
    assert_eq!(nodes.iter().filter(|n| n["ok"] == true).count(), 1, "{b}");
    assert!(b.to_string().contains("only a session token"), "{b}");
}

/// A sign-in records `last_seen` by writing the user's record. Racing a password reset made
/// through another node, it must never write the old password (and with it the old token
/// epoch) back: once both are answered, only the new password signs in, on every node, and
/// whatever token the racing sign-in got is refused.
#[test]
fn a_sign_in_racing_a_password_reset_never_undoes_it() {
    let mut c = Cluster::start(3);
    let leader = c.leader();
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    let admin = Api::anonymous(&c.node(leader).admin()).admin_credential();
    let followers: Vec<u64> = ids.iter().copied().filter(|id| *id != leader).collect();
    let signing = Api::anonymous(&c.node(followers[0]).admin());
    let checking = Api::anonymous(&c.node(followers[1]).admin());
    for round in 0..8 {
        let email = format!("racer{round}@example.test");
        let sub = user(&admin, &email, "default", None);
        // Made through the leader a moment ago, it signs in at once on a follower.
        checking.sign_in(&email, "secret-123");
        let racing = {
            let signing = signing.clone();
            let email = email.clone();
            std::thread::spawn(move || {
                let (s, b) = signing.post(
                    "/api/auth/login",
                    &json!({"email": email, "password": "secret-123"}),
                );
                (s == 200)
                    .then(|| signing.with(Auth::Bearer(b["access_token"].as_str().unwrap().into())))
            })
        };
        let (s, b) = admin.put(
            &format!("/api/v1/users/{sub}/reset-password"),
            &json!({"new_password": "secret-456"}),
        );
        assert_eq!(s, 200, "round {round}: {b}");
        let session = racing.join().unwrap();
        for api in [&signing, &checking] {
            let (s, b) = api.post(
                "/api/auth/login",
                &json!({"email": email, "password": "secret-123"}),
            );
            assert_eq!(
                s, 401,
                "round {round}: the old password still signs in: {b}"
            );
        }
        let fresh = checking.sign_in(&email, "secret-456");
        // A success on `signing` too, which clears the failures the old password counted
        // against this client there (five in a row would lock it out).
        signing.sign_in(&email, "secret-456");
        for id in &ids {
            let there = Api {
                base: c.node(*id).admin(),
                ..fresh.clone()
            };
            assert_eq!(
                there.get("/api/v1/whoami").0,
                200,
                "round {round}, node {id}"
            );
        }
        if let Some(session) = session {
            let (s, b) = session.get("/api/v1/whoami");
            assert_eq!(
                s, 401,
                "round {round}: a session from before the reset: {b}"
            );
        }
    }
}

/// A user deleted through one node while another makes them a member keeps no membership:
/// one left behind would be inherited by whoever next holds the `sub` (a new account with
/// the same e-mail).
#[test]
fn a_user_deleted_while_made_a_member_keeps_no_membership() {
    let c = Cluster::start(3);
    let deleting = Api::anonymous(&c.node(1).admin()).admin_credential();
    let joining = Api {
        base: c.node(2).admin(),
        ..deleting.clone()
    }
    .in_ns("default");
    for round in 0..20 {
        let email = format!("gone{round}@example.test");
        let sub = user(&deleting, &email, "default", None);
        let join = {
            let joining = joining.clone();
            let sub = sub.clone();
            std::thread::spawn(move || {
                joining.post(
                    "/api/v1/members",
                    &json!({"user_sub": sub, "role": "viewer"}),
                )
            })
        };
        let (s, b) = deleting.delete(&format!("/api/v1/users/{sub}"));
        assert_eq!(s, 200, "round {round}: {b}");
        let (s, b) = join.join().unwrap();
        assert!(s == 200 || s == 404, "round {round}: {s} {b}");
        let (s, b) = deleting.in_ns("default").get("/api/v1/members");
        assert_eq!(s, 200, "{b}");
        assert!(
            !b.to_string().contains(&sub),
            "round {round}: a membership outlived its user: {b}"
        );
    }
}

/// An admin credential, and the sessions of an owner (olga, through node 1) and an editor
/// (eve, through node 2) of `default`: two people changing the same things through two nodes.
fn owner_and_editor(c: &Cluster) -> (Api, Api, Api) {
    let root = Api::anonymous(&c.node(1).admin()).admin_credential();
    user(&root, "olga@example.test", "default", Some("owner"));
    user(&root, "eve@example.test", "default", Some("editor"));
    let olga = Api::anonymous(&c.node(1).admin())
        .sign_in("olga@example.test", "secret-123")
        .in_ns("default");
    let eve = Api::anonymous(&c.node(2).admin())
        .sign_in("eve@example.test", "secret-123")
        .in_ns("default");
    (root, olga, eve)
}

/// An owner promoting a member and an editor demoting the same member at once, through two
/// nodes: an editor never overwrites an owner's promotion (which her ceiling forbids her to
/// undo), however the two interleave.
#[test]
fn an_editor_never_undoes_a_promotion_made_at_the_same_time() {
    let c = Cluster::start(3);
    let (root, olga, eve) = owner_and_editor(&c);
    for round in 0..20 {
        let sub = user(
            &root,
            &format!("target{round}@example.test"),
            "default",
            Some("editor"),
        );
        // The editor starts a little later in some rounds, so that the rounds cover the
        // window between her check and her write landing.
        let set = |api: &Api, role: &str, after: Duration| {
            let (api, sub, role) = (api.clone(), sub.clone(), role.to_string());
            std::thread::spawn(move || {
                std::thread::sleep(after);
                api.post("/api/v1/members", &json!({"user_sub": sub, "role": role}))
            })
        };
        let promote = set(&olga, "owner", Duration::ZERO);
        let demote = set(&eve, "viewer", Duration::from_micros(100 * (round % 10)));
        let (promoted, demoted) = (promote.join().unwrap(), demote.join().unwrap());
        // Each lands, or is refused because the role changed after its check (409), or, for
        // the editor, by her check when the promotion came first (403).
        assert!(
            [200, 409].contains(&promoted.0),
            "round {round}: {promoted:?}"
        );
        assert!(
            [200, 403, 409].contains(&demoted.0),
            "round {round}: {demoted:?}"
        );
        let (_, members) = root.in_ns("default").get("/api/v1/members");
        let role = members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["user_sub"] == json!(sub))
            .map(|m| m["role"].clone());
        // Both may land only demotion first (the owner then saw a viewer): the promotion is
        // never undone.
        let expected = match (promoted.0, demoted.0) {
            (200, _) => "owner",
            (_, 200) => "viewer",
            _ => panic!("round {round}: neither landed: {promoted:?} {demoted:?}"),
        };
        assert_eq!(
            role,
            Some(json!(expected)),
            "round {round}: promotion {promoted:?}, demotion {demoted:?}"
        );
    }
}

/// Likewise for a credential: an owner widening it beyond an editor's ceiling and an editor
/// disabling it at once, through two nodes. The editor's change may land only before the
/// widening (which it does not undo), never after it: then it is refused, by her check
/// (403) or by the store (409).
#[test]
fn an_editor_never_changes_a_credential_widened_at_the_same_time() {
    let c = Cluster::start(3);
    let (_, olga, eve) = owner_and_editor(&c);
    for round in 0..20 {
        let (s, made) = eve.post(
            "/api/v1/credentials",
            &json!({"description": format!("r{round}"), "scopes": ["config:read"]}),
        );
        assert_eq!(s, 201, "{made}");
        let path = format!("/api/v1/credentials/{}", made["id"]);
        // The editor starts a little later each round, so that the rounds cover the window
        // between her check and her write landing.
        let change = |api: &Api, body: Value, after: Duration| {
            let (api, path) = (api.clone(), path.clone());
            std::thread::spawn(move || {
                std::thread::sleep(after);
                api.put(&path, &body)
            })
        };
        let widen = change(
            &olga,
            json!({"scopes": ["config:read", "namespace:write"]}),
            Duration::ZERO,
        );
        let disable = change(
            &eve,
            json!({"enabled": false}),
            Duration::from_micros(150 * round),
        );
        let (widened, disabled) = (widen.join().unwrap(), disable.join().unwrap());
        assert_eq!(widened.0, 200, "round {round}: {widened:?}");
        // 403: she started after the widening landed, and her check refused her.
        assert!(
            [200, 403, 409].contains(&disabled.0),
            "round {round}: {disabled:?}"
        );
        // Who changed the credential, in the order the changes landed.
        let (_, audit) = olga.get("/api/v1/audit?limit=200");
        let mut updates: Vec<(i64, String)> = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == made["access_key"] && e["action"] == "update")
            .map(|e| (e["revision"].as_i64().unwrap(), e["operator"].to_string()))
            .collect();
        updates.sort();
        let by: Vec<bool> = updates.iter().map(|(_, o)| o.contains("eve")).collect();
        let expected: &[bool] = if disabled.0 == 200 {
            &[true, false]
        } else {
            &[false]
        };
        assert_eq!(by, expected, "round {round}: {updates:?}");
    }
}

#[test]
fn membership_changes_take_an_admin_session_and_refuse_other_people() {
    let c = Cluster::start_with(1, &["--initial-admin", "admin@hermes.local"]);
    let node = c.node(1);
    let anon = Api::anonymous(&node.admin());
    let root = anon.initial_admin(&node.data_dir);
    user(&root, "viewer@example.test", "default", Some("owner"));
    let owner = anon.sign_in("viewer@example.test", "secret-123");
    // An owner of a namespace is not an admin of the cluster, even from loopback.
    for (what, (s, b)) in [
        ("remove", owner.delete("/api/v1/cluster/members/1")),
        (
            "promote",
            owner.post("/api/v1/cluster/members/1/promote", &json!({})),
        ),
        (
            "lead",
            owner.post("/api/v1/cluster/members/1/lead", &json!({})),
        ),
        ("backup", owner.get("/api/v1/cluster/snapshot")),
        (
            "add",
            owner.post(
                "/api/v1/cluster/members",
                &json!({"id": 9, "peer_url": "http://127.0.0.1:1"}),
            ),
        ),
    ] {
        assert_eq!(s, 403, "{what}: {b}");
    }
    // A token that does not verify is refused before anything else.
    let forged = anon.with(crate::api_client::Auth::Bearer("e30.e30.x".into()));
    assert_eq!(forged.delete("/api/v1/cluster/members/1").0, 401);
    assert_eq!(
        forged.post("/api/v1/cluster/members/1/lead", &json!({})).0,
        401
    );
    assert_eq!(forged.get("/api/v1/cluster/snapshot").0, 401);
    // The admin may move the leader: to itself it is already done, to a stranger refused.
    let (s, b) = root.post("/api/v1/cluster/members/1/lead", &json!({}));
    assert_eq!((s, b["leader"].as_u64()), (200, Some(1)), "{b}");
    let (s, b) = root.post("/api/v1/cluster/members/9/lead", &json!({}));
    assert_eq!(s, 404, "{b}");
    // The admin's session gets the change itself decided: removing the last voter is refused,
    // in words.
    let (s, b) = root.delete("/api/v1/cluster/members/1");
    assert!(s != 401 && s != 403 && s >= 400, "{s} {b}");
    assert!(b.to_string().contains("last voter"), "{b}");
    assert_eq!(
        c.node(1).status().unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
