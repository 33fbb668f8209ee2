//! Gateway figures that need real processes (release build: `cargo build --release -p
//! hermes-node` first; `bench/gateway.sh` does both):
//!
//! - propagation: on a three-node cluster, time from a configuration write acknowledged by
//!   node 1 to node 3's proxy serving the new route, over 150 writes (p50, p99, max);
//! - memory: resident size of a node before and after loading 10 005 routes.

// A benchmark program: failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// It measures wall time.
#![allow(clippy::disallowed_types)]

#[path = "../it/support/background.rs"]
mod background;
#[allow(dead_code)]
#[path = "../it/support/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "../it/support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use serde_json::json;

use harness::*;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn propagation() {
    let up = upstream::Upstream::start("prop");
    let c = Cluster::start(3);
    let (writer, reader) = (c.node(1), c.node(3));
    writer.put_key(
        "/hermes/clusters/prop",
        &json!({"name": "prop", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    let mut samples = Vec::new();
    for i in 0..160 {
        let doc = json!({"name": "prop", "hosts": ["prop.test"],
                         "routes": [{"name": "r", "uri": format!("/p{i}"), "clusters": [{"name": "prop"}]}]});
        writer.put_key("/hermes/domains/prop", &doc.to_string());
        let acked = Instant::now();
        loop {
            if reader.proxy_get("prop.test", &format!("/p{i}")).status == 200 {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_secs(10),
                "route {i} never reached node 3"
            );
        }
        // The first writes warm connections and caches.
        if i >= 10 {
            samples.push(acked.elapsed());
        }
    }
    samples.sort();
    println!(
        "propagation (write acked by node 1 → served by node 3's proxy, {} writes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        percentile(&samples, 0.50).as_secs_f64() * 1000.0,
        percentile(&samples, 0.99).as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );
}

fn memory() {
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/c",
        &json!({"name": "c", "nodes": [{"host": "127.0.0.1", "port": 9}]}).to_string(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let before = node.rss_kib();
    let started = Instant::now();
    for i in 0..1238 {
        let routes: Vec<serde_json::Value> = [
            "/v1/health",
            "/v1/users/*",
            "/v1/orders/*",
            "/v1/carts/*",
            "/static/*",
            "/api/v1/*",
            "/api/v1/status",
            "/*",
        ]
        .iter()
        .enumerate()
        .map(|(j, uri)| json!({"name": format!("r{j}"), "uri": uri, "priority": j, "clusters": [{"name": "c"}]}))
        .collect();
        let doc = json!({"name": format!("d{i}"), "hosts": [format!("svc{i}.example.com")], "routes": routes});
        node.put_key(&format!("/hermes/domains/d{i}"), &doc.to_string());
    }
    for i in 0..101 {
        let host = if i == 100 {
            "_".to_string()
        } else {
            format!("*.zone{i}.example.net")
        };
        let doc = json!({"name": format!("w{i}"), "hosts": [host], "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]});
        node.put_key(&format!("/hermes/domains/w{i}"), &doc.to_string());
    }
    wait_for("10 005 routes", Duration::from_secs(120), || {
        let (_, metrics) = get(&format!("{}/metrics", node.admin())).ok()?;
        metrics
            .contains("gateway_config_routes_total 10005")
            .then_some(())
    });
    let loaded = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = node.rss_kib();
    println!(
        "memory: node RSS {:.1} MiB with no routes, {:.1} MiB with 10 005 routes (1 339 domains written one by one in {:.1} s)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        loaded.as_secs_f64()
    );
}

fn main() {
    propagation();
    memory();
}
