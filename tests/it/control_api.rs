//! The control-plane REST API against real nodes: resources with history, optimistic
//! concurrency and rollback, bulk replace, the change feed, bad input that changes nothing,
//! and writes on any node of a three-node cluster (contracts/hermes.md §3, §9.1).

use std::time::Duration;

use serde_json::{json, Value};

use crate::api_client::Api;
use crate::harness::*;
use crate::upstream::Upstream;

fn cluster_doc(name: &str, port: u16) -> Value {
    json!({"name": name, "nodes": [{"host": "127.0.0.1", "port": port}]})
}

fn domain_doc(name: &str, host: &str, cluster: &str) -> Value {
    json!({"name": name, "hosts": [host],
           "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": cluster}]}]})
}

#[test]
fn resources_history_rollback_bulk_watch_and_bad_input() {
    let up = Upstream::start("api");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.wait_ready(Duration::from_secs(10));
    let api = Api::anonymous(&node.admin());

    phase(1, "Create, read, serve.");
    let (s, b) = api.post("/api/v1/clusters", &cluster_doc("be", up.port));
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        b["cluster"]["scheme"], "http",
        "gateway defaults applied at the API"
    );
    let (s, b) = api.post("/api/v1/domains", &domain_doc("web", "web.api.test", "be"));
    assert_eq!(
        (s, b["version"].as_i64(), b["resource_version"].as_i64()),
        (201, Some(1), Some(1)),
        "{b}"
    );
    assert_eq!(
        b["domain"]["routes"][0]["status"], 1,
        "an omitted status is enabled"
    );
    wait_for("the API-created route", Duration::from_secs(10), || {
        (node.proxy_get("web.api.test", "/x").status == 200).then_some(())
    });
    let (s, _) = api.post("/api/v1/domains", &domain_doc("web", "web.api.test", "be"));
    assert_eq!(s, 409);

    phase(2, "Optimistic concurrency.");
    let update = json!({"resource_version": 1, "hosts": ["web2.api.test"],
                        "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]});
    let (s, b) = api.put("/api/v1/domains/web", &update);
    assert_eq!(
        (s, b["resource_version"].as_i64(), b["version"].as_i64()),
        (200, Some(2), Some(2)),
        "{b}"
    );
    let (s, b) = api.put("/api/v1/domains/web", &update);
    assert_eq!(s, 409, "{b}");
    assert!(b["error"].as_str().unwrap().starts_with("conflict"));
    let (s, _) = api.put("/api/v1/domains/web", &json!({"hosts": ["x"]}));
    assert_eq!(s, 400, "resource_version is required");

    phase(3, "History and rollback.");
    let (s, b) = api.get("/api/v1/domains/web/history");
    assert_eq!((s, b["total"].as_i64()), (200, Some(2)));
    assert_eq!(b["history"][0]["action"], "update");
    let (s, b) = api.get("/api/v1/domains/web/history/1");
    assert_eq!(
        (s, b["domain"]["hosts"][0].as_str()),
        (200, Some("web.api.test"))
    );
    assert_eq!(api.get("/api/v1/domains/web/history/9").0, 404);
    assert_eq!(api.get("/api/v1/domains/web/history/x").0, 400);
    let (s, b) = api.post("/api/v1/domains/web/rollback/1", &json!({}));
    assert_eq!((s, b["new_version"].as_i64()), (200, Some(3)), "{b}");
    let (_, b) = api.get("/api/v1/domains/web");
    assert_eq!(
        (
            b["resource_version"].as_i64(),
            b["domain"]["hosts"][0].as_str()
        ),
        (Some(3), Some("web.api.test"))
    );
    assert_eq!(
        api.post("/api/v1/domains/web/rollback/99", &json!({})).0,
        404
    );

    phase(
        4,
        "Bad input: every refusal is a 4xx with a JSON error, and nothing is stored.",
    );
    let (_, before) = api.get("/api/v1/config/revision");
    let before = before["revision"].as_i64().unwrap();
    let huge = "x".repeat(2 << 20);
    for (method, path, body, want) in [
        ("POST", "/api/v1/domains", "{not json", 400),
        ("POST", "/api/v1/domains", "[]", 400),
        (
            "POST",
            "/api/v1/domains",
            r#"{"name":"a","hosts":"web"}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/domains",
            r#"{"name":"a/b","hosts":["h"],"routes":[]}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/domains",
            r#"{"name":"a","hosts":["h"],"routes":[{"name":"r","uri":"/","clusters":[{"name":"be"}],"priority":"high"}]}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/clusters",
            r#"{"name":"c","nodes":[{"host":"h","port":70000}]}"#,
            400,
        ),
        (
            "POST",
            "/api/v1/clusters",
            r#"{"name":"c","nodes":[{"host":"h","port":1}],"timeout":{"connect":-1,"read":1}}"#,
            400,
        ),
        (
            "PUT",
            "/api/v1/config",
            r#"{"domains":[{"name":"d","hosts":["h"],"routes":[{"name":"r","uri":"/","clusters":[{"name":"missing"}]}]}]}"#,
            400,
        ),
        ("POST", "/api/v1/domains", huge.as_str(), 413),
    ] {
        let (s, b) = api.call_at(method, path, Some(body), crate::api_client::now());
        assert_eq!(
            s,
            want,
            "{method} {path} {}: {b}",
            &body[..body.len().min(80)]
        );
        assert!(b.get("error").is_some() || b.get("errors").is_some(), "{b}");
    }
    let (s, b) = api.post("/api/v1/domains", &json!({"name": "a", "hosts": []}));
    assert_eq!(s, 400);
    assert_eq!(b["errors"][0]["field"], "domains[0].hosts", "{b}");
    let (_, after) = api.get("/api/v1/config/revision");
    assert_eq!(
        after["revision"].as_i64(),
        Some(before),
        "refused input changed nothing"
    );
    let (s, b) = api.call_at(
        "POST",
        "/api/v1/config/validate",
        Some(r#"{"clusters":[{"name":""}]}"#),
        crate::api_client::now(),
    );
    assert_eq!((s, b["valid"].as_bool()), (200, Some(false)), "{b}");

    phase(
        5,
        "Bulk replace removes what it replaces, with delete events in the change feed.",
    );
    let (s, b) = api.put("/api/v1/config", &json!({
        "clusters": [cluster_doc("be2", up.port)],
        "domains": [domain_doc("new1", "n1.api.test", "be2"), domain_doc("new2", "n2.api.test", "be2")],
    }));
    assert_eq!(
        (s, b["domains"].as_i64(), b["clusters"].as_i64()),
        (200, Some(2), Some(1)),
        "{b}"
    );
    assert_eq!(api.get("/api/v1/domains/web").0, 404);
    assert_eq!(api.get("/api/v1/clusters/be").0, 404);
    wait_for("bulk config served", Duration::from_secs(10), || {
        (node.proxy_get("n2.api.test", "/").status == 200
            && node.proxy_get("web.api.test", "/").status == 404)
            .then_some(())
    });
    let (s, feed) = api.get(&format!("/api/v1/config/watch?revision={before}"));
    assert_eq!(s, 200);
    let events = feed["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["name"] == "web" && e["action"] == "delete"),
        "{feed}"
    );
    assert!(events
        .iter()
        .any(|e| e["name"] == "new1" && e["action"] == "import" && e["domain"]["name"] == "new1"));
    assert_eq!(
        feed["revision"].as_i64(),
        Some(
            feed["events"].as_array().unwrap().last().unwrap()["revision"]
                .as_i64()
                .unwrap()
        )
    );
    let top = feed["revision"].as_i64().unwrap();
    assert_eq!(
        node.range_prefix("/hermes/meta/", false)
            .get("/hermes/meta/config_revision")
            .map(String::as_str),
        Some(top.to_string().as_str())
    );
    assert_eq!(api.get("/api/v1/config/watch?revision=x").0, 400);

    phase(6, "Long poll: answers as soon as a change lands.");
    let waiter = {
        let api = api.clone();
        std::thread::spawn(move || api.get(&format!("/api/v1/config/watch?revision={top}&wait=20")))
    };
    // Whether the waiter's request arrives before the delete or after it, it must be answered
    // with the delete, and well before its 20 s wait.
    let asked = std::time::Instant::now();
    assert_eq!(api.delete("/api/v1/domains/new2").0, 200);
    let (s, b) = waiter.join().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered by the timeout, not the change"
    );
    assert_eq!(
        (s, b["events"][0]["action"].as_str()),
        (200, Some("delete")),
        "{b}"
    );
    assert_eq!(
        api.delete("/api/v1/domains/new2").0,
        404,
        "a missing resource is 404, not 500"
    );
    let (s, b) = api.get("/api/v1/config");
    assert_eq!(s, 200);
    assert_eq!(b["config"]["domains"].as_array().unwrap().len(), 1);
}

#[test]
fn any_node_takes_writes_and_exactly_one_concurrent_update_wins() {
    let up = Upstream::start("ha");
    let c = Cluster::start(3);
    for id in 1..=3 {
        c.node(id).wait_ready(Duration::from_secs(20));
    }
    let (n1, n2, n3) = (
        Api::anonymous(&c.node(1).admin()),
        Api::anonymous(&c.node(2).admin()),
        Api::anonymous(&c.node(3).admin()),
    );
    assert_eq!(
        n2.post("/api/v1/clusters", &cluster_doc("be", up.port)).0,
        201
    );
    assert_eq!(
        n2.post("/api/v1/domains", &domain_doc("ha", "ha.test", "be"))
            .0,
        201
    );
    wait_for(
        "node 3 serves the domain created on node 2",
        Duration::from_secs(10),
        || (c.node(3).proxy_get("ha.test", "/").status == 200).then_some(()),
    );
    let (s, b) = n1.get("/api/v1/domains/ha");
    assert_eq!((s, b["resource_version"].as_i64()), (200, Some(1)));
    let (_, b3) = n3.get("/api/v1/domains/ha");
    assert_eq!(b3["resource_version"], b["resource_version"]);
    for round in 0..5 {
        let rv = n1.get("/api/v1/domains/ha").1["resource_version"]
            .as_i64()
            .unwrap();
        let body = |host: &str| {
            json!({"resource_version": rv, "hosts": [host],
            "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]})
        };
        let (a, b) = (
            body(&format!("a{round}.test")),
            body(&format!("b{round}.test")),
        );
        let t1 = {
            let n = n1.clone();
            std::thread::spawn(move || n.put("/api/v1/domains/ha", &a).0)
        };
        let t2 = {
            let n = n2.clone();
            std::thread::spawn(move || n.put("/api/v1/domains/ha", &b).0)
        };
        let mut got = [t1.join().unwrap(), t2.join().unwrap()];
        got.sort();
        assert_eq!(got, [200, 409], "round {round}");
        assert_eq!(
            n3.get("/api/v1/domains/ha").1["resource_version"].as_i64(),
            Some(rv + 1)
        );
    }
}

/// `--cors-origins` lets exactly the named browser origins call the API (preflight answered
/// before authentication), and `--resource-history` bounds each resource's history.
#[test]
fn cors_origins_and_history_retention_are_settings() {
    let c = Cluster::start_with(
        1,
        &[
            "--cors-origins",
            "https://ui.example, http://127.0.0.1:5173",
            "--resource-history",
            "3",
        ],
    );
    let node = c.node(1);
    let agent = agent();
    let preflight = |origin: &str| {
        let r = match agent
            .request("OPTIONS", &format!("{}/api/v1/domains", node.admin()))
            .set("Origin", origin)
            .set("Access-Control-Request-Method", "PUT")
            .set(
                "Access-Control-Request-Headers",
                "authorization,x-hermes-namespace",
            )
            .call()
        {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{e}"),
        };
        (
            r.status(),
            r.header("access-control-allow-origin").map(str::to_string),
            r.header("access-control-allow-headers")
                .unwrap_or_default()
                .to_ascii_lowercase(),
        )
    };
    let (s, allow, headers) = preflight("https://ui.example");
    assert_eq!((s, allow.as_deref()), (200, Some("https://ui.example")));
    assert!(headers.contains("authorization") && headers.contains("x-hermes-namespace"));
    let (_, allow, _) = preflight("https://evil.example");
    assert_eq!(allow, None, "an origin not listed gets no CORS grant");
    // A simple request from an allowed origin carries the grant too.
    let r = agent
        .get(&format!("{}/api/v1/scopes", node.admin()))
        .set("Origin", "http://127.0.0.1:5173")
        .call()
        .unwrap();
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://127.0.0.1:5173")
    );

    let api = Api::anonymous(&node.admin());
    assert_eq!(api.post("/api/v1/clusters", &cluster_doc("h", 9)).0, 201);
    for version in 1..=5 {
        let mut doc = cluster_doc("h", 9);
        doc["resource_version"] = json!(version);
        doc["nodes"][0]["weight"] = json!(version + 1);
        let (s, b) = api.put("/api/v1/clusters/h", &doc);
        assert_eq!(s, 200, "{b}");
    }
    let (s, b) = api.get("/api/v1/clusters/h/history");
    assert_eq!(s, 200);
    let versions: Vec<i64> = b["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![6, 5, 4], "{b}");
    assert_eq!(api.get("/api/v1/clusters/h/history/3").0, 404);
}

/// Without `--cors-origins`, no origin is granted.
#[test]
fn no_cors_origin_is_allowed_by_default() {
    let c = Cluster::start(1);
    let r = agent()
        .get(&format!("{}/api/v1/scopes", c.node(1).admin()))
        .set("Origin", "https://ui.example")
        .call()
        .unwrap();
    assert_eq!(r.header("access-control-allow-origin"), None);
}
