//! Bad gRPC requests get etcd's own error codes and messages: each is sent with the
//! `etcd-client` crate to Debian's etcd 3.4 and to a Hermes node, and the answers compared.
//! The node must still serve afterwards.

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

use crate::harness::*;

/// What a request got: the gRPC code and message, or "ok".
async fn outcomes(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut c = Client::connect([endpoint.replace("http://", "")], None)
        .await
        .unwrap();
    let show = |r: Result<(), etcd_client::Error>| match r {
        Ok(()) => "ok".to_string(),
        Err(etcd_client::Error::GRpcStatus(s)) => format!("{:?}: {}", s.code(), s.message()),
        Err(e) => format!("other error: {e}"),
    };
    let big = |n: usize| vec![b'x'; n];
    let mut out = Vec::new();

    let r = c.put("/bad/big", big(1600 * 1024), None).await.map(drop);
    out.push(("value over the request limit", show(r)));

    // Over gRPC's message limit the codec refuses it; the message is the library's own.
    let r = c.put("/bad/huge", big(3 << 20), None).await.map(drop);
    let code_only = show(r).split(':').next().unwrap_or_default().to_string();
    out.push(("message over the gRPC limit", code_only));

    let r = c
        .put(
            "/bad/leased",
            "v",
            Some(PutOptions::new().with_lease(0x1234)),
        )
        .await
        .map(drop);
    out.push(("unknown lease", show(r)));

    let r = c.lease_revoke(0x1234).await.map(drop);
    out.push(("revoke unknown lease", show(r)));

    let twice = Txn::new().and_then(vec![
        TxnOp::put("/bad/k", "1", None),
        TxnOp::put("/bad/k", "2", None),
    ]);
    out.push(("duplicate key in txn", show(c.txn(twice).await.map(drop))));

    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("/bad/op{i}"), "v", None))
        .collect();
    out.push((
        "129 ops",
        show(c.txn(Txn::new().and_then(many)).await.map(drop)),
    ));

    let compares: Vec<Compare> = (0..129)
        .map(|i| Compare::version(format!("/bad/c{i}"), CompareOp::Equal, 0))
        .collect();
    let r = c.txn(Txn::new().when(compares)).await.map(drop);
    out.push(("129 compares", show(r)));

    let r = c
        .get("/bad/k", Some(GetOptions::new().with_revision(-1)))
        .await
        .map(drop);
    out.push(("get at a negative revision", show(r)));

    let r = c
        .get("/bad/k", Some(GetOptions::new().with_revision(1 << 40)))
        .await
        .map(drop);
    out.push(("get at a future revision", show(r)));

    out.push((
        "compact to a negative revision",
        show(c.compact(-1, None).await.map(drop)),
    ));
    out.push((
        "compact to a future revision",
        show(c.compact(1 << 40, None).await.map(drop)),
    ));

    out.push((
        "put an empty key",
        show(c.put("", "v", None).await.map(drop)),
    ));
    out.push(("get an empty key", show(c.get("", None).await.map(drop))));

    for path in [
        "/etcdserverpb.Nope/Range",
        "/etcdserverpb.KV/Nope",
        "/no-service-at-all",
    ] {
        out.push(("a call no service answers", raw_grpc(endpoint, path).await));
    }

    // Still serving.
    c.put("/bad/after", "fine", None).await.unwrap();
    let got = c.get("/bad/after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"fine");
    out
}

/// An empty gRPC call to `path` over HTTP/2 without TLS, as a client that names a service or
/// method the server lacks sends it: the HTTP status and the gRPC status and message.
async fn raw_grpc(endpoint: &str, path: &str) -> String {
    let addr = endpoint.replace("http://", "");
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let answer = format!(
        "HTTP {}, grpc-status {:?}, grpc-message {:?}",
        resp.status().as_u16(),
        header("grpc-status"),
        header("grpc-message")
    );
    driver.abort();
    answer
}

#[test]
fn bad_grpc_requests_get_etcds_errors() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = Etcd::start();
    let expected = rt.block_on(outcomes(&etcd.url));
    drop(etcd);
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::new(dir.path(), 1);
    node.start();
    node.wait_ready(std::time::Duration::from_secs(30));
    let got = rt.block_on(outcomes(&node.etcd()));
    assert!(
        expected.iter().filter(|(_, o)| o != "ok").count() >= 10,
        "the reference refused what the test means to send: {expected:#?}"
    );
    let differences: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(e, g)| e != g)
        .map(|((what, e), (_, g))| format!("{what}:\n  etcd:   {e}\n  hermes: {g}"))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
