//! One proxied request, in order: host and client address → forwarding headers → route → body
//! limit → cluster (weights, override header limited to the route's own clusters) → request
//! transforms → node → upstream request within the header deadline → response headers
//! (hop-by-hop stripped, override markers, transforms) → compression → streamed body with an
//! idle timeout. Requests asking to upgrade (WebSocket) are tunnelled after the upstream's 101.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::time::Instant;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{Inbound, Tracked};
use super::compress;
use super::decide::{self, Admitted};
use super::failure::{settle, Charge, Failure, Source};
use super::headers::{self, VIA};
use super::record::Record;
use super::retry;
use crate::protect::outcome;
use crate::routing::host;
use crate::upstream::balancer::InFlight;
use crate::upstream::client::ProxyBody;
use crate::upstream::cluster::{Cluster, SendError};
use crate::Gateway;

/// IPv4 clients on a dual-stack listener show up as `::ffff:a.b.c.d`.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Answers a failed request (see [`super::failure`]), counting it once, when `record` drops.
fn fail(
    mut record: Record,
    failure: Failure,
    charge: Option<Charge<'_>>,
    detail: &dyn std::fmt::Display,
) -> Response<ProxyBody> {
    settle(&mut record, failure, charge, detail).response()
}

/// The response headers that tell a client its override header chose the cluster: the
/// cluster's name, and that it was an override (§7.3, step 13).
pub(super) const CLUSTER_MARKER: HeaderName = HeaderName::from_static("x-hermes-cluster");
pub(super) const OVERRIDE_MARKER: HeaderName = HeaderName::from_static("x-hermes-cluster-override");

/// Whether `pass_host` sends the client's own Host (`pass`, the default, and anything unknown).
pub(super) fn passes_client_host(cluster: &Cluster) -> bool {
    !matches!(cluster.config.pass_host.as_str(), "node" | "rewrite")
}

/// The Host `pass_host` chooses when the client's own header is not sent as it is: the rewrite
/// (or the client's host when it has none), `host` itself for `pass`, and `None` for `node`,
/// whose name the transport knows (`Endpoint::host_header`).
pub(super) fn chosen_host(cluster: &Cluster, host: &str) -> Option<HeaderValue> {
    match cluster.config.pass_host.as_str() {
        "node" => None,
        "rewrite" => cluster
            .config
            .upstream_host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
            .or_else(|| HeaderValue::from_str(host).ok()),
        _ => HeaderValue::from_str(host).ok(),
    }
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// What is wrong with a request head the proxy must refuse (RFC 9112 §3.2): an HTTP/1.1
/// request needs exactly one `Host`, and no request may carry two.
fn head_problem(req: &Request<Incoming>) -> Option<&'static str> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Some("more than one Host header");
    }
    if hosts == 0 && req.version() == http::Version::HTTP_11 {
        return Some("an HTTP/1.1 request without Host");
    }
    None
}

fn is_h2c(upgrade: &http::HeaderValue) -> bool {
    upgrade
        .to_str()
        .is_ok_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c")))
}

