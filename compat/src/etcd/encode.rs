//! Encoding responses as etcd's gateway does: proto field names, 64-bit integers as strings,
//! bytes as base64, and every zero or empty field left out.

use base64::Engine as _;
use serde_json::{Map, Value};

use hermes_raft::Header;
use hermes_storage::mvcc::response::*;
use hermes_storage::{Event, EventType, KeyValue};

/// Builds one JSON object, skipping default values.
#[derive(Default)]
pub struct Out(Map<String, Value>);

impl Out {
    pub fn new() -> Self {
        Out(Map::new())
    }

    pub fn int(mut self, name: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::String(v.to_string()));
        }
        self
    }

    pub fn uint(mut self, name: &str, v: u64) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::String(v.to_string()));
        }
        self
    }

    pub fn bytes(mut self, name: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(
                name.into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
            );
        }
        self
    }

    pub fn flag(mut self, name: &str, v: bool) -> Self {
        if v {
            self.0.insert(name.into(), Value::Bool(true));
        }
        self
    }

    pub fn string(mut self, name: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(name.into(), Value::String(v.into()));
        }
        self
    }

    pub fn value(mut self, name: &str, v: Value) -> Self {
        let empty = match &v {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            self.0.insert(name.into(), v);
        }
        self
    }

    pub fn list(self, name: &str, items: impl IntoIterator<Item = Value>) -> Self {
        self.value(name, Value::Array(items.into_iter().collect()))
    }

    pub fn build(self) -> Value {
        Value::Object(self.0)
    }
}

pub fn header(h: &Header) -> Value {
    Out::new()
        .uint("cluster_id", h.cluster_id)
        .uint("member_id", h.member_id)
        .int("revision", h.revision)
        .uint("raft_term", h.raft_term)
        .build()
}

/// The header of a response nested in a transaction: only the revision.
fn nested_header(revision: i64) -> Value {
    Out::new().int("revision", revision).build()
}

pub fn kv(kv: &KeyValue) -> Value {
    Out::new()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .build()
}

pub fn event(e: &Event) -> Value {
    let kind = match e.kind {
        EventType::Put => "",
        EventType::Delete => "DELETE",
    };
    Out::new()
        .string("type", kind)
        .value("kv", kv(&e.kv))
        .value("prev_kv", e.prev_kv.as_ref().map_or(Value::Null, kv))
        .build()
}

fn range_body(out: Out, r: &RangeResponse) -> Value {
    out.list("kvs", r.kvs.iter().map(kv))
        .flag("more", r.more)
        .int("count", r.count)
        .build()
}

pub fn range(h: &Header, r: &RangeResponse) -> Value {
    range_body(Out::new().value("header", header(h)), r)
}

fn put_body(out: Out, r: &PutResponse) -> Value {
    out.value("prev_kv", r.prev_kv.as_ref().map_or(Value::Null, kv))
        .build()
}

pub fn put(h: &Header, r: &PutResponse) -> Value {
    put_body(Out::new().value("header", header(h)), r)
}

fn delete_body(out: Out, r: &DeleteRangeResponse) -> Value {
    out.int("deleted", r.deleted)
        .list("prev_kvs", r.prev_kvs.iter().map(kv))
        .build()
}

pub fn delete_range(h: &Header, r: &DeleteRangeResponse) -> Value {
    delete_body(Out::new().value("header", header(h)), r)
}

fn txn_body(out: Out, r: &TxnResponse) -> Value {
    let ops = r.responses.iter().map(|op| match op {
        ResponseOp::Range(x) => Out::new()
            .value(
                "response_range",
                range_body(Out::new().value("header", nested_header(x.revision)), x),
            )
            .build(),
        ResponseOp::Put(x) => Out::new()
            .value(
                "response_put",
                put_body(Out::new().value("header", nested_header(x.revision)), x),
            )
            .build(),
        ResponseOp::DeleteRange(x) => Out::new()
            .value(
                "response_delete_range",
                delete_body(Out::new().value("header", nested_header(x.revision)), x),
            )
            .build(),
        // etcd leaves a nested transaction's header empty (but present).
        ResponseOp::Txn(x) => {
            let mut header = Out::new();
            header.0.insert("header".into(), Value::Object(Map::new()));
            Out::new()
                .value("response_txn", txn_body(header, x))
                .build()
        }
    });
    out.flag("succeeded", r.succeeded)
        .list("responses", ops)
        .build()
}

pub fn txn(h: &Header, r: &TxnResponse) -> Value {
    txn_body(Out::new().value("header", header(h)), r)
}

/// A response with nothing but its header.
pub fn header_only(h: &Header) -> Value {
    Out::new().value("header", header(h)).build()
}

/// A streamed response line: `{"result": …}` and a newline.
pub fn stream_line(result: Value) -> bytes::Bytes {
    let mut line = serde_json::to_vec(&serde_json::json!({ "result": result })).unwrap_or_default();
    line.push(b'\n');
    bytes::Bytes::from(line)
}

/// A streamed error line, as etcd 3.4 writes one: the error object itself.
pub fn stream_error_line(e: &super::error::EtcdError) -> bytes::Bytes {
    let mut line = serde_json::to_vec(&e.body()).unwrap_or_default();
    line.push(b'\n');
    bytes::Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_fields_are_omitted_and_ints_are_strings() {
        let h = Header {
            cluster_id: 1,
            member_id: 2,
            revision: 0,
            raft_term: 3,
        };
        assert_eq!(
            header(&h),
            json!({"cluster_id": "1", "member_id": "2", "raft_term": "3"})
        );
        let v = kv(&KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            value: b"bar".to_vec(),
            lease: 0,
        });
        assert_eq!(
            v,
            json!({"key": "Zm9v", "create_revision": "2", "mod_revision": "3", "version": "2", "value": "YmFy"})
        );
        let empty = range(&h, &RangeResponse::default());
        assert_eq!(
            empty,
            json!({"header": {"cluster_id": "1", "member_id": "2", "raft_term": "3"}})
        );
    }
}
