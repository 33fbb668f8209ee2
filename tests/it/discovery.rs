//! Consul discovery on a real node (contracts/hermes.md §7.17), against the project's Consul
//! stand-in (`support::consul`): nodes come and go within one blocking query, the cluster's
//! metadata filter and Consul's health apply, the ACL token is sent, an outage keeps the last
//! good nodes; and a node without a Consul agent refuses such clusters.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use crate::api_client::Api;
use crate::harness::*;
use crate::support::consul::FakeConsul;
use crate::upstream::Upstream;

fn answered_by(node: &Node, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| node.proxy_get("disc.test", "/").upstream())
        .collect()
}

fn only(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Waits until the proxy's answers come from exactly `names`.
fn wait_answers(node: &Node, names: &[&str]) {
    let want = only(names);
    wait_for(
        &format!("answers from {want:?}"),
        Duration::from_secs(10),
        || (answered_by(node, 8) == want).then_some(()),
    );
}

#[test]
fn consul_nodes_come_and_go_and_an_outage_keeps_the_last_good_list() {
    let consul = FakeConsul::start();
    consul.require_token("s3cret-token");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (a, b, x) = (
        Upstream::start("a"),
        Upstream::start("b"),
        Upstream::start("x"),
    );
    let c = Cluster::start_with(
        1,
        &[
            "--consul-address",
            &consul.address(),
            "--consul-token-file",
            token.to_str().unwrap(),
        ],
    );
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/c",
        &json!({"name": "c", "discovery_type": "consul", "service_name": "web",
                "discovery_args": {"metadata_match": {"zone": ["a", "b"]}}, "nodes": null})
        .to_string(),
    );
    node.put_key(
        "/hermes/domains/d",
        &json!({"name": "d", "hosts": ["disc.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]})
        .to_string(),
    );

    phase(1, "a registers: the cluster sends to it");
    consul.register("web", "a", a.port, json!({"zone": "a"}), true);
    wait_answers(node, &["a"]);

    phase(2, "b joins, x joins outside the filter: a and b, never x");
    consul.register(
        "web",
        "b",
        b.port,
        json!({"zone": "b", "weight": "3"}),
        true,
    );
    consul.register("web", "x", x.port, json!({"zone": "elsewhere"}), true);
    wait_answers(node, &["a", "b"]);
    // The watcher asks with the index of its last answer: blocking queries, not polls.
    assert!(
        consul.asked().iter().any(|i| *i > 1),
        "{:?}",
        consul.asked()
    );

    phase(3, "b's check fails: it leaves");
    consul.register("web", "b", b.port, json!({"zone": "b"}), false);
    wait_answers(node, &["a"]);

    phase(4, "Consul fails: the last good nodes keep serving");
    consul.set_down(true);
    wait_for("a failed query", Duration::from_secs(10), || {
        node.metric(r#"gateway_consul_poll_total{result="error",service_name="web"}"#)
            .filter(|n| *n >= 1.0)
    });
    assert_eq!(answered_by(node, 8), only(&["a"]));

    phase(5, "Consul is back, a leaves and b passes again");
    consul.set_down(false);
    consul.deregister("web", "a");
    consul.register("web", "b", b.port, json!({"zone": "b"}), true);
    wait_answers(node, &["b"]);
    assert_eq!(
        node.metric(r#"gateway_consul_discovered_nodes{cluster="c"}"#),
        Some(1.0)
    );
}

#[test]
fn without_a_consul_agent_discovered_clusters_are_refused() {
    let c = Cluster::start(1);
    let admin = Api::anonymous(&c.node(1).admin()).admin_credential();
    let (status, body) = admin.post(
        "/api/v1/clusters",
        &json!({"name": "c", "type": "roundrobin", "discovery_type": "consul", "service_name": "web"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("discovery_type"), "{body}");
    assert!(body.to_string().contains("--consul-address"), "{body}");
}

#[test]
fn the_proxy_registers_itself_passes_its_check_and_leaves_at_shutdown() {
    let consul = FakeConsul::start();
    let mut c = Cluster::start_with(
        1,
        &[
            "--consul-address",
            &consul.address(),
            "--consul-service",
            "hermes-gw",
        ],
    );
    let port = c.node(1).proxy_port;
    let id = format!("hermes-gw:127.0.0.1:{port}");
    phase(
        1,
        "registered with the proxy's address and a TTL check, which it passes",
    );
    let (definition, _) = wait_for("the registration", Duration::from_secs(10), || {
        consul.agent_services().get(&id).cloned()
    });
    assert_eq!(definition["Name"], "hermes-gw");
    assert_eq!(definition["Port"], port);
    assert_eq!(definition["Check"]["TTL"], "15s");
    assert_eq!(definition["Check"]["CheckID"], id.as_str());
    wait_for("a check pass", Duration::from_secs(10), || {
        consul
            .agent_services()
            .get(&id)
            .filter(|(_, passes)| *passes >= 1)
            .map(|_| ())
    });

    phase(
        2,
        "the agent forgets it (a restart): the next pass fails, and it registers again",
    );
    consul.forget_agent_services();
    wait_for("registered again", Duration::from_secs(20), || {
        consul.agent_services().get(&id).map(|_| ())
    });

    phase(3, "stopped: deregistered");
    assert!(c.node_mut(1).terminate().success());
    assert!(
        consul.agent_services().is_empty(),
        "{:?}",
        consul.agent_services()
    );
}
