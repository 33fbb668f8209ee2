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

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use tonic::codegen::{Body, StdError};
use tonic::server::NamedService;
use tower::ServiceExt as _;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer,
};
use pb::etcdserverpb::auth_server::AuthServer;
use pb::health::health_server::HealthServer;
use pb::v3electionpb::election_server::ElectionServer;
use pb::v3lockpb::lock_server::LockServer;

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

/// The gRPC services of the etcd listener, dispatched on the service name in the path
/// (`/<package>.<Service>/<Method>`) straight from the connection. Every etcd client request
/// takes this path, so no router stands between hyper and tonic: each layer of one (route
/// lookup, boxed middleware, body conversion) cost the node's one runtime thread about a
/// fifth of its time under puts.
#[derive(Clone)]
pub struct Services(std::sync::Arc<Servers>);

/// One server per service; each is an `Arc` around its handler, cloned per call.
struct Servers {
    api: Api,
    kv: PbKvServer<kv::Kv>,
    watch: PbWatchServer<watch::Watch>,
    lease: PbLeaseServer<lease::Lease>,
    cluster: PbClusterServer<cluster::Cluster>,
    maintenance: PbMaintenanceServer<maintenance::Maintenance>,
    auth: AuthServer<auth::Auth>,
    election: ElectionServer<election::Election>,
    lock: LockServer<lock::Lock>,
    health: HealthServer<health::Health>,
}

/// The service names the paths carry, as the generated servers match them.
const KV: &str = <PbKvServer<kv::Kv> as NamedService>::NAME;
const WATCH: &str = <PbWatchServer<watch::Watch> as NamedService>::NAME;
const LEASE: &str = <PbLeaseServer<lease::Lease> as NamedService>::NAME;
const CLUSTER: &str = <PbClusterServer<cluster::Cluster> as NamedService>::NAME;
const MAINTENANCE: &str = <PbMaintenanceServer<maintenance::Maintenance> as NamedService>::NAME;
const AUTH: &str = <AuthServer<auth::Auth> as NamedService>::NAME;
const ELECTION: &str = <ElectionServer<election::Election> as NamedService>::NAME;
const LOCK: &str = <LockServer<lock::Lock> as NamedService>::NAME;
const HEALTH: &str = <HealthServer<health::Health> as NamedService>::NAME;
const SERVICES: [&str; 9] = [
    KV,
    WATCH,
    LEASE,
    CLUSTER,
    MAINTENANCE,
    AUTH,
    ELECTION,
    LOCK,
    HEALTH,
];

impl Services {
    pub fn new(api: Api) -> Services {
        macro_rules! limited {
            ($server:expr) => {
                $server
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(usize::MAX)
            };
        }
        Services(std::sync::Arc::new(Servers {
            kv: limited!(PbKvServer::new(kv::Kv(api.clone()))),
            watch: limited!(PbWatchServer::new(watch::Watch(api.clone()))),
            lease: limited!(PbLeaseServer::new(lease::Lease(api.clone()))),
            cluster: limited!(PbClusterServer::new(cluster::Cluster(api.clone()))),
            maintenance: limited!(PbMaintenanceServer::new(maintenance::Maintenance(
                api.clone()
            ))),
            auth: limited!(AuthServer::new(auth::Auth(api.clone()))),
            election: limited!(ElectionServer::new(election::Election(api.clone()))),
            lock: limited!(LockServer::new(lock::Lock(api.clone()))),
            health: limited!(HealthServer::new(health::Health(api.clone()))),
            api,
        }))
    }

