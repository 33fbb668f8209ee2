//! Every listener is bounded: thousands of clients that send half a request and then nothing
//! leave the node serving writes and proxy traffic, are dropped after the head timeout, and a
//! body declared over the limit is refused before it is read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;
use crate::upstream::Upstream;

/// Stalled clients per listener.
const STALLED: usize = 2000;

/// Raises this process's descriptor limit to the hard one (the test holds thousands).
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let l = getrlimit(Resource::Nofile);
    if let Some(hard) = l.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// `n` connections to `port`, each with the start of a request head and nothing more.
fn stall(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("connection {i} to {port}: {e}"));
            s.write_all(b"POST /v3/kv/put HTTP/1.1\r\nHost: stalled\r\nContent-")
                .unwrap();
            s
        })
        .collect()
}

#[test]
fn stalled_clients_on_every_listener_leave_the_node_serving() {
    let limit = raise_fd_limit();
    assert!(
        limit >= 4 * STALLED as u64 + 1000,
        "this test holds {} connections; the descriptor limit is {limit}",
        4 * STALLED
    );
    let up = Upstream::start("steady");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/steady",
        &json!({"name": "steady", "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100}]})
            .to_string(),
    );
    node.put_key(
        "/hermes/domains/steady",
        &json!({"name": "steady", "hosts": ["steady.test"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "steady", "weight": 100}]}]})
        .to_string(),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("steady.test", "/").status == 200).then_some(())
    });

    let started = Instant::now();
    let mut held = Vec::new();
    for port in [
        node.proxy_port,
        node.admin_port,
        node.etcd_port,
        node.peer_port,
    ] {
        held.push((port, stall(port, STALLED)));
    }
    // With every listener full of stalled clients, writes and proxy traffic still go through.
    for i in 0..20 {
        let (s, b) = node.put(&format!("/during/{i}"), "v").unwrap();
        assert_eq!(s, 200, "write {i}: {b}");
        assert_eq!(node.proxy_get("steady.test", "/x").status, 200, "proxy {i}");
    }
    assert_eq!(node.readyz().map(|(s, _)| s), Some(200));
    // Every stalled client is dropped once the head timeout passes.
    for (port, conns) in &mut held {
        for s in conns.iter_mut() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut buf = [0u8; 512];
            let closed = loop {
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    // A 408 or 400 answer before the close is fine too.
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                    Err(_) => break false,
                }
            };
            assert!(closed, "a stalled client of port {port} was never dropped");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "dropping the stalled clients took {:?}",
        started.elapsed()
    );
    drop(held);
    assert_eq!(node.proxy_get("steady.test", "/after").status, 200);

    // A body declared over the limit is refused before it is sent.
    for (port, path) in [
        (node.admin_port, "/api/v1/domains"),
        (node.etcd_port, "/v3/kv/put"),
        (node.peer_port, "/peer/write"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            1u64 << 30
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 413") || answer.starts_with("HTTP/1.1 400"),
            "port {port} {path}: {answer}"
        );
    }
}
