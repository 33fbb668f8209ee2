//! Header handling between client and upstream: hop-by-hop headers (the fixed list and any
//! named in `Connection`) are removed in both directions; forwarding headers are set, believing
//! a client's `X-Forwarded-*` only when the connection comes from a trusted proxy.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including every header named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Whether a request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, proxies: &[IpNet]) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let chain: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip, proxies))
        .unwrap_or(peer)
}

/// Sets `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP` for the upstream.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    client: IpAddr,
    host: &str,
    proxies: &[IpNet],
) {
    let from_trusted = trusted(peer, proxies);
    let peer_text = peer.to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        // Only a trusted proxy's chain is kept; anyone else's is replaced, not extended.
        Some(existing) if from_trusted && !existing.trim().is_empty() => {
            format!("{existing}, {peer_text}")
        }
        _ => peer_text,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if !(from_trusted && headers.contains_key("x-forwarded-proto")) {
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !host.is_empty() {
        if let Ok(v) = HeaderValue::from_str(host) {
            headers.insert("x-forwarded-host", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        headers.insert("x-real-ip", v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    #[test]
    fn hop_by_hop_including_connection_named() {
        let mut m = h(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut m);
        assert_eq!(m.len(), 1);
        assert!(m.contains_key("x-kept"));
        assert!(is_upgrade(&h(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket")
        ])));
        assert!(!is_upgrade(&h(&[("upgrade", "websocket")])));
    }

    #[test]
    fn untrusted_forwarded_for_is_not_believed() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let mut m = h(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = client_ip(&m, peer, &[]);
        assert_eq!(client, peer);
        set_forwarding(&mut m, peer, client, "web.test", &[]);
        assert_eq!(m["x-forwarded-for"], "203.0.113.9");
        assert_eq!(m["x-forwarded-proto"], "http");
        assert_eq!(m["x-real-ip"], "203.0.113.9");
        assert_eq!(m["x-forwarded-host"], "web.test");
    }

    #[test]
    fn trusted_proxies_extend_the_chain() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.1.1".parse().unwrap();
        let mut m = h(&[
            ("x-forwarded-for", "198.51.100.7, 10.2.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        let client = client_ip(&m, peer, &proxies);
        assert_eq!(client, "198.51.100.7".parse::<IpAddr>().unwrap());
        set_forwarding(&mut m, peer, client, "", &proxies);
        assert_eq!(m["x-forwarded-for"], "198.51.100.7, 10.2.2.2, 10.1.1.1");
        assert_eq!(
            m["x-forwarded-proto"], "https",
            "a trusted proxy's proto is kept"
        );
        assert!(!m.contains_key("x-forwarded-host"));
    }
}
