//! etcd's protobuf messages to and from the store's request and response types (the same types
//! the JSON gateway decodes into and encodes from). An enum number etcd does not define is
//! refused, as the JSON gateway refuses an unknown enum name.

use etcd_client::proto::{
    PbCompare, PbDeleteRequest, PbDeleteResponse, PbEvent, PbKeyValue, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbResponseHeader, PbResponseOp, PbTargetUnion, PbTxnOpRequest,
    PbTxnOpResponse, PbTxnRequest, PbTxnRequestOp, PbTxnResponse,
};

use hermes_raft::Header;
use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::mvcc::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    SortOrder, SortTarget, TxnRequest,
};
use hermes_storage::mvcc::response::{
    DeleteRangeResponse, PutResponse, RangeResponse, ResponseOp, TxnResponse,
};
use hermes_storage::{Event, EventType, KeyValue};

use crate::etcd::error::EtcdError;

fn unknown_enum(name: &str, value: i32) -> EtcdError {
    EtcdError::invalid(format!("unknown value {value} for enum {name}"))
}

pub fn header(h: &Header) -> Option<PbResponseHeader> {
    Some(PbResponseHeader {
        cluster_id: h.cluster_id,
        member_id: h.member_id,
        revision: h.revision,
        raft_term: h.raft_term,
    })
}

/// A response nested in a transaction carries only the revision in its header.
fn nested_header(revision: i64) -> Option<PbResponseHeader> {
    Some(PbResponseHeader {
        revision,
        ..PbResponseHeader::default()
    })
}

pub fn kv(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

pub fn event(e: Event) -> PbEvent {
    PbEvent {
        r#type: match e.kind {
            EventType::Put => 0,
            EventType::Delete => 1,
        },
        kv: Some(kv(e.kv)),
        prev_kv: e.prev_kv.map(kv),
    }
}

