//! A gateway's registration in an external etcd (contract §2.4): its key on a lease of its
//! own, kept alive by [`hermes_gateway::registry::keep_registered`] through
//! [`EtcdRegistrar`]; and the number of registered gateways, which splits every rate limit,
//! followed with a watch ([`count_instances`]).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions, WatchOptions};
use tokio::sync::watch;

use hermes_gateway::registry::{Registrar, RegistryError};
use hermes_gateway::Gateway;

/// Pause before watching again after a failure.
const RETRY: Duration = Duration::from_secs(1);

pub struct EtcdRegistrar {
    pub client: Client,
    /// The namespace's meta revision key.
    pub meta_key: String,
}

fn failed(e: etcd_client::Error) -> RegistryError {
    RegistryError(format!("etcd: {e}"))
}

impl Registrar for EtcdRegistrar {
    async fn grant(&self, ttl: i64) -> Result<i64, RegistryError> {
        let mut c = self.client.clone();
        Ok(c.lease_grant(ttl, None).await.map_err(failed)?.id())
    }

    async fn keep_alive(&self, lease: i64) -> Result<i64, RegistryError> {
        let mut c = self.client.clone();
        let renewed = async {
            let (mut keeper, mut responses) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            responses.message().await
        };
        match renewed.await {
            Ok(Some(r)) => Ok(r.ttl().max(0)),
            Ok(None) => Err(RegistryError("etcd closed the keep-alive stream".into())),
            // etcd answers a lease it no longer has with an error; to the registry that is an
            // expired lease (register again), not a failure to retry.
            Err(e) if e.to_string().contains("lease not found") => Ok(0),
            Err(e) => Err(failed(e)),
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, lease: i64) -> Result<(), RegistryError> {
        let mut c = self.client.clone();
        c.put(key, value, Some(PutOptions::new().with_lease(lease)))
            .await
            .map(|_| ())
            .map_err(failed)
    }

    async fn revoke(&self, lease: i64) -> Result<(), RegistryError> {
        let mut c = self.client.clone();
        c.lease_revoke(lease).await.map(|_| ()).map_err(failed)
    }

    async fn config_revision(&self) -> i64 {
        let mut c = self.client.clone();
        match c.get(self.meta_key.as_str(), None).await {
            Ok(r) => r
                .kvs()
                .first()
                .and_then(|kv| kv.value_str().ok()?.trim().parse().ok())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }
}

/// Tells `gateway` how many gateways are registered under `prefix`, again on every change
/// there, until `stop`.
pub async fn count_instances(
    client: Client,
    prefix: String,
    gateway: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
) {
    let count = |client: Client, prefix: String| async move {
        let mut c = client;
        c.get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .map(|r| r.count())
    };
    loop {
        let mut c = client.clone();
        // Watch first, then count: a change in between is counted, not lost.
        let watched = c
            .watch(prefix.as_str(), Some(WatchOptions::new().with_prefix()))
            .await;
        match watched {
            Ok(mut stream) => loop {
                match count(client.clone(), prefix.clone()).await {
                    Ok(n) => gateway.set_gateway_nodes(n.clamp(1, i64::from(u32::MAX)) as u32),
                    Err(e) => {
                        tracing::debug!(error = %e, "counting gateway instances failed");
                        break;
                    }
                }
                let next = tokio::select! {
                    next = stream.message() => next,
                    _ = stop.wait_for(|s| *s) => return,
                };
                match next {
                    // etcd cancels a watch it will not serve (an expired sign-in, say).
                    Ok(Some(resp)) if resp.canceled() => {
                        tracing::debug!(reason = resp.cancel_reason(), "instance watch cancelled");
                        super::refresh_if_auth(&client, resp.cancel_reason()).await;
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        super::refresh_after(&client, &e).await;
                        break;
                    }
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "watching gateway instances failed");
                super::refresh_after(&client, &e).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
