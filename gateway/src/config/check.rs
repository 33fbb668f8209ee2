//! The gateway's verdict on a document before anyone stores it. The admin API asks here after
//! its own validation, so nothing it accepts is later refused, skipped or changed by the
//! gateway: the document must parse as the gateway parses documents from the store, every
//! route must compile (disabled ones too, since they can be enabled later by a flag), and every
//! header transform must be one the proxy can apply rather than skip.

use serde_json::Value;

use super::types::{ClusterConfig, DomainConfig};
use crate::routing::table::{compile_route, TransformOp};

/// Why the gateway would not serve a document as written.
pub fn domain(doc: &Value) -> Result<(), String> {
    let d: DomainConfig = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    if d.hosts.is_empty() {
        return Err("domain has no hosts".into());
    }
    for (i, route) in d.routes.iter().enumerate() {
        let at = |what: String| format!("routes[{i}]: {what}");
        compile_route(&d.name, route, i).map_err(at)?;
        for (side, list) in [
            (
                "request_header_transforms",
                &route.request_header_transforms,
            ),
            (
                "response_header_transforms",
                &route.response_header_transforms,
            ),
        ] {
            for (j, t) in list.iter().enumerate() {
                if TransformOp::compile(t).is_none() {
                    return Err(at(format!(
                        "{side}[{j}]: {:?} with value {:?} is not a header the proxy can send",
                        t.name, t.value
                    )));
                }
            }
        }
    }
    Ok(())
}

pub fn cluster(doc: &Value) -> Result<(), String> {
    let c: ClusterConfig = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    for (i, node) in c.nodes.iter().enumerate() {
        // The Host header `pass_host: node` sends, and the pool's key.
        let authority = if node.host.contains(':') && !node.host.starts_with('[') {
            format!("[{}]:{}", node.host, node.port)
        } else {
            format!("{}:{}", node.host, node.port)
        };
        http::HeaderValue::from_str(&authority)
            .map_err(|_| format!("nodes[{i}]: {authority:?} is not a header value"))?;
    }
    if let Some(h) = c.upstream_host.as_deref().filter(|h| !h.is_empty()) {
        http::HeaderValue::from_str(h)
            .map_err(|_| format!("upstream_host {h:?} is not a header value"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_the_gateway_would_skip_or_refuse_are_named() {
        let route = |extra: Value| {
            let mut r = json!({"name": "r", "uri": "/", "clusters": [{"name": "c"}]});
            r.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"name": "d", "hosts": ["h"], "routes": [r]})
        };
        assert_eq!(domain(&route(json!({}))), Ok(()));
        for bad in [
            json!({"uri": "no-slash"}),
            json!({"headers": [{"name": "x", "value": "(", "match_type": "regex"}]}),
            json!({"request_header_transforms": [{"name": "bad name", "value": "v"}]}),
            json!({"response_header_transforms": [{"name": "x", "value": "a\r\nb"}]}),
            json!({"status": 0, "uri": "nope"}),
            json!({"cluster_override_header": "not a header"}),
        ] {
            assert!(domain(&route(bad.clone())).is_err(), "{bad}");
        }
        assert_eq!(
            cluster(&json!({"name": "c", "nodes": [{"host": "::1", "port": 80}]})),
            Ok(())
        );
        assert!(cluster(&json!({"name": "c", "nodes": [{"host": "a\nb", "port": 80}]})).is_err());
        assert!(cluster(&json!({"name": "c", "timeout": {"read": 1e308}})).is_err());
    }
}
