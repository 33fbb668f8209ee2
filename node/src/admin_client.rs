//! A small JSON client for a node's admin API, used by the operator CLI and by `--join`.
//! Changes are signed with the cluster secret when one is given.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use hermes_raft::peer_auth::{PeerAuth, HEADER};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} did not answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} sent invalid JSON: {message}")]
    Decode { url: String, message: String },
}

pub struct AdminClient {
    base: String,
    auth: PeerAuth,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(base: &str, auth: PeerAuth) -> Self {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            auth,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    pub async fn get(&self, path: &str, timeout: Duration) -> Result<Value, ClientError> {
        self.send("GET", path, None, timeout).await
    }

    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        self.send("POST", path, Some(body), timeout).await
    }

    pub async fn delete(&self, path: &str, timeout: Duration) -> Result<Value, ClientError> {
        self.send("DELETE", path, None, timeout).await
    }

    /// A GET whose answer is not JSON (a backup): its bytes.
    pub async fn download(&self, path: &str, timeout: Duration) -> Result<Bytes, ClientError> {
        let url = format!("{}{}", self.base, path);
        let (status, body) = self.exchange("GET", path, None, timeout).await?;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(ClientError::Status {
            url,
            status: status.as_u16(),
            message,
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let (status, body) = self.exchange(method, path, body, timeout).await?;
        let value: Value = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            url: url.clone(),
            message: format!("{e}: {}", String::from_utf8_lossy(&body)),
        })?;
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| value.to_string(), str::to_string);
            return Err(ClientError::Status {
                url,
                status: status.as_u16(),
                message,
            });
        }
        Ok(value)
    }

    /// Sends one request (signed when a secret is set) and reads the whole answer.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, Bytes), ClientError> {
        let url = format!("{}{}", self.base, path);
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(sig) = self.auth.sign(method, path, "", &bytes) {
            req = req.header(HEADER, sig);
        }
        let req =
            req.body(Full::new(Bytes::from(bytes)))
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ClientError::Unreachable {
                    url: url.clone(),
                    message: e.to_string(),
                })?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                timeout,
            })?
    }
}
