//! The client nodes use to call each other: postcard bodies over a [`Transport`] (HTTP in
//! production), each call bounded in time, and errors that tell apart a request that never
//! left (safe to retry anywhere) from one whose outcome is unknown.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use hermes_storage::codec;

use crate::peer_auth::PeerAuth;
use crate::transport::{HttpTransport, Transport};

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

/// Calls other nodes: encodes the request, sends it over the node's [`Transport`] within a
/// deadline, decodes the answer.
#[derive(Clone)]
pub struct PeerClient {
    transport: Arc<dyn Transport>,
    auth: PeerAuth,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient").finish_non_exhaustive()
    }
}

impl PeerClient {
    /// Over HTTP, signed with `auth`'s cluster secret.
    pub fn new(auth: PeerAuth) -> Self {
        PeerClient {
            transport: Arc::new(HttpTransport::new(auth.clone())),
            auth,
        }
    }

    /// Over another transport; `auth` still checks what the peer listener receives.
    pub fn with_transport(transport: Arc<dyn Transport>, auth: PeerAuth) -> Self {
        PeerClient { transport, auth }
    }

    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    /// Sends `req` to `path` on the peer at `base_url` and decodes the answer.
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
        let url = || format!("{}{}", base_url.trim_end_matches('/'), path);
        let body = codec::encode(req).map_err(|e| PeerError::Decode {
            url: url(),
            message: format!("encoding request: {e}"),
        })?;
        let exchange = self.transport.call(base_url, path, Bytes::from(body));
        let bytes = match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(PeerError::Timeout {
                    url: url(),
                    timeout,
                })
            }
        };
        codec::decode(&bytes).map_err(|e| PeerError::Decode {
            url: url(),
            message: e.to_string(),
        })
    }
}
