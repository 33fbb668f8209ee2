//! Maintenance and Cluster services: status, alarms (NOSPACE while the store is over its
//! quota) and the member list.

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::body::read_json;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::Api;

/// The etcd API version this endpoint implements (clients gate features on it).
pub const ETCD_VERSION: &str = "3.5.0";

fn reply(result: Result<Value, EtcdError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn status(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            Obj::new(&v, "etcdserverpb.StatusRequest", &[])?;
            let info = api.node.info();
            let size = info.db_size as i64;
            Ok(Out::new()
                .value("header", encode::header(&api.node.header(info.revision)))
                .string("version", ETCD_VERSION)
                .int("dbSize", size)
                .uint("leader", info.leader.unwrap_or(0))
                .uint("raftIndex", info.last_log_index)
                .uint("raftTerm", info.term)
                .uint("raftAppliedIndex", info.applied_index)
                .int("dbSizeInUse", size)
                .flag("isLearner", info.role == "learner")
                .build())
        }
        .await,
    )
}

/// The alarm list: NOSPACE while the store is over its quota (`etcdctl endpoint health` and
/// `etcdctl alarm list` read it).
pub async fn alarm(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(
                &v,
                "etcdserverpb.AlarmRequest",
                &["action", "memberID", "alarm"],
            )?;
            o.enumeration(
                "action",
                "etcdserverpb.AlarmRequest_AlarmAction",
                &["GET", "ACTIVATE", "DEACTIVATE"],
            )?;
            o.i64("memberID")?;
            o.enumeration(
                "alarm",
                "etcdserverpb.AlarmType",
                &["NONE", "NOSPACE", "CORRUPT"],
            )?;
            // The quota's alarm is raised and cleared by the store's size itself: asking to
            // deactivate it changes nothing, as etcd answers after a disarm while still full.
            // With no alarm, etcd 3.4's gateway answers an empty object.
            if !api.node.over_quota() {
                return Ok(Out::new().build());
            }
            let revision = api.node.store().revision();
            let alarm = Out::new()
                .uint("memberID", api.node.id())
                .string("alarm", "NOSPACE")
                .build();
            Ok(Out::new()
                .value("header", encode::header(&api.node.header(revision)))
                .list("alarms", [alarm])
                .build())
        }
        .await,
    )
}

pub async fn member_list(State(api): State<Api>, body: Body) -> Response {
    reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.MemberListRequest", &["linearizable"])?;
            o.bool("linearizable")?;
            let members = api.node.members().await;
            let list = members.iter().map(|m| {
                let client_urls: Vec<Value> = m
                    .info
                    .as_ref()
                    .and_then(|i| i.etcd_url.clone())
                    .into_iter()
                    .map(Value::String)
                    .collect();
                Out::new()
                    .uint("ID", m.id)
                    .string("name", &format!("hermes-{}", m.id))
                    .list("peerURLs", [Value::String(m.peer_url.clone())])
                    .list("clientURLs", client_urls)
                    .flag("isLearner", !m.voter)
                    .build()
            });
            // etcd leaves the revision out of a member list header.
            Ok(Out::new()
                .value("header", encode::header(&api.node.header(0)))
                .list("members", list)
                .build())
        }
        .await,
    )
}
