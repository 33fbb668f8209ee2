//! Request bodies: a whole JSON object with a size limit, or a stream of JSON objects (watch and
//! keep-alive), decoded as they arrive.

use axum::body::Body;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;

use super::decode::MAX_REQUEST_BYTES;
use super::error::EtcdError;

/// Largest JSON body accepted: a maximal request in base64 with room for JSON framing.
pub const MAX_BODY_BYTES: usize = MAX_REQUEST_BYTES * 3;

fn too_large() -> EtcdError {
    EtcdError::invalid("etcdserver: request is too large")
}

fn parse_error(e: &serde_json::Error) -> EtcdError {
    EtcdError::invalid(format!("invalid JSON: {e}"))
}

/// An oversized body is read and discarded up to this much before answering, so that a
/// client still sending it sees the answer instead of a reset connection (see
/// `hermes_raft::bounded_server::BodyBounds::drain_up_to`).
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Reads a whole body (at most [`MAX_BODY_BYTES`], which the listener's body bounds enforce)
/// as one JSON value; empty means `{}`.
pub async fn read_json(body: Body) -> Result<Value, EtcdError> {
    let mut stream = body.into_data_stream();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match hermes_raft::bounded_server::BodyError::find(&e) {
            Some(hermes_raft::bounded_server::BodyError::TooLarge(_)) => too_large(),
            _ => EtcdError::invalid(format!("reading request body: {e}")),
        })?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| parse_error(&e))
}

/// Yields the JSON values of a body as they complete.
pub struct JsonStream {
    body: axum::body::BodyDataStream,
    buf: BytesMut,
    eof: bool,
}

impl JsonStream {
    pub fn new(body: Body) -> Self {
        JsonStream {
            body: body.into_data_stream(),
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// The next complete value; `None` at the end of the body. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Value, EtcdError>> {
        loop {
            // Skip whitespace between values.
            let skip = self
                .buf
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            self.buf.advance(skip);
            if !self.buf.is_empty() {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
                match values.next() {
                    Some(Ok(value)) => {
                        let used = values.byte_offset();
                        self.buf.advance(used);
                        return Some(Ok(value));
                    }
                    Some(Err(e)) if e.is_eof() && !self.eof => {}
                    Some(Err(e)) => {
                        self.buf.clear();
                        self.eof = true;
                        return Some(Err(parse_error(&e)));
                    }
                    None => {}
                }
                if self.buf.len() > MAX_BODY_BYTES {
                    self.buf.clear();
                    self.eof = true;
                    return Some(Err(too_large()));
                }
            }
            if self.eof {
                return None;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.eof = true;
                    return Some(Err(EtcdError::invalid(format!(
                        "reading request body: {e}"
                    ))));
                }
                None => self.eof = true,
            }
        }
    }
}
