//! The proxy's HTTP/1.1 fast path (`node/src/gateway/proxy/h1`) against a real node and a
//! scripted raw upstream: pipelined requests on one pooled upstream socket, counted once each;
//! the request and response heads it rewrites (hop-by-hop headers out, forwarding headers in);
//! response framings (length, chunked with trailers, until close, interim 100, HEAD, odd
//! reasons); gateway errors (bad upstream framing, header timeout, no route); pooled
//! connections the upstream closes; request bodies with a length (whole, streamed, pipelined,
//! refused, answered early); and the hand-over of a connection to hyper when a request is not
//! for the fast path (a chunked body, HTTP/1.0). Everything is spoken in raw bytes on both
//! sides, so the test sees exactly what the proxy wrote.

use std::io::{ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::harness::*;

use crate::support::raw_http::{find, header_lines, is_chunked, Answer, Client, Wire, IO_TIMEOUT};

const HOST: &str = "fast.test";
const ROUTE: &str = "fast-route";
// ---------------------------------------------------------------------------------------------
// The scripted upstream.

/// One request as the scripted upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    /// Which accepted connection it came on (1, 2, … in accept order).
    conn: usize,
    head: String,
    body: Vec<u8>,
}

/// A raw HTTP/1.1 upstream on a std listener, one thread per connection, answering by path
/// (see [`script`]) and recording every request it reads.
struct Scripted {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections this upstream has closed, in order.
    closed: Arc<Mutex<Vec<usize>>>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, stopped, closing) = (seen.clone(), stop.clone(), closed.clone());
        std::thread::spawn(move || {
            let mut accepted = 0;
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                accepted += 1;
                let (conn, record, closing) = (accepted, record.clone(), closing.clone());
                std::thread::spawn(move || {
                    serve_scripted(Wire::new(stream), conn, &record);
                    closing.lock().unwrap().push(conn);
                });
            }
        });
        Scripted {
            port,
            seen,
            closed,
            stop,
        }
    }

    /// The connections closed so far (their socket dropped), in order.
    fn closed(&self) -> Vec<usize> {
        self.closed.lock().unwrap().clone()
    }

    /// Every request received so far, in order.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What the upstream does with the connection after an answer.
enum Then {
    KeepOpen,
    Close,
    /// Closes it a little later without having said so: an idle pooled connection dropped.
    CloseSoon,
    /// Sends nothing more for longer than any test waits, mid-body, then closes.
    Stall,
}

/// The answer to a request for `path`. The default echoes the request head verbatim as the
/// body and names the connection in `X-Conn`.
fn script(method: &str, path: &str, conn: usize, head: &str) -> (Vec<u8>, Then) {
    let fixed = |bytes: &str, then: Then| (bytes.as_bytes().to_vec(), then);
    let echo = || {
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Conn: {conn}\r\n\r\n",
            head.len()
        );
        if method != "HEAD" {
            answer.push_str(head);
        }
        answer.into_bytes()
    };
    match path {
        "/chunked" => fixed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n\
             3\r\nabc\r\n4\r\ndefg\r\n0\r\nx-t: 1\r\n\r\n",
            Then::KeepOpen,
        ),
        "/until-close" => fixed(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nbye-bye",
            Then::Close,
        ),
        "/continue" => fixed(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Then::KeepOpen,
        ),
        "/close-after" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
            Then::Close,
        ),
        "/vanish" => (echo(), Then::CloseSoon),
        "/reason" => fixed(
            "HTTP/1.1 299 Fine Indeed\r\nContent-Length: 0\r\n\r\n",
            Then::KeepOpen,
        ),
        "/bad-length" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            Then::KeepOpen,
        ),
        "/slow" => {
            // Longer than the cluster's header deadline (send + read = 2 s).
            std::thread::sleep(Duration::from_secs(4));
            (echo(), Then::KeepOpen)
        }
        "/stall-body" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
            Then::Stall,
        ),
        "/hop" => fixed(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Up-Secret\r\n\
             X-Up-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Up-Kept: 1\r\n\r\nok",
            Then::KeepOpen,
        ),
        _ => (echo(), Then::KeepOpen),
    }
}

