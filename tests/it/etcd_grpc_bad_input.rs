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

    // Still serving.
    c.put("/bad/after", "fine", None).await.unwrap();
    let got = c.get("/bad/after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"fine");
    out
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

/// The creation answers of the next `n` watchers requested on `stream`: id, whether it was
/// refused (cancelled at once) and why.
async fn creations(stream: &mut etcd_client::WatchStream, n: usize) -> Vec<(i64, bool, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(std::time::Duration::from_secs(30), stream.message())
            .await
            .expect("watch answers in time")
            .unwrap()
            .expect("the stream stays open");
        if m.created() {
            out.push((m.watch_id(), m.canceled(), m.cancel_reason().to_string()));
        }
    }
    out
}

/// Every watcher is woken by every write, so a client must not open them without bound. A
/// watcher past a stream's limit (1024) or the node's (`--etcd-max-watchers`) is refused as
/// etcd refuses one (created and cancelled at once, with the reason); the others keep working,
/// and a cancelled watcher gives its place back.
#[test]
fn watchers_past_the_stream_and_node_limits_are_refused_with_the_reason() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::new(dir.path(), 1);
    node.extra_args = vec!["--etcd-max-watchers".into(), "1100".into()];
    node.start();
    node.wait_ready(std::time::Duration::from_secs(30));
    rt.block_on(async {
        let mut c = Client::connect([node.etcd().replace("http://", "")], None)
            .await
            .unwrap();
        // One stream: its first watcher comes with the call, then 1024 more on the same stream.
        let mut a = c.watch("/w/a/0", None).await.unwrap();
        for i in 1..=1024 {
            a.watch(format!("/w/a/{i}"), None).await.unwrap();
        }
        let on_a = creations(&mut a, 1025).await;
        assert!(on_a[..1024].iter().all(|(_, refused, _)| !refused));
        let (_, refused, why) = &on_a[1024];
        assert!(
            *refused && why.contains("too many watchers on one stream (at most 1024)"),
            "{why}"
        );

        // Another stream gets the node's remaining 76 places, and no more.
        let mut b = c.watch("/w/b/0", None).await.unwrap();
        for i in 1..=76 {
            b.watch(format!("/w/b/{i}"), None).await.unwrap();
        }
        let on_b = creations(&mut b, 77).await;
        assert!(on_b[..76].iter().all(|(_, refused, _)| !refused));
        let (_, refused, why) = &on_b[76];
        assert!(
            *refused && why.contains("at most 1100, --etcd-max-watchers"),
            "{why}"
        );

        // A cancelled watcher gives its place back, and the watchers deliver.
        a.cancel(on_a[0].0).await.unwrap();
        loop {
            let m = a.message().await.unwrap().expect("the stream stays open");
            if m.canceled() && m.watch_id() == on_a[0].0 {
                break;
            }
        }
        b.watch("/w/b/again", None).await.unwrap();
        let (id, refused, why) = creations(&mut b, 1).await.remove(0);
        assert!(!refused, "{why}");
        c.put("/w/b/again", "v", None).await.unwrap();
        loop {
            let m = tokio::time::timeout(std::time::Duration::from_secs(30), b.message())
                .await
                .expect("the event in time")
                .unwrap()
                .expect("the stream stays open");
            if m.watch_id() == id && !m.events().is_empty() {
                assert_eq!(m.events()[0].kv().unwrap().value(), b"v");
                break;
            }
        }
    });
}
