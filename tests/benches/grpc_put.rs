//! Put throughput and latency over etcd's gRPC API, with the `etcd-client` crate, the same
//! against etcd and Hermes (`bench/store.sh` runs it side by side with both):
//!
//!   cargo bench -p hermes-tests --bench grpc_put -- <host:port> <seconds> <in-flight> <clients> [one-key]
//!
//! `in-flight` requests are kept outstanding at all times, spread over `clients` clients
//! (each one HTTP/2 connection, as a Go or Rust etcd client keeps); every put writes a new key
//! with a 64-byte value, or with `one-key` the same key each time (a key with a long history,
//! as a counter or a heartbeat). Prints one line: `puts/s p50 p99 errors` (latencies in ms).

// A benchmark program: failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// It measures wall time.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    // `cargo bench` passes `--bench`; the figures' arguments are the rest.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let endpoint = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2379".into());
    let seconds: u64 = args.get(1).map_or(15, |s| s.parse().unwrap());
    let in_flight: usize = args.get(2).map_or(16, |s| s.parse().unwrap());
    let clients: usize = args.get(3).map_or(2, |s| s.parse().unwrap());
    let one_key = match args.get(4).map(String::as_str) {
        None => false,
        Some("one-key") => true,
        Some(other) => panic!("unknown argument {other:?}: expected one-key"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(
        endpoint,
        Duration::from_secs(seconds),
        in_flight,
        clients,
        one_key,
    ));
}

async fn run(
    endpoint: String,
    duration: Duration,
    in_flight: usize,
    clients: usize,
    one_key: bool,
) {
    let mut connected = Vec::new();
    for _ in 0..clients {
        connected.push(
            etcd_client::Client::connect([endpoint.clone()], None)
                .await
                .unwrap(),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let value = vec![b'v'; 64];
    let workers: Vec<_> = (0..in_flight)
        .map(|w| {
            let mut kv = connected[w % clients].kv_client();
            let (stop, errors, value) = (stop.clone(), errors.clone(), value.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = if one_key {
                        "/bench/one".to_string()
                    } else {
                        format!("/bench/{w}/{i}")
                    };
                    let started = Instant::now();
                    match kv.put(key, value.clone(), None).await {
                        Ok(_) => latencies.push(started.elapsed()),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len().saturating_sub(1)) as f64 * p).round() as usize;
        all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{:.0} {:.2}ms {:.2}ms {}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        errors.load(Ordering::Relaxed)
    );
}
