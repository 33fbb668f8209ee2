//! One request on the fast path, in the same order and with the same rules as
//! [`crate::proxy::handler`]: forwarding headers, route, body limit, cluster, request
//! transforms, node, `pass_host`, the upstream exchange (the request body with it) within the
//! header deadline, then the response head
//! (hop-by-hop stripped, override markers, transforms) and its body. What this path does not
//! do it declines before anything is counted or sent ([`Outcome::Fallback`]): the connection
//! then goes to hyper, which answers the request whole.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::date;
use super::head::{content_length, Field, Fields, Name, Outgoing, RequestHead, Value};
use super::relay::{relay, Framing};
use super::upstream::{exchange, exchange_streaming, BodyRest};
use crate::digits::push_decimal;
use crate::protect::outcome;
use crate::proxy::decide::{self, Admitted};
use crate::proxy::failure::{settle, Charge, Failure};
use crate::proxy::handler::{
    canonical, chosen_host, passes_client_host, CLUSTER_MARKER, OVERRIDE_MARKER,
};
use crate::proxy::headers::{client_ip_from, ip_value, Forwarding, VIA};
use crate::proxy::record::Record;
use crate::routing::host;
use crate::routing::matchers::visible_ascii;
use crate::routing::table::TransformOp;
use crate::upstream::balancer::InFlight;
use crate::upstream::pool::Target;
use crate::Gateway;

/// What became of a request, and so of its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered; the connection can take the next request once the first `n` bytes of the
    /// buffer (what is left there of this request) are dropped.
    KeepAlive(usize),
    /// Answered (or failed half-way); the connection must close.
    Close,
    /// Not for the fast path: nothing was sent or counted, hyper takes the connection.
    Fallback,
}

/// The client side of a connection on the fast path.
pub struct Downstream {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// The client's address as the forwarding headers name it, made once per connection.
    peer_ip: IpAddr,
    peer_value: HeaderValue,
    /// Bytes read from the client and not yet handled (the current head first).
    pub buf: BytesMut,
    /// The head being written (upstream request, then response), reused request to request.
    out: Vec<u8>,
    /// The request head's deadline and the upstream's. Each is armed once and re-armed only
    /// when it fires before the deadline of the request now waiting ([`until`]): arming a
    /// timer for every request cost more than the rest of the wait.
    pub header_timer: Pin<Box<Sleep>>,
    upstream_timer: Pin<Box<Sleep>>,
    /// Allocations kept from one request for the next: the request head's fields, the
    /// response head's, and the two header lists sent on.
    pub spare_fields: Vec<Field>,
    spare_response_fields: Vec<Field>,
    spare_lists: [Vec<(Name, Value)>; 2],
    /// When the last response was sent, if that was read already: the next head's wait starts
    /// there.
    pub finished: Option<Instant>,
}

/// Resolves at `deadline`, using `timer`, which may be armed for another instant (an earlier
/// request's deadline): firing early re-arms it.
pub async fn until(timer: &mut Pin<Box<Sleep>>, deadline: Instant) {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    loop {
        timer.as_mut().await;
        if Instant::now() >= deadline {
            return;
        }
        timer.as_mut().reset(deadline);
    }
}

impl Downstream {
    pub fn new(stream: TcpStream, peer: SocketAddr) -> Downstream {
        let peer_ip = canonical(peer.ip());
        Downstream {
            stream,
            peer,
            peer_ip,
            peer_value: ip_value(peer_ip),
            buf: BytesMut::with_capacity(8 * 1024),
            // Grows to the largest head written, then serves every request after.
            out: Vec::new(),
            header_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            upstream_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            spare_fields: Vec::new(),
            spare_response_fields: Vec::new(),
            spare_lists: [Vec::new(), Vec::new()],
            finished: None,
        }
    }
}

/// What the fast path needs from a request head, or `None` when the request is not for it:
/// HTTP/1.0, a body that is not one plain `Content-Length` (any transfer coding, a repeated or
/// odd length), `Expect`, `Upgrade`, a target that is not plain origin form (hyper applies the
/// URI rules and the body framing rules to anything else).
struct Facts<'a> {
    method: Method,
    target: &'a [u8],
    path: &'a str,
    host: &'a str,
    close: bool,
    /// The request's `Content-Length`, if it has one.
    length: Option<u64>,
}

