//! Serving an axum router (or any service: [`serve_service`]) on a listener within bounds,
//! for every listener of a node that is not the proxy (admin, etcd, peer): at most
//! [`Bounds::max_connections`] connections at once (further clients wait in the kernel's
//! accept queue), a request head must arrive within [`Bounds::header_timeout`] (also the
//! limit on an idle keep-alive connection), heads are bounded in size, and HTTP/2 connections
//! are pinged and capped in streams. Bodies are each endpoint's to bound, in size and time,
//! since only it knows which of its requests stream. The client's address reaches handlers as
//! axum's `ConnectInfo<SocketAddr>`.
//!
//! Bodies are bounded by [`bound_bodies`], a middleware each listener applies to the routes
//! that read a whole body: a declared `Content-Length` over the limit is refused before a byte
//! is read, and a body that is larger, or not complete within its deadline, fails the read.
//!
//! The connection tasks belong to the server: when it stops (its `shutdown` resolved and the
//! open connections finished, or the server task was aborted) none outlive it.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// The bounds of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Names the listener in the log.
    pub name: &'static str,
    pub max_connections: usize,
    pub header_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection: each is a request whose body counts against
    /// the listener's budget.
    pub max_streams: u32,
}

/// Streams per HTTP/2 connection by default: a few dozen is plenty for a browser or a peer.
pub const MAX_STREAMS: u32 = 32;

/// How long a request head may take to arrive, by default.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head, in bytes (hyper's read buffer for HTTP/1.1, the header list for h2).
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A request as a listener's service receives it from the connection.
pub type IncomingRequest = axum::http::Request<Incoming>;

/// Serves `router` on `listener` until `shutdown` resolves and every open connection has
/// finished (long-lived ones are the caller's to cut off, by aborting this task).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_service(listener, router, bounds, shutdown).await
}

/// [`serve`] for any service, for a listener that dispatches some requests before a router
/// would (the etcd listener hands gRPC calls straight to tonic).
pub async fn serve_service<S>(
    listener: TcpListener,
    service: S,
    bounds: Bounds,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    S: tower::Service<IncomingRequest, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_concurrent_streams(bounds.max_streams)
        .max_header_list_size(MAX_HEAD_BYTES as u32);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(listener = bounds.name, error = %e, "accepting a connection failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let service = hyper::service::service_fn(move |mut req: IncomingRequest| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            service.clone().oneshot(req)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        connections.spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    // Ask every connection to finish its current request and close.
    let all_closed = graceful.shutdown();
    while connections.join_next().await.is_some() {}
    all_closed.await;
    Ok(())
}

/// The size and time allowed to one request body.
#[derive(Clone, Copy)]
pub struct BodyBounds {
    pub max_bytes: usize,
    /// From the moment the head was read to the body's end.
    pub deadline: Duration,
    /// An oversized body up to this size (declared, or found while reading) is read and
    /// dropped for at most [`DRAIN_TIME`] before the refusal goes out, so that a client still
    /// sending sees the answer instead of a reset connection (nginx's lingering close does the
    /// same). A larger declared body is refused at once, before a byte is read.
    pub drain_up_to: usize,
    /// The listener's own error answer.
    pub reject: fn(StatusCode, String) -> Response,
    /// Bytes of request bodies all of the listener's requests may hold at once.
    pub budget: &'static BodyBudget,
}

/// The request-body bytes a listener holds at once, across connections: with each body
/// bounded only by itself, 4,096 connections of 1 MiB bodies would be 4 GiB, read before any
/// handler could authenticate them. A request reserves its declared length (or the largest
/// body, when it streams one without a length) before a byte is read, and is answered 503
/// when the budget is spent.
pub struct BodyBudget(Semaphore);

impl BodyBudget {
    pub const fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Semaphore::const_new(bytes))
    }
}

impl std::fmt::Debug for BodyBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBudget")
            .field("available", &self.0.available_permits())
            .finish()
    }
}

/// How long an oversized body is drained before its refusal.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

