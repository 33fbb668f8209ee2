//! A small Consul stand-in (Consul is not packaged for this machine): its health endpoint as
//! Consul's HTTP API documents it. `GET /v1/health/service/<name>` answers the registered
//! instances as `[{"Node", "Service", "Checks"}]` with `X-Consul-Index`; `passing=true` keeps
//! instances whose checks all pass; `dc` other than the instance's datacenter finds none; with
//! `index` at or past the current one the query blocks until something changes or `wait`
//! passes (a blocking query); an ACL token is required when one is set. A test can make it
//! fail every query (an outage).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::background::Background;

#[derive(Default)]
struct State {
    /// Instances by service, by instance id.
    services: BTreeMap<String, BTreeMap<String, Value>>,
    index: u64,
    down: bool,
    token: Option<String>,
    /// `index` of every query asked, in order.
    asked: Vec<u64>,
    /// Services registered through the agent API, by id, with their TTL check's passes.
    agent: BTreeMap<String, (Value, u64)>,
}

pub struct FakeConsul {
    pub port: u16,
    state: Arc<Mutex<State>>,
    changed: watch::Sender<u64>,
    _server: Background,
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

async fn serve(
    state: Arc<Mutex<State>>,
    mut changed: watch::Receiver<u64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let answer = |status: u16, body: String, index: u64| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("x-consul-index", index.to_string())
            .body(Full::new(Bytes::from(body)))
            .unwrap())
    };
    if req.method() == hyper::Method::PUT {
        let is_register = path == "/v1/agent/service/register";
        let body = http_body_util::BodyExt::collect(req.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut s = state.lock().unwrap();
        if is_register {
            let Ok(service) = serde_json::from_slice::<Value>(&body) else {
                return answer(400, "bad service".into(), 0);
            };
            let id = service["ID"].as_str().unwrap_or_default().to_string();
            s.agent.insert(id, (service, 0));
            return answer(200, String::new(), s.index);
        }
        if let Some(id) = path.strip_prefix("/v1/agent/check/pass/") {
            return match s.agent.get_mut(&percent_decode(id)) {
                Some((_, passes)) => {
                    *passes += 1;
                    answer(200, String::new(), s.index)
                }
                None => answer(404, "CheckID does not have associated TTL".into(), s.index),
            };
        }
        if let Some(id) = path.strip_prefix("/v1/agent/service/deregister/") {
            s.agent.remove(&percent_decode(id));
            return answer(200, String::new(), s.index);
        }
        return answer(404, "not found".into(), 0);
    }
    let Some(service) = path.strip_prefix("/v1/health/service/") else {
        return answer(404, "not found".into(), 0);
    };
    let asked: u64 = query_param(&query, "index")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let wait = query_param(&query, "wait")
        .and_then(|v| v.trim_end_matches('s').parse::<u64>().ok())
        .unwrap_or(300);
    {
        let mut s = state.lock().unwrap();
        s.asked.push(asked);
        if s.down {
            return answer(500, "rpc error: no cluster leader".into(), 0);
        }
        if let Some(token) = &s.token {
            let sent = req
                .headers()
                .get("x-consul-token")
                .and_then(|v| v.to_str().ok());
            if sent != Some(token.as_str()) {
                return answer(403, "ACL not found".into(), 0);
            }
        }
    }
    // A blocking query: wait for a change past `asked`, at most `wait` seconds.
    if asked > 0 {
        let _ = tokio::time::timeout(
            Duration::from_secs(wait),
            changed.wait_for(|index| *index > asked),
        )
        .await;
    }
    let s = state.lock().unwrap();
    if s.down {
        return answer(500, "rpc error: no cluster leader".into(), 0);
    }
    let passing = query_param(&query, "passing") == Some("true");
    let dc = query_param(&query, "dc").unwrap_or("dc1");
    let found: Vec<Value> = s
        .services
        .get(service)
        .map(|instances| {
            instances
                .values()
                .filter(|i| i["Node"]["Datacenter"] == dc)
                .filter(|i| {
                    !passing
                        || i["Checks"]
                            .as_array()
                            .is_none_or(|c| c.iter().all(|c| c["Status"] == "passing"))
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    answer(200, Value::Array(found).to_string(), s.index)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeConsul {
    pub fn start() -> FakeConsul {
        let state = Arc::new(Mutex::new(State {
            index: 1,
            ..State::default()
        }));
        let (changed, _) = watch::channel(1u64);
        let (st, ch) = (state.clone(), changed.clone());
        let server = Background::start(move |stream| {
            let (st, rx) = (st.clone(), ch.subscribe());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| serve(st.clone(), rx.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        });
        FakeConsul {
            port: server.port,
            state,
            changed,
            _server: server,
        }
    }

    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn change(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap();
        f(&mut s);
        s.index += 1;
        let index = s.index;
        drop(s);
        self.changed.send_replace(index);
    }

    /// Registers (or replaces) instance `id` of `service` at 127.0.0.1:`port`, with `meta`
    /// and the health of its check.
    pub fn register(&self, service: &str, id: &str, port: u16, meta: Value, passing: bool) {
        let instance = json!({
            "Node": {"Node": format!("node-{id}"), "Address": "127.0.0.1", "Datacenter": "dc1"},
            "Service": {"ID": id, "Service": service, "Address": "", "Port": port, "Meta": meta},
            "Checks": [{"CheckID": "serfHealth", "Status": if passing { "passing" } else { "critical" }}],
        });
        self.change(|s| {
            s.services
                .entry(service.to_string())
                .or_default()
                .insert(id.to_string(), instance);
        });
    }

    pub fn deregister(&self, service: &str, id: &str) {
        self.change(|s| {
            if let Some(instances) = s.services.get_mut(service) {
                instances.remove(id);
            }
        });
    }

    /// Every query fails (500) while `down`.
    pub fn set_down(&self, down: bool) {
        self.change(|s| s.down = down);
    }

    pub fn require_token(&self, token: &str) {
        self.change(|s| s.token = Some(token.to_string()));
    }

    /// Services registered through the agent API: id → (definition, check passes).
    pub fn agent_services(&self) -> BTreeMap<String, (Value, u64)> {
        self.state.lock().unwrap().agent.clone()
    }

    /// Forgets every agent registration (as an agent that restarted).
    pub fn forget_agent_services(&self) {
        self.state.lock().unwrap().agent.clear();
    }

    /// The `index` of every query asked so far.
    pub fn asked(&self) -> Vec<u64> {
        self.state.lock().unwrap().asked.clone()
    }
}
