//! The data plane with long and unusual exchanges: WebSocket, 100 MiB bodies both ways (uploads
//! chunked and with a length) with bounded proxy memory, h2c routed by `:authority`, request-size limits on chunked bodies,
//! compression, the override header, and hot reload under load with zero failed requests.

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;

use crate::harness::*;
use crate::upstream::Upstream;

fn setup(node: &Node, up: &Upstream, host: &str, extra_route: serde_json::Value) {
    node.put_key(
        "/hermes/clusters/main",
        &json!({"name": "main", "nodes": [{"host": "127.0.0.1", "port": up.port}]}).to_string(),
    );
    let mut route = json!({"name": "r", "uri": "/*", "clusters": [{"name": "main"}]});
    if let (Some(r), Some(extra)) = (route.as_object_mut(), extra_route.as_object()) {
        r.extend(extra.clone());
    }
    node.put_key(
        "/hermes/domains/main",
        &json!({"name": "main", "hosts": [host], "routes": [route]}).to_string(),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get(host, "/").status == 200).then_some(())
    });
}

#[test]
fn websocket_echo_through_the_proxy() {
    let up = Upstream::start("ws");
    let c = Cluster::start(1);
    let node = c.node(1);
    setup(node, &up, "ws.test", json!({}));
    let proxy_port = node.proxy_port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port))
            .await
            .unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.test/ws", stream)
            .await
            .unwrap();
        assert_eq!(resp.status(), 101);
        for i in 0..20 {
            let text = format!("hello {i} {}", "x".repeat(i * 100));
            ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone()))
                .await
                .unwrap();
            let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(echo.into_text().unwrap().as_str(), text);
        }
        ws.close(None).await.unwrap();
    });
}

/// Reads `len` bytes of generated data without holding them.
struct Generated(u64);

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.0) as usize;
        buf[..n].fill(b'y');
        self.0 -= n as u64;
        Ok(n)
    }
}

fn peak_rss_kib(node: &Node) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn hundred_mib_both_ways_with_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let up = Upstream::start("big");
    let c = Cluster::start(1);
    let node = c.node(1);
    setup(node, &up, "big.test", json!({}));
    let baseline = node.rss_kib();

    let resp = agent()
        .get(&format!("{}/download/{SIZE}", node.proxy()))
        .set("Host", "big.test")
        .call()
        .unwrap();
    let mut received = 0u64;
    let mut reader = resp.into_reader();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    assert_eq!(received, SIZE);

    // Chunked upload (no Content-Length): streamed to the upstream, counted there.
    let resp = agent()
        .post(&format!("{}/upload", node.proxy()))
        .set("Host", "big.test")
        .send(Generated(SIZE))
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    assert_eq!(answer["received"], SIZE);
    assert_eq!(answer["length"], serde_json::Value::Null, "{answer}");

    // The same with a Content-Length (the HTTP/1.1 fast path's streamed copy).
    let resp = agent()
        .post(&format!("{}/upload", node.proxy()))
        .set("Host", "big.test")
        .set("Content-Length", &SIZE.to_string())
        .send(Generated(SIZE))
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&resp.into_string().unwrap()).unwrap();
    assert_eq!(answer["received"], SIZE);
    assert_eq!(answer["length"], SIZE.to_string(), "{answer}");

    let peak = peak_rss_kib(node);
    eprintln!("proxy RSS: baseline {baseline} KiB, peak {peak} KiB over 3 × 100 MiB");
    assert!(
        peak < baseline + 64 * 1024,
        "proxy memory grew from {baseline} KiB to {peak} KiB"
    );
}

#[test]
fn h2c_is_routed_by_authority() {
    let up = Upstream::start("h2");
    let c = Cluster::start(1);
    let node = c.node(1);
    setup(node, &up, "h2.test", json!({}));
    let port = node.proxy_port;
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(["--connect-to", &format!("h2.test:{port}:127.0.0.1:{port}")])
        .arg(format!("http://h2.test:{port}/via-h2"))
        .output()
        .expect("curl is installed by scripts/test");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, status) = text.rsplit_once('\n').unwrap();
    assert_eq!(status.trim(), "2 200", "{text}");
    let seen: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    assert_eq!(seen["path"], "/via-h2");
    assert_eq!(seen["headers"]["host"], format!("h2.test:{port}"));
}

