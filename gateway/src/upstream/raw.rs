//! A bare upstream socket for the HTTP/1.1 fast path (`proxy::h1`), which writes requests and
//! reads responses itself. It waits in the node's [`super::pool::IdleConns`] beside hyper's
//! connections, under the same `keepalive_pool` limits.

use std::io::ErrorKind;

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::pool::{connect, ExchangeError, Target};

/// What a fresh connection's read buffer holds before it grows: one small response whole.
const READ_BUFFER: usize = 16 * 1024;

#[derive(Debug)]
pub struct RawConn {
    pub stream: TcpStream,
    /// Bytes read from the upstream and not yet forwarded.
    pub buf: BytesMut,
    /// Requests sent on this connection, for `keepalive_pool.requests`.
    pub served: u64,
}

impl RawConn {
    pub async fn open(target: &Target<'_>) -> Result<RawConn, ExchangeError> {
        Ok(RawConn {
            stream: connect(target).await?,
            buf: BytesMut::with_capacity(READ_BUFFER),
            served: 0,
        })
    }

    /// An idle connection is fit for reuse when nothing is waiting on it: no bytes the last
    /// response left over, and no end of stream or stray data from the upstream. The read does
    /// not block (a would-block error is the healthy answer).
    pub fn reusable(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }
}