/// Serves one upstream connection: reads requests (and their bodies), records and answers them.
fn serve_scripted(mut wire: Wire, conn: usize, record: &Mutex<Vec<Seen>>) {
    loop {
        let Ok(Some(head)) = wire.head() else { return };
        let headers = header_lines(&head);
        let mut request_line = head.split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let target = request_line.next().unwrap_or("");
        let path = target.split('?').next().unwrap_or("").to_string();
        if path == "/early" {
            // Refuses the body before reading it, then lingers a little and closes.
            record.lock().unwrap().push(Seen {
                conn,
                head: head.clone(),
                body: Vec::new(),
            });
            let _ = wire
                .stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!");
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        let body = if is_chunked(&headers) {
            wire.chunked().map(|(data, _)| data)
        } else {
            let length = find(&headers, "content-length").and_then(|v| v.parse().ok());
            wire.exact(length.unwrap_or(0))
        };
        let Ok(body) = body else { return };
        record.lock().unwrap().push(Seen {
            conn,
            head: head.clone(),
            body,
        });
        let (answer, then) = script(&method, &path, conn, &head);
        if wire.stream.write_all(&answer).is_err() {
            return;
        }
        match then {
            Then::KeepOpen => {}
            Then::Close => break,
            Then::CloseSoon => {
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            Then::Stall => {
                std::thread::sleep(3 * IO_TIMEOUT);
                break;
            }
        }
    }
    let _ = wire.stream.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// What the scripted upstream tells in its answers, and requests for this test's host.

trait Echoed {
    fn conn(&self) -> usize;
    fn echoed(&self) -> (String, Vec<(String, String)>);
}

impl Echoed for Answer {
    /// The upstream connection that answered (the scripted upstream's `X-Conn`).
    fn conn(&self) -> usize {
        self.header("x-conn")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("expected an X-Conn header from the upstream: {self:?}"))
    }

    /// The request head the upstream received, echoed in the body: its request line and headers.
    fn echoed(&self) -> (String, Vec<(String, String)>) {
        let head = self.text();
        let line = head.split("\r\n").next().unwrap_or("").to_string();
        (line, header_lines(&head))
    }
}

/// A bodiless request for [`HOST`], with `extra` header lines (`Name: value`).
fn request(method: &str, target: &str, extra: &[&str]) -> String {
    crate::support::raw_http::request(HOST, method, target, extra)
}

trait ForHost {
    fn call(&mut self, method: &str, target: &str, extra: &[&str]) -> Answer;
    fn get(&mut self, target: &str) -> Answer;
}

impl ForHost for Client {
    fn call(&mut self, method: &str, target: &str, extra: &[&str]) -> Answer {
        self.request_to(HOST, method, target, extra)
    }

    fn get(&mut self, target: &str) -> Answer {
        self.request_to(HOST, "GET", target, &[])
    }
}

// ---------------------------------------------------------------------------------------------
// Setup and checks.

/// A node whose route `fast-route` for `fast.test` goes to the scripted upstream (timeouts of
/// 1 s each), once the proxy serves it.
fn start(up: &Scripted) -> Cluster {
    let c = Cluster::start(1);
    let node = c.node(1);
    node.put_key(
        "/hermes/clusters/fast",
        &json!({"name": "fast",
                "nodes": [{"host": "127.0.0.1", "port": up.port, "weight": 100}],
                "timeout": {"connect": 1, "send": 1, "read": 1}})
        .to_string(),
    );
    node.put_key(
        "/hermes/domains/fast",
        &json!({"name": "fast", "hosts": [HOST],
                "routes": [{"name": ROUTE, "uri": "/*", "clusters": [{"name": "fast", "weight": 100}]}]})
        .to_string(),
    );
    wait_for("the route to be served", Duration::from_secs(10), || {
        (node.proxy_get(HOST, "/").status == 200).then_some(())
    });
    c
}

/// The sum of `gateway_http_requests_total` over the series of the test's route that also
/// carry `label` (`""` for all of them).
fn requests_counted(node: &Node, label: &str) -> u64 {
    let (status, text) = get(&format!("{}/metrics", node.admin())).unwrap();
    assert_eq!(status, 200, "expected the metrics: {text}");
    let route = format!("route=\"{ROUTE}\"");
    text.lines()
        .filter(|l| l.starts_with("gateway_http_requests_total{") && l.contains(&route))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Which path forwarded a request, told by the head the upstream echoed: the fast path copies
/// header names as the client wrote them (`Host`), hyper's client sends them lower-cased.
fn forwarded_by(a: &Answer) -> &'static str {
    let head = a.text();
    if head.contains(&format!("\r\nHost: {HOST}\r\n")) {
        "fast path"
    } else if head.contains(&format!("\r\nhost: {HOST}\r\n")) {
        "hyper"
    } else {
        "neither"
    }
}

/// Asserts a gateway error: `status`, the JSON body `{"error": message}`, its content type and
/// a `date` header.
fn assert_gateway_error(a: &Answer, status: u16, message: &str) {
    assert_eq!(a.status, status, "expected {status} {message}: {a:?}");
    assert_eq!(
        a.json(),
        json!({"error": message}),
        "expected the JSON error body: {a:?}"
    );
    assert_eq!(
        a.header("content-type"),
        Some("application/json"),
        "expected a JSON content type: {a:?}"
    );
    assert!(
        a.header("date").is_some(),
        "expected a date header on a gateway error: {a:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

#[test]
fn pipelined_requests_share_one_upstream_connection_and_count_once() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);

    let mut client = Client::connect(node);
    client.send(&(request("GET", "/one", &[]) + &request("GET", "/two", &[])));
    let one = client.read(false);
    let two = client.read(false);
    assert_eq!(
        one.status, 200,
        "expected the first pipelined GET answered: {one:?}"
    );
    assert_eq!(
        two.status, 200,
        "expected the second pipelined GET answered: {two:?}"
    );
    assert_eq!(
        one.echoed().0,
        "GET /one HTTP/1.1",
        "expected the answers in order"
    );
    assert_eq!(
        two.echoed().0,
        "GET /two HTTP/1.1",
        "expected the answers in order"
    );
    for a in [&one, &two] {
        assert_eq!(
            forwarded_by(a),
            "fast path",
            "expected the fast path: {a:?}"
        );
    }
    assert_eq!(
        one.conn(),
        two.conn(),
        "expected both pipelined requests on one pooled upstream connection"
    );
    // A request is counted when the proxy is done with it, after its upstream connection went
    // back to the pool: once both are counted, the connection is idle there.
    wait_for("both requests counted", Duration::from_secs(5), || {
        (requests_counted(node, "status_code=\"200\"") == up.seen().len() as u64).then_some(())
    });
    let three = client.get("/three");
    assert_eq!(three.status, 200, "{three:?}");
    assert_eq!(three.echoed().0, "GET /three HTTP/1.1");
    assert_eq!(
        three.conn(),
        one.conn(),
        "expected a later request to reuse the idle upstream connection"
    );

    // Each request is counted exactly once, by the fast path alone: so far as many 200s as
    // reached the upstream (the route is this upstream's only one), then 5 more for 5 pipelined.
    wait_for(
        "the route's 200s to equal the requests the upstream saw",
        Duration::from_secs(5),
        || (requests_counted(node, "status_code=\"200\"") == up.seen().len() as u64).then_some(()),
    );
    let before = requests_counted(node, "");
    let pipeline: String = (0..5)
        .map(|i| request("GET", &format!("/n{i}"), &[]))
        .collect();
    client.send(&pipeline);
    for i in 0..5 {
        let a = client.read(false);
        assert_eq!(
            a.status, 200,
            "expected pipelined request {i} answered: {a:?}"
        );
        assert_eq!(
            a.echoed().0,
            format!("GET /n{i} HTTP/1.1"),
            "expected the answers in order"
        );
    }
    // One more request on the connection: it is handled only after the 5 are done with, so
    // once it is counted, any second count of theirs would be too.
    assert_eq!(client.get("/sentinel").status, 200);
    wait_for("the sentinel counted", Duration::from_secs(5), || {
        (requests_counted(node, "") >= before + 6).then_some(())
    });
    assert_eq!(
        requests_counted(node, ""),
        before + 6,
        "expected 5 pipelined requests (and the sentinel) counted exactly once each"
    );
}

#[test]
fn upstream_connections_that_close_are_not_reused() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    let mut client = Client::connect(node);

    // The upstream drops a pooled connection while it is idle, without having said it would.
    let vanished = client.get("/vanish");
    assert_eq!(vanished.status, 200, "{vanished:?}");
    wait_for("the upstream to close it", Duration::from_secs(5), || {
        up.closed().contains(&vanished.conn()).then_some(())
    });
    let after = client.get("/");
    assert_eq!(
        after.status, 200,
        "expected a request after the upstream dropped its idle connection to succeed: {after:?}"
    );
    assert_ne!(
        after.conn(),
        vanished.conn(),
        "expected a new upstream connection once the pooled one was closed"
    );

    // The upstream says `Connection: close`: the next request opens a new connection, and the
    // client's connection is not closed for it.
    let closing = client.get("/close-after");
    assert_eq!(closing.status, 200, "{closing:?}");
    assert_eq!(closing.text(), "ok");
    assert_eq!(
        closing.header("connection"),
        None,
        "expected the upstream's Connection header not to reach the client"
    );
    let next = client.get("/");
    assert_eq!(
        next.status, 200,
        "expected the client connection still usable: {next:?}"
    );
    let conns: Vec<usize> = up
        .seen()
        .iter()
        .filter(|s| s.head.starts_with("GET /close-after "))
        .map(|s| s.conn)
        .collect();
    assert_eq!(conns.len(), 1, "expected /close-after sent once: {conns:?}");
    assert_ne!(
        next.conn(),
        conns[0],
        "expected a new upstream connection after `Connection: close`"
    );
}

#[test]
fn hop_by_hop_headers_are_dropped_both_ways() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    let mut client = Client::connect(node);

    let a = client.call(
        "GET",
        "/echo?a=1",
        &[
            "Connection: keep-alive, X-Drop",
            "X-Drop: 1",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "X-Keep: 1",
            "X-Forwarded-For: 6.6.6.6",
        ],
    );
    assert_eq!(a.status, 200, "{a:?}");
    let (line, sent) = a.echoed();
    assert_eq!(
        line, "GET /echo?a=1 HTTP/1.1",
        "expected the request line as sent"
    );
    assert_eq!(
        forwarded_by(&a),
        "fast path",
        "expected the fast path: {a:?}"
    );
    assert!(
        a.text().contains("\r\nX-Keep: 1\r\n"),
        "expected an end-to-end header copied byte for byte: {sent:?}"
    );
    assert_eq!(
        find(&sent, "x-keep"),
        Some("1"),
        "expected X-Keep forwarded: {sent:?}"
    );
    for hop in ["x-drop", "keep-alive", "te", "connection"] {
        assert_eq!(
            find(&sent, hop),
            None,
            "expected {hop} not forwarded: {sent:?}"
        );
    }
    for (name, want) in [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-real-ip", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", HOST),
        ("host", HOST),
    ] {
        assert_eq!(
            find(&sent, name),
            Some(want),
            "expected {name}: {want} upstream: {sent:?}"
        );
        let count = sent
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count();
        assert_eq!(count, 1, "expected one {name} header upstream: {sent:?}");
    }
    assert!(
        !a.text().contains("6.6.6.6"),
        "expected an untrusted client's X-Forwarded-For replaced: {sent:?}"
    );

    // Response side: what the upstream's Connection names, and Keep-Alive, stay behind.
    let hop = client.get("/hop");
    assert_eq!(hop.status, 200, "{hop:?}");
    assert_eq!(hop.text(), "ok");
    assert_eq!(
        hop.header("x-up-kept"),
        Some("1"),
        "expected X-Up-Kept: {hop:?}"
    );
    for name in ["x-up-secret", "keep-alive", "connection"] {
        assert_eq!(
            hop.header(name),
            None,
            "expected no {name} for the client: {hop:?}"
        );
    }

    // HEAD: the upstream's Content-Length, no body; the next answer parses after it.
    let head = client.call("HEAD", "/", &[]);
    assert_eq!(head.status, 200, "{head:?}");
    let upstream_head = up
        .seen()
        .into_iter()
        .rev()
        .find(|s| s.head.starts_with("HEAD / "))
        .expect("the upstream saw the HEAD");
    assert_eq!(
        head.header("content-length"),
        Some(upstream_head.head.len().to_string().as_str()),
        "expected the upstream's Content-Length on the HEAD answer: {head:?}"
    );
    let after = client.get("/after-head");
    assert_eq!(
        after.status, 200,
        "expected a GET after HEAD parsed: {after:?}"
    );
    assert_eq!(after.echoed().0, "GET /after-head HTTP/1.1");

    // The client asks to close: the answer says so, then the proxy closes.
    let last = client.call("GET", "/", &["Connection: close"]);
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(
        last.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close"),
        "expected connection: close on the answer: {last:?}"
    );
    assert!(
        client.closed_within(Duration::from_secs(3)),
        "expected the proxy to close the connection after `Connection: close`"
    );
}

