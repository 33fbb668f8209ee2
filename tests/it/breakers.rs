//! Circuit breakers and passive health on a real node (contracts/hermes.md §7.8): a failing
//! node is taken out after its threshold and probed back, and only failures the failure model
//! blames on the node count (a client that gives up on its upload trips nothing).

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::upstream::Upstream;

fn two_node_cluster(node: &Node, a: &Upstream, b: &Upstream, protection: serde_json::Value) {
    let mut cluster = json!({"name": "c", "type": "roundrobin", "nodes": [
        {"host": "127.0.0.1", "port": a.port}, {"host": "127.0.0.1", "port": b.port}]});
    cluster
        .as_object_mut()
        .unwrap()
        .extend(protection.as_object().unwrap().clone());
    node.put_key("/hermes/clusters/c", &cluster.to_string());
    node.put_key(
        "/hermes/domains/d",
        &json!({"name": "d", "hosts": ["cb.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]})
        .to_string(),
    );
}

fn breaker_state(node: &Node, up: &Upstream) -> Option<f64> {
    node.metric(&format!(
        r#"gateway_circuit_breaker_state{{cluster="c",upstream="127.0.0.1:{}"}}"#,
        up.port
    ))
}

#[test]
fn a_failing_node_opens_its_breaker_and_is_probed_back() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let c = Cluster::start(1);
    let node = c.node(1);
    two_node_cluster(
        node,
        &a,
        &b,
        json!({"circuit_breaker": {"failure_threshold": 3, "success_threshold": 1,
                                   "open_duration_secs": 2}}),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("cb.test", "/").status == 200).then_some(())
    });

    phase(
        1,
        "a answers 500: three of them open its breaker, then b takes everything",
    );
    a.answer_with(500);
    let before = a.served();
    let answers: Vec<(u16, String)> = (0..20)
        .map(|_| {
            let r = node.proxy_get("cb.test", "/x");
            (r.status, r.upstream())
        })
        .collect();
    let from_a = answers.iter().filter(|(_, u)| u == "a").count();
    assert_eq!(from_a, 3, "{answers:?}");
    assert_eq!(a.served() - before, 3, "nothing more reached a");
    assert!(
        answers
            .iter()
            .filter(|(_, u)| u == "b")
            .all(|(s, _)| *s == 200),
        "{answers:?}"
    );
    assert_eq!(breaker_state(node, &a), Some(1.0), "open");

    phase(
        2,
        "a recovers: after the open duration one probe closes the breaker",
    );
    a.answer_with(0);
    wait_for("a to be tried again", Duration::from_secs(10), || {
        (node.proxy_get("cb.test", "/y").upstream() == "a").then_some(())
    });
    assert_eq!(breaker_state(node, &a), Some(0.0), "closed");

    phase(
        3,
        "both fail: both breakers open, and the gateway answers 503 itself",
    );
    a.answer_with(502);
    b.answer_with(502);
    for _ in 0..6 {
        node.proxy_get("cb.test", "/z");
    }
    let served = a.served() + b.served();
    let refused = node.proxy_get("cb.test", "/z");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.json(), json!({"error": "service unavailable"}));
    assert_eq!(a.served() + b.served(), served, "no node was asked");
    let rejected = node
        .metric(&format!(
            r#"gateway_circuit_breaker_rejected_total{{cluster="c",domain="d",route="all",upstream="127.0.0.1:{}"}}"#,
            a.port
        ))
        .unwrap_or(0.0);
    assert!(rejected >= 1.0, "{rejected}");
}

#[test]
fn uploads_the_client_abandons_trip_nothing() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let c = Cluster::start(1);
    let node = c.node(1);
    // The most sensitive settings: one failure opens a breaker, one ejects the node.
    two_node_cluster(
        node,
        &a,
        &b,
        json!({"circuit_breaker": {"failure_threshold": 1, "open_duration_secs": 60},
               "health_check": {"passive": {"consecutive_failures": 1, "ejection_secs": 60}}}),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("cb.test", "/").status == 200).then_some(())
    });
    for _ in 0..6 {
        // Ten bytes of a declared thousand, then the client goes away.
        let mut s =
            std::net::TcpStream::connect(node.proxy().trim_start_matches("http://")).unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: cb.test\r\nContent-Length: 1000\r\n\r\n0123456789",
        )
        .unwrap();
        drop(s);
    }
    // Wait until the gateway has seen every abandoned upload end (it counts them), then check
    // that both nodes still get traffic.
    wait_for("the six uploads to end", Duration::from_secs(10), || {
        let ended = node.log().matches(r#""failure":"body_broken_off""#).count();
        (ended >= 6).then_some(())
    });
    let seen: std::collections::BTreeSet<String> = (0..6)
        .map(|_| node.proxy_get("cb.test", "/").upstream())
        .collect();
    assert_eq!(seen.len(), 2, "both nodes still in rotation: {seen:?}");
    assert_ne!(breaker_state(node, &a), Some(1.0));
    assert_ne!(breaker_state(node, &b), Some(1.0));
}
