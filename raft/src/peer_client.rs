//! The HTTP client nodes use to call each other: postcard bodies, signed with the cluster
//! secret, over pooled keep-alive connections. It tells apart a request that never left
//! (safe to retry anywhere) from one whose outcome is unknown.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use hermes_storage::codec;

use crate::peer_auth::{PeerAuth, HEADER};

pub const CONTENT_TYPE: &str = "application/x-hermes-postcard";

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The request did not reach the peer (no connection could be made).
    #[error("peer {url} unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The request may or may not have been processed.
    #[error("peer {url} failed mid-request: {message}")]
    Interrupted { url: String, message: String },
    #[error("peer {url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("peer {url} answered HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("peer {url} sent an undecodable answer: {message}")]
    Decode { url: String, message: String },
}

impl PeerError {
    /// True when the peer certainly did not act on the request.
    pub fn not_sent(&self) -> bool {
        matches!(self, PeerError::Unreachable { .. })
            || matches!(
                self,
                PeerError::Status {
                    status: 401 | 404,
                    ..
                }
            )
    }
}

#[derive(Clone, Debug)]
pub struct PeerClient {
    http: Client<HttpConnector, Full<Bytes>>,
    auth: PeerAuth,
}

impl PeerClient {
    pub fn new(auth: PeerAuth) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build(connector);
        PeerClient { http, auth }
    }

    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// POSTs `req` to `base_url` + `path` and decodes the answer.
    pub async fn call<Req, Resp>(
        &self,
        base_url: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let url = format!("{}{}", base_url.trim_end_matches('/'), path);
        let body = codec::encode(req).map_err(|e| PeerError::Decode {
            url: url.clone(),
            message: format!("encoding request: {e}"),
        })?;
        let mut builder =
            http::Request::post(&url).header(http::header::CONTENT_TYPE, CONTENT_TYPE);
        if let Some(sig) = self.auth.sign("POST", path, &body) {
            builder = builder.header(HEADER, sig);
        }
        let request =
            builder
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| PeerError::Unreachable {
                    url: url.clone(),
                    message: format!("invalid peer URL: {e}"),
                })?;
        let exchange = async {
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
                    url: url.clone(),
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                });
            }
            codec::decode(&bytes).map_err(|e| PeerError::Decode {
                url: url.clone(),
                message: e.to_string(),
            })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout {
                url: url.clone(),
                timeout,
            }),
        }
    }
}
