//! TLS upstreams: a real nginx with a self-signed certificate, speaking h2 and HTTP/1.1 by
//! ALPN. `tls_verify: false` accepts the certificate, `true` refuses it (502); h2 is used with
//! `pass_host: node`, HTTP/1.1 with `pass` (the Host header names the client's host, which
//! over h2 would contradict `:authority`).

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

struct TlsUpstream {
    port: u16,
    child: Child,
}

impl TlsUpstream {
    fn start(dir: &Path) -> TlsUpstream {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=upstream.test"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl (installed by scripts/test)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "master_process off; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off;\n\
                   server {{ listen 127.0.0.1:{port} ssl http2;\n\
                     ssl_certificate {c}; ssl_certificate_key {k};\n\
                     location / {{ return 200 \"$server_protocol $http_host $request_uri\\n\"; }} }} }}\n",
                d = dir.display(),
                c = cert.display(),
                k = key.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .spawn()
            .expect("nginx (nginx-light, installed by scripts/test)");
        wait_for("nginx to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        TlsUpstream { port, child }
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        // One process (`master_process off`): a master killed after its worker forked a new
        // one left that worker running, holding the test run's inherited descriptors.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_upstreams_by_alpn_with_and_without_verification() {
    let dir = tempfile::tempdir().unwrap();
    let up = TlsUpstream::start(dir.path());
    let c = Cluster::start(1);
    let node = c.node(1);
    let cluster = |name: &str, extra: serde_json::Value| {
        let mut doc = json!({"name": name, "scheme": "https",
                             "nodes": [{"host": "127.0.0.1", "port": up.port}]});
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        node.put_key(&format!("/hermes/clusters/{name}"), &doc.to_string());
    };
    cluster("h2-node", json!({"pass_host": "node", "tls_verify": false}));
    cluster("h1-pass", json!({"tls_verify": false}));
    cluster("verified", json!({"pass_host": "node", "tls_verify": true}));
    let route = |uri: &str, cluster: &str| json!({"name": cluster, "uri": uri, "clusters": [{"name": cluster}]});
    node.put_key(
        "/hermes/domains/tls",
        &json!({"name": "tls", "hosts": ["tls.test"], "routes": [
            route("/node/*", "h2-node"), route("/pass/*", "h1-pass"), route("/verified/*", "verified"),
        ]})
        .to_string(),
    );
    wait_for("the TLS routes", Duration::from_secs(10), || {
        (node.proxy_get("tls.test", "/node/x").status == 200).then_some(())
    });

    let a = node.proxy_get("tls.test", "/node/a?q=1");
    assert_eq!(a.status, 200);
    assert_eq!(
        a.body.trim(),
        format!("HTTP/2.0 127.0.0.1:{} /node/a?q=1", up.port),
        "h2 by ALPN with pass_host node"
    );
    let b = node.proxy_get("tls.test", "/pass/b");
    assert_eq!(b.status, 200);
    assert_eq!(
        b.body.trim(),
        "HTTP/1.1 tls.test /pass/b",
        "HTTP/1.1 keeps the client's Host"
    );
    // A self-signed certificate is not trusted when verification is on.
    let v = node.proxy_get("tls.test", "/verified/c");
    assert_eq!(v.status, 502, "{}", v.body);
    // Connections are reused: many requests, all answered.
    for i in 0..50 {
        assert_eq!(
            node.proxy_get("tls.test", &format!("/node/{i}")).status,
            200
        );
    }
}
