//! etcd's gRPC services, on the etcd listener beside the JSON gateway: KV, Watch, Lease,
//! Cluster, Maintenance and Auth from etcd-client's server traits and `proto/`, v3election and
//! v3lock, and `grpc.health.v1.Health`. Each method converts protobuf to the store's types,
//! calls [`super::service`], and converts back; errors are etcd's codes and messages.

mod auth;
mod cluster;
mod concurrency;
pub mod convert;
mod dispatch;
mod election;
mod health;
mod kv;
mod lease;
mod lock;
mod maintenance;
pub mod pb;
mod status;
mod watch;

pub use dispatch::Services;

use super::decode::MAX_REQUEST_BYTES;
use super::error::EtcdError;

/// Concurrent streams on one client connection: a gRPC client multiplexes every call of its
/// process on one connection (all its watches, keep-alives and campaigns, and the requests of
/// all its tasks).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Largest message decoded: etcd's request limit plus its allowance for gRPC framing. A larger
/// message is refused by the codec with `RESOURCE_EXHAUSTED` before it is buffered whole; one
/// under this but over the request limit gets etcd's "request is too large".
pub const MAX_MESSAGE_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        tonic::Status::new(tonic::Code::from_i32(e.code as i32), e.message)
    }
}

/// Whom a call acts for, as [`Services`] decided. A call that reached a
/// service without a decision is refused (it cannot happen: [`Services::call`] decides first).
fn caller<T>(request: &tonic::Request<T>) -> Result<super::rbac::Caller, tonic::Status> {
    request
        .extensions()
        .get::<super::rbac::Caller>()
        .cloned()
        .ok_or_else(|| tonic::Status::from(super::rbac::perms::denied()))
}

/// A unary answer.
type Answer<T> = Result<tonic::Response<T>, tonic::Status>;

fn answer<T>(result: Result<T, EtcdError>) -> Answer<T> {
    result
        .map(tonic::Response::new)
        .map_err(tonic::Status::from)
}
