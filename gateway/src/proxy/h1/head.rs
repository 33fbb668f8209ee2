//! Message heads as the fast path sees them: parsed in place by `httparse` into offsets of the
//! buffer they were read into, and the header list sent on, which refers to the received bytes
//! wherever a header passes through unchanged.

use std::mem::MaybeUninit;
use std::ops::Range;

use http::header::{HeaderName, HeaderValue};

use crate::proxy::headers::HOP_BY_HOP;
use crate::routing::matchers::HeaderSource;

/// More headers than this and the fast path leaves the message to hyper (which allows 100).
const MAX_HEADERS: usize = 64;

/// One header of a received head: where its name and value lie in the head's bytes.
#[derive(Debug, Clone)]
pub struct Field {
    name: Range<usize>,
    value: Range<usize>,
}

#[derive(Debug)]
pub enum Parsed<T> {
    Complete(T),
    Partial,
    /// Not valid HTTP/1.x for `httparse`, or beyond the fast path's limits.
    Invalid,
}

#[derive(Debug)]
pub struct RequestHead {
    /// Bytes of the head, final empty line included.
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<Field>,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub len: usize,
    pub minor: u8,
    pub status: u16,
    pub reason: Range<usize>,
    pub fields: Vec<Field>,
}

fn offset(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// Fills `list` (emptied first; passed in so that its allocation serves request after request).
fn fields(buf: &[u8], headers: &[httparse::Header<'_>], mut list: Vec<Field>) -> Vec<Field> {
    list.clear();
    list.extend(headers.iter().map(|h| Field {
        name: offset(buf, h.name.as_bytes()),
        value: offset(buf, h.value),
    }));
    list
}

/// Parses a request head; `spare` is an empty list to put its fields in.
pub fn parse_request(buf: &[u8], spare: &mut Vec<Field>) -> Parsed<RequestHead> {
    // Left uninitialised for httparse to fill: zeroing 64 headers cost more than parsing them.
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Parsed::Invalid;
            };
            Parsed::Complete(RequestHead {
                len,
                method: offset(buf, method.as_bytes()),
                target: offset(buf, path.as_bytes()),
                minor,
                fields: fields(buf, req.headers, std::mem::take(spare)),
            })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// Parses a response head; `spare` is an empty list to put its fields in.
pub fn parse_response(buf: &[u8], spare: &mut Vec<Field>) -> Parsed<ResponseHead> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(len)) => {
            let (Some(minor), Some(status)) = (resp.version, resp.code) else {
                return Parsed::Invalid;
            };
            Parsed::Complete(ResponseHead {
                len,
                minor,
                status,
                reason: offset(buf, resp.reason.unwrap_or("").as_bytes()),
                fields: fields(buf, resp.headers, std::mem::take(spare)),
            })
        }
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(_) => Parsed::Invalid,
    }
}

/// A received head's headers, read from its bytes.
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    pub head: &'a [u8],
    pub list: &'a [Field],
}

impl<'a> Fields<'a> {
    pub fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.list
            .iter()
            .map(move |f| (&self.head[f.name.clone()], &self.head[f.value.clone()]))
    }

    /// Every value of `name` (case-insensitive).
    pub fn all(self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Whether a comma-separated header (`Connection`) lists `token`.
    pub fn has_token(self, name: &'a str, token: &str) -> bool {
        self.all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The tokens of its `Connection` headers (the headers they name are hop-by-hop).
    fn connection_tokens(self) -> impl Iterator<Item = &'a [u8]> {
        self.all("connection")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
    }

    /// Calls `f` with each header that is not hop-by-hop (those `Connection` names included).
    fn each_end_to_end(self, mut f: impl FnMut(&Field)) {
        let mut named = [&b""[..]; 8];
        let mut count = 0;
        let mut many = false;
        for token in self.connection_tokens() {
            match named.get_mut(count) {
                Some(slot) => *slot = token,
                None => many = true,
            }
            count += 1;
        }
        for field in self.list {
            let name = &self.head[field.name.clone()];
            let hop = if many {
                // More than eight tokens (rare): read them all again.
                is_hop_by_hop(name, &[])
                    || self
                        .connection_tokens()
                        .any(|t| name.eq_ignore_ascii_case(t))
            } else {
                is_hop_by_hop(name, &named[..count])
            };
            if !hop {
                f(field);
            }
        }
    }

    /// Writes `name: value\r\n` for each header that is not hop-by-hop and not `except`
    /// (unchanged headers need no list: this is [`Outgoing`] without edits). Returns whether a
    /// `Date` was among them.
    pub fn write_end_to_end(self, out: &mut Vec<u8>, except: &str) -> bool {
        let mut date = false;
        self.each_end_to_end(|f| {
            let name = &self.head[f.name.clone()];
            if name.eq_ignore_ascii_case(except.as_bytes()) {
                return;
            }
            date |= name.eq_ignore_ascii_case(b"date");
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(&self.head[f.value.clone()]);
            out.extend_from_slice(b"\r\n");
        });
        date
    }
}

