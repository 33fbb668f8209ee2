//! How long a change takes from the API's answer to its key in etcd, through the controller
//! role (`bench/compat.sh` starts PostgreSQL, etcd and the nodes, then runs this):
//!
//!   cargo bench -p hermes-tests --bench compat_sync -- <api-url> <etcd host:port> <keys>
//!
//! For each of `keys` domains, one after the other: create, update, roll back, delete, each
//! through the REST API (anonymous first-time setup, on loopback); the time from the API's
//! answer to the matching event of a watch on etcd's `/hermes/domains/` is one sample. Then a
//! bulk replace of `keys` domains, one sample per key. Prints `op samples p50 p90 p99 max` (ms)
//! per operation and for all.

// A benchmark program: failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// It measures wall time.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchOptions};
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Every change of each key in etcd, in order: when, and how (a put's value, or `None` for a
/// delete).
type Seen = Arc<Mutex<HashMap<String, Vec<(Instant, Option<Value>)>>>>;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let api = args
        .first()
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:9080".into());
    let etcd = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let keys: usize = args.get(2).map_or(100, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(api, etcd, keys));
}

fn domain(name: &str, host: &str) -> Value {
    json!({"name": name, "hosts": [host],
           "routes": [{"name": "all", "uri": "/*", "clusters": [{"name": "be"}]}]})
}

/// One API call on a blocking thread; its answer's time.
async fn call(api: &str, method: &'static str, path: String, body: Option<Value>) -> Instant {
    let url = format!("{api}{path}");
    tokio::task::spawn_blocking(move || {
        let req = ureq::request(method, &url);
        let resp = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let at = Instant::now();
        match resp {
            Ok(_) => at,
            Err(e) => panic!("{method} {url}: {e}"),
        }
    })
    .await
    .unwrap()
}

/// Waits for the first change of `key` after the `*cursor`-th that `done` accepts, moves the
/// cursor past it, and answers its milliseconds from `answered` (0 if it came first).
async fn sample(
    seen: &Seen,
    changed: &Notify,
    key: &str,
    cursor: &mut usize,
    answered: Instant,
    done: impl Fn(&Option<Value>) -> bool,
) -> f64 {
    let deadline = answered + Duration::from_secs(10);
    loop {
        let notified = changed.notified();
        if let Some(events) = seen.lock().unwrap().get(key) {
            if let Some((i, (at, _))) = events
                .iter()
                .enumerate()
                .skip(*cursor)
                .find(|(_, (_, v))| done(v))
            {
                *cursor = i + 1;
                return at.saturating_duration_since(answered).as_secs_f64() * 1000.0;
            }
        }
        assert!(Instant::now() < deadline, "{key}: not in etcd within 10 s");
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

fn report(op: &str, samples: &mut [f64]) {
    samples.sort_by(f64::total_cmp);
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{op:<10} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
}

async fn run(api: String, etcd: String, keys: usize) {
    let seen: Seen = Arc::default();
    let changed = Arc::new(Notify::new());
    let mut client = etcd_client::Client::connect([etcd], None).await.unwrap();
    let mut stream = client
        .watch("/hermes/domains/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    {
        let (seen, changed) = (seen.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                for e in resp.events() {
                    let Some(kv) = e.kv() else { continue };
                    let value = match e.event_type() {
                        EventType::Put => serde_json::from_slice(kv.value()).ok(),
                        EventType::Delete => None,
                    };
                    seen.lock()
                        .unwrap()
                        .entry(kv.key_str().unwrap().to_string())
                        .or_default()
                        .push((now, value));
                }
                changed.notify_waiters();
            }
        });
    }
    call(
        &api,
        "POST",
        "/api/v1/clusters".into(),
        Some(json!({"name": "be", "nodes": [{"host": "127.0.0.1", "port": 9}]})),
    )
    .await;
    let host_is =
        |h: &'static str| move |v: &Option<Value>| v.as_ref().is_some_and(|v| v["hosts"][0] == h);
    let mut by_op: Vec<(&str, Vec<f64>)> = ["create", "update", "rollback", "delete", "import"]
        .into_iter()
        .map(|op| (op, Vec::new()))
        .collect();
    for i in 0..keys {
        let name = format!("b{i}");
        let key = format!("/hermes/domains/{name}");
        let mut cursor = 0;
        let t = call(
            &api,
            "POST",
            "/api/v1/domains".into(),
            Some(domain(&name, "one.test")),
        )
        .await;
        by_op[0]
            .1
            .push(sample(&seen, &changed, &key, &mut cursor, t, host_is("one.test")).await);
        let mut update = domain(&name, "two.test");
        update["resource_version"] = json!(1);
        let t = call(&api, "PUT", format!("/api/v1/domains/{name}"), Some(update)).await;
        by_op[1]
            .1
            .push(sample(&seen, &changed, &key, &mut cursor, t, host_is("two.test")).await);
        let t = call(
            &api,
            "POST",
            format!("/api/v1/domains/{name}/rollback/1"),
            Some(json!({})),
        )
        .await;
        by_op[2]
            .1
            .push(sample(&seen, &changed, &key, &mut cursor, t, host_is("one.test")).await);
        let t = call(&api, "DELETE", format!("/api/v1/domains/{name}"), None).await;
        by_op[3]
            .1
            .push(sample(&seen, &changed, &key, &mut cursor, t, Option::is_none).await);
    }
    // A bulk replace: every key of it is a sample.
    let domains: Vec<Value> = (0..keys)
        .map(|i| domain(&format!("bulk{i}"), "bulk.test"))
        .collect();
    let t = call(
        &api,
        "PUT",
        "/api/v1/config".into(),
        Some(json!({"domains": domains, "clusters": [{"name": "be", "nodes": [{"host": "127.0.0.1", "port": 9}]}]})),
    )
    .await;
    for i in 0..keys {
        let key = format!("/hermes/domains/bulk{i}");
        by_op[4]
            .1
            .push(sample(&seen, &changed, &key, &mut 0, t, host_is("bulk.test")).await);
    }
    println!(
        "{:<10} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "op", "samples", "p50", "p90", "p99", "max"
    );
    let mut all = Vec::new();
    for (op, samples) in &mut by_op {
        all.extend_from_slice(samples);
        report(op, samples);
    }
    report("all", &mut all);
}
