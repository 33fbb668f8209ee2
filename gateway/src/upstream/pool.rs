//! Plain-HTTP upstream connections (HTTP/1.1), kept idle per node and driven by the request
//! that uses them.
//!
//! hyper-util's pooled client gives every upstream connection a task of its own: each proxied
//! request then crosses from the downstream connection's task to that task and back, twice
//! (request, response head, body). Here the request's own task polls the connection (hyper's
//! `client::conn::http1`) while it waits for the response head, and the response body polls it
//! while the downstream connection sends that body on, so no request changes task. An idle
//! connection is polled by nobody; it is checked before reuse and swept by
//! [`IdleConns::sweep`].
//!
//! `keepalive_pool` of the cluster: `size` idle connections per node at most, closed after
//! `idle_timeout` seconds idle, and after `requests` requests (nginx's `keepalive_requests`;
//! the original gateway ignored it); TCP keepalive after `idle_timeout`, as the original's
//! connector set it.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::client::{BoxError, ProxyBody};
use super::guard::ForbiddenUpstreams;
use super::raw::RawConn;
use crate::config::types::KeepalivePoolConfig;

type Driver = http1::Connection<TokioIo<TcpStream>, ProxyBody>;

/// Why an upstream exchange failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connecting to {node} failed: {source}")]
    Connect {
        node: String,
        source: std::io::Error,
    },
    #[error("connecting to {node} timed out after {timeout:?}")]
    ConnectTimeout { node: String, timeout: Duration },
    #[error("refusing to connect to {node}: it is one of this cluster's own control listeners")]
    Forbidden { node: String },
    #[error("upstream HTTP/1.1 exchange failed: {0}")]
    Http(#[from] hyper::Error),
}

pub(super) async fn connect(target: &Target<'_>) -> Result<TcpStream, ExchangeError> {
    let timed_out = || ExchangeError::ConnectTimeout {
        node: target.node.to_string(),
        timeout: target.connect_timeout,
    };
    let failed = |source| ExchangeError::Connect {
        node: target.node.to_string(),
        source,
    };
    let started = Instant::now();
    let resolving = tokio::net::lookup_host((target.host, target.port));
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(target.connect_timeout, resolving)
        .await
        .map_err(|_| timed_out())?
        .map_err(failed)?
        .collect();
    // Every address gets its share of what is left of the timeout, so one black-holed address
    // (an unreachable AAAA, say) does not use it all up (hyper-util's connector does the same).
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let left = target.connect_timeout.saturating_sub(started.elapsed());
        let share = left / (addrs.len() - i) as u32;
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return finish_connect(target, stream),
            Ok(Err(e)) => last = Some(failed(e)),
            Err(_) => last = Some(timed_out()),
        }
    }
    Err(last.unwrap_or_else(|| {
        failed(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the node's host resolved to no address",
        ))
    }))
}

fn finish_connect(target: &Target<'_>, stream: TcpStream) -> Result<TcpStream, ExchangeError> {
    // The socket says where it really went, whatever name or address form led there.
    if let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) {
        if target.guard.forbids(local, peer) {
            tracing::warn!(node = target.node, %peer, "refused an upstream that is a control listener of this cluster");
            return Err(ExchangeError::Forbidden {
                node: target.node.to_string(),
            });
        }
    }
    let _ = stream.set_nodelay(true);
    if target.pool.idle_timeout > 0 {
        // As the original gateway's connector: TCP keepalive probes after `idle_timeout`, so a
        // peer that vanished is noticed on long-lived connections too.
        let keepalive =
            socket2::TcpKeepalive::new().with_time(Duration::from_secs(target.pool.idle_timeout));
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(error = %e, node = target.node, "could not set TCP keepalive");
        }
    }
    Ok(stream)
}

/// One open connection: the handle that sends requests and the state machine that moves bytes.
pub struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    /// `None` once the connection has ended. Dropping the finished driver matters: a request
    /// still queued in it (an idle connection the upstream closed cleanly, seen only after the
    /// request was queued) is handed back unsent instead of waiting for ever.
    driver: Option<Driver>,
    served: u64,
}

impl Conn {
    /// Boxed, like the connection itself (about 700 bytes): requests move connections between
    /// the idle list, their futures and their bodies. The future is boxed too, so that every
    /// request's future does not carry the connect path (it halved `send`'s future, to 1.2 KB).
    fn open<'a>(
        target: &'a Target<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<Box<Conn>, ExchangeError>> + Send + 'a>> {
        Box::pin(async move {
            let (sender, driver) = http1::Builder::new()
                .handshake(TokioIo::new(connect(target).await?))
                .await?;
            Ok(Box::new(Conn {
                sender,
                driver: Some(driver),
                served: 0,
            }))
        })
    }

