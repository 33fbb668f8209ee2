//! The HTTP client of one TLS cluster (plain-HTTP clusters use [`super::pool`]): its own
//! connection pool (`keepalive_pool`), TCP connect timeout, and TLS with ALPN (h2 when the
//! upstream offers it, else HTTP/1.1). `tls_verify` checks certificates against the Mozilla roots (webpki-roots); without
//! it any certificate is accepted, as in the original gateway.
//!
//! h2 is offered only to clusters with `pass_host: node`. The request URI names the node (the
//! pool is per node), and over h2 that URI's authority is `:authority`; with `pass` or
//! `rewrite` the `Host` header names another host, a mismatch RFC 9113 §8.3.1 lets servers
//! refuse, and nginx does (400 "client sent duplicate host header"). The original gateway
//! offered h2 to every TLS cluster and so failed there (contracts §7.11; fixed, since no client
//! can depend on a 400). Those clusters speak HTTP/1.1 to TLS upstreams, as nginx does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::types::ClusterConfig;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = BoxBody<Bytes, BoxError>;
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, ProxyBody>;

/// What the client depends on: when none of it changes, the pool is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKey {
    pub idle_timeout: u64,
    pub pool_size: usize,
    pub tls_verify: bool,
    pub connect_timeout: f64,
    /// Whether h2 is offered in ALPN (`pass_host: node` only, see above).
    pub h2: bool,
}

impl ClientKey {
    pub fn of(c: &ClusterConfig) -> ClientKey {
        ClientKey {
            idle_timeout: c.keepalive_pool.idle_timeout,
            pool_size: c.keepalive_pool.size,
            tls_verify: c.tls_verify,
            connect_timeout: c.timeout.connect,
            h2: c.pass_host == "node",
        }
    }
}

/// Accepts any server certificate (clusters with `tls_verify: false`); signatures are still
/// checked so the handshake is well-formed.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub(crate) fn tls_config(verify: bool) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        // ring supports every default protocol version; this cannot fail.
        .unwrap_or_else(|_| ClientConfig::builder());
    if verify {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    }
}

pub fn build(key: &ClientKey) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs_f64(key.connect_timeout)));
    if key.idle_timeout > 0 {
        http.set_keepalive(Some(Duration::from_secs(key.idle_timeout)));
    }
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(key.tls_verify))
        .https_or_http()
        .enable_http1();
    let https = if key.h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(key.idle_timeout.max(1)))
        .pool_max_idle_per_host(key.pool_size)
        .build(https)
}
