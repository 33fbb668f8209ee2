//! Wake-ups from other servers on the same database: every change-log write here also sends
//! `NOTIFY hermes_change_log` in its transaction (PostgreSQL delivers it at commit), and each
//! store keeps one connection `LISTEN`ing, so a controller on one node hears of a write made
//! through another node's API at once. Original servers send no notification; their writes
//! are still seen by the revision wait's poll.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::poll_fn;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

/// The channel name.
pub(super) const CHANNEL: &str = "hermes_change_log";

/// Sent in every transaction that writes the change log.
pub(super) const NOTIFY: &str = "SELECT pg_notify('hermes_change_log', $1)";

/// Pause before listening again after the connection was lost.
const RELISTEN: Duration = Duration::from_secs(1);

/// Listens until dropped (the owner aborts it), waking `changed` on every notification, and
/// once after each reconnection (writes may have been missed while it was away).
pub(super) async fn listen(config: tokio_postgres::Config, server: String, changed: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let wake = changed.clone();
                // The connection is driven here; the client only sends `LISTEN`.
                let driver = async move {
                    loop {
                        match poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => wake.notify_waiters(),
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "change-log listener connection failed");
                                return;
                            }
                            None => return,
                        }
                    }
                };
                let subscribe = async {
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Ok(()) => {
                            changed.notify_waiters();
                            // Listening until the connection ends (the other branch).
                            std::future::pending::<()>().await;
                        }
                        Err(e) => tracing::debug!(error = %e, "LISTEN refused"),
                    }
                };
                tokio::select! {
                    _ = driver => {}
                    _ = subscribe => {}
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, %server, "change-log listener cannot connect");
            }
        }
        tokio::time::sleep(RELISTEN).await;
    }
}