pub async fn handle(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let peer_ip = canonical(peer.ip());
    let raw_host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let client_ip = headers::client_ip(req.headers(), peer_ip, &gw.trusted_proxies);
    let mut record = Record::new(
        gw.metrics.clone(),
        req.method().clone(),
        raw_host,
        req.uri().path().to_string(),
        client_ip,
    );
    if let Some(problem) = head_problem(&req) {
        return fail(record, Failure::BadRequestHead, None, &problem);
    }
    // The record keeps host and path for the access log; routing borrows them from it.
    let host_name = host::normalize(&record.host);
    // Upgrade is itself hop-by-hop: note it, then drop every hop-by-hop header the client sent
    // (including those its `Connection` names) *before* adding ours, so a client cannot strip the
    // forwarding headers or a transform's header by listing them in `Connection`.
    // An h2c upgrade is never passed on: an upstream that switched would take the connection
    // out of the proxy's hands (request smuggling past its routes); the request goes on as
    // plain HTTP/1.1.
    let upgrade = headers::is_upgrade(req.headers())
        .then(|| req.headers().get(header::UPGRADE).cloned())
        .flatten()
        .filter(|u| !is_h2c(u));
    headers::strip_hop_by_hop(req.headers_mut());
    req.headers_mut().remove("http2-settings");
    headers::set_forwarding(
        req.headers_mut(),
        peer_ip,
        client_ip,
        &record.host,
        &gw.trusted_proxies,
    );

    // One snapshot for the route and its clusters (see `gateway::snapshot`).
    let snapshot = gw.snapshot();
    let choice = decide::choose(
        &snapshot,
        &host_name,
        &record.path,
        req.method(),
        req.headers(),
    );
    let declared = content_length(req.headers());
    let Admitted {
        route,
        cluster,
        node: endpoint,
        overridden,
    } = match choice.admit(&gw, declared, &mut record) {
        Ok(admitted) => admitted,
        Err(failure) => return fail(record, failure, None, &""),
    };
    for t in &route.request_transforms {
        t.apply(req.headers_mut());
    }
    req.headers_mut().append(VIA.0, VIA.1);
    let accept_encoding = req.headers().get(header::ACCEPT_ENCODING).cloned();
    let downstream_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

    let in_flight = InFlight::new(endpoint.clone());

    let (parts, body) = req.into_parts();
    let mut upstream_headers = parts.headers;
    if let Some(protocol) = &upgrade {
        upstream_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        upstream_headers.insert(header::UPGRADE, protocol.clone());
    }
    // `pass_host: node` is set by the transport, which knows how the node is named (see
    // `Cluster::send`).
    // `pass`: the client's Host as it came (no copy), unless the request target named the
    // authority (absolute form, h2's `:authority`): that one wins, as `record.host` says.
    let host_value = match upstream_headers.get(header::HOST) {
        Some(h) if passes_client_host(&cluster) && parts.uri.authority().is_none() => {
            Some(h.clone())
        }
        _ => chosen_host(&cluster, &record.host),
    };
    match host_value.filter(|h| !h.is_empty()) {
        Some(h) => upstream_headers.insert(header::HOST, h),
        None => upstream_headers.remove(header::HOST),
    };
    let timeouts = cluster.timeouts;
    // One deadline for connect, sending and the response headers (`send` + `read`), across
    // every attempt.
    let deadline = Instant::now() + timeouts.headers;
    let policy = cluster
        .config
        .retry
        .as_ref()
        .filter(|_| upgrade.is_none())
        .map(|r| retry::Policy::new(r, &parts.method, route.retry_non_idempotent));
    let mut body = if body.is_end_stream() {
        Payload::Kept(bytes::Bytes::new())
    } else if policy.is_some() && declared.is_some_and(|n| n <= retry::BUFFERED_BODY_BYTES) {
        // Small enough to keep, so that it can be sent again.
        let inbound = Inbound::new(body, route.max_body_bytes, timeouts.send);
        match tokio::time::timeout_at(deadline, inbound.collect()).await {
            Ok(Ok(collected)) => Payload::Kept(collected.to_bytes()),
            Ok(Err(e)) => {
                let failure = Failure::of_send(&SendError::Exchange(e));
                return fail(record, failure, None, &"reading the request body");
            }
            Err(_) => return fail(record, Failure::BodyStalled, None, &"request body"),
        }
    } else {
        let idle = timeouts.send;
        Payload::Once(Some(Inbound::new(body, route.max_body_bytes, idle).boxed()))
    };
    // Origin form (`/path?query`): the transport adds the node where it needs it.
    let target: http::Uri = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
        .into();
    let resend = policy.is_some() && matches!(body, Payload::Kept(_));
    // With `retry_on_timeout`, an attempt also ends after `read`, leaving time for another.
    let attempt_limit = policy
        .filter(|p| p.config.retry_on_timeout && resend)
        .map(|_| timeouts.read);
    let mut endpoint = endpoint;
    let mut in_flight = in_flight;
    let mut tried: Vec<Arc<str>> = Vec::new();
    let mut attempts = 0u32;
    let mut headers = Some(upstream_headers);
    let (mut resp, sent) = loop {
        attempts += 1;
        let mut upstream_req = Request::new(body.next());
        *upstream_req.method_mut() = parts.method.clone();
        *upstream_req.uri_mut() = target.clone();
        *upstream_req.headers_mut() = match (resend, headers.take()) {
            (true, Some(h)) => {
                let copy = h.clone();
                headers = Some(h);
                copy
            }
            (_, h) => h.unwrap_or_default(),
        };
        let sent = Instant::now();
        let until = attempt_limit.map_or(deadline, |limit| deadline.min(sent + limit));
        let exchange = cluster.send(&gw.forbidden, &endpoint, upstream_req, upgrade.is_some());
        let failure = match tokio::time::timeout_at(until, exchange).await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                outcome::answered(&gw.metrics, &cluster, &endpoint, status, sent.elapsed());
                let again = resend && policy.is_some_and(|p| p.after_status(status, attempts));
                if again && Instant::now() < deadline {
                    if let Some(next) =
                        decide::next_node(&gw, &cluster, &record, &tried_and(&tried, &endpoint))
                    {
                        count_retry(&gw, &record, &cluster, &endpoint, None);
                        tried.push(endpoint.key.clone());
                        (endpoint, in_flight) = (next.clone(), InFlight::new(next));
                        record.upstream = endpoint.key.clone();
                        continue;
                    }
                }
                break (resp, sent);
            }
            Ok(Err(e)) => (Failure::of_send(&e), Some(e)),
            Err(_) => (Failure::Timeout, None),
        };
        let (failure, error) = failure;
        let charge = Charge {
            cluster: &cluster,
            node: &endpoint,
            elapsed: sent.elapsed(),
        };
        let again = resend
            && failure.source() == Source::Upstream
            && policy.is_some_and(|p| p.after_failure(failure, attempts))
            && Instant::now() < deadline;
        if again {
            if let Some(next) =
                decide::next_node(&gw, &cluster, &record, &tried_and(&tried, &endpoint))
            {
                charge_only(&record, charge);
                count_retry(&gw, &record, &cluster, &endpoint, Some(failure));
                tried.push(endpoint.key.clone());
                (endpoint, in_flight) = (next.clone(), InFlight::new(next));
                record.upstream = endpoint.key.clone();
                continue;
            }
        }
        return match error {
            Some(e) => fail(record, failure, Some(charge), &e),
            None => fail(record, failure, Some(charge), &""),
        };
    };
    let upstream_time = sent.elapsed();
    record.upstream_secs = Some(upstream_time.as_secs_f64());
    record.status = resp.status().as_u16();

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream) = downstream_upgrade {
            let upstream = hyper::upgrade::on(&mut resp);
            gw.metrics.upgrades.inc();
            super::tunnel::spawn(
                downstream,
                upstream,
                record,
                in_flight,
                gw.shutdown_signal(),
            );
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, compress::full(bytes::Bytes::new()));
        }
    }

    let (mut rparts, rbody) = resp.into_parts();
    headers::strip_hop_by_hop(&mut rparts.headers);
    if overridden {
        if let Ok(v) = HeaderValue::from_str(&cluster.config.name) {
            rparts.headers.insert(CLUSTER_MARKER, v);
            rparts
                .headers
                .insert(OVERRIDE_MARKER, HeaderValue::from_static("true"));
        }
    }
    for t in &route.response_transforms {
        t.apply(&mut rparts.headers);
    }
    let mut body: ProxyBody = rbody;
    if route.compression {
        compress::add_vary(&mut rparts.headers);
        if compress::compressible(&parts.method, rparts.status, &rparts.headers) {
            if let Some(encoding) = compress::negotiate(accept_encoding.as_ref()) {
                body = compress::compress(body, encoding, &mut rparts.headers);
            }
        }
    }
    record.node = Some(in_flight);
    let idle = timeouts.read;
    Response::from_parts(rparts, Tracked::new(body, idle, record).boxed())
}

