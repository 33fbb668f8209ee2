//! Decoding etcd JSON requests the way etcd's gateway does (protojson): field names in proto
//! spelling or lowerCamelCase, int64 as JSON strings or numbers, enums by name or number, bytes
//! as base64, `null` as the default. Unlike etcd, an unknown field is an error, so a typo never
//! silently turns into a different request.

use base64::Engine as _;
use serde_json::{Map, Value};

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::*;

use super::error::EtcdError;

/// One JSON object being decoded as the proto message `message`.
pub struct Obj<'a> {
    map: Option<&'a Map<String, Value>>,
    message: &'static str,
}

fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl<'a> Obj<'a> {
    /// `value` must be an object (or null, meaning all defaults); `fields` are its proto names.
    pub fn new(
        value: &'a Value,
        message: &'static str,
        fields: &[&str],
    ) -> Result<Self, EtcdError> {
        let map = match value {
            Value::Null => None,
            Value::Object(map) => Some(map),
            other => {
                return Err(EtcdError::invalid(format!(
                    "{message}: expected a JSON object, got {}",
                    kind(other)
                )))
            }
        };
        if let Some(map) = map {
            for name in map.keys() {
                if !fields.iter().any(|f| f == name || camel(f) == *name) {
                    return Err(EtcdError::invalid(format!(
                        "unknown field \"{name}\" in {message}"
                    )));
                }
            }
        }
        Ok(Obj { map, message })
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        let map = self.map?;
        map.get(field)
            .or_else(|| map.get(&camel(field)))
            .filter(|v| !v.is_null())
    }

    fn wrong(&self, field: &str, want: &str, got: &Value) -> EtcdError {
        EtcdError::invalid(format!(
            "{}.{field}: expected {want}, got {}",
            self.message,
            kind(got)
        ))
    }

    pub fn bytes(&self, field: &str) -> Result<Vec<u8>, EtcdError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| {
                        EtcdError::invalid(format!("{}.{field}: invalid base64: {e}", self.message))
                    })
            }
            Some(other) => Err(self.wrong(field, "a base64 string", other)),
        }
    }

    /// A proto `int64` field (0 when absent), a number or a decimal string as in proto3 JSON.
    pub fn i64(&self, field: &str) -> Result<i64, EtcdError> {
        self.integer(field, serde_json::Number::as_i64, "a 64-bit integer")
    }

    /// A proto `uint64` field (0 when absent), a number or a decimal string as in proto3 JSON.
    pub fn u64(&self, field: &str) -> Result<u64, EtcdError> {
        self.integer(
            field,
            serde_json::Number::as_u64,
            "an unsigned 64-bit integer",
        )
    }

    fn integer<T: std::str::FromStr + Default>(
        &self,
        field: &str,
        from_number: fn(&serde_json::Number) -> Option<T>,
        what: &str,
    ) -> Result<T, EtcdError> {
        match self.get(field) {
            None => Ok(T::default()),
            Some(Value::Number(n)) => from_number(n).ok_or_else(|| {
                EtcdError::invalid(format!("{}.{field}: {n} is not {what}", self.message))
            }),
            Some(Value::String(s)) => s.parse::<T>().map_err(|_| {
                EtcdError::invalid(format!("{}.{field}: \"{s}\" is not {what}", self.message))
            }),
            Some(other) => Err(self.wrong(field, "an integer", other)),
        }
    }

    /// A proto `string` field (empty when absent).
    pub fn string(&self, field: &str) -> Result<String, EtcdError> {
        match self.get(field) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(self.wrong(field, "a string", other)),
        }
    }

    pub fn bool(&self, field: &str) -> Result<bool, EtcdError> {
        match self.get(field) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(field, "true or false", other)),
        }
    }

    /// An enum given by name or number; returns its index in `names`.
    pub fn enumeration(
        &self,
        field: &str,
        enum_name: &str,
        names: &[&str],
    ) -> Result<usize, EtcdError> {
        let unknown = |v: &dyn std::fmt::Display| {
            EtcdError::invalid(format!("unknown value {v} for enum {enum_name}"))
        };
        match self.get(field) {
            None => Ok(0),
            Some(Value::String(s)) => names
                .iter()
                .position(|n| n == s)
                .ok_or_else(|| unknown(&format!("\"{s}\""))),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|i| i as usize)
                .filter(|i| *i < names.len())
                .ok_or_else(|| unknown(n)),
            Some(other) => Err(self.wrong(field, "an enum name or number", other)),
        }
    }

    pub fn array(&self, field: &str) -> Result<&'a [Value], EtcdError> {
        match self.get(field) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong(field, "an array", other)),
        }
    }

    /// A nested message, if present.
    pub fn object(&self, field: &str) -> Option<&'a Value> {
        self.get(field)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// etcd's `--max-request-bytes` default.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;

