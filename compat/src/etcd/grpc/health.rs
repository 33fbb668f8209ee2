//! `grpc.health.v1.Health`: SERVING while this node is a member of a cluster with a leader,
//! NOT_SERVING otherwise (etcd's own health check answers from its raft state too).

use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::pb::health::health_check_response::ServingStatus;
use super::pb::health::health_server;
use super::pb::health::{HealthCheckRequest, HealthCheckResponse};
use super::Answer;
use crate::etcd::Api;

pub struct Health(pub Api);

/// How often a health watch looks again.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn status(api: &Api, service: &str) -> ServingStatus {
    // etcd registers the empty name (the whole server); other names are services it has not.
    if !service.is_empty() && service != "etcdserverpb.KV" {
        return ServingStatus::ServiceUnknown;
    }
    if api.node.is_member() && api.node.current_leader().is_some() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Answer<HealthCheckResponse> {
        let service = request.into_inner().service;
        let status = status(&self.0, &service);
        if status == ServingStatus::ServiceUnknown {
            return Err(tonic::Status::not_found(format!(
                "unknown service {service:?}"
            )));
        }
        Ok(tonic::Response::new(HealthCheckResponse {
            status: status as i32,
        }))
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, tonic::Status>>;

    /// Answers the status now and again whenever it changes, until the client leaves or the
    /// node shuts down.
    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Answer<Self::WatchStream> {
        let service = request.into_inner().service;
        let api = self.0.clone();
        let mut shutdown = api.shutdown.clone();
        let ticks = tokio_stream::wrappers::IntervalStream::new(tokio::time::interval(WATCH_EVERY))
            .take_until(async move {
                let _ = shutdown.changed().await;
            });
        let mut last = None;
        let changes = ticks.filter_map(move |_| {
            let now = status(&api, &service);
            let changed = last != Some(now);
            last = Some(now);
            std::future::ready(changed.then_some(Ok(HealthCheckResponse { status: now as i32 })))
        });
        Ok(tonic::Response::new(Box::pin(changes)))
    }
}
