//! etcd's v3lock service: a mutex per name, held by a lease ([`super::concurrency`]).

use super::concurrency::{self, Abandon};
use super::pb::v3lockpb::lock_server;
use super::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use super::{answer, caller, convert, Answer};
use crate::etcd::error::{Code, EtcdError};
use crate::etcd::Api;

pub struct Lock(pub Api);

#[tonic::async_trait]
impl lock_server::Lock for Lock {
    /// Waits until the lease holds the lock; answers the key that holds it. Abandoned (the
    /// client cancels or leaves) before then, the key is removed again.
    async fn lock(&self, request: tonic::Request<LockRequest>) -> Answer<LockResponse> {
        let who = caller(&request)?;
        let r = request.into_inner();
        concurrency::check(&who, &r.name, true)?;
        self.0.check_lease_keys(&who, r.lease)?;
        let api = &self.0;
        answer(
            async {
                let key = concurrency::contender_key(&r.name, r.lease);
                let (mine, _) = concurrency::create_or_get(api, &who, &key, b"", r.lease).await?;
                let abandon = Abandon::new(api, &who, &key, mine.create_revision);
                let prefix = concurrency::prefix(&r.name);
                if let Err(e) =
                    concurrency::wait_for_older(api, &who, &prefix, mine.create_revision).await
                {
                    abandon.remove_now().await;
                    return Err(e);
                }
                // The lease may have expired while waiting: then the lock is not held.
                let (h, still) = concurrency::get_key(api, &who, &key).await?;
                if still.is_none_or(|kv| kv.create_revision != mine.create_revision) {
                    // Nothing of this request is left to remove.
                    abandon.keep();
                    return Err(EtcdError::new(
                        Code::Unknown,
                        "etcdserver: session expired while waiting for the lock",
                    ));
                }
                abandon.keep();
                Ok(LockResponse {
                    header: convert::header(&h),
                    key,
                })
            }
            .await,
        )
    }

    async fn unlock(&self, request: tonic::Request<UnlockRequest>) -> Answer<UnlockResponse> {
        let who = caller(&request)?;
        let key = request.into_inner().key;
        answer(
            async {
                let (h, _) = self
                    .0
                    .delete_range(
                        &who,
                        hermes_storage::mvcc::request::DeleteRangeRequest {
                            range: hermes_storage::KeyRange::new(key, Vec::new()),
                            prev_kv: false,
                        },
                    )
                    .await?;
                Ok(UnlockResponse {
                    header: convert::header(&h),
                })
            }
            .await,
        )
    }
}