/// A request body: kept in memory (small, or empty) and sent on every attempt, or streamed
/// from the client once.
enum Payload {
    Kept(bytes::Bytes),
    Once(Option<ProxyBody>),
}

impl Payload {
    /// The body of the next attempt.
    fn next(&mut self) -> ProxyBody {
        match self {
            Payload::Kept(b) if b.is_empty() => http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
            Payload::Kept(b) => http_body_util::Full::new(b.clone())
                .map_err(|never| match never {})
                .boxed(),
            // Only ever sent once: a streamed request is never retried.
            Payload::Once(body) => body.take().unwrap_or_else(|| {
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed()
            }),
        }
    }
}

/// The nodes a retried request must avoid: those tried, and the one that just failed.
fn tried_and(tried: &[Arc<str>], node: &crate::upstream::balancer::Endpoint) -> Vec<Arc<str>> {
    let mut all = tried.to_vec();
    all.push(node.key.clone());
    all
}

/// Charges a failed attempt that is retried (the last one is charged by `settle`).
fn charge_only(record: &Record, charge: Charge<'_>) {
    charge.node.observe_failure(charge.elapsed);
    outcome::failed(&record.metrics, charge.cluster, charge.node, Instant::now());
}

fn count_retry(
    gw: &Gateway,
    record: &Record,
    cluster: &Cluster,
    node: &crate::upstream::balancer::Endpoint,
    failure: Option<Failure>,
) {
    gw.metrics
        .retries
        .with_label_values(&[
            &*record.domain,
            &*record.route,
            &*cluster.name,
            &*node.key,
            retry::reason(failure),
        ])
        .inc();
}
