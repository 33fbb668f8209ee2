//! Registering this gateway in Consul (contracts/hermes.md §7.17, the original's
//! `[registration]`), so that load balancers or other services that read Consul find it: the
//! proxy's address as service `<name>` with a TTL check, passed every half TTL; a failed pass
//! (the agent restarted and forgot the service, say) registers again; at shutdown the service
//! is deregistered.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::watch;

use crate::discovery::ConsulSettings;

/// The check's TTL: Consul marks the service critical this long after the last pass.
pub const TTL: Duration = Duration::from_secs(15);
/// A critical service is removed by Consul after this long.
const DEREGISTER_AFTER: Duration = Duration::from_secs(60);
/// How long one call to the agent may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub service: String,
    /// The address and port the proxy is reached at.
    pub address: String,
    pub port: u16,
}

impl Registration {
    /// `<service>:<address>:<port>`, the original's service (and check) id.
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.service, self.address, self.port)
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Keeps the registration until `stop`, then deregisters.
pub async fn keep(settings: ConsulSettings, me: Registration, mut stop: watch::Receiver<bool>) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(CALL_TIMEOUT));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build(connector);
    let id = me.id();
    let mut registered = false;
    loop {
        if !registered {
            match register(&client, &settings, &me).await {
                Ok(()) => {
                    tracing::info!(service = %me.service, %id, "registered in Consul");
                    registered = true;
                }
                Err(e) => tracing::warn!(%id, error = %e, "registering in Consul failed; retrying"),
            }
        }
        if registered {
            let path = format!("/v1/agent/check/pass/{}", encode(&id));
            if let Err(e) = call(&client, &settings, &path, None).await {
                tracing::warn!(%id, error = %e, "Consul check pass failed; registering again");
                registered = false;
                continue;
            }
        }
        let pause = if registered {
            TTL / 2
        } else {
            Duration::from_secs(2)
        };
        let stopped = tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if stopped || *stop.borrow() {
            break;
        }
    }
    let path = format!("/v1/agent/service/deregister/{}", encode(&id));
    match call(&client, &settings, &path, None).await {
        Ok(()) => tracing::info!(%id, "deregistered from Consul"),
        Err(e) => {
            tracing::warn!(%id, error = %e, "deregistering from Consul failed; its check expires")
        }
    }
}

async fn register(
    client: &HttpClient,
    settings: &ConsulSettings,
    me: &Registration,
) -> Result<(), String> {
    let id = me.id();
    let body = json!({
        "ID": id,
        "Name": me.service,
        "Address": me.address,
        "Port": me.port,
        "Check": {
            "CheckID": id,
            "Name": format!("Service '{}' TTL Status", me.service),
            "TTL": format!("{}s", TTL.as_secs()),
            "DeregisterCriticalServiceAfter": format!("{}s", DEREGISTER_AFTER.as_secs()),
        },
    });
    call(
        client,
        settings,
        "/v1/agent/service/register",
        Some(body.to_string()),
    )
    .await
}

/// A `PUT` to the agent; `Ok` on a 2xx answer.
async fn call(
    client: &HttpClient,
    settings: &ConsulSettings,
    path: &str,
    body: Option<String>,
) -> Result<(), String> {
    let url = format!("{}{path}", settings.address.trim_end_matches('/'));
    let mut req = http::Request::put(&url).header("content-type", "application/json");
    if let Some(token) = &settings.token {
        req = req.header("x-consul-token", token);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(CALL_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer in time"))?
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let text = tokio::time::timeout(CALL_TIMEOUT, resp.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| {
            String::from_utf8_lossy(&b.to_bytes())
                .chars()
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_default();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}: {text}"))
    }
}

fn encode(s: &str) -> String {
    crate::discovery::encode(s)
}
