//! etcd's gRPC services, on the etcd listener beside the JSON gateway: KV, Watch, Lease,
//! Cluster, Maintenance and Auth from etcd-client's server traits and `proto/`, v3election and
//! v3lock, and `grpc.health.v1.Health`. Each method converts protobuf to the store's types,
//! calls [`super::service`], and converts back; errors are etcd's codes and messages.

mod auth;
mod cluster;
mod concurrency;
pub mod convert;
mod election;
mod health;
mod kv;
mod lease;
mod lock;
mod maintenance;
pub mod pb;
mod watch;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tonic::service::Routes;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer,
};

use super::decode::MAX_REQUEST_BYTES;
use super::error::EtcdError;
use super::Api;

/// Concurrent streams on one client connection: a gRPC client multiplexes every call of its
/// process on one connection (all its watches, keep-alives and campaigns, and the requests of
/// all its tasks).
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Largest message decoded: etcd's request limit plus its allowance for gRPC framing. A larger
/// message is refused by the codec with `RESOURCE_EXHAUSTED` before it is buffered whole; one
/// under this but over the request limit gets etcd's "request is too large".
pub const MAX_MESSAGE_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;

/// gRPC metadata carrying the token from `Authenticate`, as etcd's clients send it.
const TOKEN: &str = "token";

/// gRPC metadata with which a client asks to be refused while the cluster has no leader
/// (clientv3's `WithRequireLeader`).
const REQUIRE_LEADER: &str = "hasleader";

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        tonic::Status::new(tonic::Code::from_i32(e.code as i32), e.message)
    }
}

/// Calls that need no token even when the endpoint requires one.
fn open_without_token(path: &str) -> bool {
    path == "/etcdserverpb.Auth/Authenticate" || path.starts_with("/grpc.health.v1.Health/")
}

/// The gRPC services as routes of the etcd listener.
pub fn router(api: Api) -> axum::Router {
    macro_rules! limited {
        ($server:expr) => {
            $server
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(usize::MAX)
        };
    }
    let routes = Routes::new(limited!(PbKvServer::new(kv::Kv(api.clone()))))
        .add_service(limited!(PbWatchServer::new(watch::Watch(api.clone()))))
        .add_service(limited!(PbLeaseServer::new(lease::Lease(api.clone()))))
        .add_service(limited!(PbClusterServer::new(cluster::Cluster(
            api.clone()
        ))))
        .add_service(limited!(PbMaintenanceServer::new(
            maintenance::Maintenance(api.clone())
        )))
        .add_service(limited!(pb::etcdserverpb::auth_server::AuthServer::new(
            auth::Auth(api.clone())
        )))
        .add_service(limited!(
            pb::v3electionpb::election_server::ElectionServer::new(election::Election(api.clone()))
        ))
        .add_service(limited!(pb::v3lockpb::lock_server::LockServer::new(
            lock::Lock(api.clone())
        )))
        .add_service(limited!(pb::health::health_server::HealthServer::new(
            health::Health(api.clone())
        )));
    routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(api, require))
}

/// The authentication decision of [`super::auth`], with the token from gRPC metadata, and
/// clientv3's require-leader check.
async fn require(State(api): State<Api>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let token = headers.get(TOKEN).and_then(|v| v.to_str().ok());
    let open = open_without_token(req.uri().path());
    let caller = match super::auth::decide(&api, headers, open, token) {
        Ok(caller) => caller,
        Err(e) => return refuse(e),
    };
    let require_leader = headers
        .get(REQUIRE_LEADER)
        .is_some_and(|v| v.as_bytes() == b"true");
    if require_leader && api.node.current_leader().is_none() {
        return refuse(EtcdError::new(
            super::error::Code::Unavailable,
            "etcdserver: no leader",
        ));
    }
    let mut req = req;
    if let Some(caller) = caller {
        req.extensions_mut().insert(caller);
    }
    let mut response = next.run(req).await;
    oversize_as_grpc_go(&mut response);
    response
}

/// tonic refuses a message over [`MAX_MESSAGE_BYTES`] with `OUT_OF_RANGE`; etcd's Go server
/// (and clients that retry on the code) use `RESOURCE_EXHAUSTED` for it, with this message.
fn oversize_as_grpc_go(response: &mut Response) {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message%20length%20too%20large")
                    || m.contains("message length too large")
            });
    if too_large {
        headers.insert("grpc-status", axum::http::HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            axum::http::HeaderValue::from_static("grpc: received message larger than max"),
        );
    }
}

fn refuse(e: EtcdError) -> Response {
    tonic::Status::from(e)
        .into_http::<axum::body::Body>()
        .map(axum::body::Body::new)
}

/// Whom a call acts for, as the authentication middleware decided. A call that reached a
/// service without a decision is refused (it cannot happen: every route has the middleware).
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