#[test]
fn response_bodies_keep_their_framing() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    let mut client = Client::connect(node);

    let chunked = client.get("/chunked");
    assert_eq!(chunked.status, 200, "{chunked:?}");
    assert!(
        is_chunked(&chunked.headers),
        "expected transfer-encoding: chunked: {chunked:?}"
    );
    assert_eq!(
        chunked.text(),
        "abcdefg",
        "expected the decoded chunked data"
    );
    let raw = String::from_utf8_lossy(&chunked.raw_chunked);
    assert!(
        raw.contains("x-t: 1"),
        "expected the trailer passed through: {raw:?}"
    );

    // A body that ends with the upstream's connection reaches the client chunked, and the
    // client's connection stays open.
    let until_close = client.get("/until-close");
    assert_eq!(until_close.status, 200, "{until_close:?}");
    assert!(
        until_close.status_line.starts_with("HTTP/1.1 200"),
        "expected an HTTP/1.1 answer: {until_close:?}"
    );
    assert!(
        is_chunked(&until_close.headers),
        "expected a body until close sent on chunked: {until_close:?}"
    );
    assert_eq!(until_close.text(), "bye-bye");
    let next = client.get("/");
    assert_eq!(
        next.status, 200,
        "expected the client connection still open: {next:?}"
    );

    // Interim responses are not passed on; the upstream's reason phrase is.
    let continued = client.get("/continue");
    assert_eq!(
        continued.status, 200,
        "expected only the final answer: {continued:?}"
    );
    assert_eq!(continued.text(), "ok");
    let reason = client.get("/reason");
    assert_eq!(
        reason.status_line, "HTTP/1.1 299 Fine Indeed",
        "expected the upstream's status and reason: {reason:?}"
    );
    let next = client.get("/");
    assert_eq!(next.status, 200, "{next:?}");
}

