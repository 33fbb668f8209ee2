//! Errors of the etcd endpoint, rendered as etcd 3.4's gateway renders them: the HTTP status of
//! the gRPC code and `{"error": msg, "message": msg, "code": n}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use hermes_raft::{ReadError, TransferError, WriteError};
use hermes_storage::mvcc::error::ErrorClass;
use hermes_storage::{KvError, StoreError};

/// gRPC status codes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unknown = 2,
    InvalidArgument = 3,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    OutOfRange = 11,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl Code {
    /// grpc-gateway's mapping of a gRPC code to an HTTP status.
    pub fn http_status(self) -> StatusCode {
        match self {
            Code::Unknown | Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdError {
    pub code: Code,
    pub message: String,
}

impl EtcdError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        EtcdError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": self.message, "message": self.message, "code": self.code as i32})
    }
}

impl IntoResponse for EtcdError {
    fn into_response(self) -> Response {
        (self.code.http_status(), axum::Json(self.body())).into_response()
    }
}

impl From<KvError> for EtcdError {
    fn from(e: KvError) -> Self {
        let code = match e.class() {
            ErrorClass::InvalidArgument => Code::InvalidArgument,
            ErrorClass::NotFound => Code::NotFound,
            ErrorClass::FailedPrecondition => Code::FailedPrecondition,
            ErrorClass::OutOfRange => Code::OutOfRange,
        };
        EtcdError::new(code, e.to_string())
    }
}

impl From<WriteError> for EtcdError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(kv) => kv.into(),
            WriteError::NoLeader(_) => EtcdError::new(Code::Unavailable, "etcdserver: no leader"),
            WriteError::Unavailable(why) => {
                tracing::debug!(%why, "write not applied");
                EtcdError::new(Code::Unavailable, "etcdserver: request timed out")
            }
            WriteError::Unknown(why) => {
                tracing::debug!(%why, "write outcome unknown");
                EtcdError::new(
                    Code::Unavailable,
                    "etcdserver: request timed out, possibly due to previous leader failure",
                )
            }
            WriteError::Shutdown => EtcdError::new(Code::Unavailable, "etcdserver: server stopped"),
            // etcd's answer with its NOSPACE alarm raised.
            WriteError::NoSpace { .. } => EtcdError::new(
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
        }
    }
}

impl From<ReadError> for EtcdError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NoLeader(_) => EtcdError::new(Code::Unavailable, "etcdserver: no leader"),
            ReadError::Unavailable(why) => {
                tracing::debug!(%why, "linearizable read not confirmed");
                EtcdError::new(Code::Unavailable, "etcdserver: request timed out")
            }
            ReadError::Shutdown => EtcdError::new(Code::Unavailable, "etcdserver: server stopped"),
        }
    }
}

impl From<TransferError> for EtcdError {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::UnknownNode(_) | TransferError::Invalid(_) => {
                tracing::debug!(error = %e, "leader transfer refused");
                EtcdError::new(
                    Code::FailedPrecondition,
                    "etcdserver: bad leader transferee",
                )
            }
            TransferError::NoLeader(_) => {
                EtcdError::new(Code::Unavailable, "etcdserver: no leader")
            }
            TransferError::TimedOut { .. } | TransferError::Failed(_) => {
                tracing::warn!(error = %e, "leader transfer did not complete");
                EtcdError::new(
                    Code::Unavailable,
                    "etcdserver: request timed out, leader transfer took too long",
                )
            }
        }
    }
}

impl From<StoreError> for EtcdError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Kv(kv) => kv.into(),
            other => {
                tracing::error!(error = %other, "storage failure while serving an etcd request");
                EtcdError::new(Code::Internal, "etcdserver: internal storage error")
            }
        }
    }
}
