//! Dispatching a gRPC call of the etcd listener: the path names the service, the caller is
//! decided, and the generated server the path names answers.

use axum::extract::Request;
use axum::response::Response;
use tonic::codegen::{Body, StdError};
use tonic::server::NamedService;
use tower::ServiceExt as _;

use etcd_client::proto::{
    PbClusterServer, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbWatchServer,
};

use super::pb::etcdserverpb::auth_server::AuthServer;
use super::pb::health::health_server::HealthServer;
use super::pb::v3electionpb::election_server::ElectionServer;
use super::pb::v3lockpb::lock_server::LockServer;
use super::status::{
    oversize_as_grpc_go, refuse, status_response, unknown_method_as_grpc_go, unknown_service,
};
use super::{auth, cluster, election, health, kv, lease, lock, maintenance, watch};
use super::{EtcdError, MAX_MESSAGE_BYTES};
use crate::etcd::Api;

/// gRPC metadata carrying the token from `Authenticate`, as etcd's clients send it.
const TOKEN: &str = "token";

/// gRPC metadata with which a client asks to be refused while the cluster has no leader
/// (clientv3's `WithRequireLeader`).
const REQUIRE_LEADER: &str = "hasleader";

/// Calls that need no token even when the endpoint requires one.
fn open_without_token(path: &str) -> bool {
    path == "/etcdserverpb.Auth/Authenticate" || path.starts_with("/grpc.health.v1.Health/")
}

/// The gRPC services of the etcd listener, dispatched on the service name in the path
/// (`/<package>.<Service>/<Method>`) straight from the connection. Every etcd client request
/// takes this path, so no router stands between hyper and tonic: the two routers and the
/// boxed middleware it passed before cost 1.7 µs of the runtime thread's 26.5 µs per put
/// (BENCHMARKS.md, "Store: puts over etcd's gRPC API").
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
    /// the authentication decision of [`crate::etcd::auth`] (token from gRPC metadata) and
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
        // A known service admits the caller, then answers; an unknown one is refused first.
        macro_rules! admitted {
            ($server:expr) => {{
                if let Err(e) = self.admit(&mut req) {
                    return refuse(e);
                }
                $server.clone().oneshot(req).await
            }};
        }
        let s = &self.0;
        let answer = match service {
            KV => admitted!(s.kv),
            WATCH => admitted!(s.watch),
            LEASE => admitted!(s.lease),
            CLUSTER => admitted!(s.cluster),
            MAINTENANCE => admitted!(s.maintenance),
            AUTH => admitted!(s.auth),
            ELECTION => admitted!(s.election),
            LOCK => admitted!(s.lock),
            HEALTH => admitted!(s.health),
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
        let caller = crate::etcd::auth::decide(&self.0.api, headers, open, token)?;
        let require_leader = headers
            .get(REQUIRE_LEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        if require_leader && self.0.api.node.current_leader().is_none() {
            return Err(EtcdError::new(
                crate::etcd::error::Code::Unavailable,
                "etcdserver: no leader",
            ));
        }
        if let Some(caller) = caller {
            req.extensions_mut().insert(caller);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_the_paths_etcd_clients_call() {
        assert_eq!(KV, "etcdserverpb.KV");
        assert_eq!(HEALTH, "grpc.health.v1.Health");
        assert_eq!(ELECTION, "v3electionpb.Election");
        assert_eq!(LOCK, "v3lockpb.Lock");
    }
}
