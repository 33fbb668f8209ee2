//! Header matchers of a route, compiled: names lower-cased, regexes built once. Only the first
//! value of a header is examined, and a value that is not visible ASCII counts as absent (as
//! in the original gateway).

use http::{HeaderMap, HeaderName};
use regex::Regex;

/// Where a matcher reads request headers from: hyper's `HeaderMap`, or the raw head the
/// HTTP/1.1 fast path forwards without building one (`proxy::h1`).
pub trait HeaderSource {
    /// The first value of `name`, as bytes.
    fn first(&self, name: &HeaderName) -> Option<&[u8]>;
}

impl HeaderSource for HeaderMap {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

/// A header value as text, or `None` when it is not visible ASCII (what
/// `HeaderValue::to_str` accepts: tab, space and `!`..`~`).
pub fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[derive(Debug, Clone)]
pub enum Test {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present,
}

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: HeaderName,
    pub test: Test,
    pub invert: bool,
}

/// Why a route could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("header matcher name {0:?} is not a valid header name")]
    Name(String),
    #[error("header matcher regex {pattern:?} is invalid: {reason}")]
    Regex { pattern: String, reason: String },
}

impl Matcher {
    pub fn compile(m: &crate::config::types::HeaderMatcher) -> Result<Matcher, MatcherError> {
        let name = HeaderName::from_bytes(m.name.to_ascii_lowercase().as_bytes())
            .map_err(|_| MatcherError::Name(m.name.clone()))?;
        let test = match m.match_type.as_str() {
            "prefix" => Test::Prefix(m.value.clone()),
            "regex" => Test::Regex(Regex::new(&m.value).map_err(|e| MatcherError::Regex {
                pattern: m.value.clone(),
                reason: e.to_string(),
            })?),
            "present" => Test::Present,
            // "exact", "" and anything unknown, as in the original gateway.
            _ => Test::Exact(m.value.clone()),
        };
        Ok(Matcher {
            name,
            test,
            invert: m.invert,
        })
    }

    pub fn matches(&self, headers: &dyn HeaderSource) -> bool {
        let value = headers.first(&self.name).and_then(visible_ascii);
        let raw = match (&self.test, value) {
            (Test::Present, v) => v.is_some(),
            (_, None) => false,
            (Test::Exact(want), Some(v)) => v == want,
            (Test::Prefix(want), Some(v)) => v.starts_with(want.as_str()),
            (Test::Regex(re), Some(v)) => re.is_match(v),
        };
        raw != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::HeaderMatcher;

    fn m(name: &str, value: &str, kind: &str, invert: bool) -> Matcher {
        Matcher::compile(&HeaderMatcher {
            name: name.into(),
            value: value.into(),
            match_type: kind.into(),
            invert,
        })
        .unwrap()
    }

    #[test]
    fn kinds_and_inversion() {
        let mut h = HeaderMap::new();
        h.insert("x-version", "v2".parse().unwrap());
        h.insert("x-env", "staging-eu".parse().unwrap());
        assert!(m("X-Version", "v2", "exact", false).matches(&h));
        assert!(!m("X-Version", "v1", "exact", false).matches(&h));
        assert!(m("x-env", "staging", "prefix", false).matches(&h));
        assert!(m("x-env", "^stag.*-eu$", "regex", false).matches(&h));
        assert!(m("x-env", "", "present", false).matches(&h));
        assert!(
            m("x-missing", "", "present", true).matches(&h),
            "present+invert = absent"
        );
        assert!(
            m("x-version", "v2", "bogus", false).matches(&h),
            "unknown kind means exact"
        );
        assert!(!m("x-missing", "", "exact", false).matches(&h));
        assert!(Matcher::compile(&HeaderMatcher {
            name: "x".into(),
            value: "(".into(),
            match_type: "regex".into(),
            invert: false
        })
        .is_err());
    }
}
