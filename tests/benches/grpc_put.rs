//! Put throughput and latency over etcd's gRPC API, with the `etcd-client` crate, the same
//! against etcd and Hermes (`bench/store.sh` runs it side by side with both):
//!
//!   cargo bench -p hermes-tests --bench grpc_put -- <host:port> <seconds> <in-flight> <clients> [one-key] [shared]
//!
//! `in-flight` requests are kept outstanding at all times, spread over `clients` clients
//! (each one HTTP/2 connection, as a Go or Rust etcd client keeps); every put writes a new key
//! with a 64-byte value, or with `one-key` the same key each time (a key with a long history,
//! as a counter or a heartbeat). Prints one line: `puts/s p50 p99 errors` (latencies in ms).
//!
//! Each client runs on a thread of its own with a single-threaded runtime, as `wrk` runs one
//! event loop per thread over its own connections: the load generator shares the machine's
//! cores with the server it measures, and a request should not pay the client's hand-offs
//! between threads on top of the server's time. `shared` runs every client on one runtime
//! with two worker threads instead (how this program ran before 2026-12-06); both servers
//! then lose about the same fixed time per request to the client (`BENCHMARKS.md`).

// A benchmark program: failures should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// It measures wall time.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Load {
    endpoint: String,
    /// Requests outstanding per client.
    per_client: Vec<usize>,
    one_key: bool,
    stop: AtomicBool,
    errors: AtomicU64,
}

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
    assert!(
        clients >= 1 && in_flight >= clients,
        "need at least one client and one request in flight per client"
    );
    let (mut one_key, mut shared) = (false, false);
    for option in args.iter().skip(4) {
        match option.as_str() {
            "one-key" => one_key = true,
            "shared" => shared = true,
            other => panic!("unknown argument {other:?}: expected one-key or shared"),
        }
    }
    let load = Arc::new(Load {
        endpoint,
        // Spread as evenly as they go: the first in_flight % clients clients get one more.
        per_client: (0..clients)
            .map(|c| in_flight / clients + usize::from(c < in_flight % clients))
            .collect(),
        one_key,
        stop: AtomicBool::new(false),
        errors: AtomicU64::new(0),
    });
    let duration = Duration::from_secs(seconds);
    let (mut all, elapsed) = if shared {
        run_shared(&load, duration)
    } else {
        run_threads(&load, duration)
    };
    all.sort();
    let pct = |p: f64| {
        let i = ((all.len().saturating_sub(1)) as f64 * p).round() as usize;
        all.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{:.0} {:.2}ms {:.2}ms {}",
        all.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        load.errors.load(Ordering::Relaxed)
    );
}

/// One thread and one single-threaded runtime per client; every client connects before any
/// starts loading.
fn run_threads(load: &Arc<Load>, duration: Duration) -> (Vec<Duration>, Duration) {
    let clients = load.per_client.len();
    let ready = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (load, ready) = (load.clone(), ready.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    // A client that cannot connect stops the program: the others and the
                    // main thread would otherwise wait at the barrier for it forever.
                    let client =
                        match etcd_client::Client::connect([load.endpoint.clone()], None).await {
                            Ok(c) => c,
                            Err(e) => {
                                eprintln!("connecting to {}: {e}", load.endpoint);
                                std::process::exit(1);
                            }
                        };
                    ready.wait();
                    let workers = spawn_workers(&load, &client, c, load.per_client[c]);
                    collect(workers).await
                })
            })
        })
        .collect();
    ready.wait();
    let started = Instant::now();
    std::thread::sleep(duration);
    load.stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().unwrap());
    }
    (all, started.elapsed())
}

/// Every client on one runtime with two worker threads.
fn run_shared(load: &Arc<Load>, duration: Duration) -> (Vec<Duration>, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut connected = Vec::new();
        for _ in &load.per_client {
            connected.push(connect(load).await);
        }
        let workers: Vec<_> = connected
            .iter()
            .enumerate()
            .flat_map(|(c, client)| spawn_workers(load, client, c, load.per_client[c]))
            .collect();
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        load.stop.store(true, Ordering::Relaxed);
        let all = collect(workers).await;
        (all, started.elapsed())
    })
}

async fn connect(load: &Load) -> etcd_client::Client {
    etcd_client::Client::connect([load.endpoint.clone()], None)
        .await
        .unwrap()
}

/// Starts `count` workers on `client`, each keeping one put outstanding until the load
/// stops; each returns its latencies. Keys are unique across clients.
fn spawn_workers(
    load: &Arc<Load>,
    client: &etcd_client::Client,
    c: usize,
    count: usize,
) -> Vec<tokio::task::JoinHandle<Vec<Duration>>> {
    let value = vec![b'v'; 64];
    (0..count)
        .map(|w| {
            let mut kv = client.kv_client();
            let (load, value) = (load.clone(), value.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while !load.stop.load(Ordering::Relaxed) {
                    let key = if load.one_key {
                        "/bench/one".to_string()
                    } else {
                        format!("/bench/{c}/{w}/{i}")
                    };
                    let started = Instant::now();
                    match kv.put(key, value.clone(), None).await {
                        Ok(_) => latencies.push(started.elapsed()),
                        Err(_) => {
                            load.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    i += 1;
                }
                latencies
            })
        })
        .collect()
}

async fn collect(workers: Vec<tokio::task::JoinHandle<Vec<Duration>>>) -> Vec<Duration> {
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all
}
