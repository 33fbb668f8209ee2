//! The leader's watch on its own election key. Every write it makes is fenced on the key, but
//! a leader with nothing to write would not find out that the key is gone (deleted by an
//! operator, or its lease revoked from elsewhere) and would keep reporting itself leader while
//! another controller may already lead. Watching the key ends the term as soon as it goes.

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};

/// Between watch attempts while etcd cannot be watched (the lease keeper decides, meanwhile,
/// whether leadership is lost).
const RETRY: Duration = Duration::from_secs(1);

/// Resolves once the election key `key`, made at revision `created`, no longer exists as that
/// key: deleted, or made anew by someone else.
pub(super) async fn election_key_gone(etcd: &Client, key: &[u8], created: i64) {
    let mut etcd = etcd.clone();
    // Where the next watch starts: just after the key was made, so that nothing that happened
    // to it since is missed across a reconnect; moved on to what has been seen, so that a
    // watch started again after a compaction of that history is not refused for good.
    let mut from = created + 1;
    loop {
        if let Ok(mut stream) = etcd
            .watch(key, Some(WatchOptions::new().with_start_revision(from)))
            .await
        {
            while let Ok(Some(response)) = stream.message().await {
                if response
                    .events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    return;
                }
                if response.canceled() {
                    // E.g. the history it starts from was compacted: the key itself is read
                    // below, and the next watch starts after that read.
                    tracing::warn!(
                        from,
                        compacted = response.compact_revision(),
                        "the election key's watch was cancelled; reading the key"
                    );
                    break;
                }
                if let Some(header) = response.header() {
                    from = from.max(header.revision() + 1);
                }
            }
        }
        match etcd.get(key, None).await {
            Ok(found) if found.kvs().first().map(|kv| kv.create_revision()) != Some(created) => {
                return
            }
            Ok(found) => {
                if let Some(header) = found.header() {
                    from = from.max(header.revision() + 1);
                }
                tracing::debug!("the election key's watch ended; watching again");
            }
            Err(e) => tracing::debug!(error = %e, "cannot watch the election key; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}
