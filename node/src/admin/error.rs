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
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
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
        (
            self.status,
            axum::Json(json!({"error": self.message, "code": self.code})),
        )
            .into_response()
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
