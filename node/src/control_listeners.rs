//! Keeps the proxy's list of forbidden upstreams ([`hermes_gateway::upstream::guard`]) current:
//! this node's own admin, peer and etcd listeners, and every member's peer, admin and etcd
//! listeners. Peer URLs come from the membership; admin and etcd URLs from what each member
//! says about itself, asked again every `RETRY` until every member has answered. URLs are
//! `http://<ip or name>:<port>`; names are resolved when the list is rebuilt.

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use hermes_raft::RaftNode;

use hermes_gateway::Gateway;

/// How soon the list is rebuilt while some member has not said where it listens.
const RETRY: Duration = Duration::from_secs(10);

/// The socket addresses of an `http://` URL, best effort (an unresolvable name gives none).
fn url_addrs(url: &str) -> Vec<SocketAddr> {
    let Some(authority) = url
        .strip_prefix("http://")
        .map(|rest| rest.split('/').next().unwrap_or_default())
    else {
        return Vec::new();
    };
    authority
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

/// Every member's listener URLs, and whether every member answered.
async fn member_urls(node: &RaftNode) -> (BTreeSet<String>, bool) {
    let mut urls = BTreeSet::new();
    let mut complete = true;
    for m in node.members().await {
        urls.insert(m.peer_url);
        match m.info {
            Some(info) => {
                urls.insert(info.admin_url);
                urls.extend(info.etcd_url);
            }
            None => complete = false,
        }
    }
    (urls, complete)
}

/// Runs until `stop`: sets the forbidden list now, after every membership change, and again
/// while some member's listeners are unknown.
pub async fn keep(
    node: Arc<RaftNode>,
    gateway: Arc<Gateway>,
    own: Vec<SocketAddr>,
    mut stop: watch::Receiver<bool>,
) {
    gateway.forbidden.set(own.clone());
    let mut metrics = node.raft().metrics();
    let mut seen_membership = None;
    let mut complete = false;
    loop {
        let membership = metrics.borrow_and_update().membership_config.clone();
        if seen_membership.as_ref() != Some(&membership) || !complete {
            let (urls, all_answered) = member_urls(&node).await;
            complete = all_answered;
            let resolved = tokio::task::spawn_blocking(move || {
                urls.iter().flat_map(|u| url_addrs(u)).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let mut all = own.clone();
            all.extend(resolved);
            all.sort();
            all.dedup();
            gateway.forbidden.set(all);
            seen_membership = Some(membership);
        }
        let retry = async {
            if complete {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(RETRY).await
            }
        };
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = retry => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_to_their_sockets() {
        assert_eq!(
            url_addrs("http://127.0.0.1:9081"),
            vec!["127.0.0.1:9081".parse().unwrap()]
        );
        assert!(url_addrs("http://localhost:9081/x")
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9081));
        assert!(url_addrs("ftp://x").is_empty());
    }
}
