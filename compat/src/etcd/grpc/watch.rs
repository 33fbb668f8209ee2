//! The Watch service: one bidirectional stream per client, carrying many watchers
//! ([`crate::etcd::watch_session`]).

use etcd_client::proto::{PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::watch::WatchOptions;

use super::{caller, convert, Answer};
use crate::etcd::error::EtcdError;
use crate::etcd::watch_session::{self, WatchCommand, WatchOut};
use crate::etcd::Api;

pub struct Watch(pub Api);

#[tonic::async_trait]
impl PbWatchService for Watch {
    type WatchStream = BoxStream<'static, Result<PbWatchResponse, tonic::Status>>;

    async fn watch(
        &self,
        request: tonic::Request<tonic::Streaming<PbWatchRequest>>,
    ) -> Answer<Self::WatchStream> {
        let api = self.0.clone();
        let who = caller(&request)?;
        let requests = request.into_inner().map(|r| match r {
            Ok(r) => command(r),
            Err(status) => Err(EtcdError::invalid(format!(
                "reading the watch stream: {}",
                status.message()
            ))),
        });
        let rx = watch_session::start(&api, who, Box::pin(requests));
        let responses = ReceiverStream::new(rx).map(move |out| match out {
            Ok(out) => Ok(response(&api, out)),
            Err(e) => Err(tonic::Status::from(e)),
        });
        Ok(tonic::Response::new(Box::pin(responses)))
    }
}

fn response(api: &Api, o: WatchOut) -> PbWatchResponse {
    PbWatchResponse {
        header: convert::header(&api.header(o.revision)),
        watch_id: o.watch_id,
        created: o.created,
        canceled: o.canceled,
        compact_revision: o.compact_revision,
        cancel_reason: o.cancel_reason,
        fragment: o.fragment,
        events: o.events.into_iter().map(convert::event).collect(),
    }
}

fn command(r: PbWatchRequest) -> Result<WatchCommand, EtcdError> {
    match r.request_union {
        Some(PbWatchRequestUnion::CreateRequest(c)) => {
            let mut opts = WatchOptions {
                range: KeyRange::new(c.key, c.range_end),
                start_revision: c.start_revision,
                prev_kv: c.prev_kv,
                ..Default::default()
            };
            for filter in c.filters {
                match filter {
                    0 => opts.filter_put = true,
                    1 => opts.filter_delete = true,
                    n => {
                        return Err(EtcdError::invalid(format!(
                            "unknown value {n} for enum etcdserverpb.WatchCreateRequest_FilterType"
                        )))
                    }
                }
            }
            Ok(WatchCommand::Create {
                opts,
                progress_notify: c.progress_notify,
                fragment: c.fragment,
                watch_id: c.watch_id,
            })
        }
        Some(PbWatchRequestUnion::CancelRequest(c)) => Ok(WatchCommand::Cancel {
            watch_id: c.watch_id,
        }),
        Some(PbWatchRequestUnion::ProgressRequest(_)) => Ok(WatchCommand::Progress),
        None => Err(EtcdError::invalid(
            "etcdserverpb.WatchRequest: no request given",
        )),
    }
}
