//! The fast path's side of an upstream exchange: the request written on an idle socket of the
//! node (or a new one), then the response head read and parsed in that socket's buffer.
//! Interim responses (`100 Continue` and the like) are skipped, as hyper's client does. A
//! request body longer than what came with its head is copied from the client while the
//! response head is awaited, so an upstream that answers early is heard.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::head::{parse_response, Field, Parsed, ResponseHead};
use crate::upstream::pool::{ExchangeError, Target};
use crate::upstream::raw::RawConn;

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
    #[error("the client sent no request body data for {0:?}")]
    ClientIdle(Duration),
    #[error("the client went away before the whole request body: {0}")]
    ClientGone(std::io::Error),
}

/// The part of a request body still to come from the client.
pub struct BodyRest<'a> {
    pub client: &'a mut TcpStream,
    /// The client's read buffer, holding nothing of this request when the rest starts; what
    /// comes after the body (a pipelined request) stays in it.
    pub buf: &'a mut BytesMut,
    pub remaining: u64,
    /// How long the client may send nothing: the cluster's `send` timeout, as on the general
    /// path.
    pub idle: Duration,
}

/// Whether a failed exchange got nothing back: the mark of an idle connection the upstream had
/// closed (or was closing) when the request went out, which a new connection may well serve.
fn nothing_received(e: &UpstreamError, conn: &RawConn) -> bool {
    matches!(
        e,
        UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::Closed
    ) && conn.buf.is_empty()
}

/// Sends `request` (the head and its whole body) and returns the connection
/// with the response head at the start of its buffer. `retry`: the request may go again on a
/// new connection when a reused one failed before any answer (idempotent methods only: the
/// upstream may have acted on it before closing).
pub async fn exchange(
    target: &Target<'_>,
    request: &[u8],
    retry: bool,
    spare: &mut Vec<Field>,
    now: tokio::time::Instant,
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

/// Sends `request` (the head and the body bytes that came with it), then `rest` of the body
/// while reading the response head. Returns the connection, the head, and whether the whole
/// body went out: an upstream may answer before it has read it all, and then neither
/// connection can carry another request. Not retried: the body is gone once sent.
pub async fn exchange_streaming(
    target: &Target<'_>,
    request: &[u8],
    rest: BodyRest<'_>,
    spare: &mut Vec<Field>,
    now: tokio::time::Instant,
) -> Result<(RawConn, ResponseHead, bool), UpstreamError> {
    let idle_timeout = Duration::from_secs(target.pool.idle_timeout);
    let mut conn = match target.idle.take::<RawConn>(idle_timeout, now) {
        Some(conn) => conn,
        None => RawConn::open(target).await?,
    };
    write_request(&mut conn, request).await?;
    let (head, sent_all) = {
        let RawConn { stream, buf, .. } = &mut conn;
        let (mut from_upstream, mut to_upstream) = stream.split();
        let copy = copy_rest(rest, &mut to_upstream);
        let head = read_head(&mut from_upstream, buf, spare);
        tokio::pin!(copy, head);
        let (mut copying, mut sent_all) = (true, false);
        let head = loop {
            tokio::select! {
                // The copy first: a body sent whole keeps both connections usable.
                biased;
                copied = &mut copy, if copying => {
                    copying = false;
                    match copied {
                        Ok(()) => sent_all = true,
                        // The upstream stopped taking the body: it may be answering already.
                        Err(UpstreamError::Write(e)) => {
                            tracing::debug!(error = %e, "upstream stopped reading the request body");
                        }
                        Err(e) => break Err(e),
                    }
                }
                head = &mut head => break head,
            }
        }?;
        (head, sent_all)
    };
    Ok((conn, head, sent_all))
}

/// Copies `rest.remaining` bytes of body from the client to the upstream, through the
/// client's buffer.
async fn copy_rest<W: AsyncWrite + Unpin>(
    rest: BodyRest<'_>,
    upstream: &mut W,
) -> Result<(), UpstreamError> {
    let BodyRest {
        client,
        buf,
        mut remaining,
        idle,
    } = rest;
    while remaining > 0 {
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            match tokio::time::timeout(idle, client.read_buf(buf)).await {
                Err(_) => return Err(UpstreamError::ClientIdle(idle)),
                Ok(Err(e)) => return Err(UpstreamError::ClientGone(e)),
                Ok(Ok(0)) => {
                    let e = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
                    return Err(UpstreamError::ClientGone(e));
                }
                Ok(Ok(_)) => {}
            }
        }
        let n = (buf.len() as u64).min(remaining) as usize;
        upstream
            .write_all(&buf[..n])
            .await
            .map_err(UpstreamError::Write)?;
        buf.advance(n);
        remaining -= n as u64;
    }
    Ok(())
}

async fn send(
    conn: &mut RawConn,
    request: &[u8],
    spare: &mut Vec<Field>,
) -> Result<ResponseHead, UpstreamError> {
    write_request(conn, request).await?;
    read_head(&mut conn.stream, &mut conn.buf, spare).await
}

/// Writes a request (or its start) on `conn`, counting it for `keepalive_pool.requests`.
async fn write_request(conn: &mut RawConn, request: &[u8]) -> Result<(), UpstreamError> {
    conn.served += 1;
    conn.stream
        .write_all(request)
        .await
        .map_err(UpstreamError::Write)
}

/// Reads until `buf` starts with a final response head (interim ones dropped).
async fn read_head<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut BytesMut,
    spare: &mut Vec<Field>,
) -> Result<ResponseHead, UpstreamError> {
    loop {
        match parse_response(buf, spare) {
            Parsed::Complete(head) if (100..200).contains(&head.status) && head.status != 101 => {
                buf.advance(head.len);
                *spare = head.fields;
                continue;
            }
            Parsed::Complete(head) => return Ok(head),
            Parsed::Invalid => return Err(UpstreamError::Malformed),
            Parsed::Partial if buf.len() > MAX_HEAD => return Err(UpstreamError::HeadTooLarge),
            Parsed::Partial => {}
        }
        buf.reserve(READ_CHUNK);
        let n = stream.read_buf(buf).await.map_err(UpstreamError::Read)?;
        if n == 0 {
            return Err(UpstreamError::Closed);
        }
    }
}
