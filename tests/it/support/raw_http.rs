//! Raw HTTP/1.1 on a socket, for tests that must see exactly the bytes a proxy writes or send
//! bytes no HTTP client would: a [`Wire`] reads messages (head, length, chunked, until close)
//! for either side of a connection, and a [`Client`] writes anything to a node's proxy and
//! reads one response at a time.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::harness::Node;

/// Every read gives up after this, so a bug fails the test instead of hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A socket and the bytes read from it that were not consumed yet.
pub struct Wire {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
}

pub fn eof() -> std::io::Error {
    std::io::Error::new(ErrorKind::UnexpectedEof, "connection closed mid-message")
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; `0` at the end of the stream.
    pub fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The bytes up to and including the first `end`, taken from the stream.
    pub fn until(&mut self, end: &[u8]) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return Ok(Some(self.buf.drain(..at + end.len()).collect()));
            }
            if self.fill()? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(eof())
                };
            }
        }
    }

    /// A message head (up to the empty line, included), or `None` when the peer closed the
    /// connection between messages.
    pub fn head(&mut self) -> std::io::Result<Option<String>> {
        Ok(self
            .until(b"\r\n\r\n")?
            .map(|h| String::from_utf8_lossy(&h).into_owned()))
    }

    /// Exactly `n` bytes.
    pub fn exact(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(eof());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Everything until the peer closes the connection.
    pub fn until_closed(&mut self) -> std::io::Result<Vec<u8>> {
        while self.fill()? > 0 {}
        Ok(std::mem::take(&mut self.buf))
    }

    /// A chunked body: the decoded data, and the bytes as they came (sizes and trailers too).
    pub fn chunked(&mut self) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
        let (mut data, mut raw) = (Vec::new(), Vec::new());
        loop {
            let line = self.until(b"\r\n")?.ok_or_else(eof)?;
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let hex = text.trim_end().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16).map_err(|_| {
                std::io::Error::new(ErrorKind::InvalidData, format!("chunk size {text:?}"))
            })?;
            if size == 0 {
                // Trailer lines, then the final empty line.
                loop {
                    let line = self.until(b"\r\n")?.ok_or_else(eof)?;
                    raw.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok((data, raw));
                    }
                }
            }
            let chunk = self.exact(size + 2)?;
            data.extend_from_slice(&chunk[..size]);
            raw.extend_from_slice(&chunk);
        }
    }
}

/// The header lines of a head (request or status line skipped) as (name, value).
pub fn header_lines(head: &str) -> Vec<(String, String)> {
    head.split("\r\n")
        .skip(1)
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The first value of `name` (case-insensitive).
pub fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Whether a `Transfer-Encoding` value ends with `chunked`.
pub fn is_chunked(headers: &[(String, String)]) -> bool {
    find(headers, "transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// One response as the client read it.
#[derive(Debug)]
pub struct Answer {
    pub status_line: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body's data (chunked framing removed).
    pub body: Vec<u8>,
    /// A chunked body as it came, sizes and trailers included; empty otherwise.
    pub raw_chunked: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A bodiless request for `host`, with `extra` header lines (`Name: value`).
pub fn request(host: &str, method: &str, target: &str, extra: &[&str]) -> String {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for line in extra {
        r.push_str(line);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

/// A raw HTTP/1.1 connection to the proxy: writes any bytes, reads one response at a time.
pub struct Client {
    pub wire: Wire,
}

impl Client {
    /// To the proxy of `node`.
    pub fn connect(node: &Node) -> Client {
        Client::to_port(node.proxy_port)
    }

    pub fn to_port(port: u16) -> Client {
        Client {
            wire: Wire::new(TcpStream::connect(("127.0.0.1", port)).unwrap()),
        }
    }

    /// Writes `bytes` in one write (several requests make a pipeline).
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.wire.stream.write_all(bytes.as_ref()).unwrap();
    }

    /// Reads the next response; `head_request` says it answers a HEAD (so has no body).
    pub fn read(&mut self, head_request: bool) -> Answer {
        let head = self
            .wire
            .head()
            .unwrap_or_else(|e| panic!("expected a response head from the proxy: {e}"))
            .unwrap_or_else(|| panic!("the proxy closed the connection instead of answering"));
        let status_line = head.split("\r\n").next().unwrap_or("").to_string();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("expected a status line, got {status_line:?}"));
        let headers = header_lines(&head);
        let mut answer = Answer {
            status_line,
            status,
            headers,
            body: Vec::new(),
            raw_chunked: Vec::new(),
        };
        if head_request || matches!(status, 100..=199 | 204 | 304) {
            return answer;
        }
        let read = if is_chunked(&answer.headers) {
            self.wire.chunked().map(|(data, raw)| {
                answer.raw_chunked = raw;
                data
            })
        } else if let Some(length) = answer.header("content-length") {
            let length = length
                .parse()
                .unwrap_or_else(|_| panic!("expected a numeric content-length: {answer:?}"));
            self.wire.exact(length)
        } else {
            self.wire.until_closed()
        };
        answer.body = read.unwrap_or_else(|e| panic!("reading the body of {answer:?}: {e}"));
        answer
    }

    /// Sends one bodiless request for `host` and reads its answer.
    pub fn request_to(&mut self, host: &str, method: &str, target: &str, extra: &[&str]) -> Answer {
        self.send(request(host, method, target, extra));
        self.read(method == "HEAD")
    }

    /// Whether the proxy closes the connection (end of stream or reset) within `wait`, with
    /// nothing more sent.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        if !self.wire.buf.is_empty() {
            return false;
        }
        self.wire.stream.set_read_timeout(Some(wait)).unwrap();
        let mut probe = [0u8; 256];
        let closed = match self.wire.stream.read(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        };
        self.wire.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        closed
    }
}
