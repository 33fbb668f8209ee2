//! The KV service: range, put, delete-range, txn and compaction.

use etcd_client::proto::{
    PbCompactionRequest, PbCompactionResponse, PbDeleteRequest, PbDeleteResponse, PbKvService,
    PbPutRequest, PbPutResponse, PbRangeRequest, PbRangeResponse, PbRangeStreamResponse,
    PbTxnRequest, PbTxnResponse,
};
use futures_util::stream::{self, BoxStream};

use super::{answer, caller, convert, Answer};
use crate::etcd::Api;

pub struct Kv(pub Api);

#[tonic::async_trait]
impl PbKvService for Kv {
    async fn range(&self, request: tonic::Request<PbRangeRequest>) -> Answer<PbRangeResponse> {
        let who = caller(&request)?;
        answer(
            async {
                let req = convert::range_request(request.into_inner())?;
                let (header, resp) = self.0.range(&who, req).await?;
                Ok(convert::range_response(&header, resp))
            }
            .await,
        )
    }

    type RangeStreamStream = BoxStream<'static, Result<PbRangeStreamResponse, tonic::Status>>;

    /// etcd 3.6's chunked range: the whole answer, as one message.
    async fn range_stream(
        &self,
        request: tonic::Request<PbRangeRequest>,
    ) -> Answer<Self::RangeStreamStream> {
        let one = self.range(request).await?.into_inner();
        let item = Ok(PbRangeStreamResponse {
            range_response: Some(one),
        });
        Ok(tonic::Response::new(Box::pin(stream::iter([item]))))
    }

    async fn put(&self, request: tonic::Request<PbPutRequest>) -> Answer<PbPutResponse> {
        let who = caller(&request)?;
        answer(
            async {
                let req = convert::put_request(request.into_inner());
                let (header, resp) = self.0.put(&who, req).await?;
                Ok(convert::put_response(&header, resp))
            }
            .await,
        )
    }

    async fn delete_range(
        &self,
        request: tonic::Request<PbDeleteRequest>,
    ) -> Answer<PbDeleteResponse> {
        let who = caller(&request)?;
        answer(
            async {
                let req = convert::delete_request(request.into_inner());
                let (header, resp) = self.0.delete_range(&who, req).await?;
                Ok(convert::delete_response(&header, resp))
            }
            .await,
        )
    }

    async fn txn(&self, request: tonic::Request<PbTxnRequest>) -> Answer<PbTxnResponse> {
        let who = caller(&request)?;
        answer(
            async {
                let req = convert::txn_request(request.into_inner())?;
                let (header, resp) = self.0.txn(&who, req).await?;
                Ok(convert::txn_response(&header, resp))
            }
            .await,
        )
    }

    async fn compact(
        &self,
        request: tonic::Request<PbCompactionRequest>,
    ) -> Answer<PbCompactionResponse> {
        let revision = request.into_inner().revision;
        answer(
            self.0
                .compact(revision)
                .await
                .map(|h| PbCompactionResponse {
                    header: convert::header(&h),
                }),
        )
    }
}
