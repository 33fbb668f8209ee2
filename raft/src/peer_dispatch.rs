//! What a node does with a request from a peer, whatever carried it: the peer listener
//! ([`crate::peer_server`], after authentication and body bounds) and the in-process test
//! router both hand the postcard body of a request for one of the peer paths here.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use hermes_storage::codec;
use hermes_storage::mvcc::request::Command;
use hermes_storage::types::{NodeId, TypeConfig};

use crate::batcher::{to_forwarded, ForwardedAnswer};
use crate::error::WriteError;
use crate::error::{MembershipError, TransferError};
use crate::network::{PATH_APPEND, PATH_SNAPSHOT, PATH_VOTE};
use crate::node::RaftNode;
use crate::node::Retry;
use crate::peer_proto::*;

/// Every path a peer may call.
pub const PATHS: &[&str] = &[
    PATH_APPEND,
    PATH_VOTE,
    PATH_SNAPSHOT,
    PATH_WRITE,
    PATH_READ_INDEX,
    PATH_LEASE_KEEPALIVE,
    PATH_LEASE_TTL,
    PATH_MEMBERSHIP,
    PATH_INFO,
    PATH_TRANSFER_LEADER,
    PATH_CAMPAIGN,
];

/// Why a peer request was not served.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("no peer endpoint {0}")]
    UnknownPath(String),
    #[error("undecodable peer request: {0}")]
    Undecodable(String),
    #[error("encoding the answer failed: {0}")]
    Encode(String),
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Refused> {
    codec::decode(body).map_err(|e| Refused::Undecodable(e.to_string()))
}

fn encode<T: Serialize>(answer: &T) -> Result<Vec<u8>, Refused> {
    codec::encode(answer).map_err(|e| Refused::Encode(e.to_string()))
}

/// Serves one peer request: `body` is the request for `path`, postcard-encoded; so is the
/// answer.
pub async fn dispatch(node: &Arc<RaftNode>, path: &str, body: &[u8]) -> Result<Vec<u8>, Refused> {
    match path {
        PATH_APPEND => {
            let req: AppendEntriesRequest<TypeConfig> = decode(body)?;
            encode(&node.raft.append_entries(req).await)
        }
        PATH_VOTE => {
            let req: VoteRequest<NodeId> = decode(body)?;
            encode(&node.raft.vote(req).await)
        }
        PATH_SNAPSHOT => {
            let req: InstallSnapshotRequest<TypeConfig> = decode(body)?;
            encode(&node.raft.install_snapshot(req).await)
        }
        PATH_WRITE => encode(&write(node, decode(body)?).await),
        PATH_READ_INDEX => {
            let () = decode(body)?;
            encode(&node.read_index_as_leader().await)
        }
        PATH_LEASE_KEEPALIVE => encode(&node.keepalive_as_leader(decode(body)?)),
        PATH_LEASE_TTL => encode(&node.ttl_as_leader(decode(body)?)),
        PATH_MEMBERSHIP => {
            let (change, force): (MembershipChange, bool) = decode(body)?;
            encode(&membership(node, change, force).await)
        }
        PATH_INFO => {
            let () = decode(body)?;
            encode(&node.info())
        }
        PATH_TRANSFER_LEADER => {
            let target: NodeId = decode(body)?;
            encode(&transfer(node, target).await)
        }
        PATH_CAMPAIGN => {
            let () = decode(body)?;
            encode(&node.campaign().await)
        }
        other => Err(Refused::UnknownPath(other.to_string())),
    }
}

/// Writes forwarded by a follower's batcher: each joins this leader's own batcher (so that
/// writes from every node share proposals), and each gets its own answer.
async fn write(
    node: &Arc<RaftNode>,
    cmds: Vec<Command>,
) -> Result<Vec<ForwardedAnswer>, ForwardError> {
    if !node.is_leader() {
        return Err(ForwardError::NotLeader {
            leader: node.current_leader(),
        });
    }
    let deadline = tokio::time::Instant::now() + node.config.request_timeout;
    // The quota is the leader's too: a follower under its own quota must not grow a store
    // that is over it here.
    let over = node.over_quota();
    let answers = futures_util::future::join_all(cmds.into_iter().map(|cmd| async move {
        if over && cmd.grows() {
            return Err(Retry::Fail(WriteError::NoSpace {
                size: node.db_size(),
                quota: node.config.quota_backend_bytes,
            }));
        }
        node.submit(cmd, true, deadline).await
    }))
    .await;
    Ok(answers.into_iter().map(to_forwarded).collect())
}

async fn membership(
    node: &Arc<RaftNode>,
    change: MembershipChange,
    force: bool,
) -> Result<(), ForwardError> {
    match node.change_membership_as_leader(change, force).await {
        Ok(()) => Ok(()),
        Err(
            e @ (MembershipError::Invalid(_)
            | MembershipError::UnknownNode(_)
            | MembershipError::WouldBreakQuorum { .. }),
        ) => Err(ForwardError::Invalid(e.to_string())),
        Err(e) => Err(ForwardError::Failed(e.to_string())),
    }
}

async fn transfer(node: &Arc<RaftNode>, target: NodeId) -> Result<(), ForwardError> {
    match node.transfer_leader_as_leader(target).await {
        Ok(()) => Ok(()),
        Err(e @ (TransferError::Invalid(_) | TransferError::UnknownNode(_))) => {
            Err(ForwardError::Invalid(e.to_string()))
        }
        Err(e) => Err(ForwardError::Failed(e.to_string())),
    }
}
