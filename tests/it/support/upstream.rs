//! A small real HTTP upstream for gateway tests, on its own runtime thread: it echoes what it
//! saw as JSON, streams large downloads, counts streamed uploads, and echoes WebSocket messages.

use std::collections::BTreeMap;
use std::convert::Infallible;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use super::background::Background;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub struct Upstream {
    pub port: u16,
    /// When not 0, every plain request is answered with this status.
    status: Arc<AtomicU16>,
    /// Requests answered.
    served: Arc<AtomicU64>,
    _server: Background,
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// What a test may change about how the upstream answers, and what it counts.
#[derive(Clone)]
struct Knobs {
    status: Arc<AtomicU16>,
    served: Arc<AtomicU64>,
}

async fn serve(
    name: String,
    knobs: Knobs,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    knobs.served.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let forced = knobs.status.load(Ordering::Relaxed);
    if forced != 0 {
        let body = serde_json::json!({"upstream": name, "status": forced});
        let resp = Response::builder()
            .status(forced)
            .header("content-type", "application/json")
            .header("x-upstream", name.as_str())
            .body(full(body.to_string()))
            .unwrap();
        return Ok(resp);
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let chunks = (0..total.div_ceil(chunk.len())).map(move |i| {
            let len = (total - i * chunk.len()).min(chunk.len());
            Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
        });
        let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks)));
        return Ok(Response::new(body));
    }
    if path == "/upload" {
        // The declared length too, to tell a body sent with its length from a chunked one.
        let length = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = req.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => received += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        let answer = serde_json::json!({"received": received, "length": length});
        return Ok(Response::new(full(answer.to_string())));
    }
    if path == "/ws" {
        let key = req.headers().get("sec-websocket-key").cloned();
        let on_upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        });
        let accept = key
            .map(|k| tokio_tungstenite::tungstenite::handshake::derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let resp = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", accept)
            .body(full(""))
            .unwrap();
        return Ok(resp);
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = serde_json::json!({
        "upstream": name,
        "method": req.method().as_str(),
        "path": path,
        "query": req.uri().query(),
        // The request target as sent: a gateway must use the origin form.
        "target": req.uri().to_string(),
        "headers": headers,
    });
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-upstream", name.as_str())
        .header("connection", "x-hop")
        .header("x-hop", "must not reach the client")
        .body(full(body.to_string() + &" ".repeat(2000)))
        .unwrap();
    Ok(resp)
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let name = name.to_string();
        let knobs = Knobs {
            status: Arc::default(),
            served: Arc::default(),
        };
        let (status, served) = (knobs.status.clone(), knobs.served.clone());
        let server = Background::start(move |stream| {
            let (name, knobs) = (name.clone(), knobs.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req| serve(name.clone(), knobs.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        });
        Upstream {
            port: server.port,
            status,
            served,
            _server: server,
        }
    }
}

impl Upstream {
    /// Answers every plain request with `status` from now on; 0 goes back to echoing.
    pub fn answer_with(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Requests it has answered so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}
