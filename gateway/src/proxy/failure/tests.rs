//! Every error either proxy path can meet, mapped to one (status, who failed, retry).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::metrics::GatewayMetrics;

type BoxError = Box<dyn Error + Send + Sync>;

/// Stands for the layers (hyper's "user body" error, the pool's wrapping) between the
/// transport's error and the cause our own body checks put at the bottom of the chain.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Wrapped(&'static str, #[source] BoxError);

fn io(kind: std::io::ErrorKind) -> std::io::Error {
    std::io::Error::new(kind, "test")
}

fn exchange_error(e: impl Error + Send + Sync + 'static) -> SendError {
    SendError::Exchange(Box::new(e))
}

/// A real hyper client error: the answer `response` sent to a request by a peer that then
/// closes the connection.
async fn hyper_error_for(response: &'static [u8]) -> hyper::Error {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let peer = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let _ = server.read(&mut buf).await;
        let _ = server.write_all(response).await;
        let _ = server.shutdown().await;
    });
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let req = Request::builder()
        .uri("/")
        .header("host", "node")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let err = send.send_request(req).await.unwrap_err();
    peer.await.unwrap();
    driver.abort();
    err
}

/// Exhaustive over `Failure`: a new variant does not compile until it is given a row.
fn variant(f: Failure) -> usize {
    match f {
        Failure::BadRequestHead => 0,
        Failure::NoRoute => 1,
        Failure::BodyTooLarge => 2,
        Failure::BodyStalled => 3,
        Failure::BodyMalformed => 4,
        Failure::BodyBrokenOff => 5,
        Failure::NoCluster => 6,
        Failure::NoNode => 7,
        Failure::BuildRequest => 8,
        Failure::ForbiddenUpstream => 9,
        Failure::Connect => 10,
        Failure::Exchange => 11,
        Failure::BadResponse => 12,
        Failure::Timeout => 13,
        Failure::RateLimited { .. } => 14,
        Failure::CircuitOpen => 15,
    }
}
const VARIANTS: usize = 16;

