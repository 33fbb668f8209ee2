//! One model of a failed proxy request, shared by the fast path ([`super::h1`]) and the hyper
//! path ([`super::handler`]): what failed, who is to blame (the client, the upstream node or the
//! gateway and its configuration), what the client is answered, and whether sending the request
//! again (to another node) would be safe. Each path turns its own errors into a [`Failure`]
//! here, in one place, and [`settle`] records every failure the same way: the status and the
//! failure on the request's record (metrics, access log), the node charged only when the node
//! failed, one debug line.
//!
//! What stands on this: balancing that learns from failures, circuit breakers and passive
//! health ([`crate::protect::outcome`]), and retries. None of them may ever see a client's
//! broken upload or a gateway's configuration mistake as a node's failure.

use std::error::Error;
use std::time::Duration;

use super::body::{BodyTooLarge, ClientBodyFailed, RequestBodyIdle};
use super::errors::GatewayError;
use super::h1::upstream::UpstreamError;
use super::record::Record;
use crate::protect::outcome;
use crate::upstream::balancer::Endpoint;
use crate::upstream::cluster::{Cluster, SendError};
use crate::upstream::pool::ExchangeError;
use tokio::time::Instant;

/// Who a failed request is on (Pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something the gateway refuses, or stopped sending.
    Client,
    /// The upstream node did not connect, answer in time, or answer usably.
    Upstream,
    /// The gateway or its configuration (a route to nowhere, a cluster without nodes).
    Gateway,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Client => "client",
            Source::Upstream => "upstream",
            Source::Gateway => "gateway",
        }
    }
}

/// Whether the request could be sent again, to another node (Pingora's `RetryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Nothing of the request reached a node: any request may go to another one.
    Safe,
    /// The node may have received and acted on the request: only an idempotent one may be
    /// sent again.
    IfIdempotent,
    /// Sending it again cannot help: the fault is the client's or the configuration's.
    Never,
}

/// Why the gateway answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Two `Host` headers, or an HTTP/1.1 request without one.
    BadRequestHead,
    /// No route for the host, path, method and headers.
    NoRoute,
    /// The declared or received request body exceeds the route's `max_body_bytes`.
    BodyTooLarge,
    /// The client sent no body data for the cluster's send timeout.
    BodyStalled,
    /// The client's chunked framing is malformed.
    BodyMalformed,
    /// The client went away (or reset) before its whole body.
    BodyBrokenOff,
    /// None of the route's clusters exists (or all weigh 0).
    NoCluster,
    /// The cluster has no node to pick.
    NoNode,
    /// The upstream request could not be built from the configuration.
    BuildRequest,
    /// The node is one of this cluster's own control listeners (the upstream guard).
    ForbiddenUpstream,
    /// Connecting to the node failed or timed out: nothing was sent.
    Connect,
    /// The connection failed after the request went out, before a whole response head.
    Exchange,
    /// The node's response head is unusable: not HTTP/1.x, too long, a bad `Content-Length`,
    /// a `101` nobody asked for.
    BadResponse,
    /// No response head within the cluster's `send` + `read` timeouts.
    Timeout,
    /// The route's rate limit refused the request ([`crate::protect`]).
    RateLimited { status: u16, retry_after: u32 },
    /// Every node of the cluster has its circuit breaker open.
    CircuitOpen,
}

impl Failure {
    /// What the client is answered (contracts §7.14's bodies).
    pub fn answer(self) -> GatewayError {
        match self {
            Failure::BadRequestHead | Failure::BodyMalformed => GatewayError::BadRequest,
            Failure::NoRoute => GatewayError::NotFound,
            Failure::BodyTooLarge => GatewayError::PayloadTooLarge,
            Failure::BodyStalled => GatewayError::RequestTimeout,
            // As the original gateway answered; the client, gone, will not read it.
            Failure::BodyBrokenOff => GatewayError::BadGateway,
            Failure::NoCluster | Failure::NoNode | Failure::CircuitOpen => {
                GatewayError::ServiceUnavailable
            }
            Failure::BuildRequest => GatewayError::Internal,
            Failure::ForbiddenUpstream
            | Failure::Connect
            | Failure::Exchange
            | Failure::BadResponse => GatewayError::BadGateway,
            Failure::Timeout => GatewayError::GatewayTimeout,
            Failure::RateLimited {
                status,
                retry_after,
            } => GatewayError::TooManyRequests {
                status,
                retry_after,
            },
        }
    }

    pub fn source(self) -> Source {
        match self {
            Failure::BadRequestHead
            | Failure::NoRoute
            | Failure::BodyTooLarge
            | Failure::BodyStalled
            | Failure::BodyMalformed
            | Failure::BodyBrokenOff
            | Failure::RateLimited { .. } => Source::Client,
            Failure::NoCluster
            | Failure::NoNode
            | Failure::BuildRequest
            | Failure::ForbiddenUpstream => Source::Gateway,
            Failure::Connect
            | Failure::Exchange
            | Failure::BadResponse
            | Failure::Timeout
            | Failure::CircuitOpen => Source::Upstream,
        }
    }

    pub fn retry(self) -> Retry {
        match self {
            Failure::Connect => Retry::Safe,
            Failure::Exchange | Failure::BadResponse | Failure::Timeout => Retry::IfIdempotent,
            _ => Retry::Never,
        }
    }

