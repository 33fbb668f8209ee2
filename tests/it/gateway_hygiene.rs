//! Requests the proxy must refuse or clean up before they reach an upstream (RFC 9112 §3.2,
//! request smuggling): two Hosts, an HTTP/1.1 request without one, an h2c upgrade, and a
//! malformed chunked body, which is the client's fault (400) and not the node's.

use std::time::Duration;

use serde_json::json;

use crate::harness::*;
use crate::support::raw_http::{Answer, Client};
use crate::upstream::Upstream;

/// Sends `raw` on a fresh connection and reads the one answer.
fn raw(port: u16, raw: &[u8]) -> Answer {
    let mut client = Client::to_port(port);
    client.send(raw);
    client.read(false)
}

#[test]
fn malformed_and_smuggling_requests_are_refused_or_cleaned() {
    let up = Upstream::start("clean");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/clean",
        &json!({"name": "clean", "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100}]})
            .to_string(),
    );
    node.put_key(
        "/hermes/domains/clean",
        &json!({"name": "clean", "hosts": ["clean.test", "_"], "routes": [
            {"name": "all", "uri": "/*", "clusters": [{"name": "clean", "weight": 100}]}]})
        .to_string(),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("clean.test", "/").status == 200).then_some(())
    });
    let port = node.proxy_port;

    let two_hosts = raw(
        port,
        b"GET /a HTTP/1.1\r\nHost: clean.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        two_hosts.status_line, "HTTP/1.1 400 Bad Request",
        "{two_hosts:?}"
    );
    let no_host = raw(port, b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(no_host.status, 400, "{no_host:?}");
    // HTTP/1.0 needs no Host: the default domain answers.
    let old = raw(port, b"GET /a HTTP/1.0\r\n\r\n");
    assert!(old.status_line.starts_with("HTTP/1.0 200"), "{old:?}");

    // An h2c upgrade goes on as a plain request, without its upgrade headers.
    let h2c = raw(
        port,
        b"GET /u HTTP/1.1\r\nHost: clean.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!(h2c.status, 200, "{h2c:?}");
    let seen = &h2c.json()["headers"];
    for h in ["upgrade", "http2-settings", "connection"] {
        assert!(seen.get(h).is_none(), "{h} reached the upstream: {seen}");
    }

    // A chunked body whose framing is broken: 400, the client's fault.
    let bad_chunk = raw(
        port,
        b"POST /upload HTTP/1.1\r\nHost: clean.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
    );
    assert_eq!(bad_chunk.status, 400, "{bad_chunk:?}");
    let metrics = get(&format!("{}/metrics", node.admin())).unwrap().1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gateway_http_requests_total")
                && l.contains("status_code=\"400\"")),
        "the 400s are counted: {metrics}"
    );
    // And the node is not blamed: it still gets traffic and answers.
    assert_eq!(node.proxy_get("clean.test", "/after").status, 200);
}
