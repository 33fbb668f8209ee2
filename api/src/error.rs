//! The admin API's error: an HTTP status, a stable machine-readable code and a message, as
//! `{"error": message, "code": code}` (the original server's `{"error": …}` shape plus a code).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Field-level validation failures, answered as `{"errors": [...]}` (§3.1).
    pub errors: Option<Vec<hermes_control::validate::FieldError>>,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: None,
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header of `secs` seconds.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400 with the list of invalid fields.
    pub fn invalid(errors: Vec<hermes_control::validate::FieldError>) -> Self {
        ApiError {
            errors: Some(errors),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid", "validation failed")
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, error = %self.message, "request failed");
        }
        let body = match &self.errors {
            Some(errors) => json!({"errors": errors, "error": self.message, "code": self.code}),
            None => json!({"error": self.message, "code": self.code}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<hermes_control::store::ControlError> for ApiError {
    fn from(e: hermes_control::store::ControlError) -> Self {
        use hermes_control::store::ControlError as C;
        let (status, code) = match &e {
            C::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            C::AlreadyExists(_) => (StatusCode::CONFLICT, "already_exists"),
            C::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            C::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            C::Unknown(_) => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
            C::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            C::NoSpace(_) => (StatusCode::INSUFFICIENT_STORAGE, "no_space"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<hermes_raft::ReadError> for ApiError {
    fn from(e: hermes_raft::ReadError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    }
}

impl From<hermes_raft::TransferError> for ApiError {
    fn from(e: hermes_raft::TransferError) -> Self {
        use hermes_raft::TransferError as T;
        let (status, code) = match &e {
            T::UnknownNode(_) => (StatusCode::NOT_FOUND, "unknown_member"),
            T::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_leader_transfer"),
            T::NoLeader(_) | T::Failed(_) | T::TimedOut { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "leader_transfer_failed")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<hermes_raft::MembershipError> for ApiError {
    fn from(e: hermes_raft::MembershipError) -> Self {
        use hermes_raft::MembershipError as M;
        let (status, code) = match &e {
            M::UnknownNode(_) => (StatusCode::NOT_FOUND, "unknown_member"),
            M::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_membership_change"),
            M::WouldBreakQuorum { .. } => (StatusCode::CONFLICT, "would_break_quorum"),
            M::Failed(_) | M::Write(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "membership_change_failed")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}
