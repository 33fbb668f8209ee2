//! Response compression for routes with `enable_compression`: brotli (fastest level) preferred
//! over gzip, as the client's `Accept-Encoding` allows (q-values honoured, `*` counts for both).
//! Skipped for HEAD, 1xx/204/206/304, bodies already encoded, and `Cache-Control: no-transform`;
//! always sets `Vary: Accept-Encoding` when the route compresses (the original did not, G15).

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder};
use async_compression::Level;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::upstream::client::{BoxError, ProxyBody};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Brotli,
    Gzip,
}

impl Encoding {
    fn token(self) -> &'static str {
        match self {
            Encoding::Brotli => "br",
            Encoding::Gzip => "gzip",
        }
    }
}

/// The encoding to use for a client's `Accept-Encoding`, if any.
pub fn negotiate(accept: Option<&HeaderValue>) -> Option<Encoding> {
    let text = accept?.to_str().ok()?;
    let mut br = None;
    let mut gzip = None;
    let mut star = None;
    for part in text.split(',') {
        let mut bits = part.split(';');
        let name = bits.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = bits
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" => gzip = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let accepts = |q: Option<f32>| q.or(star).is_some_and(|q| q > 0.0);
    if accepts(br) {
        Some(Encoding::Brotli)
    } else if accepts(gzip) {
        Some(Encoding::Gzip)
    } else {
        None
    }
}

/// Whether a response may be compressed at all.
pub fn compressible(method: &Method, status: StatusCode, headers: &HeaderMap) -> bool {
    let no_transform = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("no-transform"));
    method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::PARTIAL_CONTENT
        && status != StatusCode::NOT_MODIFIED
        && !headers.contains_key(header::CONTENT_ENCODING)
        && !no_transform
}

/// Adds `Vary: Accept-Encoding` unless already there.
pub fn add_vary(headers: &mut HeaderMap) {
    let present = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Compresses a body as it streams, and fixes the headers to match.
pub fn compress(body: ProxyBody, encoding: Encoding, headers: &mut HeaderMap) -> ProxyBody {
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(encoding.token()),
    );
    let data = body
        .into_data_stream()
        .map_err(|e: BoxError| std::io::Error::other(e));
    let reader = StreamReader::new(data);
    fn frames<R: tokio::io::AsyncRead + Send + Sync + 'static>(r: R) -> ProxyBody {
        let stream = ReaderStream::new(r)
            .map_ok(Frame::data)
            .map_err(|e: std::io::Error| -> BoxError { Box::new(e) });
        StreamBody::new(stream).boxed()
    }
    match encoding {
        Encoding::Brotli => frames(BrotliEncoder::with_quality(reader, Level::Fastest)),
        Encoding::Gzip => frames(GzipEncoder::with_quality(reader, Level::Fastest)),
    }
}

/// A body of bytes, for tests and the gateway's own answers.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ae(v: &str) -> Option<Encoding> {
        negotiate(Some(&HeaderValue::from_str(v).unwrap()))
    }

    #[test]
    fn negotiation() {
        assert_eq!(ae("gzip, deflate, br"), Some(Encoding::Brotli));
        assert_eq!(ae("gzip"), Some(Encoding::Gzip));
        assert_eq!(ae("br;q=0, gzip;q=0.5"), Some(Encoding::Gzip));
        assert_eq!(ae("*"), Some(Encoding::Brotli));
        assert_eq!(ae("*;q=0"), None);
        assert_eq!(ae("identity"), None);
        assert_eq!(negotiate(None), None);
    }

    #[test]
    fn skipped_cases() {
        let plain = HeaderMap::new();
        assert!(compressible(&Method::GET, StatusCode::OK, &plain));
        assert!(!compressible(&Method::HEAD, StatusCode::OK, &plain));
        assert!(!compressible(&Method::GET, StatusCode::NO_CONTENT, &plain));
        assert!(!compressible(
            &Method::GET,
            StatusCode::NOT_MODIFIED,
            &plain
        ));
        let mut encoded = HeaderMap::new();
        encoded.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(!compressible(&Method::GET, StatusCode::OK, &encoded));
    }

    #[tokio::test]
    async fn gzip_round_trip() {
        let text = "hello hermes ".repeat(1000);
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("13000"));
        let body = compress(full(text.clone()), Encoding::Gzip, &mut headers);
        assert!(!headers.contains_key(header::CONTENT_LENGTH));
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        let compressed = body.collect().await.unwrap().to_bytes();
        assert!(compressed.len() < text.len() / 10);
        let mut decoder = async_compression::tokio::bufread::GzipDecoder::new(&compressed[..]);
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut decoder, &mut out)
            .await
            .unwrap();
        assert_eq!(out, text);
        add_vary(&mut headers);
        add_vary(&mut headers);
        assert_eq!(headers.get_all(header::VARY).iter().count(), 1);
    }
}
