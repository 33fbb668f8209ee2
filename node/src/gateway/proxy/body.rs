//! Body wrappers of the proxy: a request body that refuses to grow past `max_body_bytes` (also
//! when chunked), and a response body with an idle timeout that carries the request's record
//! (metrics, access log, the node's in-flight mark) until the last byte has gone out.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::gateway::upstream::client::BoxError;

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
    pub struct Limited<B> {
        #[pin]
        inner: B,
        seen: u64,
        limit: u64,
    }
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Limited {
            inner,
            seen: 0,
            limit,
        }
    }
}

impl<B> Body for Limited<B>
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
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                            limit: *this.limit,
                        }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            other => other.map(|_| None),
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
        #[pin]
        idle: Sleep,
        idle_for: Duration,
        // Whether the idle timer runs: it starts when we wait for the upstream, so time the
        // client spends not reading (hyper not polling us) never counts as upstream silence.
        waiting: bool,
        record: Option<R>,
    }
}

impl<B, R: OnBodyEnd> Tracked<B, R> {
    pub fn new(inner: B, idle_for: Duration, record: R) -> Self {
        Tracked {
            inner,
            idle: tokio::time::sleep(idle_for),
            idle_for,
            waiting: false,
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
                *this.waiting = false;
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
            Poll::Pending => {
                if !*this.waiting {
                    *this.waiting = true;
                    this.idle.as_mut().reset(Instant::now() + *this.idle_for);
                }
                match this.idle.poll(cx) {
                    Poll::Ready(()) => {
                        this.record.take();
                        Poll::Ready(Some(Err(Box::new(BodyIdle(*this.idle_for)))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