#[test]
fn an_upstream_stalling_mid_body_is_cut_off_after_the_read_timeout() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    // The fast path (a GET), then the general one (a chunked POST goes to hyper): the upstream
    // promises 100 bytes, sends 10 and stalls. The cluster's read timeout (1 s) bounds every
    // wait for body bytes, so the gateway gives up and closes the client's connection (a body
    // cut short can only be told by the close) long before the client's own 10 s read timeout.
    let requests = [
        request("GET", "/stall-body", &[]),
        format!(
            "POST /stall-body HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
             0\r\n\r\n"
        ),
    ];
    for (path, bytes) in ["fast path", "hyper"].into_iter().zip(requests) {
        let mut client = Client::connect(node);
        client.send(bytes);
        let head = client.wire.head().unwrap().expect("a response head");
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        let body = match client.wire.until_closed() {
            Ok(body) => body,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                std::mem::take(&mut client.wire.buf)
            }
            Err(e) => panic!("{path}: expected the gateway to close the connection, got {e}"),
        };
        assert_eq!(body, b"0123456789", "{path}: only what the upstream sent");
    }
    // The node still serves, on a fresh upstream connection.
    let mut client = Client::connect(node);
    assert_eq!(client.get("/").status, 200);
}

#[test]
fn gateway_errors_are_json_with_a_date() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    let mut client = Client::connect(node);

    let bad = client.get("/bad-length");
    assert_gateway_error(&bad, 502, "bad gateway");
    let slow = client.get("/slow");
    assert_gateway_error(&slow, 504, "gateway timeout");
    let mut client = Client::connect(node);
    client.send("GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n");
    let miss = client.read(false);
    assert_gateway_error(&miss, 404, "not found");
    let next = client.get("/");
    assert_eq!(
        next.status, 200,
        "expected the connection still usable after a gateway error: {next:?}"
    );
}

