//! When a request is sent again, to another node (contracts/hermes.md §7.10, with G9 fixed):
//! the cluster's `retry` says how many times and after what (a status in
//! `retry_on_statuses`, a failed connection, a timeout). Only requests the failure model calls
//! safe to resend are: after a failed connect, anything (nothing was sent); otherwise only
//! idempotent methods, unless the route sets `retry_non_idempotent`. Only bodies of at most
//! [`BUFFERED_BODY_BYTES`] are kept to be sent again; a larger (or unannounced) body is
//! streamed once and never retried. Every attempt shares the request's one deadline
//! (`send + read`); with `retry_on_timeout` an attempt also gives up after `read`, so that a
//! silent node leaves time for another. A retried request is counted once in the request
//! metrics, with the node that answered.

use http::Method;

use super::failure::{Failure, Retry};
use crate::config::types::RetryConfig;

/// The largest request body kept in memory to be sent again.
pub const BUFFERED_BODY_BYTES: u64 = 64 * 1024;

/// Why a request was sent again: the label of `gateway_upstream_retries_total`.
pub fn reason(failure: Option<Failure>) -> &'static str {
    match failure {
        None => "status",
        Some(Failure::Timeout) => "timeout",
        Some(_) => "connect_error",
    }
}

pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The retry policy of one request.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub config: &'a RetryConfig,
    /// The request may be resent once it reached a node.
    pub resendable: bool,
}

impl<'a> Policy<'a> {
    pub fn new(config: &'a RetryConfig, method: &Method, route_allows: bool) -> Policy<'a> {
        Policy {
            config,
            resendable: route_allows || idempotent(method),
        }
    }

    /// Whether a request that failed with `failure` after `attempts` attempts goes again.
    pub fn after_failure(&self, failure: Failure, attempts: u32) -> bool {
        if attempts > self.config.count {
            return false;
        }
        let allowed = match failure.retry() {
            Retry::Safe => true,
            Retry::IfIdempotent => self.resendable,
            Retry::Never => false,
        };
        let triggered = match failure {
            Failure::Timeout => self.config.retry_on_timeout,
            _ => self.config.retry_on_connect_failure,
        };
        allowed && triggered
    }

    /// Whether a request answered with `status` after `attempts` attempts goes again.
    pub fn after_status(&self, status: u16, attempts: u32) -> bool {
        attempts <= self.config.count
            && self.resendable
            && self.config.retry_on_statuses.contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(v: serde_json::Value) -> RetryConfig {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn what_is_resent_and_how_often() {
        let c = config(serde_json::json!({"count": 2}));
        let get = Policy::new(&c, &Method::GET, false);
        let post = Policy::new(&c, &Method::POST, false);
        let post_allowed = Policy::new(&c, &Method::POST, true);
        // Nothing was sent after a failed connect: any method, up to the count.
        assert!(post.after_failure(Failure::Connect, 1));
        assert!(post.after_failure(Failure::Connect, 2));
        assert!(
            !post.after_failure(Failure::Connect, 3),
            "two retries, three attempts"
        );
        // The node may have acted on it: idempotent methods only, unless the route allows.
        for f in [Failure::Exchange, Failure::BadResponse, Failure::Timeout] {
            assert!(get.after_failure(f, 1), "{f:?}");
            assert!(!post.after_failure(f, 1), "{f:?}");
            assert!(post_allowed.after_failure(f, 1), "{f:?}");
        }
        // The client's and the configuration's failures never go again.
        for f in [
            Failure::BodyBrokenOff,
            Failure::BodyTooLarge,
            Failure::NoNode,
        ] {
            assert!(!get.after_failure(f, 1), "{f:?}");
        }
        assert!(get.after_status(503, 1));
        assert!(!get.after_status(500, 1), "not in the default statuses");
        assert!(!post.after_status(503, 1));
        // Triggers switched off.
        let none = config(serde_json::json!({"retry_on_connect_failure": false,
            "retry_on_timeout": false, "retry_on_statuses": [500]}));
        let get = Policy::new(&none, &Method::GET, false);
        assert!(!get.after_failure(Failure::Connect, 1));
        assert!(!get.after_failure(Failure::Timeout, 1));
        assert!(get.after_status(500, 1));
    }
}
