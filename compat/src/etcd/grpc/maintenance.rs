//! The Maintenance service: status, alarms, leader moves, and the calls that have no Hermes counterpart,
//! answered with an error that says so.

use etcd_client::proto::{
    PbAlarmMember, PbAlarmRequest, PbAlarmResponse, PbDefragmentRequest, PbDefragmentResponse,
    PbDowngradeRequest, PbDowngradeResponse, PbHashKvRequest, PbHashKvResponse, PbHashRequest,
    PbHashResponse, PbMaintenanceService, PbMoveLeaderRequest, PbMoveLeaderResponse,
    PbSnapshotRequest, PbSnapshotResponse, PbStatusRequest, PbStatusResponse,
};
use futures_util::stream::BoxStream;

use super::{answer, caller, convert, Answer};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::maintenance::SNAPSHOT_CHUNK;
use crate::etcd::Api;

pub struct Maintenance(pub Api);

/// etcd's `AlarmType` number of NOSPACE.
const NOSPACE: i32 = 1;

fn not_in_hermes(what: &str) -> tonic::Status {
    EtcdError::new(
        Code::FailedPrecondition,
        format!("etcdserver: {what} is not available on a hermes node"),
    )
    .into()
}

#[tonic::async_trait]
impl PbMaintenanceService for Maintenance {
    /// The raised alarms (NOSPACE while the store is over its quota); activating or
    /// deactivating one changes nothing, since the store's size raises and clears it.
    async fn alarm(&self, request: tonic::Request<PbAlarmRequest>) -> Answer<PbAlarmResponse> {
        let r = request.into_inner();
        if !(0..=2).contains(&r.action) {
            return answer(Err(EtcdError::invalid(format!(
                "unknown value {} for enum etcdserverpb.AlarmRequest_AlarmAction",
                r.action
            ))));
        }
        let (h, raised) = self.0.alarms();
        answer(Ok(PbAlarmResponse {
            header: convert::header(&h),
            alarms: raised
                .into_iter()
                .map(|member_id| PbAlarmMember {
                    member_id,
                    alarm: NOSPACE,
                })
                .collect(),
        }))
    }

    async fn status(&self, _request: tonic::Request<PbStatusRequest>) -> Answer<PbStatusResponse> {
        let (h, s) = self.0.status();
        answer(Ok(PbStatusResponse {
            header: convert::header(&h),
            version: s.version.to_string(),
            db_size: s.db_size,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            db_size_in_use: s.db_size,
            is_learner: s.is_learner,
            ..PbStatusResponse::default()
        }))
    }

    /// The store reclaims the space of compacted history by itself; there is nothing to
    /// defragment, and etcdctl's `defrag` succeeds.
    async fn defragment(
        &self,
        request: tonic::Request<PbDefragmentRequest>,
    ) -> Answer<PbDefragmentResponse> {
        caller(&request)?.admin()?;
        answer(Ok(PbDefragmentResponse {
            header: convert::header(&self.0.current_header()),
        }))
    }

    async fn hash(&self, request: tonic::Request<PbHashRequest>) -> Answer<PbHashResponse> {
        let who = caller(&request)?;
        answer(self.0.hash(&who).await.map(|(h, hash)| PbHashResponse {
            header: convert::header(&h),
            hash,
        }))
    }

    async fn hash_kv(&self, request: tonic::Request<PbHashKvRequest>) -> Answer<PbHashKvResponse> {
        let who = caller(&request)?;
        let revision = request.into_inner().revision;
        answer(self.0.hash_kv(&who, revision).await.map(
            |(h, hash, compact_revision, hash_revision)| PbHashKvResponse {
                header: convert::header(&h),
                hash,
                compact_revision,
                hash_revision,
            },
        ))
    }

    type SnapshotStream = BoxStream<'static, Result<PbSnapshotResponse, tonic::Status>>;

    /// A hermes backup (not a bbolt file: `etcdctl snapshot save` stores it, `hermes snapshot
    /// restore` reads it), in chunks, each saying how many bytes are still to come. Like
    /// etcd's stream it ends with the SHA-256 of what came before.
    async fn snapshot(
        &self,
        request: tonic::Request<PbSnapshotRequest>,
    ) -> Answer<Self::SnapshotStream> {
        let who = caller(&request)?;
        let (h, bytes) = self.0.snapshot(&who).await?;
        let header = convert::header(&h);
        let total = bytes.len();
        // Chunks are copied out as the stream is read, not all at once beside the backup.
        let chunks = (0..total.div_ceil(SNAPSHOT_CHUNK)).map(move |i| {
            let start = i * SNAPSHOT_CHUNK;
            let blob = bytes[start..total.min(start + SNAPSHOT_CHUNK)].to_vec();
            let sent = (start + blob.len()) as u64;
            Ok(PbSnapshotResponse {
                header,
                remaining_bytes: total as u64 - sent,
                blob,
                ..PbSnapshotResponse::default()
            })
        });
        Ok(tonic::Response::new(Box::pin(futures_util::stream::iter(
            chunks,
        ))))
    }

    async fn move_leader(
        &self,
        request: tonic::Request<PbMoveLeaderRequest>,
    ) -> Answer<PbMoveLeaderResponse> {
        let who = caller(&request)?;
        let target = request.into_inner().target_id;
        answer(
            self.0
                .move_leader(&who, target)
                .await
                .map(|h| PbMoveLeaderResponse {
                    header: convert::header(&h),
                }),
        )
    }

    async fn downgrade(
        &self,
        _request: tonic::Request<PbDowngradeRequest>,
    ) -> Answer<PbDowngradeResponse> {
        Err(not_in_hermes("downgrading the cluster version"))
    }
}
