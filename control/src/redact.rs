//! What a caller who may read configuration but not write it does not get to see: the values
//! of header transforms, which often carry upstream credentials (`Authorization: Bearer …`,
//! API keys). Writers see them (they could set them anyway), and so do holders of
//! `config:watch`, the original controller's scope, which copies documents to etcd whole.

use serde_json::Value;

use crate::model::Kind;
use crate::scopes::Scope;

/// What every redacted value reads as.
pub const REDACTED: &str = "<redacted>";

/// Whether a caller holding `scopes` sees header-transform values.
pub fn reveals_secrets(scopes: &[Scope]) -> bool {
    scopes.contains(&Scope::ConfigWrite) || scopes.contains(&Scope::ConfigWatch)
}

/// Replaces every header-transform value of a domain document (`routes[].request_header_
/// transforms[].value`, and the response side) with [`REDACTED`]. Clusters carry none.
pub fn redact(kind: Kind, doc: &mut Value) {
    if kind != Kind::Domain {
        return;
    }
    let Some(routes) = doc.get_mut("routes").and_then(Value::as_array_mut) else {
        return;
    };
    for route in routes {
        for side in ["request_header_transforms", "response_header_transforms"] {
            let Some(ops) = route.get_mut(side).and_then(Value::as_array_mut) else {
                continue;
            };
            for op in ops {
                if let Some(value) = op.get_mut("value").filter(|v| !v.is_null()) {
                    *value = Value::String(REDACTED.into());
                }
            }
        }
    }
}

/// [`redact`] unless the caller's `scopes` reveal secrets.
pub fn for_caller(kind: Kind, mut doc: Value, scopes: &[Scope]) -> Value {
    if !reveals_secrets(scopes) {
        redact(kind, &mut doc);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn transform_values_are_hidden_from_readers_only() {
        let doc = json!({"name": "d", "routes": [
            {"name": "r", "request_header_transforms": [
                {"name": "authorization", "value": "Bearer s3cret", "action": "set"},
                {"name": "x-drop", "action": "remove"}],
             "response_header_transforms": [{"name": "x-k", "value": "k"}]},
            {"name": "plain"}]});
        let reader = for_caller(Kind::Domain, doc.clone(), &[Scope::ConfigRead]);
        let r = &reader["routes"][0];
        assert_eq!(r["request_header_transforms"][0]["value"], REDACTED);
        assert!(r["request_header_transforms"][1].get("value").is_none());
        assert_eq!(r["response_header_transforms"][0]["value"], REDACTED);
        assert!(!reader.to_string().contains("s3cret"));
        for scopes in [
            [Scope::ConfigRead, Scope::ConfigWrite],
            [Scope::ConfigRead, Scope::ConfigWatch],
        ] {
            assert_eq!(for_caller(Kind::Domain, doc.clone(), &scopes), doc);
        }
        let cluster = json!({"name": "c", "nodes": []});
        assert_eq!(for_caller(Kind::Cluster, cluster.clone(), &[]), cluster);
    }
}