    /// Lets the connection make progress; notes when it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(driver) = self.driver.as_mut() {
            if let Poll::Ready(result) = Pin::new(driver).poll(cx) {
                self.driver = None;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended");
                }
            }
        }
    }

    /// Whether the connection can take another request now. Polls it once without a waker:
    /// a connection the upstream has closed reads its EOF here and is not reused.
    fn reusable(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()));
        self.driver.is_some() && self.sender.is_ready()
    }

    /// Sends `req` and drives the connection until the response head has arrived. A request
    /// the connection refused before writing any of it is handed back for another connection.
    async fn exchange(
        &mut self,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<ProxyBody>>)> {
        self.served += 1;
        let mut response = std::pin::pin!(self.sender.try_send_request(req));
        poll_fn(|cx| {
            self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| {
            let unsent = e.take_message();
            (e.into_error(), unsent)
        })
    }
}

/// A connection that can wait in an [`IdleConns`] list: hyper's ([`Conn`]) for the general
/// path, or a bare socket ([`RawConn`]) for the HTTP/1.1 fast path (`proxy::h1`).
pub trait Pooled: Sized {
    /// Whether the connection can take another request now (the upstream has not closed it).
    fn reusable(&mut self) -> bool;
    fn list(lists: &mut Lists) -> &mut Vec<(Self, Instant)>;
}

impl Pooled for Box<Conn> {
    fn reusable(&mut self) -> bool {
        Conn::reusable(self)
    }

    fn list(lists: &mut Lists) -> &mut Vec<(Self, Instant)> {
        &mut lists.hyper
    }
}

impl Pooled for RawConn {
    fn reusable(&mut self) -> bool {
        RawConn::reusable(self)
    }

    fn list(lists: &mut Lists) -> &mut Vec<(Self, Instant)> {
        &mut lists.raw
    }
}

/// Both kinds of idle connection to a node; `keepalive_pool.size` bounds them together.
#[derive(Default)]
pub struct Lists {
    hyper: Vec<(Box<Conn>, Instant)>,
    raw: Vec<(RawConn, Instant)>,
}

impl Lists {
    fn len(&self) -> usize {
        self.hyper.len() + self.raw.len()
    }
}

/// The idle connections to one node, one list per proxy thread ([`crate::proxy::threads`]):
/// a connection is used only by the thread whose runtime's reactor it is registered with, so
/// no request waits on another thread's reactor. `keepalive_pool.size` bounds each thread's
/// list, as nginx's `keepalive` bounds each worker's. Shared by the node's successive
/// [`super::balancer::Endpoint`]s (a reweight keeps them).
pub struct IdleConns {
    shards: Box<[Mutex<Lists>]>,
}

impl Default for IdleConns {
    fn default() -> IdleConns {
        IdleConns {
            shards: (0..crate::proxy::threads::shards())
                .map(|_| Mutex::default())
                .collect(),
        }
    }
}

impl std::fmt::Debug for IdleConns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleConns")
            .field("len", &self.len())
            .finish()
    }
}

fn lock(list: &Mutex<Lists>) -> std::sync::MutexGuard<'_, Lists> {
    list.lock().unwrap_or_else(|p| p.into_inner())
}

