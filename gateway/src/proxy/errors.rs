//! Responses the gateway makes itself (contracts/hermes.md §7.14): JSON `{"error": …}`.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::upstream::client::ProxyBody;

/// Why the gateway answered instead of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    BadRequest,
    /// The client stalled sending its request body (not in the original gateway, which had no
    /// request-body timeout; the message follows §7.14's style).
    RequestTimeout,
    Internal,
    BadGateway,
    GatewayTimeout,
    /// A route's rate limit refused the request: its `rejected_code`, and the seconds after
    /// which a request would be admitted (`Retry-After`).
    TooManyRequests {
        status: u16,
        retry_after: u32,
    },
}

impl GatewayError {
    pub fn status(self) -> StatusCode {
        match self {
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BadRequest => StatusCode::BAD_REQUEST,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GatewayError::BadGateway => StatusCode::BAD_GATEWAY,
            GatewayError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::TooManyRequests { status, .. } => {
                StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS)
            }
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            GatewayError::NotFound => "not found",
            GatewayError::PayloadTooLarge => "payload too large",
            GatewayError::ServiceUnavailable => "service unavailable",
            GatewayError::BadRequest => "bad request",
            GatewayError::RequestTimeout => "request timeout",
            GatewayError::Internal => "internal server error",
            GatewayError::BadGateway => "bad gateway",
            GatewayError::GatewayTimeout => "gateway timeout",
            GatewayError::TooManyRequests { .. } => "too many requests",
        }
    }

    /// The `Retry-After` seconds the answer carries, if any.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            GatewayError::TooManyRequests { retry_after, .. } => Some(retry_after),
            _ => None,
        }
    }

    /// The JSON body answered: `{"error":"<message>"}`.
    pub fn body(self) -> String {
        format!("{{\"error\":\"{}\"}}", self.message())
    }

    pub fn body_len(self) -> usize {
        self.message().len() + r#"{"error":""}"#.len()
    }

    pub fn response(self) -> Response<ProxyBody> {
        let body = self.body();
        let mut resp = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_len_is_the_body_s_length() {
        for e in [
            GatewayError::NotFound,
            GatewayError::PayloadTooLarge,
            GatewayError::GatewayTimeout,
        ] {
            assert_eq!(e.body().len(), e.body_len());
        }
        assert_eq!(GatewayError::NotFound.body(), r#"{"error":"not found"}"#);
        let limited = GatewayError::TooManyRequests {
            status: 503,
            retry_after: 2,
        };
        assert_eq!(limited.body(), r#"{"error":"too many requests"}"#);
        let resp = limited.response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
    }
}