#[tokio::test]
async fn every_error_maps_to_one_status_source_and_retry() {
    use Retry::*;
    use Source::*;
    let refused = || ExchangeError::Connect {
        node: "n:1".into(),
        source: io(std::io::ErrorKind::ConnectionRefused),
    };
    let bad_length = hyper_error_for(b"HTTP/1.1 200 OK\r\ncontent-length: ten\r\n\r\n").await;
    let bad_status = hyper_error_for(b"HTTP/1.1 2x0 OK\r\n\r\n").await;
    let closed_early = hyper_error_for(b"").await;
    let uri_error = "http://[bad"
        .parse::<http::Uri>()
        .map(|_| ())
        .expect_err("an invalid URI");

    let rows: Vec<(&str, Failure, u16, Source, Retry)> = vec![
        // Decided before any node is asked (both paths, `decide` and the head checks).
        (
            "two Hosts / no Host",
            Failure::BadRequestHead,
            400,
            Client,
            Never,
        ),
        ("no route", Failure::NoRoute, 404, Client, Never),
        (
            "over the route's rate limit, its rejected_code",
            Failure::RateLimited {
                status: 503,
                retry_after: 1,
            },
            503,
            Client,
            Never,
        ),
        (
            "declared body over the limit",
            Failure::BodyTooLarge,
            413,
            Client,
            Never,
        ),
        (
            "no cluster of the route exists",
            Failure::NoCluster,
            503,
            Gateway,
            Never,
        ),
        (
            "every node's breaker is open",
            Failure::CircuitOpen,
            503,
            Upstream,
            Never,
        ),
        (
            "no node in the cluster",
            Failure::NoNode,
            503,
            Gateway,
            Never,
        ),
        (
            "no response head in time",
            Failure::Timeout,
            504,
            Upstream,
            IfIdempotent,
        ),
        // The fast path's exchange.
        (
            "fast: connection refused",
            Failure::of_upstream(&UpstreamError::Connect(refused())),
            502,
            Upstream,
            Safe,
        ),
        (
            "fast: connect timeout",
            Failure::of_upstream(&UpstreamError::Connect(ExchangeError::ConnectTimeout {
                node: "n:1".into(),
                timeout: Duration::from_secs(1),
            })),
            502,
            Upstream,
            Safe,
        ),
        (
            "fast: a control listener",
            Failure::of_upstream(&UpstreamError::Connect(ExchangeError::Forbidden {
                node: "n:1".into(),
            })),
            502,
            Gateway,
            Never,
        ),
        (
            "fast: write failed",
            Failure::of_upstream(&UpstreamError::Write(io(std::io::ErrorKind::BrokenPipe))),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "fast: read failed",
            Failure::of_upstream(&UpstreamError::Read(io(
                std::io::ErrorKind::ConnectionReset,
            ))),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "fast: closed before a head",
            Failure::of_upstream(&UpstreamError::Closed),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "fast: malformed head (bad Content-Length too)",
            Failure::of_upstream(&UpstreamError::Malformed),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "fast: head too large",
            Failure::of_upstream(&UpstreamError::HeadTooLarge),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "fast: client stalled its body",
            Failure::of_upstream(&UpstreamError::ClientIdle(Duration::from_secs(1))),
            408,
            Client,
            Never,
        ),
        (
            "fast: client went away mid-body",
            Failure::of_upstream(&UpstreamError::ClientGone(io(
                std::io::ErrorKind::UnexpectedEof,
            ))),
            502,
            Client,
            Never,
        ),
        // The hyper path's exchange.
        (
            "hyper: request not buildable",
            Failure::of_send(&SendError::Build(Box::new(uri_error))),
            500,
            Gateway,
            Never,
        ),
        (
            "hyper: body over the limit while streaming",
            Failure::of_send(&exchange_error(Wrapped(
                "user body",
                Box::new(BodyTooLarge { limit: 10 }),
            ))),
            413,
            Client,
            Never,
        ),
        (
            "hyper: client stalled its body",
            Failure::of_send(&exchange_error(Wrapped(
                "user body",
                Box::new(RequestBodyIdle(Duration::from_secs(1))),
            ))),
            408,
            Client,
            Never,
        ),
        (
            "hyper: client's chunked framing broken",
            Failure::of_send(&exchange_error(Wrapped(
                "user body",
                Box::new(ClientBodyFailed(Box::new(io(
                    std::io::ErrorKind::InvalidData,
                )))),
            ))),
            400,
            Client,
            Never,
        ),
        (
            "hyper: client reset mid-body",
            Failure::of_send(&exchange_error(Wrapped(
                "user body",
                Box::new(ClientBodyFailed(Box::new(io(
                    std::io::ErrorKind::ConnectionReset,
                )))),
            ))),
            502,
            Client,
            Never,
        ),
        (
            "hyper: connection refused",
            Failure::of_send(&exchange_error(refused())),
            502,
            Upstream,
            Safe,
        ),
        (
            "hyper: a control listener",
            Failure::of_send(&exchange_error(ExchangeError::Forbidden {
                node: "n:1".into(),
            })),
            502,
            Gateway,
            Never,
        ),
        (
            "hyper: bad upstream Content-Length",
            Failure::of_send(&exchange_error(ExchangeError::Http(bad_length))),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "hyper: bad status line",
            Failure::of_send(&exchange_error(ExchangeError::Http(bad_status))),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "hyper: closed before a head",
            Failure::of_send(&exchange_error(ExchangeError::Http(closed_early))),
            502,
            Upstream,
            IfIdempotent,
        ),
        (
            "hyper: anything else from the connection",
            Failure::of_send(&exchange_error(io(std::io::ErrorKind::Other))),
            502,
            Upstream,
            IfIdempotent,
        ),
    ];
    let mut seen = BTreeSet::new();
    for (what, failure, status, source, retry) in rows {
        assert_eq!(
            failure.answer().status().as_u16(),
            status,
            "{what}: {failure:?}"
        );
        assert_eq!(failure.source(), source, "{what}: {failure:?}");
        assert_eq!(failure.retry(), retry, "{what}: {failure:?}");
        seen.insert(variant(failure));
    }
    assert_eq!(seen.len(), VARIANTS, "a failure without a row: {seen:?}");
}