impl<'a> Facts<'a> {
    fn of(head: &RequestHead, fields: Fields<'a>) -> Option<Facts<'a>> {
        if head.minor != 1 {
            return None;
        }
        let raw = fields.head;
        let method = Method::from_bytes(&raw[head.method.clone()]).ok()?;
        let target = &raw[head.target.clone()];
        let path_len = origin_form(target)?;
        // `origin_form` admits ASCII only.
        let path = std::str::from_utf8(&target[..path_len]).ok()?;
        let mut host = None;
        let mut body = None;
        for (name, value) in fields.iter() {
            let is = |h: &str| name.eq_ignore_ascii_case(h.as_bytes());
            if is("transfer-encoding") || is("expect") || is("upgrade") {
                return None;
            }
            if is("content-length") {
                if body.is_some() {
                    return None;
                }
                body = Some(content_length(value)?);
            }
            if is("host") {
                // Two Hosts: the general path refuses it (400).
                if host.is_some() {
                    return None;
                }
                host = Some(value);
            }
        }
        // No Host: the general path refuses it (400) for HTTP/1.1.
        let host = host?;
        Some(Facts {
            method,
            target,
            path,
            // As `HeaderValue::to_str`: a Host that is not visible ASCII counts as none.
            host: visible_ascii(host).unwrap_or(""),
            close: fields.has_token("connection", "close"),
            length: body,
        })
    }
}

/// The length of the path of an origin-form target (`/path?query`), or `None` when the target
/// has anything but the characters RFC 3986 allows there (a fragment, spaces, non-ASCII, and
/// the like go to hyper, whose URI parser decides).
fn origin_form(target: &[u8]) -> Option<usize> {
    if target.first() != Some(&b'/') {
        return None;
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b);
    let mut path_len = None;
    for (i, &b) in target.iter().enumerate() {
        if b == b'?' {
            path_len.get_or_insert(i);
        } else if !allowed(b) {
            return None;
        }
    }
    Some(path_len.unwrap_or(target.len()))
}

/// RFC 9110 §9.2.2: a request the upstream may see twice without harm.
fn transform(headers: &mut Outgoing<'_>, t: &TransformOp) {
    match t {
        TransformOp::Set(n, v) => headers.insert(n.clone(), v.clone()),
        TransformOp::Add(n, v) => headers.append(n.clone(), v.clone()),
        TransformOp::Remove(n) => headers.remove(n.as_str()),
    }
}

fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    if reason.is_empty() {
        let canonical = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        out.extend_from_slice(canonical.as_bytes());
    } else {
        out.extend_from_slice(reason);
    }
    out.extend_from_slice(b"\r\n");
}

/// How a failed request's connection goes on: `close` it after the answer, or keep it with
/// `request_len` bytes of the request (head and body) still to drop from the buffer.
#[derive(Clone, Copy)]
struct After {
    close: bool,
    request_len: usize,
}

