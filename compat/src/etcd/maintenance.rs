//! Maintenance and Cluster services: status, alarms (NOSPACE while the store is over its
//! quota), leader moves and the member list.

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::body::read_json;
use super::decode::Obj;
use super::encode::{self, Out};
use super::rbac::Caller;
use super::Api;

/// The etcd API version this endpoint implements (clients gate features on it).
pub const ETCD_VERSION: &str = "3.5.0";

pub async fn status(State(api): State<Api>, body: Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            Obj::new(&v, "etcdserverpb.StatusRequest", &[])?;
            let (header, st) = api.status();
            Ok(Out::new()
                .value("header", encode::header(&header))
                .string("version", st.version)
                .int("dbSize", st.db_size)
                .uint("leader", st.leader)
                .uint("raftIndex", st.raft_index)
                .uint("raftTerm", st.raft_term)
                .uint("raftAppliedIndex", st.raft_applied_index)
                .int("dbSizeInUse", st.db_size)
                .flag("isLearner", st.is_learner)
                .build())
        }
        .await,
    )
}

/// `MoveLeader` (etcdctl `move-leader`): hands raft leadership to `targetID`.
pub async fn move_leader(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.MoveLeaderRequest", &["targetID"])?;
            let header = api.move_leader(&who, o.u64("targetID")?).await?;
            Ok(Out::new().value("header", encode::header(&header)).build())
        }
        .await,
    )
}

/// `POST /v3/maintenance/snapshot`: the backup of [`Api::snapshot`] as etcd's gateway streams
/// a snapshot, one `{"result": {"header", "remaining_bytes", "blob"}}` line per 32 KiB chunk.
pub async fn snapshot(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    let result = async {
        let v = read_json(body).await?;
        Obj::new(&v, "etcdserverpb.SnapshotRequest", &[])?;
        api.snapshot(&who).await
    }
    .await;
    let (header, bytes) = match result {
        Ok(answer) => answer,
        Err(e) => return super::reply(Err(e)),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let total = bytes.len();
        let mut sent = 0;
        for blob in bytes.chunks(SNAPSHOT_CHUNK) {
            sent += blob.len();
            let line = encode::stream_line(
                Out::new()
                    .value("header", encode::header(&header))
                    .uint("remaining_bytes", (total - sent) as u64)
                    .bytes("blob", blob)
                    .build(),
            );
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    super::stream_response(rx)
}

/// Bytes per snapshot message, as etcd sends them.
pub const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// The alarm list: NOSPACE while the store is over its quota (`etcdctl endpoint health` and
/// `etcdctl alarm list` read it).
pub async fn alarm(State(api): State<Api>, body: Body) -> Response {
    super::reply(
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
            // With no alarm, etcd 3.4's gateway answers an empty object.
            let (header, raised) = api.alarms();
            if raised.is_empty() {
                return Ok(Out::new().build());
            }
            let alarms = raised.iter().map(|member| {
                Out::new()
                    .uint("memberID", *member)
                    .string("alarm", "NOSPACE")
                    .build()
            });
            Ok(Out::new()
                .value("header", encode::header(&header))
                .list("alarms", alarms)
                .build())
        }
        .await,
    )
}

pub async fn member_list(State(api): State<Api>, body: Body) -> Response {
    super::reply(
        async {
            let v = read_json(body).await?;
            let o = Obj::new(&v, "etcdserverpb.MemberListRequest", &["linearizable"])?;
            o.bool("linearizable")?;
            let (header, members) = api.member_list().await;
            let list = members.iter().map(|m| {
                Out::new()
                    .uint("ID", m.id)
                    .string("name", &m.name)
                    .list("peerURLs", m.peer_urls.iter().cloned().map(Value::String))
                    .list(
                        "clientURLs",
                        m.client_urls.iter().cloned().map(Value::String),
                    )
                    .flag("isLearner", m.is_learner)
                    .build()
            });
            Ok(Out::new()
                .value("header", encode::header(&header))
                .list("members", list)
                .build())
        }
        .await,
    )
}
