//! etcd's v3election service: a leader per name, held by a lease ([`super::concurrency`]).

use futures_util::stream::BoxStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use hermes_storage::watch::{WatchItem, WatchOptions, Watcher};
use hermes_storage::{EventType, KeyRange, KeyValue};

use super::concurrency::{self, Abandon};
use super::pb::v3electionpb::election_server;
use super::pb::v3electionpb::*;
use super::{answer, caller, convert, Answer};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::rbac::Caller;
use crate::etcd::Api;

pub struct Election(pub Api);

fn not_leader() -> EtcdError {
    EtcdError::new(Code::FailedPrecondition, "etcdserver: election: not leader")
}

fn no_leader() -> EtcdError {
    EtcdError::new(Code::FailedPrecondition, "etcdserver: election: no leader")
}

#[tonic::async_trait]
impl election_server::Election for Election {
    /// Waits until the lease leads `name`, announcing `value`. A lease that already campaigns
    /// keeps its place and announces the new value. Abandoned before leading, the campaign's
    /// key is removed again.
    async fn campaign(&self, request: tonic::Request<CampaignRequest>) -> Answer<CampaignResponse> {
        let who = caller(&request)?;
        let r = request.into_inner();
        concurrency::check(&who, &r.name, true)?;
        self.0.check_lease_keys(&who, r.lease)?;
        let api = &self.0;
        answer(
            async {
                let key = concurrency::contender_key(&r.name, r.lease);
                let (mine, created) =
                    concurrency::create_or_get(api, &who, &key, &r.value, r.lease).await?;
                let rev = mine.create_revision;
                let abandon = Abandon::new(api, &who, &key, rev);
                if !created && mine.value != r.value {
                    let (_, ok) =
                        concurrency::put_if_created_at(api, &who, &key, rev, &r.value, r.lease)
                            .await?;
                    if !ok {
                        return Err(not_leader());
                    }
                }
                let prefix = concurrency::prefix(&r.name);
                if let Err(e) = concurrency::wait_for_older(api, &who, &prefix, rev).await {
                    abandon.remove_now().await;
                    return Err(e);
                }
                // The lease may have expired (or been revoked) while waiting: its key is gone
                // and this campaign leads nothing. etcd 3.4's Campaign does not look, and
                // answers a leader whose key no longer exists while a later contender may
                // lead too; that is the original's bug, not something a client relies on.
                let (h, still) = concurrency::get_key(api, &who, &key).await?;
                if still.is_none_or(|kv| kv.create_revision != rev) {
                    // Nothing of this campaign is left to remove.
                    abandon.keep();
                    return Err(EtcdError::new(
                        Code::Unknown,
                        "etcdserver: election: session expired",
                    ));
                }
                abandon.keep();
                Ok(CampaignResponse {
                    header: convert::header(&h),
                    leader: Some(LeaderKey {
                        name: r.name,
                        key,
                        rev,
                        lease: r.lease,
                    }),
                })
            }
            .await,
        )
    }

    async fn proclaim(&self, request: tonic::Request<ProclaimRequest>) -> Answer<ProclaimResponse> {
        let who = caller(&request)?;
        let r = request.into_inner();
        answer(
            async {
                let leader = r.leader.ok_or_else(not_leader)?;
                concurrency::check_leader_key(&who, &leader.name, &leader.key)?;
                let (h, ok) = concurrency::put_if_created_at(
                    &self.0,
                    &who,
                    &leader.key,
                    leader.rev,
                    &r.value,
                    leader.lease,
                )
                .await?;
                if !ok {
                    return Err(not_leader());
                }
                Ok(ProclaimResponse {
                    header: convert::header(&h),
                })
            }
            .await,
        )
    }

    async fn leader(&self, request: tonic::Request<LeaderRequest>) -> Answer<LeaderResponse> {
        let who = caller(&request)?;
        let name = request.into_inner().name;
        concurrency::check(&who, &name, false)?;
        answer(
            async {
                let (h, kv) =
                    concurrency::contender(&self.0, &who, &concurrency::prefix(&name), None)
                        .await?;
                let kv = kv.ok_or_else(no_leader)?;
                Ok(LeaderResponse {
                    header: convert::header(&h),
                    kv: Some(convert::kv(kv)),
                })
            }
            .await,
        )
    }