#[test]
fn body_limits_compression_override_and_pass_host() {
    let main = Upstream::start("main");
    let canary = Upstream::start("canary");
    let stranger = Upstream::start("stranger");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/canary",
        &json!({"name": "canary", "pass_host": "rewrite", "upstream_host": "internal.canary",
                "nodes": [{"host": "127.0.0.1", "port": canary.port}]})
        .to_string(),
    );
    node.put_key(
        "/hermes/clusters/stranger",
        &json!({"name": "stranger", "nodes": [{"host": "127.0.0.1", "port": stranger.port}]})
            .to_string(),
    );
    setup(
        node,
        &main,
        "limits.test",
        json!({"max_body_bytes": 1000, "enable_compression": true, "cluster_override_header": "X-Cluster",
               "clusters": [{"name": "main", "weight": 100}, {"name": "canary", "weight": 0}],
               "response_header_transforms": [{"name": "X-Served-By", "value": "hermes", "action": "set"}],
               "request_header_transforms": [{"name": "X-Env", "value": "test", "action": "add"}]}),
    );
    let base = node.proxy();
    // Declared too large: refused before reaching the upstream.
    let big = "z".repeat(5000);
    let resp = agent()
        .post(&format!("{base}/upload"))
        .set("Host", "limits.test")
        .send_string(&big);
    assert!(matches!(resp, Err(ureq::Error::Status(413, _))), "{resp:?}");
    // Chunked and too large: refused too.
    let resp = agent()
        .post(&format!("{base}/upload"))
        .set("Host", "limits.test")
        .send(Generated(5000));
    match resp {
        Err(ureq::Error::Status(413, r)) => {
            assert_eq!(r.into_string().unwrap(), r#"{"error":"payload too large"}"#)
        }
        other => panic!("chunked over the limit: {other:?}"),
    }
    // Small enough: passes.
    let ok = agent()
        .post(&format!("{base}/upload"))
        .set("Host", "limits.test")
        .send(Generated(500))
        .unwrap();
    assert_eq!(
        ok.into_string().unwrap(),
        r#"{"received":500,"length":null}"#
    );

    let gz = proxy_request(
        &base,
        "GET",
        "limits.test",
        "/c",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert_eq!(gz.header("x-served-by"), Some("hermes"));
    let plain = proxy_request(
        &base,
        "HEAD",
        "limits.test",
        "/c",
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(
        plain.header("content-encoding"),
        None,
        "HEAD is never compressed"
    );

    let canary_answer = proxy_request(
        &base,
        "GET",
        "limits.test",
        "/o",
        &[("X-Cluster", "canary")],
    );
    assert_eq!(canary_answer.upstream(), "canary");
    assert_eq!(canary_answer.header("x-hermes-cluster"), Some("canary"));
    assert_eq!(
        canary_answer.header("x-hermes-cluster-override"),
        Some("true")
    );
    assert_eq!(
        canary_answer.json()["headers"]["host"],
        "internal.canary",
        "pass_host rewrite"
    );
    assert_eq!(canary_answer.json()["headers"]["x-env"], "test");
    // A cluster outside the route's own may not be chosen by the header.
    let refused = proxy_request(
        &base,
        "GET",
        "limits.test",
        "/o",
        &[("X-Cluster", "stranger")],
    );
    assert_eq!(refused.upstream(), "main");
    // Weight 0 gets no traffic without the header.
    for _ in 0..20 {
        assert_eq!(node.proxy_get("limits.test", "/w").upstream(), "main");
    }
}

/// Parses wrk's summary: (requests, non-2xx, socket errors).
fn wrk_summary(out: &str) -> (u64, u64, String) {
    let requests = out
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let non_2xx = out
        .lines()
        .find(|l| l.contains("Non-2xx or 3xx responses"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let socket = out
        .lines()
        .find(|l| l.contains("Socket errors"))
        .unwrap_or("")
        .to_string();
    (requests, non_2xx, socket)
}

const LBS: [&str; 4] = ["roundrobin", "least_request", "peak_ewma", "random"];

#[test]
fn hot_reload_under_load_drops_nothing() {
    let up = Upstream::start("steady");
    let other = Upstream::start("other");
    let c = Cluster::start(1);
    let node = c.node(1);
    setup(node, &up, "load.test", json!({}));
    let url = format!("{}/steady", node.proxy());
    // Every failed answer is written out (status and body), so a failure says what went wrong.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        script.path(),
        "function response(status, headers, body)\n\
         if status >= 300 then io.stderr:write(status .. ' ' .. body .. '\\n') end\n\
         end\n",
    )
    .unwrap();
    let script_path = script.path().to_path_buf();
    let wrk = std::thread::spawn(move || {
        Command::new("wrk")
            .args(["-t2", "-c8", "-d15s", "-H", "Host: load.test", "-s"])
            .arg(script_path)
            .arg(url)
            .output()
            .expect("wrk is installed by scripts/test")
    });
    // The writes start once wrk's requests are being served.
    wait_for("wrk's load on the proxy", Duration::from_secs(10), || {
        let (_, metrics) = get(&format!("{}/metrics", node.admin())).ok()?;
        metrics
            .lines()
            .any(|l| {
                l.starts_with("gateway_http_requests_total{") && l.contains("status_code=\"200\"")
            })
            .then_some(())
    });
    // 1 000 configuration writes that keep the tested route valid: the tested cluster changes
    // settings; the tested route moves between two clusters, the one it left deleted right
    // after (a removal must not overtake the route table that still uses it); the tested
    // domain gains and loses other routes; other domains come and go.
    let colors = ["blue", "green"];
    for i in 0..1000 {
        let (now, before) = (colors[i / 5 % 2], colors[(i / 5 + 1) % 2]);
        match i % 5 {
            0 => node.put_key(
                &format!("/hermes/clusters/{now}"),
                &json!({"name": now, "type": LBS[i / 5 % 4],
                        "timeout": {"connect": 3, "send": 5, "read": 5 + (i % 7)},
                        "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100 + i % 3}]})
                .to_string(),
            ),
            1 => node.put_key(
                "/hermes/domains/main",
                &json!({"name": "main", "hosts": ["load.test"], "routes": [
                    {"name": "r", "uri": "/*", "clusters": [{"name": now}]},
                    {"name": format!("extra{i}"), "uri": format!("/extra/{i}"), "clusters": [{"name": "other"}]},
                ]})
                .to_string(),
            ),
            2 => node.delete_key(&format!("/hermes/clusters/{before}")),
            3 => node.put_key(
                &format!("/hermes/domains/other{}", i % 50),
                &json!({"name": format!("other{}", i % 50), "hosts": [format!("o{i}.test")],
                        "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": "other"}]}]})
                .to_string(),
            ),
            _ => node.put_key(
                "/hermes/clusters/other",
                &json!({"name": "other", "nodes": [{"host": "127.0.0.1", "port": other.port}]}).to_string(),
            ),
        }
    }
    assert!(
        !wrk.is_finished(),
        "the 1 000 writes outlasted the load; lengthen wrk's run"
    );
    let out = wrk.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let failed = String::from_utf8_lossy(&out.stderr);
    let failed: String = failed.lines().take(20).collect::<Vec<_>>().join("\n");
    let text = format!("{text}\nfirst failed answers:\n{failed}");
    let (requests, non_2xx, socket) = wrk_summary(&text);
    eprintln!("{text}");
    assert!(
        requests > 1000,
        "wrk made only {requests} requests:\n{text}"
    );
    assert_eq!(non_2xx, 0, "failed requests during reloads:\n{text}");
    assert!(
        socket.is_empty(),
        "connection errors during reloads: {socket}"
    );
}

#[test]
fn a_client_stalling_its_upload_gets_408_and_frees_the_upstream() {
    use std::io::Write;
    let up = Upstream::start("slow");
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/main",
        &json!({"name": "main", "timeout": {"send": 0.5, "read": 5},
                "nodes": [{"host": "127.0.0.1", "port": up.port}]})
        .to_string(),
    );
    node.put_key(
        "/hermes/domains/main",
        &json!({"name": "main", "hosts": ["slow.test"],
                "routes": [{"name": "r", "uri": "/*", "clusters": [{"name": "main"}]}]})
        .to_string(),
    );
    wait_for("the route", Duration::from_secs(10), || {
        (node.proxy_get("slow.test", "/").status == 200).then_some(())
    });
    // Promise 100 bytes, send 10, then nothing: the gateway gives up after `timeout.send`
    // instead of holding the upstream connection until the client goes away.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", node.proxy_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(
        b"POST /upload HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("request timeout") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request timeout"}"#),
        "{answer}"
    );
    // The route still serves.
    assert_eq!(node.proxy_get("slow.test", "/").status, 200);
}
