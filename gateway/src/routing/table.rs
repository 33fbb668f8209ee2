//! The route table: an immutable snapshot compiled from every enabled route of every domain,
//! looked up per request as host partition (exact, then wildcards most specific first, then
//! `_`) → URI tree → method and header filters → priority. Built off the request path and
//! swapped in whole.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::host::HostPattern;
use super::matchers::{HeaderSource, Matcher};
use super::radix::UriTree;
use crate::config::types::{DomainConfig, HeaderTransform, RouteConfig, WeightedCluster};
use crate::protect::limiters::{Limiter, Limiters};
use crate::protect::rate_limit::Limit;

/// How a header transform changes a header.
#[derive(Debug, Clone)]
pub enum TransformOp {
    Set(HeaderName, HeaderValue),
    Add(HeaderName, HeaderValue),
    Remove(HeaderName),
}

impl TransformOp {
    /// `None` when the name or value is not valid HTTP (the op is skipped, as in the original;
    /// the admin API refuses such a document, see `config::check`).
    pub(crate) fn compile(t: &HeaderTransform) -> Option<TransformOp> {
        let name = HeaderName::from_bytes(t.name.to_ascii_lowercase().as_bytes()).ok()?;
        match t.action.as_str() {
            "remove" => Some(TransformOp::Remove(name)),
            "add" => Some(TransformOp::Add(
                name,
                HeaderValue::from_str(&t.value).ok()?,
            )),
            _ => Some(TransformOp::Set(
                name,
                HeaderValue::from_str(&t.value).ok()?,
            )),
        }
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        match self {
            TransformOp::Set(n, v) => {
                headers.insert(n.clone(), v.clone());
            }
            TransformOp::Add(n, v) => {
                headers.append(n.clone(), v.clone());
            }
            TransformOp::Remove(n) => {
                headers.remove(n);
            }
        }
    }
}

/// One enabled route, compiled once and shared by every host it serves.
#[derive(Debug)]
pub struct Route {
    pub domain: Arc<str>,
    pub name: Arc<str>,
    pub uri: String,
    methods: Vec<Method>,
    headers: Vec<Matcher>,
    pub priority: i32,
    /// Insertion order: domain order × route order; breaks priority ties.
    pub order: usize,
    pub clusters: Vec<WeightedCluster>,
    pub override_header: Option<HeaderName>,
    pub request_transforms: Vec<TransformOp>,
    pub response_transforms: Vec<TransformOp>,
    pub max_body_bytes: Option<u64>,
    pub compression: bool,
    /// Retries may resend non-idempotent requests.
    pub retry_non_idempotent: bool,
    /// The route's rate limit, compiled.
    pub limit: Option<Limit>,
    /// Its state, kept across tables while the limit stays the same; set when the table is
    /// built for serving ([`RouteTable::build_serving`]).
    pub limiter: Option<Arc<Limiter>>,
}

impl Route {
    fn accepts(&self, method: &Method, headers: &dyn HeaderSource) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.headers.iter().all(|m| m.matches(headers))
    }
}

/// A route left out of the table, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    pub domain: String,
    pub route: String,
    pub reason: String,
}

#[derive(Debug, Default)]
struct Partition {
    tree: UriTree,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
    exact: HashMap<String, Partition>,
    /// Wildcard partitions in match order (see [`HostPattern::rank`]).
    wildcards: Vec<(HostPattern, Partition)>,
    /// Indexes into `wildcards`: `*.suffix` patterns by their `.suffix`, `prefix.*` patterns by
    /// their `prefix.`, so a lookup probes the host's own labels instead of every pattern.
    by_suffix: HashMap<String, usize>,
    by_prefix: HashMap<String, usize>,
    /// Wildcards that do not end or start at a label boundary (`*foo.com`, `*`): checked one by one.
    irregular: Vec<usize>,
    default: Option<Partition>,
    pub skipped: Vec<Skipped>,
    /// The domains compiled, for listings.
    pub domains: Vec<Arc<DomainConfig>>,
}