    type ObserveStream = BoxStream<'static, Result<LeaderResponse, tonic::Status>>;

    /// Every leader of `name` in turn, and every value each announces, until the client leaves
    /// or the node shuts down.
    async fn observe(&self, request: tonic::Request<LeaderRequest>) -> Answer<Self::ObserveStream> {
        let who = caller(&request)?;
        let name = request.into_inner().name;
        concurrency::check(&who, &name, false)?;
        // One place in the node's watcher budget for the stream's whole life (it keeps one
        // watcher at a time): refused here, before the stream starts, or never.
        let slot = self.0.watcher_slot()?;
        let api = self.0.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _slot = slot;
            let mut shutdown = api.shutdown.clone();
            tokio::select! {
                result = observe(&api, &who, &name, &tx) => {
                    if let Err(e) = result {
                        let _ = tx.send(Err(tonic::Status::from(e))).await;
                    }
                }
                _ = tx.closed() => {}
                _ = shutdown.changed() => {}
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// Deletes the leader's key if it still is the leader's; no error if it is not.
    async fn resign(&self, request: tonic::Request<ResignRequest>) -> Answer<ResignResponse> {
        let who = caller(&request)?;
        let r = request.into_inner();
        answer(
            async {
                let leader = r.leader.ok_or_else(not_leader)?;
                concurrency::check_leader_key(&who, &leader.name, &leader.key)?;
                let h = concurrency::delete_if_created_at(&self.0, &who, &leader.key, leader.rev)
                    .await?;
                Ok(ResignResponse {
                    header: convert::header(&h),
                })
            }
            .await,
        )
    }
}

type Sender = mpsc::Sender<Result<LeaderResponse, tonic::Status>>;

async fn send(api: &Api, tx: &Sender, revision: i64, kv: KeyValue) -> Result<(), EtcdError> {
    let resp = LeaderResponse {
        header: convert::header(&api.header(revision)),
        kv: Some(convert::kv(kv)),
    };
    tx.send(Ok(resp))
        .await
        .map_err(|_| EtcdError::new(Code::Unavailable, "observer went away"))
}

/// The observe loop: the current leader (or the first to appear), then its changes until its
/// key is deleted, then again.
async fn observe(api: &Api, who: &Caller, name: &[u8], tx: &Sender) -> Result<(), EtcdError> {
    let prefix = concurrency::prefix(name);
    loop {
        let (h, leader) = concurrency::contender(api, who, &prefix, None).await?;
        let (leader, revision) = match leader {
            Some(kv) => (kv, h.revision),
            None => match first_put(api, &prefix, h.revision + 1).await? {
                Some(found) => found,
                None => continue,
            },
        };
        send(api, tx, revision, leader.clone()).await?;
        let mut watcher = Watcher::new(
            api.node.store().clone(),
            WatchOptions {
                range: KeyRange::new(leader.key.clone(), Vec::new()),
                start_revision: revision + 1,
                ..WatchOptions::default()
            },
        );
        'key: loop {
            match watcher.next().await? {
                WatchItem::Events(events) => {
                    for e in events {
                        if e.kind == EventType::Delete {
                            break 'key;
                        }
                        let rev = e.kv.mod_revision;
                        send(api, tx, rev, e.kv).await?;
                    }
                }
                WatchItem::Compacted { .. } => break 'key,
            }
        }
    }
}

/// The first key put under `prefix` from revision `from` on; `None` if history ran out.
async fn first_put(
    api: &Api,
    prefix: &[u8],
    from: i64,
) -> Result<Option<(KeyValue, i64)>, EtcdError> {
    let mut watcher = Watcher::new(
        api.node.store().clone(),
        WatchOptions {
            range: KeyRange::prefix(prefix.to_vec()),
            start_revision: from,
            filter_delete: true,
            ..WatchOptions::default()
        },
    );
    loop {
        match watcher.next().await? {
            WatchItem::Events(events) => {
                if let Some(e) = events.into_iter().find(|e| e.kind == EventType::Put) {
                    let rev = e.kv.mod_revision;
                    return Ok(Some((e.kv, rev)));
                }
            }
            WatchItem::Compacted { .. } => return Ok(None),
        }
    }
}