/// Answers a failed request (see [`crate::proxy::failure`]: the same record, charge and
/// answer as the general path's) and counts it once, when `record` drops.
async fn fail(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    mut record: Record,
    failure: Failure,
    charge: Option<Charge<'_>>,
    detail: &(dyn std::fmt::Display + Sync),
    after: After,
) -> Outcome {
    let error = settle(&mut record, failure, charge, detail);
    let After { close, request_len } = after;
    let body = error.body();
    out.clear();
    status_line(out, record.status, b"");
    out.extend_from_slice(b"content-type: application/json\r\ncontent-length: ");
    push_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\ndate: ");
    date::append_now(out);
    out.extend_from_slice(b"\r\n");
    if let Some(secs) = error.retry_after() {
        out.extend_from_slice(b"retry-after: ");
        push_decimal(out, u64::from(secs));
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    let written = stream.write_all(out).await;
    drop(record);
    match written {
        Ok(()) if !close => Outcome::KeepAlive(request_len),
        _ => Outcome::Close,
    }
}

pub async fn forward(gw: &Gateway, conn: &mut Downstream, head: &RequestHead) -> Outcome {
    let Downstream {
        stream,
        peer_ip,
        peer_value,
        buf,
        out,
        upstream_timer,
        spare_response_fields,
        spare_lists: [spare_request_list, spare_response_list],
        finished,
        ..
    } = conn;
    let received = Fields {
        head: &buf[..head.len],
        list: &head.fields,
    };
    let Some(req) = Facts::of(head, received) else {
        return Outcome::Fallback;
    };
    let Facts {
        method,
        target: request_target,
        path,
        host: request_host,
        close,
        length,
    } = req;
    let body = length.unwrap_or(0);
    // The body bytes read with the head. Until the whole body is read, an answer closes the
    // connection: the rest of the body would be taken for the next request.
    let buffered_body = ((buf.len() - head.len) as u64).min(body) as usize;
    let request_len = head.len + buffered_body;
    let rest = body - buffered_body as u64;
    let early_close = close || rest > 0;

    // Hop-by-hop headers go before the forwarding headers are set (see `handler`).
    let peer_ip = *peer_ip;
    let client_ip = client_ip_from(
        received.all("x-forwarded-for").filter_map(visible_ascii),
        peer_ip,
        &gw.trusted_proxies,
    );
    let mut upstream_headers = Outgoing::end_to_end(received, std::mem::take(spare_request_list));
    let forwarding = Forwarding::new(
        upstream_headers
            .get("x-forwarded-for")
            .and_then(visible_ascii),
        upstream_headers.contains("x-forwarded-proto"),
        (peer_ip, peer_value),
        client_ip,
        request_host,
        &gw.trusted_proxies,
    );
    for (name, value) in forwarding.fields() {
        upstream_headers.insert(name, value);
    }

    // One snapshot for the route and its clusters (see `gateway::snapshot`).
    let snapshot = gw.snapshot();
    let host_name = host::normalize(request_host);
    let choice = decide::choose(&snapshot, &host_name, path, &method, &upstream_headers);
    // Compression rewrites bodies, TLS clusters use hyper-util's client, and retries keep
    // bodies to send again: the general path's.
    if choice.route.as_ref().is_some_and(|r| r.compression)
        || choice
            .cluster
            .as_ref()
            .is_some_and(|c| c.is_tls() || c.config.retry.is_some())
    {
        return Outcome::Fallback;
    }

    let mut record = Record::new(
        gw.metrics.clone(),
        method.clone(),
        request_host.to_string(),
        path.to_string(),
        client_ip,
    );
    let before_sending = After {
        close: early_close,
        request_len,
    };
    let Admitted {
        route,
        cluster,
        node: endpoint,
        overridden,
    } = match choice.admit(gw, length, &mut record) {
        Ok(admitted) => admitted,
        Err(failure) => {
            return fail(stream, out, record, failure, None, &"", before_sending).await;
        }
    };
    if !route.request_transforms.is_empty() {
        for t in &route.request_transforms {
            transform(&mut upstream_headers, t);
        }
        // The framing headers are the client's, whatever a transform did: the body is sent
        // as it came.
        upstream_headers.remove("content-length");
        upstream_headers.remove("transfer-encoding");
        if let Some(length) = length {
            upstream_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
    upstream_headers.append(VIA.0, VIA.1);
    let in_flight = InFlight::new(endpoint.clone());

    // Host by `pass_host`, as the general path and its transport set it: the client's (after
    // transforms) is kept for `pass`; otherwise the rewrite, and the node's name where that
    // leaves none.
    let keep_clients =
        passes_client_host(&cluster) && upstream_headers.get("host").is_some_and(|h| !h.is_empty());
    if !keep_clients {
        let value = chosen_host(&cluster, &record.host)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| endpoint.host_header.clone());
        upstream_headers.insert(header::HOST, value);
    }

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request_target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    upstream_headers.write(out);
    out.extend_from_slice(b"\r\n");
    *spare_request_list = upstream_headers.into_spare();
    // The body as it came: its length is the client's `Content-Length`, passed on unchanged.
    out.extend_from_slice(&buf[head.len..request_len]);
    buf.advance(request_len);

    let timeouts = cluster.timeouts;
    let target = Target {
        host: &endpoint.host,
        port: endpoint.port,
        node: &endpoint.key,
        idle: &endpoint.idle,
        pool: &cluster.config.keepalive_pool,
        connect_timeout: timeouts.connect,
        guard: &gw.forbidden,
    };
    // One deadline for connect, sending and the response headers (`send` + `read`).
    let deadline = timeouts.headers;
    // The request's start stands for the moment it is sent: a microsecond of routing earlier,
    // and one clock read fewer (they cost ~40 ns each on this kind of VM).
    let sent = record.started;
    let send_upstream = async {
        if rest == 0 {
            let retry = crate::proxy::retry::idempotent(&method);
            let answer = exchange(&target, out, retry, spare_response_fields, record.started);
            answer.await.map(|(up, resp)| (up, resp, true))
        } else {
            let idle = timeouts.send;
            let rest = BodyRest {
                client: &mut *stream,
                buf: &mut *buf,
                remaining: rest,
                idle,
            };
            exchange_streaming(&target, out, rest, spare_response_fields, record.started).await
        }
    };
    let answered = tokio::select! {
        biased;
        answer = send_upstream => Some(answer),
        _ = until(upstream_timer, sent + deadline) => None,
    };
    // The body may be cut short by now: then the client connection closes after the answer,
    // and what is left of the request is no longer in the buffer.
    let charge = || Charge {
        cluster: &cluster,
        node: &endpoint,
        elapsed: sent.elapsed(),
    };
    let (mut up, resp, sent_all) = match answered {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => {
            let failure = Failure::of_upstream(&e);
            // A client that stalled or went away mid-body leaves the connection unusable.
            let close = early_close || failure.source() == crate::proxy::failure::Source::Client;
            let after = After {
                close,
                request_len: 0,
            };
            return fail(stream, out, record, failure, Some(charge()), &e, after).await;
        }
        None => {
            let after = After {
                close: early_close,
                request_len: 0,
            };
            return fail(
                stream,
                out,
                record,
                Failure::Timeout,
                Some(charge()),
                &"",
                after,
            )
            .await;
        }
    };
    let close = close || !sent_all;
    let upstream_time = sent.elapsed();
    record.upstream_secs = Some(upstream_time.as_secs_f64());
    let resp_fields = Fields {
        head: &up.buf[..resp.len],
        list: &resp.fields,
    };
    // No upgrade was asked for, so a 101 is the upstream's error.
    let framing = match Framing::of(&method, &resp, resp_fields) {
        Ok(f) if resp.status != 101 => f,
        // The node answered, unusably: its failure (as hyper's parse errors on the general
        // path), not a success to learn its latency from.
        _ => {
            let after = After {
                close,
                request_len: 0,
            };
            let detail = format!("unusable response head (status {})", resp.status);
            return fail(
                stream,
                out,
                record,
                Failure::BadResponse,
                Some(charge()),
                &detail,
                after,
            )
            .await;
        }
    };
    outcome::answered(&gw.metrics, &cluster, &endpoint, resp.status, upstream_time);
    record.status = resp.status;
    let upstream_keeps = sent_all
        && framing != Framing::UntilClose
        && !resp_fields.has_token("connection", "close")
        && (resp.minor == 1 || resp_fields.has_token("connection", "keep-alive"));

    out.clear();
    status_line(out, resp.status, &up.buf[resp.reason.clone()]);
    // The framing headers are the proxy's own, whatever a transform did to the headers.
    let has_date = if overridden || !route.response_transforms.is_empty() {
        let mut response_headers =
            Outgoing::end_to_end(resp_fields, std::mem::take(spare_response_list));
        if overridden {
            if let Ok(v) = HeaderValue::from_str(&cluster.config.name) {
                response_headers.insert(CLUSTER_MARKER, v);
                response_headers.insert(OVERRIDE_MARKER, HeaderValue::from_static("true"));
            }
        }
        for t in &route.response_transforms {
            transform(&mut response_headers, t);
        }
        if framing != Framing::Empty {
            response_headers.remove("content-length");
        }
        response_headers.write(out);
        let has_date = response_headers.contains("date");
        *spare_response_list = response_headers.into_spare();
        has_date
    } else {
        let except = if framing == Framing::Empty {
            ""
        } else {
            "content-length"
        };
        resp_fields.write_end_to_end(out, except)
    };
    if !has_date {
        out.extend_from_slice(b"date: ");
        date::append_now(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked | Framing::UntilClose => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        Framing::Empty => {}
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    *spare_response_fields = resp.fields;
    up.buf.advance(resp.len);

    let idle = timeouts.read;
    record.node = Some(in_flight);
    match relay(stream, &mut up, out, framing, idle).await {
        Ok(bytes) => {
            record.bytes = bytes;
            // One clock reading for the record, the idle connection and the next head's wait.
            let done = Instant::now();
            record.finish(done);
            *finished = Some(done);
            let pool = &cluster.config.keepalive_pool;
            if upstream_keeps && up.buf.is_empty() && up.served < pool.requests.max(1) {
                endpoint.idle.put(up, pool, done);
            }
            if close {
                Outcome::Close
            } else {
                Outcome::KeepAlive(0)
            }
        }
        Err(e) => {
            tracing::debug!(upstream = %endpoint.key, error = %e, "response body not relayed whole");
            Outcome::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 200, 65535, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn only_plain_origin_form_targets() {
        assert_eq!(origin_form(b"/"), Some(1));
        assert_eq!(origin_form(b"/a/b?c=d&e=/f?g"), Some(4));
        assert_eq!(origin_form(b"/%7Euser;v=1"), Some(12));
        for declined in [
            &b"*"[..],
            b"http://h/",
            b"h:80",
            b"/a#f",
            b"/a b",
            b"/\"",
            b"/{x}",
            b"/\xc3\xa9",
        ] {
            assert_eq!(origin_form(declined), None, "{declined:?}");
        }
    }
}