fn key_range(o: &Obj<'_>) -> Result<KeyRange, EtcdError> {
    Ok(KeyRange::new(o.bytes("key")?, o.bytes("range_end")?))
}

pub fn range_request(v: &Value) -> Result<RangeRequest, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.RangeRequest",
        &[
            "key",
            "range_end",
            "limit",
            "revision",
            "sort_order",
            "sort_target",
            "serializable",
            "keys_only",
            "count_only",
            "min_mod_revision",
            "max_mod_revision",
            "min_create_revision",
            "max_create_revision",
        ],
    )?;
    let sort_order = match o.enumeration(
        "sort_order",
        "etcdserverpb.RangeRequest_SortOrder",
        &["NONE", "ASCEND", "DESCEND"],
    )? {
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        _ => SortOrder::None,
    };
    let sort_target = match o.enumeration(
        "sort_target",
        "etcdserverpb.RangeRequest_SortTarget",
        &["KEY", "VERSION", "CREATE", "MOD", "VALUE"],
    )? {
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        _ => SortTarget::Key,
    };
    Ok(RangeRequest {
        range: key_range(&o)?,
        limit: o.i64("limit")?,
        revision: o.i64("revision")?,
        sort_order,
        sort_target,
        serializable: o.bool("serializable")?,
        keys_only: o.bool("keys_only")?,
        count_only: o.bool("count_only")?,
        min_mod_revision: o.i64("min_mod_revision")?,
        max_mod_revision: o.i64("max_mod_revision")?,
        min_create_revision: o.i64("min_create_revision")?,
        max_create_revision: o.i64("max_create_revision")?,
    })
}

pub fn put_request(v: &Value) -> Result<PutRequest, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.PutRequest",
        &[
            "key",
            "value",
            "lease",
            "prev_kv",
            "ignore_value",
            "ignore_lease",
        ],
    )?;
    Ok(PutRequest {
        key: o.bytes("key")?,
        value: o.bytes("value")?,
        lease: o.i64("lease")?,
        prev_kv: o.bool("prev_kv")?,
        ignore_value: o.bool("ignore_value")?,
        ignore_lease: o.bool("ignore_lease")?,
    })
}

pub fn delete_range_request(v: &Value) -> Result<DeleteRangeRequest, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.DeleteRangeRequest",
        &["key", "range_end", "prev_kv"],
    )?;
    Ok(DeleteRangeRequest {
        range: key_range(&o)?,
        prev_kv: o.bool("prev_kv")?,
    })
}

fn compare(v: &Value) -> Result<Compare, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.Compare",
        &[
            "result",
            "target",
            "key",
            "version",
            "create_revision",
            "mod_revision",
            "value",
            "lease",
            "range_end",
        ],
    )?;
    let result = match o.enumeration(
        "result",
        "etcdserverpb.Compare_CompareResult",
        &["EQUAL", "GREATER", "LESS", "NOT_EQUAL"],
    )? {
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        _ => CompareResult::Equal,
    };
    let target = match o.enumeration(
        "target",
        "etcdserverpb.Compare_CompareTarget",
        &["VERSION", "CREATE", "MOD", "VALUE", "LEASE"],
    )? {
        1 => CompareTarget::Create(o.i64("create_revision")?),
        2 => CompareTarget::Mod(o.i64("mod_revision")?),
        3 => CompareTarget::Value(o.bytes("value")?),
        4 => CompareTarget::Lease(o.i64("lease")?),
        _ => CompareTarget::Version(o.i64("version")?),
    };
    Ok(Compare {
        result,
        target,
        range: key_range(&o)?,
    })
}

fn request_op(v: &Value) -> Result<RequestOp, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.RequestOp",
        &[
            "request_range",
            "request_put",
            "request_delete_range",
            "request_txn",
        ],
    )?;
    let mut ops = Vec::new();
    if let Some(r) = o.object("request_range") {
        ops.push(RequestOp::Range(range_request(r)?));
    }
    if let Some(p) = o.object("request_put") {
        ops.push(RequestOp::Put(put_request(p)?));
    }
    if let Some(d) = o.object("request_delete_range") {
        ops.push(RequestOp::DeleteRange(delete_range_request(d)?));
    }
    if let Some(t) = o.object("request_txn") {
        ops.push(RequestOp::Txn(txn_request(t)?));
    }
    match ops.len() {
        1 => Ok(ops.remove(0)),
        0 => Err(EtcdError::invalid(
            "etcdserverpb.RequestOp: no request given",
        )),
        _ => Err(EtcdError::invalid(
            "etcdserverpb.RequestOp: more than one request in one op",
        )),
    }
}

