//! An etcd lease kept alive for as long as this controller campaigns or leads: what its
//! election key hangs on. The lease is declared lost once it has gone unrenewed for two
//! thirds of its TTL, a third before etcd may expire it and another controller may win, so
//! that two controllers never both believe they lead.

use std::time::Duration;

use etcd_client::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub(super) struct Session {
    pub lease: i64,
    lost: watch::Receiver<bool>,
    /// The keep-alive task; owned here, aborted on drop.
    keeper: JoinHandle<()>,
}

impl Session {
    /// Grants a lease of `ttl` and starts keeping it alive.
    pub async fn open(client: &Client, ttl: Duration) -> Result<Session, etcd_client::Error> {
        let mut c = client.clone();
        let secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
        let lease = c.lease_grant(secs, None).await?.id();
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_alive(c, lease, ttl, lost_tx));
        Ok(Session {
            lease,
            lost,
            keeper,
        })
    }

    /// Resolves once the lease is lost.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    /// Stops renewing and revokes the lease, so that its keys go at once (best effort: if
    /// etcd cannot be reached the lease expires by itself).
    pub async fn close(self, client: &Client) {
        self.keeper.abort();
        let mut c = client.clone();
        match tokio::time::timeout(Duration::from_secs(3), c.lease_revoke(self.lease)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, lease = self.lease, "lease not revoked"),
            Err(_) => tracing::debug!(lease = self.lease, "lease revoke timed out"),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

async fn keep_alive(mut client: Client, lease: i64, ttl: Duration, lost: watch::Sender<bool>) {
    let every = (ttl / 3).max(Duration::from_millis(500));
    let give_up = ttl * 2 / 3;
    let mut renewed = Instant::now();
    let mut stream = None;
    loop {
        if renewed.elapsed() >= give_up {
            tracing::warn!(lease, "controller lease not renewed in time; stepping down");
            let _ = lost.send(true);
            return;
        }
        if stream.is_none() {
            match tokio::time::timeout(every, client.lease_keep_alive(lease)).await {
                Ok(Ok(pair)) => stream = Some(pair),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, lease, "lease keep-alive stream not opened");
                    tokio::time::sleep(every / 4).await;
                    continue;
                }
                Err(_) => continue,
            }
        }
        let Some((keeper, responses)) = stream.as_mut() else {
            continue;
        };
        if let Err(e) = keeper.keep_alive().await {
            tracing::debug!(error = %e, lease, "lease keep-alive not sent");
            stream = None;
            continue;
        }
        match tokio::time::timeout(every, responses.message()).await {
            Ok(Ok(Some(r))) if r.ttl() > 0 => renewed = Instant::now(),
            Ok(Ok(Some(_))) => {
                tracing::warn!(lease, "controller lease expired; stepping down");
                let _ = lost.send(true);
                return;
            }
            Ok(Ok(None)) | Ok(Err(_)) => stream = None,
            Err(_) => {}
        }
        let next = renewed + every;
        tokio::time::sleep_until(next.max(Instant::now())).await;
    }
}
