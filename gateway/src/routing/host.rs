//! Host names as the route table sees them: from `:authority` (HTTP/2) or `Host`, without the
//! port, without IPv6 brackets or a trailing dot, lower-cased; and host patterns (`*.suffix`,
//! `prefix.*`, `_`) in a deterministic most-specific-first order.

/// The host of a request: the URI authority when present (HTTP/2 `:authority`, or an absolute
/// URI), else the `Host` header.
pub fn request_host<'a>(authority: Option<&'a str>, host_header: Option<&'a str>) -> String {
    normalize(authority.or(host_header).unwrap_or("")).into_owned()
}

/// A byte of a host name already in normal form.
fn plain(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
}

/// `Example.COM:8080` → `example.com`; `[::1]:8080` → `::1`; `example.com.` → `example.com`.
/// Borrows when the host is already in that form (the common case).
pub fn normalize(raw: &str) -> std::borrow::Cow<'_, str> {
    // The usual `name` or `name:port`, already in lower case: one pass, no copy.
    let name_len = raw.bytes().position(|b| b == b':').unwrap_or(raw.len());
    let (name, port) = raw.as_bytes().split_at(name_len);
    if !name.is_empty()
        && name.iter().all(|&b| plain(b))
        && name.last() != Some(&b'.')
        && port.iter().skip(1).all(u8::is_ascii_digit)
    {
        return std::borrow::Cow::Borrowed(&raw[..name_len]);
    }
    normalize_any(raw)
}

/// `normalize` for any form: spaces, upper case, a trailing dot, IPv6 literals.
fn normalize_any(raw: &str) -> std::borrow::Cow<'_, str> {
    let raw = raw.trim();
    let bracketed = raw
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(inside, _)| inside.matches(':').count() > 1);
    let host = if let Some((inside, _)) = bracketed {
        // IPv6 literal: up to the closing bracket.
        inside
    } else if raw.matches(':').count() > 1 {
        // A bare IPv6 literal without brackets has no port.
        raw
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.trim_end_matches('.');
    if host.bytes().all(plain) {
        // The usual `name:port`: no copy.
        return std::borrow::Cow::Borrowed(host);
    }
    std::borrow::Cow::Owned(host.to_ascii_lowercase())
}

/// A configured host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `_`: every host no other pattern claims.
    Default,
    Exact(String),
    /// `*.example.com` (stored as `.example.com`) or `*` (stored as ``): hosts ending so.
    Suffix(String),
    /// `api.*` (stored as `api.`): hosts starting so.
    Prefix(String),
}

impl HostPattern {
    pub fn parse(pattern: &str) -> HostPattern {
        let p = pattern.trim();
        if p == "_" {
            return HostPattern::Default;
        }
        let lower = p.to_ascii_lowercase();
        if let Some(suffix) = lower.strip_prefix('*') {
            if !suffix.contains('*') {
                return HostPattern::Suffix(suffix.to_string());
            }
        } else if let Some(prefix) = lower.strip_suffix('*') {
            if !prefix.contains('*') {
                return HostPattern::Prefix(prefix.to_string());
            }
        }
        // A `*` anywhere else is a literal character, as in the original gateway.
        HostPattern::Exact(normalize(&lower).into_owned())
    }

    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Default => true,
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()),
            HostPattern::Prefix(p) => host.starts_with(p.as_str()),
        }
    }

    /// Order of consideration: exact, then suffix patterns longest first, then prefix patterns
    /// longest first, then the default; ties by the pattern text, so the order never depends on
    /// hashing (the original evaluated wildcards in hash-map order, G6).
    pub fn rank(&self) -> (u8, std::cmp::Reverse<usize>, String) {
        match self {
            HostPattern::Exact(h) => (0, std::cmp::Reverse(h.len()), h.clone()),
            HostPattern::Suffix(s) => (1, std::cmp::Reverse(s.len()), s.clone()),
            HostPattern::Prefix(p) => (2, std::cmp::Reverse(p.len()), p.clone()),
            HostPattern::Default => (3, std::cmp::Reverse(0), String::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize("Example.COM:8080"), "example.com");
        assert_eq!(normalize("[::1]:8080"), "::1");
        assert_eq!(normalize("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(normalize("2001:db8::1"), "2001:db8::1");
        assert_eq!(normalize("example.com."), "example.com");
        assert_eq!(
            request_host(Some("h2.test:443"), Some("ignored")),
            "h2.test"
        );
        assert_eq!(request_host(None, Some("Web.Test")), "web.test");
        assert_eq!(request_host(None, None), "");
    }

    #[test]
    fn patterns() {
        let sub = HostPattern::parse("*.Example.com");
        assert!(sub.matches("a.example.com") && sub.matches("a.b.example.com"));
        assert!(!sub.matches("example.com"));
        let api = HostPattern::parse("api.*");
        assert!(api.matches("api.anything") && !api.matches("www.api.x"));
        assert!(HostPattern::parse("*").matches("anything"));
        assert_eq!(HostPattern::parse("a*b"), HostPattern::Exact("a*b".into()));
        assert_eq!(HostPattern::parse("_"), HostPattern::Default);
        let mut ps = vec![
            HostPattern::parse("_"),
            HostPattern::parse("*.example.com"),
            HostPattern::parse("api.*"),
            HostPattern::parse("*.a.example.com"),
            HostPattern::parse("exact.test"),
        ];
        ps.sort_by_key(HostPattern::rank);
        assert_eq!(
            ps,
            vec![
                HostPattern::parse("exact.test"),
                HostPattern::parse("*.a.example.com"),
                HostPattern::parse("*.example.com"),
                HostPattern::parse("api.*"),
                HostPattern::parse("_"),
            ]
        );
    }

    proptest! {
        #[test]
        fn the_one_pass_form_agrees_with_the_general_one(s in "[ a-zA-Z0-9.:\\[\\]-]{0,24}") {
            prop_assert_eq!(normalize(&s), normalize_any(&s));
        }

        #[test]
        fn normalize_is_idempotent(s in "[a-zA-Z0-9.:\\[\\]-]{0,20}") {
            let once = normalize(&s).into_owned();
            prop_assert_eq!(normalize(&once).into_owned(), once);
        }

        #[test]
        fn suffix_pattern_matches_exactly_the_subdomains(label in "[a-z]{1,8}", base in "[a-z]{1,8}\\.[a-z]{2,3}") {
            let p = HostPattern::parse(&format!("*.{base}"));
            let sub = format!("{label}.{base}");
            prop_assert!(p.matches(&sub));
            prop_assert!(!p.matches(&base));
        }
    }
}
