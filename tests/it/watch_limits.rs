//! Every watcher holds memory and a place in the node's watch index, so no client may open
//! them without bound: a stream holds at most 1024 and the node `--etcd-max-watchers`,
//! counting the watchers Election and Lock keep while they wait. A watcher past a limit is
//! refused as etcd refuses one (created and cancelled at once, watch id -1, the reason naming
//! the limit); a place comes back when a watcher is cancelled or its client leaves.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use etcd_client::{Client, LockOptions, WatchStream};
use serde_json::json;

use crate::harness::*;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The creation answers of the next `n` watchers requested on `stream`: id, whether it was
/// refused (cancelled at once) and why.
async fn creations(stream: &mut WatchStream, n: usize) -> Vec<(i64, bool, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = next_message(stream, "watch answers").await;
        if m.created() {
            out.push((m.watch_id(), m.canceled(), m.cancel_reason().to_string()));
        }
    }
    out
}

/// The next answer on `stream`, within [`TIMEOUT`]; the stream must stay open.
async fn next_message(stream: &mut WatchStream, what: &str) -> etcd_client::WatchResponse {
    within(what, stream.message())
        .await
        .unwrap()
        .expect("the stream stays open")
}

/// `fut`, which must finish within [`TIMEOUT`]: a regression fails the test, never hangs it.
async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} within {TIMEOUT:?}"))
}

/// A stream asked for `n + 1` watchers (the first with the call, the rest on the same
/// stream): the first `n` must be created and the last refused. Returns the stream and the
/// answers.
async fn one_more_than(
    c: &mut Client,
    name: &str,
    n: usize,
) -> (WatchStream, Vec<(i64, bool, String)>) {
    let mut stream = within("a watch", c.watch(format!("/w/{name}/0"), None))
        .await
        .unwrap();
    for i in 1..=n {
        stream.watch(format!("/w/{name}/{i}"), None).await.unwrap();
    }
    let answers = creations(&mut stream, n + 1).await;
    assert!(answers[..n].iter().all(|(_, refused, _)| !refused));
    assert!(answers[n].1, "watcher {n} of {name} refused");
    (stream, answers)
}

fn node_with_max_watchers(dir: &std::path::Path, max: usize) -> Node {
    let mut node = Node::new(dir, 1);
    node.extra_args = vec!["--etcd-max-watchers".into(), max.to_string()];
    node.start();
    node.wait_ready(TIMEOUT);
    node
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn watchers_past_the_stream_and_node_limits_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_max_watchers(dir.path(), 1100);
    runtime().block_on(async {
        let endpoint = node.etcd().replace("http://", "");
        let mut c = within("connect", Client::connect([endpoint], None))
            .await
            .unwrap();
        // One stream: 1024 watchers, and the next refused.
        let (mut a, on_a) = one_more_than(&mut c, "a", 1024).await;
        assert_eq!(on_a[1024].0, -1, "a refused watcher takes no id");
        let why = &on_a[1024].2;
        assert!(
            why.contains("too many watchers on one stream (at most 1024)"),
            "{why}"
        );

        // Another stream gets the node's remaining 76 places, and no more.
        let (mut b, on_b) = one_more_than(&mut c, "b", 76).await;
        assert_eq!(on_b[76].0, -1);
        let why = &on_b[76].2;
        assert!(why.contains("at most 1100, --etcd-max-watchers"), "{why}");

        // A lock that has to wait needs a watcher too: refused while none is free, and the
        // key it queued with is removed again (the holder's unlock is all it takes after).
        let (first, second) = (lease(&mut c).await, lease(&mut c).await);
        let lock = |lease| Some(LockOptions::new().with_lease(lease));
        let held = within("the free lock", c.lock("/w/lock", lock(first)))
            .await
            .unwrap();
        let waiting = within("a refusal, not a wait", c.lock("/w/lock", lock(second)))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            waiting.contains("resource has been exhausted")
                && waiting.contains("--etcd-max-watchers"),
            "{waiting}"
        );
        // The refused call removed its key before it answered.
        let prefix = Some(etcd_client::GetOptions::new().with_prefix());
        let queued = within("a get", c.get("/w/lock", prefix)).await.unwrap();
        assert_eq!(queued.kvs().len(), 1, "only the holder's key stays");
        within("unlock", c.unlock(held.key())).await.unwrap();

        // A cancelled watcher gives its place back, and the watchers deliver.
        a.cancel(on_a[0].0).await.unwrap();
        loop {
            let m = next_message(&mut a, "the cancel answered").await;
            if m.canceled() && m.watch_id() == on_a[0].0 {
                break;
            }
        }
        b.watch("/w/b/again", None).await.unwrap();
        let (id, refused, why) = creations(&mut b, 1).await.remove(0);
        assert!(!refused, "{why}");
        within("a put", c.put("/w/b/again", "v", None))
            .await
            .unwrap();
        loop {
            let m = next_message(&mut b, "the event").await;
            if m.watch_id() == id && !m.events().is_empty() {
                assert_eq!(m.events()[0].kv().unwrap().value(), b"v");
                break;
            }
        }
    });
}

async fn lease(c: &mut Client) -> i64 {
    within("a lease", c.lease_grant(60, None))
        .await
        .unwrap()
        .id()
}

/// Opens a JSON watch whose request body is complete (as `curl -d` sends it), reads its
/// creation answer; returns the connection and that answer.
fn json_watch(node: &Node, key: &str) -> (TcpStream, serde_json::Value) {
    let addr = node.etcd().replace("http://", "");
    let body = json!({"create_request": {"key": b64(key)}}).to_string();
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        conn,
        "POST /v3/watch HTTP/1.1\r\nHost: hermes\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the answer ended");
        if let Some(json) = line
            .trim()
            .strip_prefix('{')
            .map(|rest| format!("{{{rest}"))
        {
            return (conn, serde_json::from_str(&json).unwrap());
        }
    }
}

/// A JSON watch client that leaves gives its watchers' places back at once, not at the next
/// event on the key (which may never come).
#[test]
fn a_json_watch_client_that_leaves_frees_its_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_max_watchers(dir.path(), 1);
    let (first, created) = json_watch(&node, "/w/quiet");
    assert_eq!(created["result"]["created"], true, "{created}");
    assert!(created["result"]["canceled"].is_null(), "{created}");
    let (_second, refused) = json_watch(&node, "/w/other");
    assert_eq!(refused["result"]["canceled"], true, "{refused}");
    drop(first);
    wait_for("a watch after the first client left", TIMEOUT, || {
        let (conn, answer) = json_watch(&node, "/w/other");
        (answer["result"]["canceled"].is_null()).then_some(conn)
    });
}
