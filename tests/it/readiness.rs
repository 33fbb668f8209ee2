//! Readiness that fits a load balancer: with quorum lost a node keeps proxying, so the proxy's
//! readiness (`/readyz?scope=proxy`, and the original gateway's `/ready`) stays 200 while the
//! store's (`/readyz`) turns 503. And the original gateway's admin paths (§7.15).

use std::time::Duration;

use serde_json::json;

use crate::api_client::Api;
use crate::harness::*;
use crate::upstream::Upstream;

#[test]
fn with_quorum_lost_the_proxy_stays_ready_and_the_store_does_not() {
    let up = Upstream::start("u");
    let mut c = Cluster::start(3);
    let survivor = c.leader();
    let node = c.node(survivor);
    node.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    node.put_key(
        "/hermes/domains/d",
        &json!({"name": "d", "hosts": ["ready.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "u"}]}]})
        .to_string(),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("ready.test", "/").status == 200).then_some(())
    });
    let admin_url = c.node(survivor).admin();
    let status = |path: &str| get(&format!("{admin_url}{path}")).unwrap();
    assert_eq!(status("/readyz").0, 200);
    assert_eq!(status("/readyz?scope=proxy").0, 200);
    let (bad, body) = status("/readyz?scope=everything");
    assert_eq!(bad, 400, "{body}");
    assert!(body.contains("scope"), "{body}");

    phase(
        1,
        "two of three nodes die: the store is not ready, the proxy is",
    );
    for id in (1..=3).filter(|id| *id != survivor) {
        c.node_mut(id).kill9();
    }
    let (code, body) = wait_for("the store to turn unready", Duration::from_secs(20), || {
        Some(status("/readyz")).filter(|(code, _)| *code == 503)
    });
    assert!(
        body.contains("quorum") || body.contains("leader"),
        "{code} {body}"
    );
    for path in ["/readyz?scope=proxy", "/ready"] {
        let (code, body) = status(path);
        assert_eq!(code, 200, "{path}: {body}");
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "ready", "{path}");
        assert_eq!(body["total_routes"], 1, "{path}");
    }
    for _ in 0..20 {
        assert_eq!(c.node(survivor).proxy_get("ready.test", "/").status, 200);
    }
}

#[test]
fn the_original_gateway_s_admin_paths() {
    let up = Upstream::start("u");
    let c = Cluster::start(1);
    let node = c.node(1);
    let admin = Api::anonymous(&node.admin()).admin_credential();
    node.put_key(
        "/hermes/clusters/u",
        &json!({"name": "u", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    node.put_key(
        "/hermes/domains/d",
        &json!({"name": "d", "hosts": ["a.test", "b.test"], "routes": [
            {"name": "r", "uri": "/x", "priority": 3, "clusters": [{"name": "u", "weight": 7}],
             "headers": [{"name": "x-v", "value": "1"}]},
            {"name": "off", "uri": "/off", "status": 0, "clusters": [{"name": "u"}]}]})
        .to_string(),
    );
    // One entry per enabled route and host, as the original's compiled table.
    let (status, routes) = wait_for("the routes", Duration::from_secs(10), || {
        Some(admin.get("/routes")).filter(|(_, r)| r.as_array().is_some_and(|a| !a.is_empty()))
    });
    assert_eq!(status, 200, "{routes}");
    let one =
        json!({"name": "r", "uri": "/x", "priority": 3, "clusters": [{"name": "u", "weight": 7}]});
    assert_eq!(routes, json!([one.clone(), one]));
    let (status, domains) = admin.get("/domains");
    assert_eq!(status, 200, "{domains}");
    assert_eq!(domains[0]["hosts"], json!(["a.test", "b.test"]));
    assert_eq!(domains[0]["routes"].as_array().unwrap().len(), 2);
    assert_eq!(
        domains[0]["routes"][0]["headers"],
        json!([{"name": "x-v", "value": "1", "match_type": "exact", "invert": false}])
    );
    // Configuration is not for anonymous callers.
    for path in ["/routes", "/domains"] {
        let (status, _) = get(&format!("{}{path}", node.admin())).unwrap_or((0, String::new()));
        assert_eq!(status, 401, "{path}");
    }
    // An unknown admin path: 404 with the original's body.
    let (status, body) = get(&format!("{}/no/such/path", node.admin())).unwrap();
    assert_eq!((status, body.as_str()), (404, r#"{"error":"not found"}"#));
}