pub fn range_request(r: PbRangeRequest) -> Result<RangeRequest, EtcdError> {
    let sort_order = match r.sort_order {
        0 => SortOrder::None,
        1 => SortOrder::Ascend,
        2 => SortOrder::Descend,
        n => return Err(unknown_enum("etcdserverpb.RangeRequest_SortOrder", n)),
    };
    let sort_target = match r.sort_target {
        0 => SortTarget::Key,
        1 => SortTarget::Version,
        2 => SortTarget::Create,
        3 => SortTarget::Mod,
        4 => SortTarget::Value,
        n => return Err(unknown_enum("etcdserverpb.RangeRequest_SortTarget", n)),
    };
    Ok(RangeRequest {
        range: KeyRange::new(r.key, r.range_end),
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

pub fn put_request(p: PbPutRequest) -> PutRequest {
    PutRequest {
        key: p.key,
        value: p.value,
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

pub fn delete_request(d: PbDeleteRequest) -> DeleteRangeRequest {
    DeleteRangeRequest {
        range: KeyRange::new(d.key, d.range_end),
        prev_kv: d.prev_kv,
    }
}

fn compare(c: PbCompare) -> Result<Compare, EtcdError> {
    let result = match c.result {
        0 => CompareResult::Equal,
        1 => CompareResult::Greater,
        2 => CompareResult::Less,
        3 => CompareResult::NotEqual,
        n => return Err(unknown_enum("etcdserverpb.Compare_CompareResult", n)),
    };
    // The union holds the operand; one that does not match the target reads as its zero
    // value, as etcd's generated getters read it.
    let union = c.target_union;
    let int = |want: fn(&PbTargetUnion) -> Option<i64>| union.as_ref().and_then(want).unwrap_or(0);
    let target = match c.target {
        0 => CompareTarget::Version(int(|u| match u {
            PbTargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        1 => CompareTarget::Create(int(|u| match u {
            PbTargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        2 => CompareTarget::Mod(int(|u| match u {
            PbTargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        3 => CompareTarget::Value(match union {
            Some(PbTargetUnion::Value(v)) => v,
            _ => Vec::new(),
        }),
        4 => CompareTarget::Lease(int(|u| match u {
            PbTargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        n => return Err(unknown_enum("etcdserverpb.Compare_CompareTarget", n)),
    };
    Ok(Compare {
        result,
        target,
        range: KeyRange::new(c.key, c.range_end),
    })
}

fn request_op(op: PbTxnRequestOp) -> Result<RequestOp, EtcdError> {
    match op.request {
        Some(PbTxnOpRequest::RequestRange(r)) => Ok(RequestOp::Range(range_request(r)?)),
        Some(PbTxnOpRequest::RequestPut(p)) => Ok(RequestOp::Put(put_request(p))),
        Some(PbTxnOpRequest::RequestDeleteRange(d)) => {
            Ok(RequestOp::DeleteRange(delete_request(d)))
        }
        Some(PbTxnOpRequest::RequestTxn(t)) => Ok(RequestOp::Txn(txn_request(t)?)),
        None => Err(EtcdError::invalid(
            "etcdserverpb.RequestOp: no request given",
        )),
    }
}

pub fn txn_request(t: PbTxnRequest) -> Result<TxnRequest, EtcdError> {
    let ops = |list: Vec<PbTxnRequestOp>| -> Result<Vec<RequestOp>, EtcdError> {
        list.into_iter().map(request_op).collect()
    };
    Ok(TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: ops(t.success)?,
        failure: ops(t.failure)?,
    })
}

fn range_body(header: Option<PbResponseHeader>, r: RangeResponse) -> PbRangeResponse {
    PbRangeResponse {
        header,
        kvs: r.kvs.into_iter().map(kv).collect(),
        more: r.more,
        count: r.count,
    }
}

pub fn range_response(h: &Header, r: RangeResponse) -> PbRangeResponse {
    range_body(header(h), r)
}

fn put_body(header: Option<PbResponseHeader>, r: PutResponse) -> PbPutResponse {
    PbPutResponse {
        header,
        prev_kv: r.prev_kv.map(kv),
    }
}

pub fn put_response(h: &Header, r: PutResponse) -> PbPutResponse {
    put_body(header(h), r)
}

fn delete_body(header: Option<PbResponseHeader>, r: DeleteRangeResponse) -> PbDeleteResponse {
    PbDeleteResponse {
        header,
        deleted: r.deleted,
        prev_kvs: r.prev_kvs.into_iter().map(kv).collect(),
    }
}

pub fn delete_response(h: &Header, r: DeleteRangeResponse) -> PbDeleteResponse {
    delete_body(header(h), r)
}

fn txn_body(header: Option<PbResponseHeader>, r: TxnResponse) -> PbTxnResponse {
    let responses = r.responses.into_iter().map(|op| {
        let response = match op {
            ResponseOp::Range(x) => {
                PbTxnOpResponse::ResponseRange(range_body(nested_header(x.revision), x))
            }
            ResponseOp::Put(x) => {
                PbTxnOpResponse::ResponsePut(put_body(nested_header(x.revision), x))
            }
            ResponseOp::DeleteRange(x) => {
                PbTxnOpResponse::ResponseDeleteRange(delete_body(nested_header(x.revision), x))
            }
            // etcd leaves a nested transaction's header empty (but present).
            ResponseOp::Txn(x) => {
                PbTxnOpResponse::ResponseTxn(txn_body(Some(PbResponseHeader::default()), x))
            }
        };
        PbResponseOp {
            response: Some(response),
        }
    });
    PbTxnResponse {
        header,
        succeeded: r.succeeded,
        responses: responses.collect(),
    }
}

pub fn txn_response(h: &Header, r: TxnResponse) -> PbTxnResponse {
    txn_body(header(h), r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_read_their_operand_from_the_matching_union_arm() {
        let c = |target, union| PbCompare {
            result: 0,
            target,
            key: b"k".to_vec(),
            range_end: Vec::new(),
            target_union: union,
        };
        let t = txn_request(PbTxnRequest {
            compare: vec![
                c(1, Some(PbTargetUnion::CreateRevision(7))),
                c(2, Some(PbTargetUnion::Version(3))),
                c(3, Some(PbTargetUnion::Value(b"v".to_vec()))),
            ],
            success: Vec::new(),
            failure: Vec::new(),
        })
        .unwrap();
        assert_eq!(t.compare[0].target, CompareTarget::Create(7));
        assert_eq!(t.compare[1].target, CompareTarget::Mod(0));
        assert_eq!(t.compare[2].target, CompareTarget::Value(b"v".to_vec()));
    }

    #[test]
    fn unknown_enums_and_empty_ops_are_refused() {
        let bad_sort = PbRangeRequest {
            key: b"k".to_vec(),
            sort_order: 9,
            ..Default::default()
        };
        let e = range_request(bad_sort).unwrap_err();
        assert!(e.message.contains("SortOrder"), "{}", e.message);
        let empty_op = PbTxnRequest {
            compare: Vec::new(),
            success: vec![PbTxnRequestOp { request: None }],
            failure: Vec::new(),
        };
        assert!(txn_request(empty_op).is_err());
    }
}
