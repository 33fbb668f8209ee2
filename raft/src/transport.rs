//! How a node reaches its peers, behind one small trait: a postcard-encoded request to a path
//! on the peer at a URL, answered with a postcard-encoded body ([`crate::peer_client`] encodes,
//! decodes and bounds the call in time). In production it is HTTP ([`HttpTransport`], signed
//! with the cluster secret); the in-process cluster tests under `raft/tests/` route calls
//! straight to the other nodes' [`crate::peer_dispatch::dispatch`], and drop, delay or
//! partition them on purpose.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::peer_auth::{audience_of, PeerAuth, HEADER};
use crate::peer_client::{PeerError, CONTENT_TYPE};

/// One call in flight.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, PeerError>> + Send + 'a>>;

pub trait Transport: Send + Sync + 'static {
    /// Sends `body` to `path` on the peer whose peer URL is `url`, and returns its answer. No
    /// deadline here: the caller bounds the call.
    fn call<'a>(&'a self, url: &'a str, path: &'a str, body: Bytes) -> CallFuture<'a>;
}

/// The production transport: HTTP/1.1 POSTs over pooled keep-alive connections, each signed
/// with the cluster secret when there is one. It tells apart a request that never left (no
/// connection: safe to retry anywhere) from one whose outcome is unknown.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    http: Client<HttpConnector, Full<Bytes>>,
    auth: PeerAuth,
}

impl HttpTransport {
    pub fn new(auth: PeerAuth) -> HttpTransport {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(connector);
        HttpTransport { http, auth }
    }

    async fn post(&self, base_url: &str, path: &str, body: Bytes) -> Result<Bytes, PeerError> {
        let url = format!("{}{}", base_url.trim_end_matches('/'), path);
        let mut builder =
            http::Request::post(&url).header(http::header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(sig) = self.auth.sign("POST", path, &audience_of(base_url), &body) {
            builder = builder.header(HEADER, sig);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| PeerError::Unreachable {
                url: url.clone(),
                message: format!("invalid peer URL: {e}"),
            })?;
        let resp = self.http.request(request).await.map_err(|e| {
            if e.is_connect() {
                PeerError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                }
            } else {
                PeerError::Interrupted {
                    url: url.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| PeerError::Interrupted {
                url: url.clone(),
                message: e.to_string(),
            })?
            .to_bytes();
        if !status.is_success() {
            return Err(PeerError::Status {
                url,
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        Ok(bytes)
    }
}

impl Transport for HttpTransport {
    fn call<'a>(&'a self, url: &'a str, path: &'a str, body: Bytes) -> CallFuture<'a> {
        Box::pin(self.post(url, path, body))
    }
}
