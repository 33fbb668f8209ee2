//! The Cluster service, mapped onto raft membership: etcd's members are the raft members,
//! their client URLs the nodes' etcd endpoints. Changes go through the same path as `hermes
//! member`, the quorum guard included (there is no way to force a removal from here).

use etcd_client::proto::{
    PbClusterService, PbMember, PbMemberAddRequest, PbMemberAddResponse, PbMemberListRequest,
    PbMemberListResponse, PbMemberPromoteRequest, PbMemberPromoteResponse, PbMemberRemoveRequest,
    PbMemberRemoveResponse, PbMemberUpdateRequest, PbMemberUpdateResponse,
};
use sha2::{Digest, Sha256};

use hermes_raft::peer_proto::MembershipChange;
use hermes_raft::MembershipError;

use super::{answer, caller, convert, Answer};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::service::Member;
use crate::etcd::Api;

pub struct Cluster(pub Api);

fn member(m: Member) -> PbMember {
    PbMember {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

/// A member id for a peer URL, as etcd derives one from the member's URLs: the same URL gives
/// the same id, so the node to start is `hermes node --id <id>`. Never 0 (not a node id).
fn member_id(peer_url: &str) -> u64 {
    let digest = Sha256::digest(peer_url.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // Below 2^53, so that JSON clients that read numbers as doubles keep it exact.
    (u64::from_be_bytes(id) >> 11).max(1)
}

fn membership_error(e: MembershipError) -> EtcdError {
    match e {
        MembershipError::UnknownNode(_) => {
            EtcdError::new(Code::NotFound, "etcdserver: member not found")
        }
        MembershipError::Invalid(msg) if msg.contains("already a member") => EtcdError::new(
            Code::FailedPrecondition,
            "etcdserver: Peer URLs already exists",
        ),
        MembershipError::Invalid(msg) => EtcdError::invalid(format!("etcdserver: {msg}")),
        e @ MembershipError::WouldBreakQuorum { .. } => EtcdError::new(
            Code::FailedPrecondition,
            format!("etcdserver: unhealthy cluster: {e}"),
        ),
        MembershipError::Failed(msg) => {
            EtcdError::new(Code::Unavailable, format!("etcdserver: {msg}"))
        }
        MembershipError::Write(w) => w.into(),
    }
}

impl Cluster {
    async fn change(&self, change: MembershipChange) -> Result<(), EtcdError> {
        self.0
            .node
            .change_membership(change, false)
            .await
            .map_err(membership_error)
    }

    async fn members(&self) -> (hermes_raft::Header, Vec<PbMember>) {
        let (h, list) = self.0.member_list().await;
        (h, list.into_iter().map(member).collect())
    }
}

#[tonic::async_trait]
impl PbClusterService for Cluster {
    /// Adds a member as a raft learner, whether or not `is_learner` was asked: a voter that
    /// has not started yet would count against the quorum at once. A node started with
    /// `hermes node --id <id> --join …` promotes itself once it has caught up.
    async fn member_add(
        &self,
        request: tonic::Request<PbMemberAddRequest>,
    ) -> Answer<PbMemberAddResponse> {
        // Membership is the root role's (etcd's checkMembershipOperationPermission).
        caller(&request)?.admin()?;
        let r = request.into_inner();
        answer(
            async {
                let [peer_url] = <[String; 1]>::try_from(r.peer_ur_ls).map_err(|_| {
                    EtcdError::invalid("etcdserver: a hermes member has exactly one peer URL")
                })?;
                let url: axum::http::Uri = peer_url.parse().map_err(|_| {
                    EtcdError::invalid(format!("etcdserver: invalid peer URL {peer_url:?}"))
                })?;
                if url.scheme().is_none() || url.authority().is_none() {
                    return Err(EtcdError::invalid(format!(
                        "etcdserver: invalid peer URL {peer_url:?}"
                    )));
                }
                let id = member_id(&peer_url);
                self.change(MembershipChange::AddLearner {
                    id,
                    peer_url: peer_url.clone(),
                })
                .await?;
                let (h, members) = self.members().await;
                Ok(PbMemberAddResponse {
                    header: convert::header(&h),
                    member: Some(PbMember {
                        id,
                        name: String::new(),
                        peer_ur_ls: vec![peer_url],
                        client_ur_ls: Vec::new(),
                        is_learner: true,
                    }),
                    members,
                })
            }
            .await,
        )
    }

    async fn member_remove(
        &self,
        request: tonic::Request<PbMemberRemoveRequest>,
    ) -> Answer<PbMemberRemoveResponse> {
        // Membership is the root role's (etcd's checkMembershipOperationPermission).
        caller(&request)?.admin()?;
        let id = request.into_inner().id;
        answer(
            async {
                self.change(MembershipChange::Remove { id }).await?;
                let (h, members) = self.members().await;
                Ok(PbMemberRemoveResponse {
                    header: convert::header(&h),
                    members,
                })
            }
            .await,
        )
    }

    /// A raft member's address is its identity here; moving a member is removing it and
    /// adding it again.
    async fn member_update(
        &self,
        _request: tonic::Request<PbMemberUpdateRequest>,
    ) -> Answer<PbMemberUpdateResponse> {
        answer(Err(EtcdError::new(
            Code::FailedPrecondition,
            "etcdserver: hermes members cannot change their peer URL; remove the member and add it again",
        )))
    }

    async fn member_list(
        &self,
        _request: tonic::Request<PbMemberListRequest>,
    ) -> Answer<PbMemberListResponse> {
        let (h, members) = self.members().await;
        answer(Ok(PbMemberListResponse {
            header: convert::header(&h),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: tonic::Request<PbMemberPromoteRequest>,
    ) -> Answer<PbMemberPromoteResponse> {
        // Membership is the root role's (etcd's checkMembershipOperationPermission).
        caller(&request)?.admin()?;
        let id = request.into_inner().id;
        answer(
            async {
                self.change(MembershipChange::Promote { id }).await?;
                let (h, members) = self.members().await;
                Ok(PbMemberPromoteResponse {
                    header: convert::header(&h),
                    members,
                })
            }
            .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_stable_nonzero_and_json_safe() {
        let a = member_id("http://10.0.0.1:2380");
        assert_eq!(a, member_id("http://10.0.0.1:2380"));
        assert_ne!(a, member_id("http://10.0.0.2:2380"));
        assert!(a > 0 && a < (1 << 53));
    }
}
