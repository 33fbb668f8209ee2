//! The HTTP/1.1 fast path: every proxy connection starts here. Requests without a body or with
//! a `Content-Length` one, in origin form, to plain-HTTP clusters, on routes that do not
//! compress are forwarded by
//! copying header bytes through, with only the edits the general path makes (hop-by-hop
//! headers out, forwarding headers, transforms, Host), on bare pooled upstream sockets, with
//! no `http::Request` or `Response` built. That is the bulk of API traffic, and it is where
//! hyper's per-request work (header maps both ways, two state machines, task wake-ups) cost
//! more than the proxying itself (BENCHMARKS.md).
//!
//! Anything else — h2c, HTTP/1.0, chunked bodies, upgrades, `Expect`, unusual targets, malformed or
//! oversized heads, compression, TLS clusters — hands the connection, with the bytes read so
//! far, to hyper and [`super::handler`] from that request on. The decision is made before
//! anything is sent or counted, so each request is still answered and counted exactly once,
//! by one path or the other.

mod chunked;
mod date;
mod forward;
pub(crate) mod head;
mod prefixed;
pub(crate) mod relay;
pub(crate) mod upstream;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use forward::{forward, until, Downstream, Outcome};
use head::{parse_request, Parsed, RequestHead};
use prefixed::Prefixed;

use super::handler::handle;
use crate::Gateway;

/// A request head not complete within this time closes the connection, idle keep-alive
/// connections included (hyper's `header_read_timeout`, as the general path sets it).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A head still incomplete at this size goes to hyper, which applies its own limit (about
/// 400 KiB) and answers 431 beyond it.
const MAX_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 8 * 1024;

/// Resolves once shutdown has begun (or its sender is gone).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

enum Next {
    Head(RequestHead),
    /// Not for the fast path (or unparseable by it): hyper reads it from the start.
    Hyper,
    Closed,
}

/// A connection's wait for shutdown, made once and polled between requests: making the wait
/// anew for every request (a waiter added to and removed from the channel) showed in profiles.
type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

fn stop_signal(mut shutdown: watch::Receiver<bool>) -> Stop {
    Box::pin(async move { stopping(&mut shutdown).await })
}

/// The next request head. `stop` must not be polled again once it has resolved (the
/// connection closes then).
async fn next_head(conn: &mut Downstream, stop: &mut Stop) -> Next {
    let since = conn
        .finished
        .take()
        .unwrap_or_else(tokio::time::Instant::now);
    let deadline = since + HEADER_TIMEOUT;
    loop {
        if !conn.buf.is_empty() {
            match parse_request(&conn.buf, &mut conn.spare_fields) {
                Parsed::Complete(head) => return Next::Head(head),
                Parsed::Invalid => return Next::Hyper,
                Parsed::Partial if conn.buf.len() >= MAX_HEAD => return Next::Hyper,
                Parsed::Partial => {}
            }
        }
        conn.buf.reserve(READ_CHUNK);
        // Between requests a shutdown closes the connection; a head already begun is answered.
        let between = conn.buf.is_empty();
        let read = tokio::select! {
            biased;
            read = conn.stream.read_buf(&mut conn.buf) => read,
            _ = until(&mut conn.header_timer, deadline) => return Next::Closed,
            _ = stop.as_mut(), if between => return Next::Closed,
        };
        match read {
            Ok(0) | Err(_) => return Next::Closed,
            Ok(_) => {}
        }
    }
}

/// Serves one proxy connection until it closes, the fast path first.
pub async fn serve_connection(
    gw: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    hyper: Arc<auto::Builder<TokioExecutor>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut conn = Downstream::new(stream, peer);
    let mut stop = stop_signal(shutdown.clone());
    loop {
        let head = match next_head(&mut conn, &mut stop).await {
            Next::Head(head) => head,
            Next::Hyper => return serve_with_hyper(conn, gw, hyper, shutdown).await,
            Next::Closed => return,
        };
        let outcome = forward(&gw, &mut conn, &head).await;
        conn.spare_fields = head.fields;
        let stopping = *shutdown.borrow();
        match outcome {
            Outcome::Fallback => return serve_with_hyper(conn, gw, hyper, shutdown).await,
            Outcome::KeepAlive(rest_of_request) if !stopping => conn.buf.advance(rest_of_request),
            Outcome::KeepAlive(_) | Outcome::Close => {
                let _ = conn.stream.shutdown().await;
                return;
            }
        }
    }
}

/// The rest of the connection on hyper (HTTP/1.1 or h2c) and the general path, starting
/// with the bytes the fast path read and did not answer. A shutdown lets it finish what it
/// has begun, as hyper's graceful shutdown does.
async fn serve_with_hyper(
    conn: Downstream,
    gw: Arc<Gateway>,
    hyper: Arc<auto::Builder<TokioExecutor>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = conn.peer;
    let io = Prefixed::new(conn.buf.freeze(), conn.stream);
    let service = service_fn(move |req| {
        let gw = gw.clone();
        async move { Ok::<_, Infallible>(handle(gw, peer, req).await) }
    });
    let served = hyper.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(served);
    let result = tokio::select! {
        result = served.as_mut() => result,
        _ = stopping(&mut shutdown) => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "proxy connection ended with an error");
    }
}
