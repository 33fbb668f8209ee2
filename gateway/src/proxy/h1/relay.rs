//! A response body from the upstream socket to the client's, framed as it came: a length is
//! copied to its last byte, a chunked body passes through unchanged up to its final empty line,
//! and a body that ends with the connection (no length, not chunked) is sent on chunked. Every
//! read from the upstream gets the idle timeout.

use std::time::Duration;

use bytes::Buf;
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::chunked::{ChunkedScanner, Malformed};
use super::head::{content_length, Fields, ResponseHead};
use super::upstream::READ_CHUNK;
use crate::upstream::raw::RawConn;

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204 and 304 have none, whatever their headers say.
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the response's Content-Length is invalid")]
pub struct BadLength;

impl Framing {
    pub fn of(
        method: &Method,
        head: &ResponseHead,
        fields: Fields<'_>,
    ) -> Result<Framing, BadLength> {
        if method == Method::HEAD || matches!(head.status, 100..=199 | 204 | 304) {
            return Ok(Framing::Empty);
        }
        if let Some(last) = fields.all("transfer-encoding").last() {
            let chunked_last = last
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked_last {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        let mut length = None;
        for value in fields.all("content-length") {
            for part in value.split(|&b| b == b',') {
                let n = content_length(part).ok_or(BadLength)?;
                if length.is_some_and(|l| l != n) {
                    return Err(BadLength);
                }
                length = Some(n);
            }
        }
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the response body failed: {0}")]
    Upstream(std::io::Error),
    #[error("the upstream closed the connection before the end of the body")]
    Truncated,
    #[error(transparent)]
    Malformed(#[from] Malformed),
    #[error("writing to the client failed: {0}")]
    Client(std::io::Error),
    #[error("no progress for {0:?}")]
    Idle(Duration),
}

struct Relay<'a> {
    client: &'a mut TcpStream,
    up: &'a mut RawConn,
    idle: Duration,
}

impl Relay<'_> {
    async fn write(&mut self, bytes: &[u8]) -> Result<(), RelayError> {
        write_all(self.client, bytes).await
    }

    /// Reads more of the body into the upstream buffer; `false` at the end of the stream.
    async fn read(&mut self) -> Result<bool, RelayError> {
        self.up.buf.reserve(READ_CHUNK);
        let n = tokio::time::timeout(self.idle, self.up.stream.read_buf(&mut self.up.buf))
            .await
            .map_err(|_| RelayError::Idle(self.idle))?
            .map_err(RelayError::Upstream)?;
        Ok(n > 0)
    }

    /// Writes the first `n` buffered bytes and drops them from the buffer.
    async fn pass(&mut self, n: usize) -> Result<(), RelayError> {
        write_all(self.client, &self.up.buf[..n]).await?;
        self.up.buf.advance(n);
        Ok(())
    }
}

/// Writes all of `bytes`. No timer: as on the general path, the idle timeout is the
/// upstream's (a slow reader is not taken for a silent upstream).
async fn write_all(client: &mut TcpStream, bytes: &[u8]) -> Result<(), RelayError> {
    client.write_all(bytes).await.map_err(RelayError::Client)
}

fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// Sends `out` (the response head) and the body after it; returns the body's data bytes. What
/// the upstream buffer holds at the start is the body's beginning; the first write carries the
/// head and that beginning together. On success the buffer holds only what followed the body.
pub async fn relay(
    client: &mut TcpStream,
    up: &mut RawConn,
    out: &mut Vec<u8>,
    framing: Framing,
    idle: Duration,
) -> Result<u64, RelayError> {
    let mut r = Relay { client, up, idle };
    match framing {
        Framing::Empty => {
            r.write(out).await?;
            Ok(0)
        }
        Framing::Length(total) => {
            let mut left = total;
            let first = (r.up.buf.len() as u64).min(left) as usize;
            out.extend_from_slice(&r.up.buf[..first]);
            r.up.buf.advance(first);
            left -= first as u64;
            r.write(out).await?;
            while left > 0 {
                if !r.read().await? {
                    return Err(RelayError::Truncated);
                }
                let n = (r.up.buf.len() as u64).min(left) as usize;
                r.pass(n).await?;
                left -= n as u64;
            }
            Ok(total)
        }
        Framing::Chunked => {
            let mut scanner = ChunkedScanner::default();
            let first = scanner.scan(&r.up.buf)?;
            out.extend_from_slice(&r.up.buf[..first]);
            r.up.buf.advance(first);
            r.write(out).await?;
            while !scanner.done() {
                if !r.read().await? {
                    return Err(RelayError::Truncated);
                }
                let n = scanner.scan(&r.up.buf)?;
                r.pass(n).await?;
            }
            Ok(scanner.data)
        }
        Framing::UntilClose => {
            let mut total = r.up.buf.len() as u64;
            chunk(out, &r.up.buf);
            r.up.buf.clear();
            r.write(out).await?;
            while r.read().await? {
                out.clear();
                chunk(out, &r.up.buf);
                total += r.up.buf.len() as u64;
                r.up.buf.clear();
                r.write(out).await?;
            }
            r.write(b"0\r\n\r\n").await?;
            Ok(total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::head::{parse_response, Parsed};

    fn framing(method: Method, raw: &[u8]) -> Result<Framing, BadLength> {
        let Parsed::Complete(head) = parse_response(raw, &mut Vec::new()) else {
            panic!("not parsed")
        };
        let fields = Fields {
            head: raw,
            list: &head.fields,
        };
        Framing::of(&method, &head, fields)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let get = || Method::GET;
        assert_eq!(
            framing(get(), b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(get(), b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            framing(
                get(),
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            Err(BadLength)
        );
        assert_eq!(
            framing(get(), b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(BadLength)
        );
        assert_eq!(
            framing(
                get(),
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n"
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(get(), b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing(get(), b"HTTP/1.0 200 OK\r\n\r\n"),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing(
                Method::HEAD,
                b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n"
            ),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing(
                get(),
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n"
            ),
            Ok(Framing::Empty)
        );
    }
}
