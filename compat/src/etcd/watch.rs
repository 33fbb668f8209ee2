//! The Watch service over HTTP: the request body is a stream of `create_request`,
//! `cancel_request` and `progress_request` objects; the response is a stream of
//! `{"result": WatchResponse}` lines. Several watchers share one stream by `watch_id`. Like
//! etcd, the stream stays open after the request body ends, until the client disconnects.

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use serde_json::Value;
use tokio::sync::mpsc;

use hermes_storage::mvcc::key_value::KeyRange;
use hermes_storage::watch::{WatchItem, WatchOptions, Watcher};

use super::body::JsonStream;
use super::decode::Obj;
use super::encode::{self, Out};
use super::error::EtcdError;
use super::Api;

/// etcd's default interval between progress notifications for watchers that asked for them.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

struct Active {
    id: i64,
    watcher: Watcher,
    progress_notify: bool,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
}

pub async fn watch(State(api): State<Api>, body: Body) -> Response {
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(session(api, JsonStream::new(body), tx));
    super::stream_response(rx)
}

enum Step {
    Request(Option<Result<Value, EtcdError>>),
    Item(usize, Result<WatchItem, hermes_storage::StoreError>),
    ProgressTick,
    Stop,
}

/// One client's watch stream; ends when the client goes away or the node shuts down.
async fn session(api: Api, mut requests: JsonStream, tx: mpsc::Sender<bytes::Bytes>) {
    let mut watchers: Vec<Active> = Vec::new();
    let mut next_id: i64 = 0;
    let mut input_open = true;
    let mut shutdown = api.shutdown.clone();
    let mut ticker = tokio::time::interval(api.progress_interval);
    ticker.tick().await;
    loop {
        let step = {
            let pending = watchers
                .iter_mut()
                .enumerate()
                .map(|(i, w)| Box::pin(async move { (i, w.watcher.next().await) }));
            let any_item = async {
                if pending.len() == 0 {
                    std::future::pending::<(usize, Result<WatchItem, hermes_storage::StoreError>)>()
                        .await
                } else {
                    futures_util::future::select_all(pending).await.0
                }
            };
            tokio::select! {
                req = requests.next(), if input_open => Step::Request(req),
                (i, item) = any_item => Step::Item(i, item),
                _ = ticker.tick() => Step::ProgressTick,
                _ = tx.closed() => Step::Stop,
                _ = shutdown.changed() => Step::Stop,
            }
        };
        let lines = match step {
            Step::Stop => return,
            Step::Request(None) => {
                // etcd ignores the half-close: watchers keep running until the client leaves.
                input_open = false;
                Vec::new()
            }
            Step::Request(Some(Err(e))) => {
                let _ = tx.send(encode::stream_error_line(&e)).await;
                return;
            }
            Step::Request(Some(Ok(v))) => {
                match handle_request(&api, &v, &mut watchers, &mut next_id) {
                    Ok(lines) => lines,
                    Err(e) => {
                        let _ = tx.send(encode::stream_error_line(&e)).await;
                        return;
                    }
                }
            }
            Step::Item(i, item) => item_lines(&api, &mut watchers, i, item),
            Step::ProgressTick => progress_lines(&api, &mut watchers),
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
    }
}

fn response(api: &Api, revision: i64, id: i64) -> Out {
    Out::new()
        .value("header", encode::header(&api.node.header(revision)))
        .int("watch_id", id)
}

fn handle_request(
    api: &Api,
    v: &Value,
    watchers: &mut Vec<Active>,
    next_id: &mut i64,
) -> Result<Vec<bytes::Bytes>, EtcdError> {
    let o = Obj::new(
        v,
        "etcdserverpb.WatchRequest",
        &["create_request", "cancel_request", "progress_request"],
    )?;
    let store = api.node.store();
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
        let progress_notify = c.bool("progress_notify")?;
        c.bool("fragment")?;
        let requested = c.i64("watch_id")?;
        let id = if requested != 0 {
            requested
        } else {
            while watchers.iter().any(|w| w.id == *next_id) {
                *next_id += 1;
            }
            *next_id
        };
        if watchers.iter().any(|w| w.id == id) {
            return Ok(vec![encode::stream_line(
                response(api, store.revision(), id)
                    .flag("created", true)
                    .flag("canceled", true)
                    .string("cancel_reason", "etcdserver: duplicate watch ID")
                    .build(),
            )]);
        }
        if requested == 0 {
            *next_id += 1;
        }
        let created = encode::stream_line(
            response(api, store.revision(), id)
                .flag("created", true)
                .build(),
        );
        if opts.start_revision < 0 {
            // etcd treats a negative start as compacted history.
            return Ok(vec![
                created,
                compacted_line(api, id, store.compact_revision()),
            ]);
        }
        watchers.push(Active {
            id,
            watcher: Watcher::new(store.clone(), opts),
            progress_notify,
            sent_since_tick: false,
        });
        return Ok(vec![created]);
    }
    if let Some(cancel) = o.object("cancel_request") {
        let c = Obj::new(cancel, "etcdserverpb.WatchCancelRequest", &["watch_id"])?;
        let id = c.i64("watch_id")?;
        let before = watchers.len();
        watchers.retain(|w| w.id != id);
        if watchers.len() == before {
            return Ok(Vec::new());
        }
        return Ok(vec![encode::stream_line(
            response(api, store.revision(), id)
                .flag("canceled", true)
                .build(),
        )]);
    }
    if o.object("progress_request").is_some() || v.get("progress_request").is_some() {
        // All earlier events of every watcher on this stream have been sent up to here.
        let revision = watchers
            .iter()
            .map(|w| w.watcher.progress_revision())
            .min()
            .unwrap_or_else(|| store.revision());
        return Ok(vec![encode::stream_line(
            response(api, revision, -1).build(),
        )]);
    }
    Err(EtcdError::invalid(
        "etcdserverpb.WatchRequest: no request given",
    ))
}

