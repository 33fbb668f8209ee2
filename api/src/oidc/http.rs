//! The HTTP client the OpenID Connect library talks to the provider with: the node's own
//! hyper client (no second HTTP stack in the build), TLS verified against the web PKI roots,
//! redirects never followed (a redirected token request could leak the client secret), a
//! deadline on every exchange and a cap on what the provider may send back.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The original's discovery timeout, used for every exchange with the provider.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Discovery documents, key sets and token responses are small; anything larger is refused.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request to the identity provider failed: {0}")]
    Request(String),
    #[error("the identity provider did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the identity provider's answer exceeds {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// The status and body of the provider's last answer, for the API to pass through: the token
/// response verbatim, the provider's status on a failed refresh (as the original did).
#[derive(Debug, Default)]
pub struct Capture {
    status: AtomicU16,
    body: Mutex<Vec<u8>>,
}

impl Capture {
    pub fn status(&self) -> u16 {
        self.status.load(Ordering::Relaxed)
    }

    pub fn body(&self) -> Vec<u8> {
        self.body.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

pub type ExchangeFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send>,
>;

/// The provider's certificate is always verified against the web PKI roots: unlike an
/// upstream's, there is no setting that turns verification off.
fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring supports every default protocol version; this cannot fail.
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[derive(Clone)]
pub struct ProviderClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProviderClient")
    }
}

impl ProviderClient {
    pub fn new() -> ProviderClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        ProviderClient {
            client: Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https),
        }
    }

    /// The function the OpenID Connect library sends requests with; its futures own what
    /// they use, so handlers that await them stay `Send`.
    pub fn exchanger(
        &self,
        capture: Option<Arc<Capture>>,
    ) -> impl Fn(openidconnect::HttpRequest) -> ExchangeFuture + Send + Sync {
        let client = self.clone();
        move |request| {
            let client = client.clone();
            let capture = capture.clone();
            Box::pin(async move { client.send(request, capture).await })
        }
    }

    /// One exchange; the answer is also left in `capture` when one is given.
    async fn send(
        &self,
        request: openidconnect::HttpRequest,
        capture: Option<Arc<Capture>>,
    ) -> Result<openidconnect::HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Request(super::provider::error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        HttpError::TooLarge
                    } else {
                        HttpError::Request(e.to_string())
                    }
                })?
                .to_bytes();
            if let Some(c) = &capture {
                c.status.store(parts.status.as_u16(), Ordering::Relaxed);
                if let Ok(mut b) = c.body.lock() {
                    *b = body.to_vec();
                }
            }
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout(TIMEOUT))?
    }
}