impl IdleConns {
    /// Idle connections of every thread.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// The calling thread's list. A pool made before [`crate::proxy::threads::bind`] (in a
    /// test) has fewer shards; threads then share lists, which works, only slower.
    fn lock(&self) -> std::sync::MutexGuard<'_, Lists> {
        lock(&self.shards[crate::proxy::threads::shard() % self.shards.len()])
    }

    /// The most recently used connection still fit for a request (the warmest socket).
    /// `now` is the caller's clock reading (one fewer on the request path).
    pub fn take<C: Pooled>(&self, idle_timeout: Duration, now: Instant) -> Option<C> {
        loop {
            let (mut conn, since) = C::list(&mut self.lock()).pop()?;
            if now.saturating_duration_since(since) < idle_timeout && conn.reusable() {
                return Some(conn);
            }
            // Dropped here, outside the lock: closing a socket is a syscall.
        }
    }

    /// Keeps `conn`, idle since `now`, unless the node has `settings.size` idle already.
    pub fn put<C: Pooled>(&self, conn: C, settings: &KeepalivePoolConfig, now: Instant) {
        let overflow = {
            let mut lists = self.lock();
            if lists.len() < settings.size && settings.idle_timeout > 0 {
                C::list(&mut lists).push((conn, now));
                None
            } else {
                Some(conn)
            }
        };
        // Closed outside the lock.
        drop(overflow);
    }

    /// Closes connections idle for `idle_timeout` and those the upstream has closed, so
    /// sockets do not linger half-closed while no request comes. The check reads from each
    /// socket, so it runs outside the lock; connections put back meanwhile stay, and the
    /// oldest beyond `settings.size` are closed.
    pub fn sweep(&self, settings: &KeepalivePoolConfig) {
        for shard in self.shards.iter() {
            Self::sweep_shard(shard, settings);
        }
    }

    fn sweep_shard(shard: &Mutex<Lists>, settings: &KeepalivePoolConfig) {
        let idle_timeout = Duration::from_secs(settings.idle_timeout);
        let (mut hyper, mut raw) = {
            let mut lists = lock(shard);
            (
                std::mem::take(&mut lists.hyper),
                std::mem::take(&mut lists.raw),
            )
        };
        if hyper.is_empty() && raw.is_empty() {
            return;
        }
        hyper.retain_mut(|(conn, since)| since.elapsed() < idle_timeout && conn.reusable());
        raw.retain_mut(|(conn, since)| since.elapsed() < idle_timeout && conn.reusable());
        let surplus = {
            let mut lists = lock(shard);
            // Oldest first, as `take` pops the most recent.
            hyper.append(&mut lists.hyper);
            raw.append(&mut lists.raw);
            // Over the size, the older connections go, whichever kind they are.
            let mut surplus = (Vec::new(), Vec::new());
            while hyper.len() + raw.len() > settings.size {
                match (hyper.first(), raw.first()) {
                    (Some((_, h)), Some((_, r))) if r < h => surplus.1.push(raw.remove(0)),
                    (Some(_), _) => surplus.0.push(hyper.remove(0)),
                    (None, _) => surplus.1.push(raw.remove(0)),
                }
            }
            lists.hyper = hyper;
            lists.raw = raw;
            surplus
        };
        drop(surplus);
    }
}

/// Where a request goes: the node and its idle connections, with the cluster's settings.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub node: &'a str,
    pub idle: &'a std::sync::Arc<IdleConns>,
    pub pool: &'a KeepalivePoolConfig,
    pub connect_timeout: Duration,
    /// Where the proxy must not connect ([`super::guard`]).
    pub guard: &'a ForbiddenUpstreams,
}

/// Sends `req` on an idle connection to the node, or a new one, and returns the response with
/// a body that drives the connection and gives it back when the body has been read to the end.
pub async fn send(
    target: Target<'_>,
    req: Request<ProxyBody>,
) -> Result<Response<PooledBody>, ExchangeError> {
    let idle_timeout = Duration::from_secs(target.pool.idle_timeout);
    let mut req = req;
    // A pooled connection can have been closed by the upstream a moment ago; a request it
    // refused unsent goes to a new connection (hyper-util's client does the same).
    if let Some(mut conn) = target.idle.take::<Box<Conn>>(idle_timeout, Instant::now()) {
        match conn.exchange(req).await {
            Ok(resp) => return Ok(wrap(resp, conn, &target)),
            Err((e, None)) => return Err(e.into()),
            Err((e, Some(unsent))) => {
                tracing::debug!(error = %e, node = target.node, "pooled connection refused the request; using a new one");
                req = unsent;
            }
        }
    }
    let mut conn = Conn::open(&target).await?;
    match conn.exchange(req).await {
        Ok(resp) => Ok(wrap(resp, conn, &target)),
        Err((e, _)) => Err(e.into()),
    }
}

/// Sends an upgrade request (WebSocket) on a connection of its own, never pooled: after the
/// upstream's 101 the connection belongs to the tunnel. Its driver runs in a task that ends
/// with the connection: at the upgrade, or when the request is abandoned (hyper closes a
/// connection whose sender is gone).
pub async fn send_upgrade(
    target: Target<'_>,
    req: Request<ProxyBody>,
) -> Result<Response<Incoming>, ExchangeError> {
    let (mut sender, driver) = http1::Builder::new()
        .handshake(TokioIo::new(connect(&target).await?))
        .await?;
    tokio::spawn(async move {
        if let Err(e) = driver.with_upgrades().await {
            tracing::debug!(error = %e, "upstream upgrade connection ended");
        }
    });
    Ok(sender.send_request(req).await?)
}

fn wrap(resp: Response<Incoming>, conn: Box<Conn>, target: &Target<'_>) -> Response<PooledBody> {
    resp.map(|body| PooledBody {
        body,
        conn: Some(conn),
        ended: false,
        idle: target.idle.clone(),
        pool: *target.pool,
    })
}

