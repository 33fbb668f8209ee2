//! Route matching with 10 005 routes: 1 238 exact hosts × 8 routes, 100 wildcard domains and a
//! default domain, looked up with a realistic mix of hits and misses. Prints ns per lookup.
//!
//!     cargo bench -p hermes-gateway --bench routing

// A benchmark program: a broken fixture should stop it loudly.
#![allow(clippy::expect_used)]
// It measures wall time.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use http::{HeaderMap, Method};
use serde_json::json;

use hermes_gateway::config::types::DomainConfig;
use hermes_gateway::routing::host::normalize;
use hermes_gateway::routing::table::RouteTable;

fn domains() -> Vec<std::sync::Arc<DomainConfig>> {
    let mut out = Vec::new();
    let routes = |prefix: &str| -> serde_json::Value {
        json!([
            {"name": "health", "uri": format!("/{prefix}/health"), "priority": 10, "clusters": [{"name": "c"}]},
            {"name": "users", "uri": format!("/{prefix}/users/*"), "clusters": [{"name": "c"}]},
            {"name": "orders", "uri": format!("/{prefix}/orders/*"), "methods": ["GET", "POST"], "clusters": [{"name": "c"}]},
            {"name": "canary", "uri": format!("/{prefix}/users/*"), "priority": 5, "clusters": [{"name": "c"}],
             "headers": [{"name": "x-canary", "value": "1"}]},
            {"name": "static", "uri": "/static/*", "clusters": [{"name": "c"}]},
            {"name": "api", "uri": "/api/v1/*", "clusters": [{"name": "c"}]},
            {"name": "exact", "uri": "/api/v1/status", "clusters": [{"name": "c"}]},
            {"name": "all", "uri": "/*", "clusters": [{"name": "c"}]},
        ])
    };
    for i in 0..1238 {
        out.push(json!({"name": format!("d{i}"), "hosts": [format!("svc{i}.example.com")], "routes": routes("v1")}));
    }
    for i in 0..100 {
        out.push(
            json!({"name": format!("w{i}"), "hosts": [format!("*.zone{i}.example.net")],
                        "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]}),
        );
    }
    out.push(json!({"name": "_default", "hosts": ["_"], "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "c"}]}]}));
    out.into_iter()
        .map(|d| serde_json::from_value(d).expect("domain"))
        .collect()
}

fn main() {
    let domains = domains();
    let started = Instant::now();
    let table = RouteTable::build(&domains);
    let build = started.elapsed();
    let routes = table.routes().len();
    let requests: Vec<(String, String)> = (0..4096)
        .map(|i| {
            let host = match i % 4 {
                0 | 1 => format!("svc{}.example.com", (i * 7919) % 1000),
                2 => format!("api.zone{}.example.net", i % 100),
                _ => format!("unknown{i}.example.org"),
            };
            let path = match i % 5 {
                0 => "/v1/health".to_string(),
                1 => format!("/v1/users/{i}/profile"),
                2 => "/api/v1/status".to_string(),
                3 => format!("/static/js/app{i}.js"),
                _ => "/some/other/page".to_string(),
            };
            (host, path)
        })
        .collect();
    let headers = HeaderMap::new();
    let rounds = 200;
    let started = Instant::now();
    let mut found = 0usize;
    for _ in 0..rounds {
        for (host, path) in &requests {
            let h = normalize(host);
            if black_box(table.find(&h, path, &Method::GET, &headers)).is_some() {
                found += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let lookups = rounds * requests.len();
    println!(
        "routing: {routes} routes, table built in {:.1} ms; {lookups} lookups ({found} matched) at {:.0} ns per lookup (host normalization included)",
        build.as_secs_f64() * 1000.0,
        elapsed.as_nanos() as f64 / lookups as f64
    );
}