/// Both paths' bad `Content-Length` from a node land on the same failure (they used to
/// differ: recorded as a success on the fast path, charged to the node on the other).
#[tokio::test]
async fn a_bad_upstream_content_length_is_the_same_failure_on_both_paths() {
    let hyper_path = Failure::of_send(&exchange_error(ExchangeError::Http(
        hyper_error_for(b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n").await,
    )));
    assert_eq!(hyper_path, Failure::BadResponse);
    assert_eq!(hyper_path.source(), Source::Upstream);
    // The fast path finds the same head unusable (`Framing::of`), which `forward` settles as
    // `Failure::BadResponse`, charged to the node.
    use crate::proxy::h1::head::{parse_response, Fields, Parsed};
    use crate::proxy::h1::relay::Framing;
    let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n";
    let Parsed::Complete(head) = parse_response(raw, &mut Vec::new()) else {
        panic!("the head parses as HTTP/1.1");
    };
    let fields = Fields {
        head: &raw[..head.len],
        list: &head.fields,
    };
    assert!(Framing::of(&Method::GET, &head, fields).is_err());
}

fn record() -> Record {
    let metrics = Arc::new(GatewayMetrics::register(&prometheus::Registry::new()).unwrap());
    Record::new(
        metrics,
        Method::POST,
        "h".into(),
        "/".into(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )
}

#[tokio::test(start_paused = true)]
async fn settling_charges_the_node_only_for_its_own_failures() {
    // A breaker that opens at the first failure, and ejection at the first: whatever reaches
    // them shows at once.
    let mut clusters = crate::upstream::cluster::Clusters::default();
    clusters.upsert(
        serde_json::from_value(serde_json::json!({"name": "c",
            "nodes": [{"host": "10.0.0.1", "port": 80}],
            "circuit_breaker": {"failure_threshold": 1},
            "health_check": {"passive": {"consecutive_failures": 1}}}))
        .unwrap(),
    );
    let cluster = clusters.get("c").unwrap().clone();
    let node = cluster.balancer.endpoints()[0].clone();
    let charge = || Charge {
        cluster: &cluster,
        node: &node,
        elapsed: Duration::from_millis(3),
    };
    for failure in [
        Failure::BodyBrokenOff,
        Failure::BodyStalled,
        Failure::BodyTooLarge,
        Failure::BodyMalformed,
        Failure::ForbiddenUpstream,
        Failure::BuildRequest,
        Failure::RateLimited {
            status: 429,
            retry_after: 1,
        },
    ] {
        let mut r = record();
        let answer = settle(&mut r, failure, Some(charge()), &"");
        assert_eq!(node.failures(), 0, "{failure:?} was charged to the node");
        assert_eq!(
            node.breaker.phase(),
            crate::protect::breaker::Phase::Closed,
            "{failure:?} tripped the breaker"
        );
        assert!(
            node.health.usable(Instant::now()),
            "{failure:?} ejected the node"
        );
        assert_eq!(r.status, answer.status().as_u16());
        assert_eq!(r.failure, Some(failure));
        assert!(r.local);
        assert_eq!(r.bytes, answer.body().len() as u64);
    }
    for (n, failure) in [
        Failure::Connect,
        Failure::Exchange,
        Failure::BadResponse,
        Failure::Timeout,
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = record();
        settle(&mut r, failure, Some(charge()), &"");
        assert_eq!(node.failures(), n as u64 + 1, "{failure:?} was not charged");
        assert_eq!(
            node.breaker.phase(),
            crate::protect::breaker::Phase::Open,
            "{failure:?}"
        );
        assert!(!node.health.usable(Instant::now()), "{failure:?}");
    }
}