/// A response body read from a pooled connection. Polling it drives the connection; dropping
/// it after the last byte returns the connection to the node's idle list, dropping it earlier
/// closes the connection (its state is unknown).
pub struct PooledBody {
    body: Incoming,
    conn: Option<Box<Conn>>,
    /// The body has been read to its end.
    ended: bool,
    idle: std::sync::Arc<IdleConns>,
    pool: KeepalivePoolConfig,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(conn) = this.conn.as_mut() {
            conn.drive(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        // Trailers are the last frame: hyper's server stops reading after them.
        let last = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(f))) => f.is_trailers(),
            _ => false,
        };
        if last || this.body.is_end_stream() {
            this.ended = true;
        }
        frame.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // Only a connection whose response was read whole is in a known state. hyper may drop
        // a body it knows is empty (HEAD, 204, 304) without polling it: that is the end too.
        if (self.ended || self.body.is_end_stream())
            && conn.served < self.pool.requests.max(1)
            && conn.reusable()
        {
            self.idle.put(conn, &self.pool, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    /// An upstream that counts the connections it accepted. `/chunked` answers without a
    /// length, `/close` closes the connection after answering, anything else answers "ok".
    async fn upstream() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        let resp = match req.uri().path() {
                            "/chunked" => {
                                let frames = futures_util::stream::iter(
                                    ["a", "b", "c"]
                                        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c)))),
                                );
                                Response::new(StreamBody::new(frames).boxed())
                            }
                            "/trailers" => {
                                let mut t = http::HeaderMap::new();
                                t.insert("x-sum", http::HeaderValue::from_static("1"));
                                let frames = futures_util::stream::iter([
                                    Ok::<_, Infallible>(Frame::data(Bytes::from("abc"))),
                                    Ok(Frame::trailers(t)),
                                ]);
                                Response::builder()
                                    .header("trailer", "x-sum")
                                    .body(StreamBody::new(frames).boxed())
                                    .unwrap()
                            }
                            "/close" => Response::builder()
                                .header("connection", "close")
                                .body(Full::new(Bytes::from("bye")).boxed())
                                .unwrap(),
                            "/empty" => Response::builder()
                                .status(204)
                                .body(Empty::new().boxed())
                                .unwrap(),
                            _ => Response::new(Full::new(Bytes::from("ok")).boxed()),
                        };
                        Ok::<_, Infallible>(resp)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (port, accepted)
    }

    fn request(method: &str, path: &str) -> Request<ProxyBody> {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "up.test")
            .body(Empty::new().map_err(Into::into).boxed())
            .unwrap()
    }

    /// A target on loopback with a one-second connect timeout.
    fn local<'a>(
        node: &'a str,
        port: u16,
        idle: &'a Arc<IdleConns>,
        pool: &'a KeepalivePoolConfig,
    ) -> Target<'a> {
        Target {
            host: "127.0.0.1",
            port,
            node,
            idle,
            pool,
            connect_timeout: Duration::from_secs(1),
            guard: &NO_GUARD,
        }
    }

    static NO_GUARD: std::sync::LazyLock<ForbiddenUpstreams> =
        std::sync::LazyLock::new(ForbiddenUpstreams::default);

    async fn fetch(
        port: u16,
        idle: &Arc<IdleConns>,
        pool: &KeepalivePoolConfig,
        method: &str,
        path: &str,
    ) -> String {
        let node = format!("127.0.0.1:{port}");
        let target = local(&node, port, idle, pool);
        let resp = send(target, request(method, path)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn read_bodies_give_their_connection_back() {
        let (port, accepted) = upstream().await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        for path in ["/", "/chunked", "/", "/empty"] {
            fetch(port, &idle, &pool, "GET", path).await;
        }
        assert_eq!(fetch(port, &idle, &pool, "HEAD", "/").await, "");
        assert_eq!(fetch(port, &idle, &pool, "GET", "/chunked").await, "abc");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(idle.len(), 1);
    }

    #[tokio::test]
    async fn an_abandoned_body_closes_its_connection() {
        let (port, accepted) = upstream().await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        let node = format!("127.0.0.1:{port}");
        let target = local(&node, port, &idle, &pool);
        drop(send(target, request("GET", "/chunked")).await.unwrap());
        assert_eq!(idle.len(), 0);
        fetch(port, &idle, &pool, "GET", "/").await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_not_reused() {
        let (port, accepted) = upstream().await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        assert_eq!(fetch(port, &idle, &pool, "GET", "/close").await, "bye");
        assert_eq!(fetch(port, &idle, &pool, "GET", "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An upstream that answers one request per connection, then closes it after `linger`
    /// (an upstream's keep-alive timeout) without saying so in the response. It counts the
    /// connections it accepted.
    async fn one_shot_upstream(linger: Duration) -> (u16, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (port, accepted)
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_not_reused() {
        let (port, accepted) = one_shot_upstream(Duration::from_millis(20)).await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        assert_eq!(fetch(port, &idle, &pool, "GET", "/").await, "ok");
        assert_eq!(idle.len(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fetch(port, &idle, &pool, "GET", "/").await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_request_queued_on_a_cleanly_closed_connection_comes_back_unsent() {
        // The close is seen only after the request was queued: the request must come back
        // (to be sent elsewhere), not wait for ever.
        // Closed cleanly at once.
        let (port, _) = one_shot_upstream(Duration::ZERO).await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        let node = format!("127.0.0.1:{port}");
        let target = local(&node, port, &idle, &pool);
        let mut conn = Conn::open(&target).await.unwrap();
        let resp = conn.exchange(request("GET", "/")).await.unwrap();
        resp.into_body().collect().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second =
            tokio::time::timeout(Duration::from_secs(5), conn.exchange(request("GET", "/")))
                .await
                .expect("the request waited on a closed connection");
        match second {
            Err((_, Some(_unsent))) => {}
            Err((e, None)) => panic!("the request was lost: {e}"),
            Ok(_) => panic!("a closed connection answered"),
        }
        // Through the pool, the same situation is invisible to the caller.
        assert_eq!(fetch(port, &idle, &pool, "GET", "/").await, "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetch(port, &idle, &pool, "GET", "/").await, "ok");
    }

    #[tokio::test]
    async fn a_body_ended_by_trailers_gives_its_connection_back() {
        let (port, accepted) = upstream().await;
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        let node = format!("127.0.0.1:{port}");
        for _ in 0..2 {
            let target = local(&node, port, &idle, &pool);
            let mut req = request("GET", "/trailers");
            req.headers_mut()
                .insert("te", http::HeaderValue::from_static("trailers"));
            let mut body = send(target, req).await.unwrap().into_body();
            let mut trailers = false;
            // Read like hyper's server does: stop at the trailers, never poll for the end.
            while let Some(frame) = body.frame().await {
                if frame.unwrap().is_trailers() {
                    trailers = true;
                    break;
                }
            }
            assert!(trailers);
            drop(body);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn pool_size_idle_timeout_and_request_limit_are_kept() {
        let (port, accepted) = upstream().await;
        let idle = Arc::new(IdleConns::default());
        // At most `requests` requests per connection.
        let limited = KeepalivePoolConfig {
            requests: 2,
            ..KeepalivePoolConfig::default()
        };
        for _ in 0..4 {
            fetch(port, &idle, &limited, "GET", "/").await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Size 0, or an idle timeout of 0, keeps nothing idle.
        let none = KeepalivePoolConfig {
            size: 0,
            ..KeepalivePoolConfig::default()
        };
        let empty = Arc::new(IdleConns::default());
        fetch(port, &empty, &none, "GET", "/").await;
        assert_eq!(empty.len(), 0);
        let no_idle = KeepalivePoolConfig {
            idle_timeout: 0,
            ..KeepalivePoolConfig::default()
        };
        fetch(port, &empty, &no_idle, "GET", "/").await;
        assert_eq!(empty.len(), 0);
        // The sweep closes connections idle past the timeout and keeps fresh ones.
        let pool = KeepalivePoolConfig::default();
        let kept = Arc::new(IdleConns::default());
        fetch(port, &kept, &pool, "GET", "/").await;
        kept.sweep(&pool);
        assert_eq!(kept.len(), 1);
        kept.sweep(&KeepalivePoolConfig { size: 0, ..pool });
        assert_eq!(kept.len(), 0, "beyond the size");
        fetch(port, &kept, &pool, "GET", "/").await;
        // From here on no I/O is awaited, so the clock can be paused and moved by hand.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(pool.idle_timeout - 1)).await;
        kept.sweep(&pool);
        assert_eq!(kept.len(), 1, "within the idle timeout");
        tokio::time::advance(Duration::from_secs(1)).await;
        kept.sweep(&pool);
        assert_eq!(kept.len(), 0, "past the idle timeout");
    }

    #[tokio::test]
    async fn connect_failures_name_the_node() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let idle = Arc::new(IdleConns::default());
        let pool = KeepalivePoolConfig::default();
        let node = format!("127.0.0.1:{port}");
        let target = local(&node, port, &idle, &pool);
        let Err(e) = send(target, request("GET", "/")).await else {
            panic!("a closed port answered");
        };
        assert!(e.to_string().contains(&node), "{e}");
    }
}