/// One `Content-Length` value (or one part of a comma-separated list): digits only (RFC 9110
/// §8.6), at most 18 of them so that it fits without overflow (an exabyte is no body a proxy
/// sees). The request path declines anything else (hyper refuses it); the response path
/// answers 502.
pub fn content_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Whether `name` is hop-by-hop: one of the fixed list, or among `named` (the `Connection`
/// tokens).
fn is_hop_by_hop(name: &[u8], named: &[&[u8]]) -> bool {
    // Every fixed hop-by-hop name starts with one of these: most names are out at once.
    matches!(
        name.first().map(u8::to_ascii_lowercase),
        Some(b'c' | b'k' | b'p' | b't' | b'u')
    ) && HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
        || named.iter().any(|t| name.eq_ignore_ascii_case(t))
}

#[derive(Debug, Clone)]
pub enum Name {
    Received(Range<usize>),
    Set(HeaderName),
}

#[derive(Debug, Clone)]
pub enum Value {
    Received(Range<usize>),
    Set(HeaderValue),
}

/// A header's name, from the received bytes or as the gateway set it.
fn name_in<'n>(head: &'n [u8], n: &'n Name) -> &'n [u8] {
    match n {
        Name::Received(r) => &head[r.clone()],
        Name::Set(h) => h.as_str().as_bytes(),
    }
}

/// The headers to send on: those received that pass (by offset), and those the gateway set.
#[derive(Debug)]
pub struct Outgoing<'a> {
    head: &'a [u8],
    list: Vec<(Name, Value)>,
}

impl<'a> Outgoing<'a> {
    /// The received headers without the hop-by-hop ones (those `Connection` names included).
    /// `spare` is an empty list to hold them (see [`Outgoing::into_spare`]).
    pub fn end_to_end(received: Fields<'a>, mut spare: Vec<(Name, Value)>) -> Outgoing<'a> {
        spare.clear();
        received.each_end_to_end(|f| {
            spare.push((
                Name::Received(f.name.clone()),
                Value::Received(f.value.clone()),
            ));
        });
        Outgoing {
            head: received.head,
            list: spare,
        }
    }

    /// The list's allocation, for the next message.
    pub fn into_spare(self) -> Vec<(Name, Value)> {
        self.list
    }

    fn name<'n>(&'n self, n: &'n Name) -> &'n [u8] {
        name_in(self.head, n)
    }

    fn value<'v>(&'v self, v: &'v Value) -> &'v [u8] {
        match v {
            Value::Received(r) => &self.head[r.clone()],
            Value::Set(h) => h.as_bytes(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.list
            .iter()
            .find(|(n, _)| self.name(n).eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| self.value(v))
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn remove(&mut self, name: &str) {
        let head = self.head;
        self.list
            .retain(|(n, _)| !name_in(head, n).eq_ignore_ascii_case(name.as_bytes()));
    }

    pub fn append(&mut self, name: HeaderName, value: HeaderValue) {
        self.list.push((Name::Set(name), Value::Set(value)));
    }

    /// Replaces every value of `name` with `value` (`HeaderMap::insert`).
    pub fn insert(&mut self, name: HeaderName, value: HeaderValue) {
        self.remove(name.as_str());
        self.append(name, value);
    }

    /// Writes `name: value\r\n` for each header, in order.
    pub fn write(&self, out: &mut Vec<u8>) {
        for (n, v) in &self.list {
            out.extend_from_slice(self.name(n));
            out.extend_from_slice(b": ");
            out.extend_from_slice(self.value(v));
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl HeaderSource for Outgoing<'_> {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lengths_are_plain_digits() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b" 1048576 "), Some(1 << 20));
        assert_eq!(
            content_length(b"999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for refused in [
            &b""[..],
            b"+5",
            b"-1",
            b"5 5",
            b"0x10",
            b"1,2",
            b"9999999999999999999",
        ] {
            assert_eq!(content_length(refused), None, "{refused:?}");
        }
    }

    fn request(raw: &[u8]) -> RequestHead {
        match parse_request(raw, &mut Vec::new()) {
            Parsed::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_heads_parse_in_place() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: web.test\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nX-Kept: yes\r\n\r\nGET /next";
        let head = request(raw);
        assert_eq!(head.len, raw.len() - 9);
        assert_eq!(&raw[head.method.clone()], b"GET");
        assert_eq!(&raw[head.target.clone()], b"/a?b=1");
        assert_eq!(head.minor, 1);
        let fields = Fields {
            head: raw,
            list: &head.fields,
        };
        assert_eq!(fields.all("host").next(), Some(&b"web.test"[..]));
        assert!(fields.has_token("connection", "close"));
        let out = Outgoing::end_to_end(fields, Vec::new());
        let mut written = Vec::new();
        out.write(&mut written);
        assert_eq!(written, b"Host: web.test\r\nX-Kept: yes\r\n");
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a", &mut Vec::new()),
            Parsed::Partial
        ));
        assert!(matches!(
            parse_request(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", &mut Vec::new()),
            Parsed::Invalid
        ));
    }

    #[test]
    fn outgoing_headers_are_edited_like_a_header_map() {
        let raw = b"GET / HTTP/1.1\r\nx-a: 1\r\nX-A: 2\r\nx-b: 3\r\n\r\n";
        let head = request(raw);
        let mut out = Outgoing::end_to_end(
            Fields {
                head: raw,
                list: &head.fields,
            },
            Vec::new(),
        );
        out.insert(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("set"),
        );
        out.append(
            HeaderName::from_static("x-b"),
            HeaderValue::from_static("more"),
        );
        assert_eq!(out.get("x-a"), Some(&b"set"[..]));
        assert_eq!(
            HeaderSource::first(&out, &HeaderName::from_static("x-b")),
            Some(&b"3"[..])
        );
        out.remove("X-B");
        let mut written = Vec::new();
        out.write(&mut written);
        assert_eq!(written, b"x-a: set\r\n");
    }

    #[test]
    fn response_heads_keep_their_reason() {
        let raw = b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 2\r\n\r\nok";
        let Parsed::Complete(head) = parse_response(raw, &mut Vec::new()) else {
            panic!("not parsed")
        };
        assert_eq!(head.status, 418);
        assert_eq!(&raw[head.reason.clone()], b"I'm a teapot");
        assert_eq!(head.len, raw.len() - 2);
    }
}