impl std::fmt::Debug for BodyBounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyBounds")
            .field("max_bytes", &self.max_bytes)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Why a bounded body failed to be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body did not arrive within {0:?}")]
    TimedOut(Duration),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
}

impl BodyError {
    /// The status a handler answers a body that failed this way with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// The bounded-body error somewhere in `e`'s source chain, if any.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyError> {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(found) = err.downcast_ref::<BodyError>() {
                return Some(found);
            }
            cur = err.source();
        }
        None
    }
}

pin_project_lite::pin_project! {
    /// A body that fails once it passes its size or its deadline. Past its size it first
    /// drains (see [`BodyBounds::drain_up_to`]).
    struct Bounded<B> {
        #[pin]
        inner: B,
        #[pin]
        deadline: tokio::time::Sleep,
        bounds: BodyBounds,
        read: usize,
    }
}

async fn drain<B: http_body::Body<Data = Bytes> + Unpin>(body: &mut B, up_to: usize) {
    use http_body_util::BodyExt as _;
    let mut seen = 0usize;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > up_to {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, reading).await;
}

impl<B> http_body::Body for Bounded<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.deadline.poll(cx).is_ready() {
            return Poll::Ready(Some(Err(BodyError::TimedOut(this.bounds.deadline).into())));
        }
        let mut inner = this.inner;
        loop {
            let over = *this.read > this.bounds.max_bytes;
            match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.read += frame.data_ref().map_or(0, Bytes::len);
                    let limit = this.bounds.max_bytes;
                    if *this.read <= limit {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    // Oversized: drop what keeps coming, up to the drain size, then refuse.
                    if *this.read > limit.max(this.bounds.drain_up_to) {
                        return Poll::Ready(Some(Err(BodyError::TooLarge(limit).into())));
                    }
                }
                Poll::Ready(None) if over => {
                    return Poll::Ready(Some(Err(
                        BodyError::TooLarge(this.bounds.max_bytes).into()
                    )));
                }
                Poll::Ready(Some(Err(e))) if !over => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(Some(Err(_))) => {
                    return Poll::Ready(Some(Err(
                        BodyError::TooLarge(this.bounds.max_bytes).into()
                    )));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`): refuses a declared `Content-Length`
/// over the limit (413) before reading, and gives the handler a body bounded in size and time.
pub async fn bound_bodies(State(bounds): State<BodyBounds>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > bounds.max_bytes as u64) {
        if declared <= bounds.drain_up_to as u64 {
            let mut body = req.into_body();
            drain(&mut body, bounds.drain_up_to).await;
        }
        return (bounds.reject)(
            StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooLarge(bounds.max_bytes).to_string(),
        );
    }
    let streamed = req
        .headers()
        .contains_key(axum::http::header::TRANSFER_ENCODING);
    let reserve = match declared {
        Some(n) => n as usize,
        None if streamed => bounds.max_bytes,
        None => 0,
    };
    let _reserved = if reserve > 0 {
        let n = u32::try_from(reserve).unwrap_or(u32::MAX);
        match bounds.budget.0.try_acquire_many(n) {
            Ok(permit) => Some(permit),
            Err(_) => {
                return (bounds.reject)(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many request bodies in flight on this listener; retry shortly".into(),
                )
            }
        }
    } else {
        None
    };
    let req = req.map(|body| {
        Body::new(Bounded {
            inner: body,
            deadline: tokio::time::sleep(bounds.deadline),
            bounds,
            read: 0,
        })
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(bounds: Bounds) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.ip().to_string()
            }),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(serve(listener, router, bounds, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    async fn get(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_half_sent_head_is_dropped_and_slots_come_back() {
        let bounds = Bounds {
            name: "test",
            max_connections: 2,
            header_timeout: Duration::from_millis(200),
            max_streams: MAX_STREAMS,
        };
        let (addr, _stop) = start(bounds).await;
        // Two stalled clients take both slots...
        let mut stalled = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost:").await.unwrap();
            stalled.push(s);
        }
        // ...until the head timeout closes them; then a real request is served.
        for s in &mut stalled {
            let mut buf = Vec::new();
            let n = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
                .await
                .expect("a stalled connection is closed")
                .unwrap_or(0);
            let _ = n;
        }
        let answer = get(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("127.0.0.1"),
            "the client's address: {answer}"
        );
    }

    /// A handler that reads the whole body and answers its length, or the bound it broke.
    async fn echo_len(body: Body) -> (StatusCode, String) {
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(b) => (StatusCode::OK, b.len().to_string()),
            Err(e) => match BodyError::find(&e) {
                Some(b) => (b.status(), b.to_string()),
                None => (StatusCode::BAD_REQUEST, e.to_string()),
            },
        }
    }

    async fn start_bounded() -> SocketAddr {
        static BUDGET: BodyBudget = BodyBudget::new(1 << 20);
        start_bounded_with(&BUDGET, Duration::from_millis(300)).await
    }

    async fn start_bounded_with(budget: &'static BodyBudget, deadline: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bounds = BodyBounds {
            max_bytes: 10,
            deadline,
            drain_up_to: 20,
            reject: |status, message| (status, message).into_response(),
            budget,
        };
        let router = Router::new()
            .route("/", axum::routing::post(echo_len))
            .layer(axum::middleware::from_fn_with_state(bounds, bound_bodies));
        let server = Bounds {
            name: "test",
            max_connections: 8,
            header_timeout: HEADER_TIMEOUT,
            max_streams: MAX_STREAMS,
        };
        tokio::spawn(serve(listener, router, server, std::future::pending()));
        addr
    }

    async fn exchange(addr: SocketAddr, raw: &[u8], then_wait: bool) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        if then_wait {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        } else {
            let _ = s.read_to_end(&mut out).await;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn bodies_are_bounded_in_size_and_time() {
        let addr = start_bounded().await;
        let ok = exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
            false,
        )
        .await;
        assert!(
            ok.starts_with("HTTP/1.1 200") && ok.ends_with("\r\n\r\n3"),
            "{ok}"
        );
        // Declared too large: refused before a byte of it is read.
        let declared = exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n",
            true,
        )
        .await;
        assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
        // Chunked and too large.
        let chunked = exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
            false,
        )
        .await;
        assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
        // Half a body, then silence: cut off at the deadline.
        let stalled = exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab",
            true,
        )
        .await;
        assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");
    }

    #[tokio::test]
    async fn bodies_in_flight_share_one_budget() {
        // Room for one 10-byte body at a time.
        static BUDGET: BodyBudget = BodyBudget::new(15);
        let addr = start_bounded_with(&BUDGET, Duration::from_secs(5)).await;
        // A client declares ten bytes and sends none: its reservation holds.
        let mut holder = tokio::net::TcpStream::connect(addr).await.unwrap();
        holder
            .write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
            .await
            .unwrap();
        // Until the server has taken it, a second one may still get in: wait for the refusal.
        let mut refused = String::new();
        for _ in 0..100 {
            refused = exchange(
                addr,
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\nconnection: close\r\n\r\n0123456789",
                false,
            )
            .await;
            if refused.starts_with("HTTP/1.1 503") {
                break;
            }
        }
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        // Bodiless requests need no budget; and once the holder finishes, bodies go through.
        holder.write_all(b"0123456789").await.unwrap();
        let mut out = vec![0u8; 256];
        let n = holder.read(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out[..n]).starts_with("HTTP/1.1 200"));
        drop(holder);
        let ok = exchange(
            addr,
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc",
            false,
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let bounds = Bounds {
            name: "test",
            max_connections: 4,
            header_timeout: HEADER_TIMEOUT,
            max_streams: MAX_STREAMS,
        };
        let (addr, _stop) = start(bounds).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES * 2)
        );
        let _ = s.write_all(big.as_bytes()).await;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(!out.contains("200 OK"), "{out}");
    }
}