pub(crate) fn compile_route(domain: &str, r: &RouteConfig, order: usize) -> Result<Route, String> {
    if !r.uri.starts_with('/') {
        return Err(format!("uri {:?} does not start with '/'", r.uri));
    }
    if r.clusters.is_empty() {
        return Err("route has no clusters".into());
    }
    let headers = r
        .headers
        .iter()
        .map(Matcher::compile)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let methods = r
        .methods
        .iter()
        .map(|m| {
            Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("invalid method {m:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let override_header = match &r.cluster_override_header {
        Some(h) if !h.is_empty() => Some(
            HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("cluster_override_header {h:?} is not a header name"))?,
        ),
        _ => None,
    };
    Ok(Route {
        domain: domain.into(),
        name: r.name.as_str().into(),
        uri: r.uri.clone(),
        methods,
        headers,
        priority: r.priority,
        order,
        clusters: r.clusters.clone(),
        override_header,
        request_transforms: r
            .request_header_transforms
            .iter()
            .filter_map(TransformOp::compile)
            .collect(),
        response_transforms: r
            .response_header_transforms
            .iter()
            .filter_map(TransformOp::compile)
            .collect(),
        max_body_bytes: r.max_body_bytes,
        compression: r.enable_compression,
        retry_non_idempotent: r.retry_non_idempotent,
        limit: r.rate_limit.as_ref().map(Limit::compile),
        limiter: None,
    })
}

impl RouteTable {
    /// Compiles domains in the given order. Disabled routes are left out; routes that cannot be
    /// compiled are left out and listed in `skipped`.
    /// Every route of the domains this table was built from, disabled and skipped ones too:
    /// the original gateway's `total_routes` (contracts §7.15).
    pub fn configured_routes(&self) -> usize {
        self.domains.iter().map(|d| d.routes.len()).sum()
    }

    pub fn build(domains: &[Arc<DomainConfig>]) -> RouteTable {
        RouteTable::build_with(domains, None)
    }

    /// As [`RouteTable::build`], with each limited route given its limiter from `limiters`
    /// (the one it had while its limit is unchanged); limiters of routes gone are dropped.
    pub fn build_serving(domains: &[Arc<DomainConfig>], limiters: &Limiters) -> RouteTable {
        let table = RouteTable::build_with(domains, Some(limiters));
        let served = table
            .routes
            .iter()
            .filter(|r| r.limiter.is_some())
            .map(|r| (r.domain.clone(), r.name.clone()))
            .collect();
        limiters.retain(&served);
        table
    }

    fn build_with(domains: &[Arc<DomainConfig>], limiters: Option<&Limiters>) -> RouteTable {
        let mut table = RouteTable {
            domains: domains.to_vec(),
            ..RouteTable::default()
        };
        let mut wildcards: BTreeMap<
            (u8, std::cmp::Reverse<usize>, String),
            (HostPattern, Partition),
        > = BTreeMap::new();
        for domain in domains {
            for r in &domain.routes {
                if r.status != 1 {
                    continue;
                }
                let order = table.routes.len();
                let route = match compile_route(&domain.name, r, order) {
                    Ok(mut route) => {
                        if let (Some(limit), Some(limiters)) = (&route.limit, limiters) {
                            route.limiter =
                                Some(limiters.limiter(&route.domain, &route.name, limit));
                        }
                        route
                    }
                    Err(reason) => {
                        tracing::warn!(domain = %domain.name, route = %r.name, %reason, "route left out of the table");
                        table.skipped.push(Skipped {
                            domain: domain.name.clone(),
                            route: r.name.clone(),
                            reason,
                        });
                        continue;
                    }
                };
                table.routes.push(Arc::new(route));
                for host in &domain.hosts {
                    let pattern = HostPattern::parse(host);
                    let partition = match &pattern {
                        HostPattern::Default => {
                            table.default.get_or_insert_with(Partition::default)
                        }
                        HostPattern::Exact(h) => table.exact.entry(h.clone()).or_default(),
                        other => {
                            &mut wildcards
                                .entry(other.rank())
                                .or_insert_with(|| (other.clone(), Partition::default()))
                                .1
                        }
                    };
                    partition.tree.insert(&r.uri, order);
                }
            }
        }
        table.wildcards = wildcards.into_values().collect();
        for (i, (pattern, _)) in table.wildcards.iter().enumerate() {
            match pattern {
                HostPattern::Suffix(s) if s.starts_with('.') && s.len() > 1 => {
                    table.by_suffix.insert(s.clone(), i);
                }
                HostPattern::Prefix(p) if p.ends_with('.') && p.len() > 1 => {
                    table.by_prefix.insert(p.clone(), i);
                }
                _ => table.irregular.push(i),
            }
        }
        table
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    fn pick(
        &self,
        partition: &Partition,
        path: &str,
        method: &Method,
        headers: &dyn HeaderSource,
    ) -> Option<Arc<Route>> {
        partition.tree.first(path, |list| {
            list.iter()
                .map(|i| &self.routes[*i])
                .filter(|r| r.accepts(method, headers))
                .max_by_key(|r| (r.priority, std::cmp::Reverse(r.order)))
                .cloned()
        })
    }

    /// The route for a request; `host` must be normalized ([`super::host::normalize`]).
    pub fn find(
        &self,
        host: &str,
        path: &str,
        method: &Method,
        headers: &dyn HeaderSource,
    ) -> Option<Arc<Route>> {
        if let Some(p) = self.exact.get(host) {
            if let Some(r) = self.pick(p, path, method, headers) {
                return Some(r);
            }
        }
        if !self.wildcards.is_empty() {
            // The wildcard partitions that match, in rank order (their index order).
            let mut matching: Vec<usize> = Vec::new();
            for (i, _) in host.match_indices('.') {
                if let Some(&w) = self.by_suffix.get(&host[i..]) {
                    matching.push(w);
                }
                if let Some(&w) = self.by_prefix.get(&host[..=i]) {
                    matching.push(w);
                }
            }
            matching.extend(
                self.irregular
                    .iter()
                    .copied()
                    .filter(|w| self.wildcards[*w].0.matches(host)),
            );
            matching.sort_unstable();
            for w in matching {
                if let Some(r) = self.pick(&self.wildcards[w].1, path, method, headers) {
                    return Some(r);
                }
            }
        }
        self.default
            .as_ref()
            .and_then(|p| self.pick(p, path, method, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(domains: serde_json::Value) -> RouteTable {
        let domains: Vec<DomainConfig> = serde_json::from_value(domains).unwrap();
        RouteTable::build(&domains.into_iter().map(Arc::new).collect::<Vec<_>>())
    }

    fn find(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        t.find(host, path, &Method::GET, &HeaderMap::new())
            .map(|r| r.name.to_string())
    }

    fn route(name: &str, uri: &str, priority: i32) -> serde_json::Value {
        json!({"name": name, "uri": uri, "priority": priority, "clusters": [{"name": "c"}]})
    }

    #[test]
    fn hosts_exact_wildcards_and_default() {
        let t = table(json!([
            {"name": "d1", "hosts": ["exact.test.local"], "routes": [route("exact", "/*", 0)]},
            {"name": "d2", "hosts": ["*.example.com"], "routes": [route("suffix", "/*", 0)]},
            {"name": "d3", "hosts": ["*.a.example.com"], "routes": [route("deeper-suffix", "/*", 0)]},
            {"name": "d4", "hosts": ["api.*"], "routes": [route("prefix", "/*", 0)]},
            {"name": "d5", "hosts": ["_"], "routes": [route("default", "/*", 0)]},
        ]));
        assert_eq!(find(&t, "exact.test.local", "/x").as_deref(), Some("exact"));
        assert_eq!(find(&t, "sub.example.com", "/x").as_deref(), Some("suffix"));
        assert_eq!(
            find(&t, "x.a.example.com", "/x").as_deref(),
            Some("deeper-suffix"),
            "most specific wildcard wins"
        );
        assert_eq!(find(&t, "api.anything", "/x").as_deref(), Some("prefix"));
        assert_eq!(
            find(&t, "random.host.xyz", "/x").as_deref(),
            Some("default")
        );
        assert_eq!(find(&t, "example.com", "/x").as_deref(), Some("default"));
    }

    #[test]
    fn uri_priority_methods_headers_and_status() {
        let t = table(json!([{"name": "d", "hosts": ["h"], "routes": [
            route("health", "/v1/health", 100),
            route("v1", "/v1/*", 50),
            route("all", "/*", 1),
            route("v1-high", "/v1/*", 60),
            {"name": "post-only", "uri": "/form", "methods": ["post"], "clusters": [{"name": "c"}]},
            {"name": "v2", "uri": "/api/*", "priority": 100, "clusters": [{"name": "c"}],
             "headers": [{"name": "X-Version", "value": "v2"}]},
            {"name": "off", "uri": "/disabled/*", "status": 0, "clusters": [{"name": "c"}]},
        ]}]));
        assert_eq!(find(&t, "h", "/v1/health").as_deref(), Some("health"));
        assert_eq!(
            find(&t, "h", "/v1/users").as_deref(),
            Some("v1-high"),
            "priority among same level"
        );
        assert_eq!(find(&t, "h", "/other").as_deref(), Some("all"));
        assert_eq!(
            find(&t, "h", "/form").as_deref(),
            Some("all"),
            "GET falls back past a POST-only route"
        );
        assert_eq!(
            t.find("h", "/form", &Method::POST, &HeaderMap::new())
                .unwrap()
                .name
                .as_ref(),
            "post-only"
        );
        assert_eq!(
            find(&t, "h", "/api/x").as_deref(),
            Some("all"),
            "header matcher not satisfied"
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-version", "v2".parse().unwrap());
        assert_eq!(
            t.find("h", "/api/x", &Method::GET, &headers)
                .unwrap()
                .name
                .as_ref(),
            "v2"
        );
        assert_eq!(
            find(&t, "h", "/disabled/x").as_deref(),
            Some("all"),
            "disabled routes are not compiled"
        );
        assert_eq!(find(&t, "other", "/v1/health"), None);
    }

    #[test]
    fn bad_routes_are_skipped_not_fatal() {
        let t = table(json!([{"name": "d", "hosts": ["h"], "routes": [
            {"name": "bad", "uri": "/x", "clusters": [{"name": "c"}], "headers": [{"name": "a", "value": "(", "match_type": "regex"}]},
            route("good", "/*", 0),
        ]}]));
        assert_eq!(t.skipped.len(), 1);
        assert_eq!(find(&t, "h", "/x").as_deref(), Some("good"));
    }
}
