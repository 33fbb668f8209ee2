//! Telling a direct local client from one whose request came through a proxy. Listeners that
//! trust loopback clients (the peer port and membership changes without a cluster secret, the
//! etcd endpoint without authentication, first-time setup of the admin API) must not trust a
//! request that a proxy on this host forwarded, such as the node's own gateway, which always
//! adds `Via` after any header transform a route asks for.

use http::HeaderMap;

/// Headers a proxy adds to what it forwards.
pub const FORWARDING_MARKS: [&str; 4] = ["via", "x-forwarded-for", "forwarded", "x-real-ip"];

/// Whether the request carries a proxy's forwarding marks.
pub fn came_through_proxy(headers: &HeaderMap) -> bool {
    FORWARDING_MARKS.iter().any(|h| headers.contains_key(*h))
}

/// Whether `peer` is a loopback address (IPv4-mapped IPv6 included).
pub fn is_loopback(peer: &std::net::SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// A direct local client: a loopback peer and no forwarding marks.
pub fn is_direct_local(peer: &std::net::SocketAddr, headers: &HeaderMap) -> bool {
    is_loopback(peer) && !came_through_proxy(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxied_loopback_request_is_not_local() {
        let local: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert!(is_direct_local(&local, &HeaderMap::new()));
        assert!(is_direct_local(&mapped, &HeaderMap::new()));
        for mark in FORWARDING_MARKS {
            let mut h = HeaderMap::new();
            h.insert(mark, http::HeaderValue::from_static("x"));
            assert!(!is_direct_local(&local, &h), "{mark}");
        }
        let remote: std::net::SocketAddr = "192.0.2.1:5000".parse().unwrap();
        assert!(!is_direct_local(&remote, &HeaderMap::new()));
    }
}