    /// A stable name for the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::BadRequestHead => "bad_request_head",
            Failure::NoRoute => "no_route",
            Failure::BodyTooLarge => "body_too_large",
            Failure::BodyStalled => "body_stalled",
            Failure::BodyMalformed => "body_malformed",
            Failure::BodyBrokenOff => "body_broken_off",
            Failure::NoCluster => "no_cluster",
            Failure::NoNode => "no_node",
            Failure::BuildRequest => "build_request",
            Failure::ForbiddenUpstream => "forbidden_upstream",
            Failure::Connect => "connect",
            Failure::Exchange => "exchange",
            Failure::BadResponse => "bad_response",
            Failure::Timeout => "timeout",
            Failure::RateLimited { .. } => "rate_limited",
            Failure::CircuitOpen => "circuit_open",
        }
    }

    /// The failure behind a hyper-path exchange error ([`crate::upstream::cluster::Cluster::send`]).
    pub fn of_send(e: &SendError) -> Failure {
        match e {
            SendError::Build(_) => Failure::BuildRequest,
            SendError::Exchange(e) => Failure::of_exchange(&**e),
        }
    }

    fn of_exchange(e: &(dyn Error + 'static)) -> Failure {
        // The client's failures surface through the upstream connection (its body is being
        // sent there): they come first, so that they are never charged to the node.
        if caused_by::<BodyTooLarge>(e) {
            return Failure::BodyTooLarge;
        }
        if caused_by::<RequestBodyIdle>(e) {
            return Failure::BodyStalled;
        }
        if caused_by::<ClientBodyFailed>(e) {
            return if caused_by_invalid_data(e) {
                Failure::BodyMalformed
            } else {
                Failure::BodyBrokenOff
            };
        }
        for err in chain(e) {
            if let Some(x) = err.downcast_ref::<ExchangeError>() {
                return Failure::of_connect(x);
            }
            if let Some(h) = err.downcast_ref::<hyper::Error>() {
                return Failure::of_hyper(h);
            }
            if let Some(l) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
                if l.is_connect() {
                    return Failure::Connect;
                }
            }
        }
        Failure::Exchange
    }

    fn of_connect(e: &ExchangeError) -> Failure {
        match e {
            ExchangeError::Forbidden { .. } => Failure::ForbiddenUpstream,
            ExchangeError::Connect { .. } | ExchangeError::ConnectTimeout { .. } => {
                Failure::Connect
            }
            ExchangeError::Http(h) => Failure::of_hyper(h),
        }
    }

    fn of_hyper(e: &hyper::Error) -> Failure {
        if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
            Failure::BadResponse
        } else {
            Failure::Exchange
        }
    }

    /// The failure behind a fast-path exchange error.
    pub fn of_upstream(e: &UpstreamError) -> Failure {
        match e {
            UpstreamError::Connect(x) => Failure::of_connect(x),
            UpstreamError::Write(_) | UpstreamError::Read(_) | UpstreamError::Closed => {
                Failure::Exchange
            }
            UpstreamError::Malformed | UpstreamError::HeadTooLarge => Failure::BadResponse,
            UpstreamError::ClientIdle(_) => Failure::BodyStalled,
            UpstreamError::ClientGone(_) => Failure::BodyBrokenOff,
        }
    }
}

/// The node a request was sent to, its cluster, and how long it had the request.
pub struct Charge<'a> {
    pub cluster: &'a Cluster,
    pub node: &'a Endpoint,
    pub elapsed: Duration,
}

/// Records a failed request, the same way on both paths: its status and failure on `record`
/// (for the metrics and the access log, which it writes when dropped), the node charged when
/// the node failed (never for the client's or the configuration's faults), and one debug line.
/// Returns what to answer.
pub fn settle(
    record: &mut Record,
    failure: Failure,
    charge: Option<Charge<'_>>,
    detail: &dyn std::fmt::Display,
) -> GatewayError {
    let answer = failure.answer();
    record.status = answer.status().as_u16();
    record.local = true;
    record.bytes = answer.body_len() as u64;
    record.failure = Some(failure);
    let source = failure.source();
    if let (Source::Upstream, Some(c)) = (source, &charge) {
        c.node.observe_failure(c.elapsed);
        outcome::failed(&record.metrics, c.cluster, c.node, Instant::now());
    }
    tracing::debug!(
        failure = failure.as_str(),
        source = source.as_str(),
        upstream = %record.upstream,
        %detail,
        "answered by the gateway"
    );
    answer
}

fn chain<'a>(e: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> + 'a {
    std::iter::successors(Some(e), |&e| e.source())
}

/// Whether `e` was caused by an error of type `T` (our own request-body checks).
fn caused_by<T: Error + 'static>(e: &(dyn Error + 'static)) -> bool {
    chain(e).any(|err| err.is::<T>())
}

/// Whether an I/O error in `e`'s chain says the data was malformed (hyper's chunked decoder).
fn caused_by_invalid_data(e: &(dyn Error + 'static)) -> bool {
    chain(e).any(|err| {
        err.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput
            )
        })
    })
}

#[cfg(test)]
mod tests;