fn compacted_line(api: &Api, id: i64, compact_revision: i64) -> bytes::Bytes {
    encode::stream_line(
        response(api, 0, id)
            .flag("canceled", true)
            .int("compact_revision", compact_revision)
            .build(),
    )
}

fn item_lines(
    api: &Api,
    watchers: &mut Vec<Active>,
    i: usize,
    item: Result<WatchItem, hermes_storage::StoreError>,
) -> Vec<bytes::Bytes> {
    let Some(active) = watchers.get_mut(i) else {
        return Vec::new();
    };
    let id = active.id;
    match item {
        Ok(WatchItem::Events(events)) => {
            let events = super::hidden::visible(events);
            if events.is_empty() {
                return Vec::new();
            }
            active.sent_since_tick = true;
            // The revision up to which this watcher has now delivered everything.
            let revision = active.watcher.progress_revision();
            vec![encode::stream_line(
                response(api, revision, id)
                    .list("events", events.iter().map(encode::event))
                    .build(),
            )]
        }
        Ok(WatchItem::Compacted { compact_revision }) => {
            watchers.remove(i);
            vec![compacted_line(api, id, compact_revision)]
        }
        Err(e) => {
            tracing::error!(error = %e, watch_id = id, "watch failed reading history");
            watchers.remove(i);
            vec![encode::stream_line(
                response(api, api.node.store().revision(), id)
                    .flag("canceled", true)
                    .string("cancel_reason", "etcdserver: internal storage error")
                    .build(),
            )]
        }
    }
}

fn progress_lines(api: &Api, watchers: &mut [Active]) -> Vec<bytes::Bytes> {
    let mut lines = Vec::new();
    for w in watchers.iter_mut() {
        if w.progress_notify && !w.sent_since_tick && w.watcher.is_synced() {
            lines.push(encode::stream_line(
                response(api, w.watcher.progress_revision(), w.id).build(),
            ));
        }
        w.sent_since_tick = false;
    }
    lines
}
