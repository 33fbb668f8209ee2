//! The fast path's side of an upstream exchange: the request head written on an idle socket
//! of the node (or a new one), then the response head read and parsed in that socket's
//! buffer. Interim responses (`100 Continue` and the like) are skipped, as hyper's client does.

use std::time::Duration;

use bytes::Buf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::head::{parse_response, Field, Parsed, ResponseHead};
use crate::gateway::upstream::pool::{ExchangeError, Target};
use crate::gateway::upstream::raw::RawConn;

/// A response head longer than this is refused (hyper's client allows about 400 KiB; no
/// upstream worth proxying sends that much).
const MAX_HEAD: usize = 64 * 1024;
/// Room made in the read buffer before each read.
pub const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(transparent)]
    Connect(#[from] ExchangeError),
    #[error("writing the request failed: {0}")]
    Write(std::io::Error),
    #[error("reading the response failed: {0}")]
    Read(std::io::Error),
    #[error("the upstream closed the connection before a whole response head")]
    Closed,
    #[error("the response head is not valid HTTP/1.x")]
    Malformed,
    #[error("the response head is longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
}

/// Whether a failed exchange got nothing back: the mark of an idle connection the upstream had
/// closed (or was closing) when the request went out, which a new connection may well serve.
fn nothing_received(e: &UpstreamError, conn: &RawConn) -> bool {
    matches!(
        e,
        UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::Closed
    ) && conn.buf.is_empty()
}

/// Sends `request` (a whole head; fast-path requests have no body) and returns the connection
/// with the response head at the start of its buffer. `retry`: the request may go again on a
/// new connection when a reused one failed before any answer (idempotent methods only: the
/// upstream may have acted on it before closing).
pub async fn exchange(
    target: &Target<'_>,
    request: &[u8],
    retry: bool,
    spare: &mut Vec<Field>,
    now: std::time::Instant,
) -> Result<(RawConn, ResponseHead), UpstreamError> {
    let idle_timeout = Duration::from_secs(target.pool.idle_timeout);
    if let Some(mut conn) = target.idle.take::<RawConn>(idle_timeout, now) {
        match send(&mut conn, request, spare).await {
            Ok(head) => return Ok((conn, head)),
            Err(e) if retry && nothing_received(&e, &conn) => {
                tracing::debug!(error = %e, node = target.node, "pooled connection failed before answering; using a new one");
            }
            Err(e) => return Err(e),
        }
    }
    let mut conn = RawConn::open(target).await?;
    let head = send(&mut conn, request, spare).await?;
    Ok((conn, head))
}

async fn send(
    conn: &mut RawConn,
    request: &[u8],
    spare: &mut Vec<Field>,
) -> Result<ResponseHead, UpstreamError> {
    conn.served += 1;
    conn.stream
        .write_all(request)
        .await
        .map_err(UpstreamError::Write)?;
    loop {
        match parse_response(&conn.buf, spare) {
            Parsed::Complete(head) if (100..200).contains(&head.status) && head.status != 101 => {
                conn.buf.advance(head.len);
                *spare = head.fields;
                continue;
            }
            Parsed::Complete(head) => return Ok(head),
            Parsed::Invalid => return Err(UpstreamError::Malformed),
            Parsed::Partial if conn.buf.len() > MAX_HEAD => {
                return Err(UpstreamError::HeadTooLarge)
            }
            Parsed::Partial => {}
        }
        conn.buf.reserve(READ_CHUNK);
        let n = conn
            .stream
            .read_buf(&mut conn.buf)
            .await
            .map_err(UpstreamError::Read)?;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}
