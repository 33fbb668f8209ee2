//! The addresses the proxy never connects to: this node's own admin, peer and etcd listeners,
//! and every cluster member's peer listener. A route to one of them would let whoever may
//! write configuration reach, through the proxy, endpoints that trust local clients (first-time
//! setup, membership changes and the peer protocol of a cluster without a secret, the etcd
//! endpoint without authentication). The check runs on the connected socket, so no host name,
//! alias or address form (`127.1`, `::ffff:127.0.0.1`, the host's own IP) gets around it;
//! the connection is closed before a byte is sent.
//!
//! Only plain-HTTP connections are checked: TLS clusters open theirs in hyper-util's client,
//! and a TLS handshake sent to one of these plain-HTTP listeners is refused as a bad request.

use std::net::SocketAddr;

use arc_swap::ArcSwap;

#[derive(Debug, Default)]
pub struct ForbiddenUpstreams {
    listeners: ArcSwap<Vec<SocketAddr>>,
}

impl ForbiddenUpstreams {
    /// Replaces the protected listeners (as bound, or as advertised).
    pub fn set(&self, listeners: Vec<SocketAddr>) {
        self.listeners.store(std::sync::Arc::new(listeners));
    }

    /// Whether the connection from `local` to `peer` reaches a protected listener. A listener
    /// bound to a wildcard or loopback address is reached through any address of this host;
    /// `peer` is on this host when it is loopback or the connection's own source address.
    pub fn forbids(&self, local: SocketAddr, peer: SocketAddr) -> bool {
        let listeners = self.listeners.load();
        if listeners.is_empty() {
            return false;
        }
        let peer_ip = peer.ip().to_canonical();
        let here = peer_ip.is_loopback() || peer_ip == local.ip().to_canonical();
        listeners.iter().any(|l| {
            let ip = l.ip().to_canonical();
            l.port() == peer.port()
                && (ip == peer_ip || (here && (ip.is_unspecified() || ip.is_loopback())))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_listeners_are_refused_by_any_local_address() {
        let g = ForbiddenUpstreams::default();
        let local = addr("127.0.0.1:40000");
        assert!(!g.forbids(local, addr("127.0.0.1:9080")), "nothing set yet");
        g.set(vec![
            addr("0.0.0.0:9080"),
            addr("127.0.0.1:9081"),
            addr("10.0.0.7:2379"),
        ]);
        for peer in [
            "127.0.0.1:9080",
            "127.0.0.2:9080",
            "[::1]:9080",
            "[::ffff:127.0.0.1]:9081",
        ] {
            assert!(g.forbids(local, addr(peer)), "{peer}");
        }
        // The host's own address, from the connection's point of view.
        assert!(g.forbids(addr("10.0.0.7:40000"), addr("10.0.0.7:9080")));
        assert!(g.forbids(addr("10.0.0.7:40000"), addr("10.0.0.7:2379")));
        // Other hosts, and other ports here, are fine.
        assert!(!g.forbids(addr("10.0.0.7:40000"), addr("10.0.0.8:9080")));
        assert!(!g.forbids(local, addr("127.0.0.1:8080")));
        assert!(!g.forbids(addr("10.0.0.7:40000"), addr("10.0.0.9:2379")));
    }
}
