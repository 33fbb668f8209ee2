//! Body wrappers of the proxy: a request body that refuses to grow past `max_body_bytes` (also
//! when chunked) and fails when the client stalls, and a response body with an idle timeout that
//! carries the request's record (metrics, access log, the node's in-flight mark) until the last
//! byte has gone out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::upstream::client::BoxError;

/// The request body grew past the route's `max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// No data moved on a response body for the idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream body idle for {0:?}")]
pub struct BodyIdle(pub Duration);

pin_project_lite::pin_project! {
    /// A body's idle timer. It runs only while the body waits for data from its source (the
    /// other side not polling us never counts), and restarts when data comes.
    struct IdleTimer {
        #[pin]
        sleep: Sleep,
        idle_for: Duration,
        waiting: bool,
    }
}

impl IdleTimer {
    fn new(idle_for: Duration) -> Self {
        IdleTimer {
            sleep: tokio::time::sleep(idle_for),
            idle_for,
            waiting: false,
        }
    }

    /// Data came: the next wait starts a fresh period.
    fn data(self: Pin<&mut Self>) {
        *self.project().waiting = false;
    }

    /// The source is pending: whether the idle period has now passed (else a wake-up is
    /// registered for its end).
    fn expired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let mut this = self.project();
        if !*this.waiting {
            *this.waiting = true;
            this.sleep.as_mut().reset(Instant::now() + *this.idle_for);
        }
        this.sleep.poll(cx).is_ready()
    }
}

/// The client sent no request-body data for the send timeout while the upstream waited for it.
#[derive(Debug, thiserror::Error)]
#[error("client sent no request body data for {0:?}")]
pub struct RequestBodyIdle(pub Duration);

/// The client's request body failed on its way in (the client reset or closed its connection
/// mid-body, or broke the chunked framing): the client's fault, never counted against the node.
#[derive(Debug, thiserror::Error)]
#[error("request body not received whole")]
pub struct ClientBodyFailed(#[source] pub BoxError);

pin_project_lite::pin_project! {
    /// A request body on its way upstream: refused once it grows past `max_body_bytes` (also
    /// when chunked), and failed when the client stalls for the idle timeout, so a slow or
    /// stuck client cannot hold an upstream connection for ever (also after the upstream has
    /// answered, when no other deadline runs).
    pub struct Inbound<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: Option<u64>,
        #[pin]
        idle: IdleTimer,
    }
}

impl<B> Inbound<B> {
    pub fn new(inner: B, limit: Option<u64>, idle_for: Duration) -> Self {
        Inbound {
            inner,
            seen: 0,
            limit,
            idle: IdleTimer::new(idle_for),
        }
    }
}

impl<B> Body for Inbound<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.data();
                if let (Some(data), Some(limit)) = (frame.data_ref(), *this.limit) {
                    *this.seen += data.len() as u64;
                    if *this.seen > limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyFailed(e.into())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.idle.as_mut().expired(cx) => {
                let idle_for = this.idle.idle_for;
                Poll::Ready(Some(Err(Box::new(RequestBodyIdle(idle_for)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Something to keep alive exactly as long as a response body, told how many bytes went out.
pub trait OnBodyEnd: Send + 'static {
    fn add_bytes(&mut self, n: u64);
}

pin_project_lite::pin_project! {
    pub struct Tracked<B, R> {
        #[pin]
        inner: B,
        // Runs while we wait for the upstream: time the client spends not reading (hyper not
        // polling us) never counts as upstream silence.
        #[pin]
        idle: IdleTimer,
        record: Option<R>,
    }
}

impl<B, R: OnBodyEnd> Tracked<B, R> {
    pub fn new(inner: B, idle_for: Duration, record: R) -> Self {
        Tracked {
            inner,
            idle: IdleTimer::new(idle_for),
            record: Some(record),
        }
    }
}

impl<B, R> Body for Tracked<B, R>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    R: OnBodyEnd,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(record)) = (frame.data_ref(), this.record.as_mut()) {
                    record.add_bytes(data.len() as u64);
                }
                this.idle.data();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.record.take();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                // The record is done: metrics and access log are written now, not at drop.
                this.record.take();
                Poll::Ready(None)
            }
            Poll::Pending if this.idle.as_mut().expired(cx) => {
                this.record.take();
                let idle_for = this.idle.idle_for;
                Poll::Ready(Some(Err(Box::new(BodyIdle(idle_for)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use tokio::sync::mpsc;

    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;

    /// A request body fed by hand, the way a client sends it.
    fn client_body() -> (
        mpsc::Sender<Chunk>,
        StreamBody<impl futures_util::Stream<Item = Chunk>>,
    ) {
        let (tx, rx) = mpsc::channel::<Chunk>(4);
        let stream =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
            );
        (tx, StreamBody::new(stream))
    }

    fn chunk(n: usize) -> Chunk {
        Ok(Frame::data(Bytes::from(vec![b'x'; n])))
    }

    #[tokio::test]
    async fn a_stalled_client_fails_the_body_after_the_idle_timeout() {
        let (tx, body) = client_body();
        let mut body = std::pin::pin!(Inbound::new(body, None, Duration::from_millis(50)));
        tx.send(chunk(10)).await.unwrap();
        assert!(body.frame().await.unwrap().is_ok());
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(e.is::<RequestBodyIdle>(), "{e}");
        drop(tx);
    }

    #[tokio::test]
    async fn steady_data_keeps_the_body_alive_and_it_ends() {
        let (tx, body) = client_body();
        let body = Inbound::new(body, Some(100), Duration::from_millis(200));
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                tx.send(chunk(10)).await.unwrap();
            }
        });
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 50);
    }

    #[tokio::test]
    async fn a_client_that_breaks_off_its_body_is_told_apart_from_the_upstream() {
        let broken: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(Bytes::from_static(b"half"))),
            Err(std::io::ErrorKind::ConnectionReset.into()),
        ];
        let body = StreamBody::new(futures_util::stream::iter(broken));
        let e = Inbound::new(body, None, Duration::from_secs(5))
            .collect()
            .await
            .unwrap_err();
        let failed = e
            .downcast_ref::<ClientBodyFailed>()
            .expect("typed as the client's");
        assert!(failed.0.is::<std::io::Error>(), "{e}");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_even_without_a_length() {
        let (tx, body) = client_body();
        let body = Inbound::new(body, Some(25), Duration::from_secs(5));
        for _ in 0..3 {
            tx.send(chunk(10)).await.unwrap();
        }
        drop(tx);
        let e = body.collect().await.unwrap_err();
        assert!(e.is::<BodyTooLarge>(), "{e}");
    }
}
