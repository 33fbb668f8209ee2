//! The data plane against real nodes, configured through the etcd JSON API exactly as the
//! original controller writes it (contracts/hermes.md §9.1 data-plane scenarios, and more).

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::upstream::Upstream;

fn cluster(name: &str, up: &Upstream) -> String {
    json!({"name": name, "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100}]})
        .to_string()
}

fn route(name: &str, uri: &str, priority: i64, cluster: &str) -> serde_json::Value {
    json!({"name": name, "uri": uri, "priority": priority, "clusters": [{"name": cluster, "weight": 100}]})
}

fn domain(name: &str, hosts: &[&str], routes: Vec<serde_json::Value>) -> String {
    json!({"name": name, "hosts": hosts, "routes": routes}).to_string()
}

/// Cluster `cluster_name` on `up`, and domain `name` sending everything on `host` to it.
fn route_all(node: &Node, name: &str, host: &str, cluster_name: &str, up: &Upstream) {
    node.put_key(
        &format!("/hermes/clusters/{cluster_name}"),
        &cluster(cluster_name, up),
    );
    node.put_key(
        &format!("/hermes/domains/{name}"),
        &domain(name, &[host], vec![route("all", "/*", 0, cluster_name)]),
    );
}

/// Waits until the proxy answers `host` + `path` with `status`.
fn wait_status(node: &Node, host: &str, path: &str, status: u16) -> ProxyAnswer {
    wait_for(
        &format!("{host}{path} to answer {status}"),
        Duration::from_secs(10),
        || Some(node.proxy_get(host, path)).filter(|a| a.status == status),
    )
}

#[test]
fn static_node_proxy_and_admin_views() {
    let up = Upstream::start("static");
    let c = Cluster::start(1);
    let node = c.node(1);
    route_all(node, "web", "web.test.local", "static", &up);
    let a = wait_status(node, "web.test.local", "/hello/world?x=1", 200);
    let seen = a.json();
    assert_eq!(seen["path"], "/hello/world");
    assert_eq!(seen["query"], "x=1");
    assert_eq!(seen["target"], "/hello/world?x=1", "origin form upstream");
    assert_eq!(
        seen["headers"]["host"], "web.test.local",
        "pass_host defaults to pass"
    );
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(seen["headers"]["x-forwarded-host"], "web.test.local");
    assert_eq!(a.header("x-upstream"), Some("static"));
    assert_eq!(
        a.header("x-hop"),
        None,
        "headers named in Connection are hop-by-hop"
    );
    // A client cannot strip the gateway's own forwarding headers by naming them in
    // `Connection`; what it names of its own is dropped.
    let sneaky = proxy_request(
        &node.proxy(),
        "GET",
        "web.test.local",
        "/x",
        &[
            (
                "Connection",
                "keep-alive, X-Forwarded-For, X-Real-IP, X-Secret",
            ),
            ("X-Secret", "1"),
        ],
    );
    let seen = sneaky.json();
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["headers"]["x-real-ip"], "127.0.0.1");
    assert!(seen["headers"].get("x-secret").is_none(), "{seen}");
    let miss = node.proxy_get("unknown.host", "/");
    assert_eq!(miss.status, 404);
    assert_eq!(miss.json(), json!({"error": "not found"}));
    assert_eq!(miss.header("content-type"), Some("application/json"));
    let (status, routes) = get(&format!("{}/api/v1/gateway/routes", node.admin())).unwrap();
    assert_eq!(status, 200);
    assert!(routes.contains("\"uri\":\"/*\""), "{routes}");
    // The original gateway's health and readiness bodies (contracts §7.15), under its paths.
    for path in ["/readyz", "/ready"] {
        let (status, body) = get(&format!("{}{path}", node.admin())).unwrap();
        assert_eq!(status, 200, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ready", "{path}: {body}");
        assert_eq!(body["domains"], 1, "{path}: {body}");
        assert_eq!(body["total_routes"], 1, "{path}: {body}");
    }
    for path in ["/health", "/healthz", "/livez"] {
        let (status, body) = get(&format!("{}{path}", node.admin())).unwrap();
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "{path}"
        );
    }
    // The method is ignored there, as in the original.
    let (status, body) = post(&format!("{}/ready", node.admin()), &json!({})).unwrap();
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    // pass_host node: the upstream sees its own address as Host.
    node.put_key(
        "/hermes/clusters/static",
        &json!({"name": "static", "pass_host": "node",
                "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100}]})
        .to_string(),
    );
    let node_host = format!("127.0.0.1:{}", up.port);
    wait_for("pass_host node", Duration::from_secs(10), || {
        let seen = node.proxy_get("web.test.local", "/n").json();
        (seen["headers"]["host"] == node_host.as_str()).then_some(())
    });
}

#[test]
fn host_uri_header_matching_and_disabled_routes() {
    let ups: Vec<Upstream> = ["a", "b", "exact", "suffix", "prefix", "default"]
        .iter()
        .map(|n| Upstream::start(n))
        .collect();
    let c = Cluster::start(1);
    let node = c.node(1);
    for (name, up) in ["a", "b", "exact", "suffix", "prefix", "default"]
        .iter()
        .zip(&ups)
    {
        node.put_key(&format!("/hermes/clusters/{name}"), &cluster(name, up));
    }
    node.put_key(
        "/hermes/domains/exact",
        &domain(
            "exact",
            &["exact.test.local"],
            vec![route("r", "/*", 0, "exact")],
        ),
    );
    node.put_key(
        "/hermes/domains/suffix",
        &domain(
            "suffix",
            &["*.example.com"],
            vec![route("r", "/*", 0, "suffix")],
        ),
    );
    node.put_key(
        "/hermes/domains/prefix",
        &domain("prefix", &["api.*"], vec![route("r", "/*", 0, "prefix")]),
    );
    node.put_key(
        "/hermes/domains/_default",
        &domain(
            "_default",
            &["_"],
            vec![
                route("health", "/v1/health", 100, "a"),
                route("v1", "/v1/*", 50, "b"),
                route("all", "/*", 1, "b"),
                json!({"name": "v2", "uri": "/api/*", "priority": 100, "clusters": [{"name": "a"}],
                       "headers": [{"name": "X-Version", "value": "v2", "match_type": "exact"}]}),
                json!({"name": "on", "uri": "/enabled/*", "status": 1, "clusters": [{"name": "a"}]}),
                json!({"name": "off", "uri": "/disabled/*", "status": 0, "clusters": [{"name": "a"}]}),
                json!({"name": "implicit", "uri": "/implicit/*", "clusters": [{"name": "a"}]}),
            ],
        ),
    );
    wait_status(node, "random.host.xyz", "/v1/health", 200);
    for (host, want) in [
        ("exact.test.local", "exact"),
        ("EXACT.test.local:8080", "exact"),
        ("sub.example.com", "suffix"),
        ("api.anything", "prefix"),
        ("random.host.xyz", "b"),
    ] {
        assert_eq!(node.proxy_get(host, "/x").upstream(), want, "{host}");
    }
    assert_eq!(node.proxy_get("h", "/v1/health").upstream(), "a");
    assert_eq!(node.proxy_get("h", "/v1/users").upstream(), "b");
    assert_eq!(node.proxy_get("h", "/other").upstream(), "b");
    let with = proxy_request(&node.proxy(), "GET", "h", "/api/x", &[("X-Version", "v2")]);
    assert_eq!(with.upstream(), "a");
    assert_eq!(
        node.proxy_get("h", "/api/x").upstream(),
        "b",
        "without the header: falls back"
    );
    assert_eq!(node.proxy_get("h", "/enabled/x").upstream(), "a");
    assert_eq!(
        node.proxy_get("h", "/disabled/x").upstream(),
        "b",
        "a disabled route is not served"
    );
    assert_eq!(
        node.proxy_get("h", "/implicit/x").upstream(),
        "a",
        "an omitted status means enabled"
    );
    // `/ready` counts every route, the disabled one too (contracts §7.15): 1 + 1 + 1 + 7.
    let (_, ready) = get(&format!("{}/ready", node.admin())).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        (&ready["domains"], &ready["total_routes"]),
        (&json!(4), &json!(10)),
        "{ready}"
    );
    // An HTTP/1.0 client without Host reaches the catch-all, and the upstream still gets a
    // Host (the node's), as HTTP/1.1 requires.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.proxy_port)).unwrap();
    s.write_all(b"GET /nohost HTTP/1.0\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    let seen: serde_json::Value = serde_json::from_str(body.trim()).unwrap_or_default();
    assert_eq!(
        seen["headers"]["host"],
        format!("127.0.0.1:{}", ups[1].port).as_str(),
        "{answer}"
    );
}

#[test]
fn hot_reload_add_delete_re_add_and_metrics() {
    let up = Upstream::start("hot");
    let c = Cluster::start(1);
    let node = c.node(1);
    assert_eq!(node.proxy_get("hot.test", "/").status, 404);
    node.put_key("/hermes/clusters/hot", &cluster("hot", &up));
    node.put_key(
        "/hermes/domains/hot",
        &domain("hot", &["hot.test"], vec![route("r", "/*", 0, "hot")]),
    );
    wait_status(node, "hot.test", "/", 200);
    node.delete_key("/hermes/domains/hot");
    wait_status(node, "hot.test", "/", 404);
    node.put_key(
        "/hermes/domains/hot",
        &domain("hot", &["hot.test"], vec![route("r", "/*", 0, "hot")]),
    );
    wait_status(node, "hot.test", "/", 200);
    // A domain whose cluster does not exist yet answers 503 until it arrives.
    node.put_key(
        "/hermes/domains/early",
        &domain("early", &["early.test"], vec![route("r", "/*", 0, "later")]),
    );
    wait_status(node, "early.test", "/", 503);
    node.put_key("/hermes/clusters/later", &cluster("later", &up));
    wait_status(node, "early.test", "/", 200);
    let (_, metrics) = get(&format!("{}/metrics", node.admin())).unwrap();
    for needle in [
        r#"gateway_http_requests_total{cluster="hot",domain="hot",method="GET",route="r",status_code="200""#,
        r#"gateway_http_requests_total{cluster="",domain="",method="GET",route="_no_route",status_code="404",upstream=""}"#,
        "gateway_http_request_duration_seconds_bucket",
        "gateway_config_reloads_total{result=\"success\",source=\"etcd\"}",
        "gateway_config_routes_total 2",
        "hermes_config_applied_revision",
        "gateway_connections_total{status=\"accepted\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

#[test]
fn a_malformed_cluster_leaves_the_previous_one_serving() {
    let first = Upstream::start("first");
    // A gateway whose control plane is elsewhere (never connected to: a gateway does not use
    // it): its store holds configuration as a controller wrote it, which is where a malformed
    // document can arrive. Where the control store is this store, the etcd endpoint refuses
    // one (etcd_config_writes.rs).
    let c = Cluster::start_with(
        1,
        &[
            "--roles",
            "gateway",
            "--control-store",
            "postgres://hermes@127.0.0.1:9/elsewhere",
        ],
    );
    let node = c.node(1);
    node.put_key("/hermes/clusters/api", &cluster("api", &first));
    node.put_key(
        "/hermes/domains/api",
        &domain("api", &["api.test"], vec![route("r", "/*", 0, "api")]),
    );
    wait_status(node, "api.test", "/", 200);
    for (refused, bad) in [
        "{not json".to_string(),
        json!({"name": "api", "timeout": {"read": -1}}).to_string(),
        json!({"name": "api", "nodes": [{"host": "127.0.0.1", "port": 70000}]}).to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        node.put_key("/hermes/clusters/api", &bad);
        // Once the gateway has counted this refusal, it has decided about the document.
        let counted = format!(
            "gateway_config_reloads_total{{result=\"error\",source=\"etcd\"}} {}",
            refused + 1
        );
        wait_for("the refusal counted", Duration::from_secs(10), || {
            let (_, metrics) = get(&format!("{}/metrics", node.admin())).ok()?;
            metrics.contains(&counted).then_some(())
        });
        assert_eq!(node.proxy_get("api.test", "/").upstream(), "first");
    }
    let (_, metrics) = get(&format!("{}/metrics", node.admin())).unwrap();
    assert!(
        metrics.contains("gateway_config_reloads_total{result=\"error\",source=\"etcd\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("hermes_config_invalid_resources 1"));
}

/// The access log's JSON lines (on stdout) with this path.
fn access_lines(node: &Node, path: &str) -> Vec<serde_json::Value> {
    node.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "access" && v["path"] == path)
        .collect()
}

#[test]
fn every_request_gets_one_access_log_line() {
    let up = Upstream::start("logged");
    let c = Cluster::start(1);
    let node = c.node(1);
    route_all(node, "web", "web.test.local", "logged", &up);
    // A route whose cluster does not exist: the gateway answers 503 itself.
    node.put_key(
        "/hermes/domains/orphan",
        &domain(
            "orphan",
            &["orphan.test.local"],
            vec![route("r", "/*", 0, "missing")],
        ),
    );
    wait_status(node, "web.test.local", "/warm", 200);
    wait_status(node, "orphan.test.local", "/warm", 503);
    for _ in 0..3 {
        assert_eq!(node.proxy_get("Web.Test.Local:80", "/logged").status, 200);
    }
    assert_eq!(node.proxy_get("nobody.test.local", "/unrouted").status, 404);
    assert_eq!(node.proxy_get("orphan.test.local", "/orphaned").status, 503);

    let served = wait_for("three access lines", Duration::from_secs(10), || {
        Some(access_lines(node, "/logged")).filter(|l| l.len() >= 3)
    });
    let line = &served[0];
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(
        line["host"], "Web.Test.Local:80",
        "as the client sent it: {line}"
    );
    assert_eq!(line["domain"], "web", "{line}");
    assert_eq!(line["route"], "all", "{line}");
    assert_eq!(line["cluster"], "logged", "{line}");
    assert_eq!(line["upstream"], format!("127.0.0.1:{}", up.port), "{line}");
    assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    assert!(line["upstream_ms"].as_f64().is_some(), "{line}");

    let unrouted = wait_for("the 404's line", Duration::from_secs(10), || {
        access_lines(node, "/unrouted").pop()
    });
    assert_eq!(unrouted["status"], 404, "{unrouted}");
    assert_eq!(unrouted["route"], "_no_route", "{unrouted}");
    // Who failed, by the gateway's one failure model (`proxy::failure`).
    assert_eq!(unrouted["failure"], "no_route", "{unrouted}");
    assert_eq!(unrouted["failed_by"], "client", "{unrouted}");
    assert!(
        line.get("failure").is_none(),
        "a served request names no failure: {line}"
    );
    let orphaned = wait_for("the 503's line", Duration::from_secs(10), || {
        access_lines(node, "/orphaned").pop()
    });
    assert_eq!(orphaned["status"], 503, "{orphaned}");
    assert_eq!(orphaned["domain"], "orphan", "{orphaned}");
    assert_eq!(orphaned["failure"], "no_cluster", "{orphaned}");
    assert_eq!(orphaned["failed_by"], "gateway", "{orphaned}");
    // Exactly once each: the access log is written in order by one writer, so once a later
    // request's line is there, any second line of the requests above would be too.
    assert_eq!(node.proxy_get("nobody.test.local", "/sentinel").status, 404);
    wait_for("the sentinel's line", Duration::from_secs(10), || {
        access_lines(node, "/sentinel").pop()
    });
    assert_eq!(access_lines(node, "/logged").len(), 3);
    assert_eq!(access_lines(node, "/unrouted").len(), 1);
    assert_eq!(access_lines(node, "/orphaned").len(), 1);
}
