//! The Watch service over HTTP: the request body is a stream of `create_request`,
//! `cancel_request` and `progress_request` objects; the response is a stream of
//! `{"result": WatchResponse}` lines. The stream itself is [`super::watch_session`].

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use serde_json::Value;
use tokio::sync::mpsc;

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::watch::WatchOptions;

use super::body::JsonStream;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::rbac::Caller;
use super::watch_session::{self, WatchCommand, WatchOut};
use super::Api;

pub async fn watch(
    State(api): State<Api>,
    Extension(who): Extension<Caller>,
    body: Body,
) -> Response {
    let (lines_tx, lines_rx) = mpsc::channel::<bytes::Bytes>(64);
    let requests = futures_util::stream::unfold(JsonStream::new(body), |mut body| async move {
        let next = body.next().await?;
        Some((next.and_then(|v| command(&v)), body))
    });
    let mut rx = watch_session::start(&api, who, Box::pin(requests));
    tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                out = rx.recv() => match out {
                    Some(out) => out,
                    None => return,
                },
                // The client went away (the response body was dropped): dropping `rx` ends the
                // session and gives its watchers' places back at once, not at the next event.
                _ = lines_tx.closed() => return,
            };
            let line = match out {
                Ok(out) => encode::stream_line(response(&api, &out)),
                Err(e) => encode::stream_error_line(&e),
            };
            if lines_tx.send(line).await.is_err() {
                return;
            }
        }
    });
    super::stream_response(lines_rx)
}

fn response(api: &Api, o: &WatchOut) -> Value {
    Out::new()
        .value("header", encode::header(&api.header(o.revision)))
        .int("watch_id", o.watch_id)
        .flag("created", o.created)
        .flag("canceled", o.canceled)
        .int("compact_revision", o.compact_revision)
        .string("cancel_reason", &o.cancel_reason)
        .flag("fragment", o.fragment)
        .list("events", o.events.iter().map(encode::event))
        .build()
}

fn command(v: &Value) -> Result<WatchCommand, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.WatchRequest",
        &["create_request", "cancel_request", "progress_request"],
    )?;
    if let Some(create) = o.object("create_request") {
        let c = Obj::new(
            create,
            "etcdserverpb.WatchCreateRequest",
            &[
                "key",
                "range_end",
                "start_revision",
                "progress_notify",
                "filters",
                "prev_kv",
                "watch_id",
                "fragment",
            ],
        )?;
        let mut opts = WatchOptions {
            range: KeyRange::new(c.bytes("key")?, c.bytes("range_end")?),
            start_revision: c.i64("start_revision")?,
            prev_kv: c.bool("prev_kv")?,
            ..Default::default()
        };
        for filter in c.array("filters")? {
            match filter {
                Value::String(s) if s == "NOPUT" => opts.filter_put = true,
                Value::String(s) if s == "NODELETE" => opts.filter_delete = true,
                Value::Number(n) if n.as_u64() == Some(0) => opts.filter_put = true,
                Value::Number(n) if n.as_u64() == Some(1) => opts.filter_delete = true,
                other => {
                    return Err(EtcdError::invalid(format!(
                        "unknown value {other} for enum etcdserverpb.WatchCreateRequest_FilterType"
                    )))
                }
            }
        }
        return Ok(WatchCommand::Create {
            opts,
            progress_notify: c.bool("progress_notify")?,
            fragment: c.bool("fragment")?,
            watch_id: c.i64("watch_id")?,
        });
    }
    if let Some(cancel) = o.object("cancel_request") {
        let c = Obj::new(cancel, "etcdserverpb.WatchCancelRequest", &["watch_id"])?;
        return Ok(WatchCommand::Cancel {
            watch_id: c.i64("watch_id")?,
        });
    }
    if o.object("progress_request").is_some() || v.get("progress_request").is_some() {
        return Ok(WatchCommand::Progress);
    }
    Err(EtcdError::invalid(
        "etcdserverpb.WatchRequest: no request given",
    ))
}
