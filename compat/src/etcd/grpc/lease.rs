//! The Lease service: grant, revoke, keep-alive (a bidirectional stream), time-to-live and the
//! lease list.

use etcd_client::proto::{
    PbLeaseGrantRequest, PbLeaseGrantResponse, PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse,
    PbLeaseLeasesRequest, PbLeaseLeasesResponse, PbLeaseRevokeRequest, PbLeaseRevokeResponse,
    PbLeaseService, PbLeaseStatus, PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse,
};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{answer, caller, convert, Answer};
use crate::etcd::Api;

pub struct Lease(pub Api);

#[tonic::async_trait]
impl PbLeaseService for Lease {
    async fn lease_grant(
        &self,
        request: tonic::Request<PbLeaseGrantRequest>,
    ) -> Answer<PbLeaseGrantResponse> {
        let r = request.into_inner();
        answer(
            self.0
                .lease_grant(r.id, r.ttl)
                .await
                .map(|(h, g)| PbLeaseGrantResponse {
                    header: convert::header(&h),
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                }),
        )
    }

    async fn lease_revoke(
        &self,
        request: tonic::Request<PbLeaseRevokeRequest>,
    ) -> Answer<PbLeaseRevokeResponse> {
        let who = caller(&request)?;
        let id = request.into_inner().id;
        answer(
            self.0
                .lease_revoke(&who, id)
                .await
                .map(|h| PbLeaseRevokeResponse {
                    header: convert::header(&h),
                }),
        )
    }

    type LeaseKeepAliveStream = BoxStream<'static, Result<PbLeaseKeepAliveResponse, tonic::Status>>;

    /// One answer per request, in order; ends when the client's stream ends (as etcd's does),
    /// when the client goes away, or when the node shuts down. A renewal the store cannot make
    /// (no leader) ends the stream with that error, which clients retry on a new stream.
    async fn lease_keep_alive(
        &self,
        request: tonic::Request<tonic::Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Answer<Self::LeaseKeepAliveStream> {
        let api = self.0.clone();
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let mut shutdown = api.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = requests.next() => next,
                    _ = tx.closed() => return,
                    _ = shutdown.changed() => return,
                };
                let answer = match next {
                    None => return,
                    Some(Err(status)) => {
                        tracing::debug!(%status, "lease keep-alive stream ended by the client");
                        return;
                    }
                    Some(Ok(req)) => match api.lease_keepalive(req.id).await {
                        Ok((h, ttl)) => Ok(PbLeaseKeepAliveResponse {
                            header: convert::header(&h),
                            id: req.id,
                            ttl,
                        }),
                        Err(e) => Err(tonic::Status::from(e)),
                    },
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: tonic::Request<PbLeaseTimeToLiveRequest>,
    ) -> Answer<PbLeaseTimeToLiveResponse> {
        let who = caller(&request)?;
        let r = request.into_inner();
        answer(
            self.0
                .lease_time_to_live(&who, r.id, r.keys)
                .await
                .map(|(h, t)| PbLeaseTimeToLiveResponse {
                    header: convert::header(&h),
                    id: t.id,
                    ttl: t.ttl,
                    granted_ttl: t.granted_ttl,
                    keys: t.keys,
                }),
        )
    }

    async fn lease_leases(
        &self,
        _request: tonic::Request<PbLeaseLeasesRequest>,
    ) -> Answer<PbLeaseLeasesResponse> {
        answer(self.0.leases().await.map(|(h, ids)| PbLeaseLeasesResponse {
            header: convert::header(&h),
            leases: ids.into_iter().map(|id| PbLeaseStatus { id }).collect(),
        }))
    }
}
