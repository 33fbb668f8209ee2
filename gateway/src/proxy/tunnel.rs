//! Upgraded connections (WebSocket and other `Upgrade` protocols): once the upstream has
//! answered 101, bytes are copied both ways until either side closes or the node shuts down.
//! The tunnel task owns the request's record and the node's in-flight mark.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use super::record::Record;
use crate::upstream::balancer::InFlight;

pub fn spawn(
    downstream: OnUpgrade,
    upstream: OnUpgrade,
    record: Record,
    in_flight: InFlight,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut record = record;
        let (down, up) = match tokio::try_join!(downstream, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut down = TokioIo::new(down);
        let mut up = TokioIo::new(up);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut down, &mut up) => {
                if let Ok((to_upstream, to_client)) = copied {
                    record.bytes = to_client;
                    tracing::debug!(to_upstream, to_client, "upgraded connection closed");
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        drop(in_flight);
    });
}