#[test]
fn requests_not_for_the_fast_path_hand_the_connection_to_hyper() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);

    // One request at a time: GET (fast path), POST with a chunked body (hyper from here on),
    // GET.
    let mut client = Client::connect(node);
    let first = client.get("/");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(
        forwarded_by(&first),
        "fast path",
        "expected the fast path first: {first:?}"
    );
    client.send(format!(
        "POST /post HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    ));
    let post = client.read(false);
    assert_eq!(post.status, 200, "expected the POST answered: {post:?}");
    assert_eq!(post.echoed().0, "POST /post HTTP/1.1");
    assert_eq!(
        forwarded_by(&post),
        "hyper",
        "expected a chunked body to go to hyper: {post:?}"
    );
    let again = client.get("/again");
    assert_eq!(
        again.status, 200,
        "expected a GET after the hand-over answered: {again:?}"
    );
    assert_eq!(again.echoed().0, "GET /again HTTP/1.1");
    assert_eq!(
        forwarded_by(&again),
        "hyper",
        "expected hyper to keep the connection after the hand-over: {again:?}"
    );

    // The same, pipelined in one write: the bytes the fast path read go to hyper with it.
    let mut client = Client::connect(node);
    client.send(format!(
        "{}POST /piped-post HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n{}",
        request("GET", "/piped-1", &[]),
        request("GET", "/piped-2", &[])
    ));
    for (want, by) in [
        ("GET /piped-1", "fast path"),
        ("POST /piped-post", "hyper"),
        ("GET /piped-2", "hyper"),
    ] {
        let a = client.read(false);
        assert_eq!(a.status, 200, "expected {want} answered: {a:?}");
        assert_eq!(
            a.echoed().0,
            format!("{want} HTTP/1.1"),
            "expected the answers in order"
        );
        assert_eq!(
            forwarded_by(&a),
            by,
            "expected {want} forwarded by {by}: {a:?}"
        );
    }

    let posts: Vec<Seen> = up
        .seen()
        .into_iter()
        .filter(|s| s.head.starts_with("POST "))
        .collect();
    assert_eq!(
        posts.len(),
        2,
        "expected both POSTs upstream once: {posts:?}"
    );
    for post in &posts {
        assert_eq!(
            post.body, b"hello",
            "expected the POST body upstream: {post:?}"
        );
    }

    // HTTP/1.0 goes to hyper from the first request.
    let mut client = Client::connect(node);
    client.send(format!("GET /old HTTP/1.0\r\nHost: {HOST}\r\n\r\n"));
    let old = client.read(false);
    assert_eq!(
        old.status, 200,
        "expected an HTTP/1.0 request answered: {old:?}"
    );
    assert_eq!(
        forwarded_by(&old),
        "hyper",
        "expected HTTP/1.0 to go to hyper: {old:?}"
    );
    assert!(
        up.seen().iter().any(|s| s.head.starts_with("GET /old ")),
        "expected the HTTP/1.0 request upstream"
    );
}

/// A POST of `body` for [`HOST`] with its `Content-Length`.
fn post(target: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {target} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// The body the upstream received with the request for `path`, which it saw once.
fn body_seen(up: &Scripted, path: &str) -> Vec<u8> {
    let seen: Vec<Seen> = up
        .seen()
        .into_iter()
        .filter(|s| s.head.starts_with(&format!("POST {path} ")))
        .collect();
    assert_eq!(seen.len(), 1, "expected {path} upstream once: {seen:?}");
    seen[0].body.clone()
}

#[test]
fn request_bodies_with_a_length_stay_on_the_fast_path() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);

    // A small body, whole with its head, between two GETs, one request at a time and then
    // pipelined: all on the fast path, each body upstream exactly.
    let mut client = Client::connect(node);
    assert_eq!(forwarded_by(&client.get("/before")), "fast path");
    client.send(post("/small", b"hello"));
    let small = client.read(false);
    assert_eq!(small.status, 200, "expected the POST answered: {small:?}");
    assert_eq!(forwarded_by(&small), "fast path", "{small:?}");
    assert_eq!(
        find(&small.echoed().1, "Content-Length"),
        Some("5"),
        "expected the client's length upstream: {small:?}"
    );
    assert_eq!(forwarded_by(&client.get("/after")), "fast path");
    assert_eq!(body_seen(&up, "/small"), b"hello");

    let mut piped = request("GET", "/piped-a", &[]).into_bytes();
    piped.extend_from_slice(&post("/piped-post", b"pipelined body"));
    piped.extend_from_slice(request("GET", "/piped-b", &[]).as_bytes());
    client.send(piped);
    for want in ["GET /piped-a", "POST /piped-post", "GET /piped-b"] {
        let a = client.read(false);
        assert_eq!(a.status, 200, "expected {want} answered: {a:?}");
        assert_eq!(
            a.echoed().0,
            format!("{want} HTTP/1.1"),
            "expected the answers in order"
        );
        assert_eq!(forwarded_by(&a), "fast path", "{a:?}");
    }
    assert_eq!(body_seen(&up, "/piped-post"), b"pipelined body");

    // A body larger than one read, sent in pieces, the last with the next request pipelined
    // after it: the body upstream whole and exact, then the next request answered on the same
    // connection.
    let big: Vec<u8> = (0..(1 << 20) + 7).map(|i: u32| (i % 251) as u8).collect();
    let whole = post("/big", &big);
    let head_len = whole.len() - big.len();
    client.send(&whole[..head_len + 1000]);
    std::thread::sleep(Duration::from_millis(50));
    client.send(&whole[head_len + 1000..head_len + 300_000]);
    std::thread::sleep(Duration::from_millis(50));
    let mut last = whole[head_len + 300_000..].to_vec();
    last.extend_from_slice(request("GET", "/after-big", &[]).as_bytes());
    client.send(last);
    let answer = client.read(false);
    assert_eq!(
        answer.status, 200,
        "expected the big POST answered: {answer:?}"
    );
    assert_eq!(forwarded_by(&answer), "fast path", "{answer:?}");
    let next = client.read(false);
    assert_eq!(next.echoed().0, "GET /after-big HTTP/1.1", "{next:?}");
    assert_eq!(forwarded_by(&next), "fast path", "{next:?}");
    let upstream_big = body_seen(&up, "/big");
    assert!(
        upstream_big == big,
        "expected the big body upstream exactly ({} bytes of {})",
        upstream_big.len(),
        big.len()
    );
}

