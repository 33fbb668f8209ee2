//! The proxy listener: HTTP/1.1 and HTTP/2 without TLS (h2c, prior knowledge) on one port,
//! upgrades allowed, at most `max_connections` at once. On shutdown it stops accepting and
//! gives open connections the grace period to finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::handler::handle;
use crate::gateway::Gateway;

pub async fn serve(
    listener: TcpListener,
    gw: Arc<Gateway>,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
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
        let service_gw = gw.clone();
        let service = service_fn(move |req| {
            let gw = service_gw.clone();
            async move { Ok::<_, Infallible>(handle(gw, peer, req).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        let active = gw.metrics.connections_active.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "proxy connection ended with an error");
            }
            active.dec();
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "proxy connections still open after the grace period"
        );
    }
    Ok(())
}