pub fn txn_request(v: &Value) -> Result<TxnRequest, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.TxnRequest",
        &["compare", "success", "failure"],
    )?;
    let list = |field: &str| -> Result<Vec<RequestOp>, EtcdError> {
        o.array(field)?.iter().map(request_op).collect()
    };
    Ok(TxnRequest {
        compare: o
            .array("compare")?
            .iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: list("success")?,
        failure: list("failure")?,
    })
}

/// Approximate encoded size of a write, for etcd's request-size limit.
pub fn request_size(cmd: &Command) -> usize {
    fn range(r: &KeyRange) -> usize {
        r.key.len() + r.range_end.len() + 8
    }
    fn op(o: &RequestOp) -> usize {
        match o {
            RequestOp::Range(r) => range(&r.range) + 16,
            RequestOp::Put(p) => p.key.len() + p.value.len() + 24,
            RequestOp::DeleteRange(d) => range(&d.range) + 8,
            RequestOp::Txn(t) => txn(t),
        }
    }
    fn txn(t: &TxnRequest) -> usize {
        t.compare
            .iter()
            .map(|c| {
                range(&c.range)
                    + match &c.target {
                        CompareTarget::Value(v) => v.len() + 8,
                        _ => 16,
                    }
            })
            .sum::<usize>()
            + t.success.iter().chain(&t.failure).map(op).sum::<usize>()
    }
    match cmd {
        Command::Put(p) => p.key.len() + p.value.len() + 32,
        Command::DeleteRange(d) => range(&d.range) + 16,
        Command::Txn(t) => txn(t) + 16,
        Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } | Command::Compact { .. } => 32,
        Command::Batch(cmds) => cmds.iter().map(request_size).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_proto_and_camel_names_strings_and_numbers() {
        let r = range_request(&json!({
            "key": "Zm9v", "rangeEnd": "Zm9w", "limit": "2", "revision": 5,
            "sortOrder": "DESCEND", "sort_target": 3, "keys_only": true
        }))
        .unwrap();
        assert_eq!(r.range.key, b"foo");
        assert_eq!(r.range.range_end, b"fop");
        assert_eq!((r.limit, r.revision), (2, 5));
        assert_eq!(
            (r.sort_order, r.sort_target),
            (SortOrder::Descend, SortTarget::Mod)
        );
        assert!(r.keys_only);
    }

    #[test]
    fn rejects_unknown_fields_bad_types_and_bad_base64() {
        let unknown = put_request(&json!({"key": "YQ==", "valeu": "Yg=="})).unwrap_err();
        assert!(unknown.message.contains("\"valeu\""), "{}", unknown.message);
        let wrong = put_request(&json!({"key": 5})).unwrap_err();
        assert!(
            wrong.message.contains("PutRequest.key"),
            "{}",
            wrong.message
        );
        let b64 = put_request(&json!({"key": "!!!"})).unwrap_err();
        assert!(b64.message.contains("base64"), "{}", b64.message);
        let int = put_request(&json!({"key": "YQ==", "lease": "x"})).unwrap_err();
        assert!(int.message.contains("lease"), "{}", int.message);
        let en = range_request(&json!({"key": "YQ==", "sort_order": "SIDEWAYS"})).unwrap_err();
        assert!(en.message.contains("SortOrder"), "{}", en.message);
        assert!(range_request(&json!([])).is_err());
    }

    #[test]
    fn txn_with_docs_spelling() {
        // The example from etcd's gateway documentation.
        let t = txn_request(&json!({
            "compare": [{"key": "Zm9v", "result": "EQUAL", "target": "CREATE", "createRevision": "0"}],
            "success": [{"requestPut": {"key": "Zm9v", "value": "YmFy"}}],
            "failure": [{"request_range": {"key": "Zm9v"}}]
        }))
        .unwrap();
        assert_eq!(t.compare[0].target, CompareTarget::Create(0));
        assert!(matches!(t.success[0], RequestOp::Put(_)));
        assert!(matches!(t.failure[0], RequestOp::Range(_)));
        assert!(txn_request(&json!({"success": [{}]})).is_err());
    }
}
