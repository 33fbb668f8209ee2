//! Retries on a real node (contracts/hermes.md §7.10, with G9 fixed): a request answered with a
//! retryable status or refused a connection goes to another node, never the same one, and is
//! counted once; a POST is resent only when its route allows it, with its whole body.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;
use crate::upstream::Upstream;

fn post(node: &Node, path: &str, body: &str) -> (u16, Value) {
    let resp = agent()
        .post(&format!("{}{path}", node.proxy()))
        .set("Host", "retry.test")
        .send_string(body);
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {path}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn domain(retry_non_idempotent: bool) -> String {
    json!({"name": "d", "hosts": ["retry.test"], "routes": [{"name": "all", "uri": "/*",
        "clusters": [{"name": "c"}], "retry_non_idempotent": retry_non_idempotent}]})
    .to_string()
}

#[test]
fn retried_requests_avoid_the_failed_node_and_are_counted_once() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/c",
        &json!({"name": "c", "type": "roundrobin",
                "nodes": [{"host": "127.0.0.1", "port": a.port}, {"host": "127.0.0.1", "port": b.port}],
                "retry": {"count": 2, "retry_on_statuses": [503]}})
        .to_string(),
    );
    node.put_key("/hermes/domains/d", &domain(false));
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("retry.test", "/").status == 200).then_some(())
    });
    let counted = |status: u16, up: &Upstream| {
        node.metric(&format!(
            r#"gateway_http_requests_total{{cluster="c",domain="d",method="GET",route="all",status_code="{status}",upstream="127.0.0.1:{}"}}"#,
            up.port
        ))
        .unwrap_or(0.0)
    };
    let before = counted(200, &b);

    phase(
        1,
        "a answers 503: every GET is sent on to b, and counted once, as b's 200",
    );
    a.answer_with(503);
    for _ in 0..10 {
        let r = node.proxy_get("retry.test", "/x");
        assert_eq!(
            (r.status, r.upstream()),
            (200, "b".to_string()),
            "{}",
            r.body
        );
    }
    assert_eq!(counted(200, &b) - before, 10.0);
    assert_eq!(
        counted(503, &a),
        0.0,
        "the retried attempts are not requests"
    );
    let retries = node
        .metric(&format!(
            r#"gateway_upstream_retries_total{{cluster="c",domain="d",reason="status",route="all",upstream="127.0.0.1:{}"}}"#,
            a.port
        ))
        .unwrap_or(0.0);
    assert!(
        (4.0..=6.0).contains(&retries),
        "round robin gave a about half: {retries}"
    );
    assert_eq!(
        node.metric(r#"gateway_http_requests_in_flight{domain="d",route="all"}"#),
        Some(0.0),
        "the in-flight gauge came back to zero"
    );

    phase(2, "a POST is not resent: a's 503 reaches the client");
    let statuses: Vec<u16> = (0..6).map(|_| post(node, "/upload", "x").0).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");

    phase(3, "the route allows it: POSTs go to b, whole");
    node.put_key("/hermes/domains/d", &domain(true));
    let body = "y".repeat(5000);
    wait_for("POSTs resent", Duration::from_secs(10), || {
        (0..4)
            .all(|_| {
                post(node, "/upload", &body) == (200, json!({"received": 5000, "length": "5000"}))
            })
            .then_some(())
    });

    phase(
        4,
        "not allowed again, a refuses connections: POSTs are still resent (nothing was sent)",
    );
    node.put_key("/hermes/domains/d", &domain(false));
    wait_for("POSTs no longer resent", Duration::from_secs(10), || {
        (post(node, "/upload", "z").0 == 503).then_some(())
    });
    let a_port = a.port;
    drop(a);
    let statuses: Vec<(u16, Value)> = (0..6).map(|_| post(node, "/upload", "z")).collect();
    assert!(statuses.iter().all(|(s, _)| *s == 200), "{statuses:?}");
    let refused = node
        .metric(&format!(
            r#"gateway_upstream_retries_total{{cluster="c",domain="d",reason="connect_error",route="all",upstream="127.0.0.1:{a_port}"}}"#
        ))
        .unwrap_or(0.0);
    assert!(refused >= 1.0, "{refused}");
}
