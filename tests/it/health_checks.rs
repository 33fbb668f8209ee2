//! Active health checks on a real node (contracts/hermes.md §7.7, with both thresholds counted
//! as consecutive results): a node that fails its probes leaves rotation and comes back after
//! recovering, and when every node fails its probes the cluster is served anyway (fail open).

use std::time::Duration;

use serde_json::json;

use crate::api_client::Api;
use crate::harness::*;
use crate::upstream::Upstream;

fn health(node: &Node, up: &Upstream) -> Option<f64> {
    node.metric(&format!(
        r#"gateway_upstream_health_status{{cluster="c",upstream="127.0.0.1:{}"}}"#,
        up.port
    ))
}

fn cluster(a: &Upstream, b: &Upstream, active: serde_json::Value) -> String {
    json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": a.port},
                                   {"host": "127.0.0.1", "port": b.port}],
           "health_check": {"active": active}})
    .to_string()
}

/// Which upstreams answered `n` requests.
fn answered_by(node: &Node, n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .map(|_| node.proxy_get("hc.test", "/").upstream())
        .collect()
}

#[test]
fn unhealthy_nodes_leave_rotation_come_back_and_all_unhealthy_fails_open() {
    let (a, b) = (Upstream::start("a"), Upstream::start("b"));
    let c = Cluster::start(1);
    let node = c.node(1);
    let admin = Api::anonymous(&node.admin()).admin_credential();
    let active = json!({"interval": 1, "path": "/health", "timeout": 1,
                        "healthy_threshold": 2, "unhealthy_threshold": 2});
    node.put_key("/hermes/clusters/c", &cluster(&a, &b, active.clone()));
    node.put_key(
        "/hermes/domains/d",
        &json!({"name": "d", "hosts": ["hc.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]})
        .to_string(),
    );
    wait_for("both nodes in rotation", Duration::from_secs(10), || {
        (answered_by(node, 4).len() == 2).then_some(())
    });

    phase(1, "a fails its probes: out of rotation after two of them");
    a.answer_with(503);
    wait_for("a unhealthy", Duration::from_secs(10), || {
        (health(node, &a) == Some(0.0)).then_some(())
    });
    assert_eq!(
        answered_by(node, 10),
        ["b".to_string()].into_iter().collect()
    );
    let (status, view) = admin.get("/api/v1/gateway/upstreams");
    assert_eq!(status, 200, "{view}");
    let nodes = &view["clusters"][0]["nodes"];
    let a_view = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["upstream"] == format!("127.0.0.1:{}", a.port))
        .unwrap();
    assert_eq!(a_view["active_check"], "unhealthy", "{view}");
    assert_eq!(a_view["healthy"], false, "{view}");
    assert!(
        node.metric(&format!(
            r#"gateway_health_check_total{{cluster="c",result="failure",upstream="127.0.0.1:{}"}}"#,
            a.port
        ))
        .unwrap_or(0.0)
            >= 2.0
    );

    phase(2, "a recovers: back after two good probes");
    a.answer_with(0);
    wait_for("a healthy", Duration::from_secs(10), || {
        (health(node, &a) == Some(1.0)).then_some(())
    });
    assert_eq!(answered_by(node, 4).len(), 2);

    phase(
        3,
        "every probe fails (a port nobody listens on): traffic still flows",
    );
    let closed = free_port();
    let mut probing_nowhere = active.clone();
    probing_nowhere["port"] = json!(closed);
    node.put_key("/hermes/clusters/c", &cluster(&a, &b, probing_nowhere));
    wait_for("both unhealthy", Duration::from_secs(10), || {
        (health(node, &a) == Some(0.0) && health(node, &b) == Some(0.0)).then_some(())
    });
    for _ in 0..4 {
        let answer = node.proxy_get("hc.test", "/");
        assert_eq!(answer.status, 200, "fail open: {}", answer.body);
    }
    assert!(
        node.metric(r#"gateway_upstream_fail_open_total{cluster="c"}"#)
            .unwrap_or(0.0)
            >= 4.0
    );
    assert!(node.log().contains("fail open"));
}