#[test]
fn request_bodies_refused_early_close_the_connection() {
    let up = Scripted::start();
    let c = start(&up);
    let node = c.node(1);
    node.put_key(
        "/hermes/domains/fast",
        &json!({"name": "fast", "hosts": [HOST],
                "routes": [{"name": ROUTE, "uri": "/*", "max_body_bytes": 100,
                            "clusters": [{"name": "fast", "weight": 100}]}]})
        .to_string(),
    );
    wait_for(
        "the body limit to be served",
        Duration::from_secs(10),
        || {
            let mut client = Client::connect(node);
            client.send(post("/probe", &[b'x'; 101]));
            (client.read(false).status == 413).then_some(())
        },
    );

    // Over the route's limit, the body sent with the head: refused, and as the body was read
    // whole, the connection goes on.
    let mut client = Client::connect(node);
    client.send(post("/limited", &[b'x'; 101]));
    let refused = client.read(false);
    assert_gateway_error(&refused, 413, "payload too large");
    assert_eq!(refused.header("connection"), None, "{refused:?}");
    assert_eq!(client.get("/next").status, 200);

    // Over the limit with the body still to come: refused, and the connection closes (what
    // follows would be the body, not a request).
    let mut client = Client::connect(node);
    client.send(format!(
        "POST /limited HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5000\r\n\r\n"
    ));
    let refused = client.read(false);
    assert_gateway_error(&refused, 413, "payload too large");
    assert_eq!(refused.header("connection"), Some("close"), "{refused:?}");
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "expected the connection closed"
    );
    assert!(
        !up.seen()
            .iter()
            .any(|s| s.head.starts_with("POST /limited ")),
        "expected refused bodies kept from the upstream"
    );

    // An upstream that answers before it has the body: its answer reaches the client, and the
    // connection closes, as the rest of the body was never read.
    let mut client = Client::connect(node);
    client.send(format!(
        "POST /early HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 90\r\n\r\n0123456789"
    ));
    let early = client.read(false);
    assert_eq!(
        early.status, 413,
        "expected the upstream's answer: {early:?}"
    );
    assert_eq!(early.text(), "big!", "{early:?}");
    assert_eq!(early.header("connection"), Some("close"), "{early:?}");
    assert!(
        client.closed_within(Duration::from_secs(5)),
        "expected the connection closed"
    );
}