    /// Answers one call. The path is checked first, as grpc-go (etcd's server) does before
    /// any interceptor: a malformed one or an unknown service is refused whoever calls. Then
    /// the authentication decision of [`super::auth`] (token from gRPC metadata) and
    /// clientv3's require-leader check, then the service. A method the service lacks is
    /// `UNIMPLEMENTED` too, but after authentication: only tonic's servers know their methods.
    pub async fn call<B>(&self, mut req: Request<B>) -> Response
    where
        B: Body + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        // The request moves into the service; its path is kept for the answer (a clone of
        // the URI shares its bytes).
        let uri = req.uri().clone();
        let path = uri.path();
        // Split as grpc-go splits it: at the last slash.
        let Some((service, method)) = path.strip_prefix('/').unwrap_or(path).rsplit_once('/')
        else {
            // etcd 3.4's grpc-go answers this with RESOURCE_EXHAUSTED (later ones changed it).
            let message = format!("malformed method name: {path:?}");
            return status_response(tonic::Code::ResourceExhausted, &message);
        };
        if !SERVICES.contains(&service) {
            return unknown_service(service);
        }
        if let Err(e) = self.admit(&mut req) {
            return refuse(e);
        }
        let s = &self.0;
        let answer = match service {
            KV => s.kv.clone().oneshot(req).await,
            WATCH => s.watch.clone().oneshot(req).await,
            LEASE => s.lease.clone().oneshot(req).await,
            CLUSTER => s.cluster.clone().oneshot(req).await,
            MAINTENANCE => s.maintenance.clone().oneshot(req).await,
            AUTH => s.auth.clone().oneshot(req).await,
            ELECTION => s.election.clone().oneshot(req).await,
            LOCK => s.lock.clone().oneshot(req).await,
            HEALTH => s.health.clone().oneshot(req).await,
            _ => return unknown_service(service),
        };
        // The generated servers answer every failure as a gRPC status: they never fail.
        let mut response = match answer {
            Ok(response) => response,
            Err(never) => match never {},
        };
        oversize_as_grpc_go(&mut response);
        unknown_method_as_grpc_go(&mut response, service, method);
        response.map(axum::body::Body::new)
    }

    /// Who `req` acts for, recorded in its extensions for the service; or why it is refused.
    fn admit<B>(&self, req: &mut Request<B>) -> Result<(), EtcdError> {
        let headers = req.headers();
        let token = headers.get(TOKEN).and_then(|v| v.to_str().ok());
        let open = open_without_token(req.uri().path());
        let caller = super::auth::decide(&self.0.api, headers, open, token)?;
        let require_leader = headers
            .get(REQUIRE_LEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.0.api.node.current_leader().is_none() {
            return Err(EtcdError::new(
                super::error::Code::Unavailable,
                "etcdserver: no leader",
            ));
        }
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        Ok(())
    }
}

/// tonic refuses a message over [`MAX_MESSAGE_BYTES`] with `OUT_OF_RANGE`; etcd's Go server
/// (and clients that retry on the code) use `RESOURCE_EXHAUSTED` for it, with this message.
fn oversize_as_grpc_go<B>(response: &mut axum::http::Response<B>) {
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

/// The generated servers answer a method they lack with `UNIMPLEMENTED` and no message;
/// grpc-go, and so etcd, names the method.
fn unknown_method_as_grpc_go<B>(
    response: &mut axum::http::Response<B>,
    service: &str,
    method: &str,
) {
    let headers = response.headers_mut();
    let unnamed = headers.get("grpc-status").is_some_and(|s| s == "12")
        && !headers.contains_key("grpc-message");
    if unnamed {
        let message = format!("unknown method {method} for service {service}");
        headers.insert("grpc-message", grpc_message(&message));
    }
}

fn unknown_service(service: &str) -> Response {
    let message = format!("unknown service {service}");
    status_response(tonic::Code::Unimplemented, &message)
}

fn refuse(e: EtcdError) -> Response {
    status_response(tonic::Code::from_i32(e.code as i32), &e.message)
}

/// A call answered with a status alone, no response message ("trailers only"), its headers
/// as grpc-go writes them.
fn status_response(code: tonic::Code, message: &str) -> Response {
    let mut response = Response::new(axum::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    headers.insert("grpc-message", grpc_message(message));
    response
}

/// `grpc-message` as the gRPC spec encodes it and grpc-go writes it: bytes outside printable
/// ASCII, and `%`, percent-encoded; spaces as they are (tonic encodes those too).
fn grpc_message(text: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    // Printable ASCII only, which a header value always accepts.
    HeaderValue::from_str(&encoded).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whom a call acts for, as the authentication middleware decided. A call that reached a
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_encoded_as_grpc_go_writes_them() {
        assert_eq!(grpc_message("unknown service a.B"), "unknown service a.B");
        assert_eq!(grpc_message("100% \u{e9}\n"), "100%25 %C3%A9%0A");
    }

    #[test]
    fn service_names_are_the_paths_etcd_clients_call() {
        assert_eq!(KV, "etcdserverpb.KV");
        assert_eq!(HEALTH, "grpc.health.v1.Health");
        assert_eq!(ELECTION, "v3electionpb.Election");
        assert_eq!(LOCK, "v3lockpb.Lock");
    }
}
