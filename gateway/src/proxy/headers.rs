//! Header handling between client and upstream: hop-by-hop headers (the fixed list and any
//! named in `Connection`) are removed in both directions; forwarding headers are set, believing
//! a client's `X-Forwarded-*` only when the connection comes from a trusted proxy.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;

pub const HOP_BY_HOP: [&str; 9] = [
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
    client_ip_from(
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
        peer,
        proxies,
    )
}

/// [`client_ip`], from the `X-Forwarded-For` values as text.
pub fn client_ip_from<'a>(
    forwarded_for: impl Iterator<Item = &'a str>,
    peer: IpAddr,
    proxies: &[IpNet],
) -> IpAddr {
    if !trusted(peer, proxies) {
        return peer;
    }
    let chain: Vec<IpAddr> = forwarded_for
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    chain
        .into_iter()
        .rev()
        .find(|ip| !trusted(*ip, proxies))
        .unwrap_or(peer)
}

/// The forwarding headers to set for the upstream; `None` leaves the header as the client sent
/// it (`proto` from a trusted proxy) or absent.
pub struct Forwarding {
    pub forwarded_for: Option<HeaderValue>,
    pub proto: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
    pub real_ip: Option<HeaderValue>,
}

/// An address as a header value.
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    // An address's text is digits, dots, colons and hex letters: always a valid value.
    HeaderValue::from_str(&ip.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Forwarding {
    /// From the first `X-Forwarded-For` value the client sent and whether it sent
    /// `X-Forwarded-Proto`. `peer_value` is [`ip_value`] of `peer` (a connection's fast path
    /// makes it once).
    pub fn new(
        existing_for: Option<&str>,
        has_proto: bool,
        (peer, peer_value): (IpAddr, &HeaderValue),
        client: IpAddr,
        host: &str,
        proxies: &[IpNet],
    ) -> Forwarding {
        let from_trusted = trusted(peer, proxies);
        let forwarded_for = match existing_for {
            // Only a trusted proxy's chain is kept; anyone else's is replaced, not extended.
            Some(existing) if from_trusted && !existing.trim().is_empty() => {
                HeaderValue::from_str(&format!("{existing}, {peer}")).ok()
            }
            _ => Some(peer_value.clone()),
        };
        Forwarding {
            forwarded_for,
            proto: (!(from_trusted && has_proto)).then(|| HeaderValue::from_static("http")),
            host: (!host.is_empty())
                .then(|| HeaderValue::from_str(host).ok())
                .flatten(),
            real_ip: Some(if client == peer {
                peer_value.clone()
            } else {
                ip_value(client)
            }),
        }
    }

    /// The headers and their values, in the order they are set.
    pub fn fields(self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        // Constants: `HeaderName::from_static` outside a const context looks the name up
        // among the standard ones on every call (about 130 instructions a header, per request).
        const FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
        const PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
        const HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
        const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
        [
            (FOR, self.forwarded_for),
            (PROTO, self.proto),
            (HOST, self.host),
            (REAL_IP, self.real_ip),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

/// The `Via` field this proxy appends to every upstream request, after the route's header
/// transforms so that no transform removes it. RFC 9110 §7.6.3 asks a gateway for it (the
/// original sent none, contracts §7.12); Hermes's own listeners read it as "came through a
/// proxy" and so never trust such a request as a local one.
pub const VIA: (HeaderName, HeaderValue) = (
    HeaderName::from_static("via"),
    HeaderValue::from_static("1.1 hermes"),
);

/// Sets `X-Forwarded-For`, `-Proto`, `-Host` and `X-Real-IP` for the upstream.
pub fn set_forwarding(
    headers: &mut HeaderMap,
    peer: IpAddr,
    client: IpAddr,
    host: &str,
    proxies: &[IpNet],
) {
    let forwarding = Forwarding::new(
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        headers.contains_key("x-forwarded-proto"),
        (peer, &ip_value(peer)),
        client,
        host,
        proxies,
    );
    for (name, value) in forwarding.fields() {
        headers.insert(name, value);
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
