//! A proxy listener: HTTP/1.1 and HTTP/2 without TLS (h2c, prior knowledge) on one port,
//! upgrades allowed, at most as many connections at once as `slots` has permits (shared by
//! every proxy thread, [`super::threads`]). Each connection starts on the HTTP/1.1 fast path
//! ([`super::h1`]), which hands it to hyper when a request needs the general path.
//! On shutdown it stops accepting and gives open connections the grace period to finish; the
//! connection tasks belong to it, and those still running after the grace period are ended.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::h1;
use crate::Gateway;

/// Counts a connection down in `connections_active` however its task ends (aborted too).
struct Active(prometheus::IntGauge);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(h1::HEADER_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                gw.metrics.connections.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "accepting a proxy connection failed");
                // Out of file descriptors and the like: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        gw.metrics
            .connections
            .with_label_values(&["accepted"])
            .inc();
        gw.metrics.connections_active.inc();
        let active = Active(gw.metrics.connections_active.clone());
        let conn =
            h1::serve_connection(gw.clone(), stream, peer, builder.clone(), shutdown.clone());
        connections.spawn(async move {
            conn.await;
            drop(active);
            drop(permit);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            open = connections.len(),
            "proxy connections still open after the grace period are closed"
        );
        connections.shutdown().await;
    }
    Ok(())
}
