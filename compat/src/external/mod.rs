//! An external etcd as a node's configuration store (compat mode): the client, and what the
//! gateway role reads and writes there through the gateway's own traits: its configuration
//! ([`source::EtcdSource`]), its registration ([`registry::EtcdRegistrar`]) and the count of
//! gateways sharing the rate limits ([`registry::count_instances`]).
//!
//! The client balances over every endpoint given, so losing one member moves the calls to the
//! others. With a user it signs in at connect (so connecting fails while etcd is down, and
//! the caller tries again) and again whenever etcd says the token is no longer valid (etcd's
//! simple tokens expire after five idle minutes by default): the crate does that for every
//! call but a watch, which `refresh_after` covers.

pub mod registry;
pub mod source;

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

/// How long connecting, and each call that is not a watch, may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the etcd is and who to sign in as.
#[derive(Clone)]
pub struct EtcdSettings {
    /// `http://host:port` of each member.
    pub endpoints: Vec<String>,
    pub user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSettings")
            .field("endpoints", &self.endpoints)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// A client of the etcd `settings` name.
pub async fn connect(settings: &EtcdSettings) -> Result<Client, etcd_client::Error> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(CALL_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), CALL_TIMEOUT)
        .with_keep_alive_while_idle(true);
    if let Some((user, password)) = &settings.user {
        options = options
            .with_user(user.clone(), password.clone())
            .with_auto_token_refresh(true);
    }
    Client::connect(&settings.endpoints, Some(options)).await
}

/// Whether `e` says the session token is no longer valid (so signing in again may help).
pub(crate) fn token_expired(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            s.code() == tonic::Code::Unauthenticated || s.message().contains("invalid auth token")
        }
        _ => false,
    }
}

/// Signs in again after etcd cancelled a watch for `reason`, when that is about
/// authentication (etcd 3.4 answers a watch opened with an expired token that way).
pub(crate) async fn refresh_if_auth(client: &Client, reason: &str) {
    let reason = reason.to_ascii_lowercase();
    if reason.contains("auth") || reason.contains("permission") || reason.contains("token") {
        if let Err(e) = client.refresh_token().await {
            tracing::warn!(error = %e, "signing in to etcd again failed");
        }
    }
}

/// Signs in again after `e` when it was an expired token.
pub(crate) async fn refresh_after(client: &Client, e: &etcd_client::Error) {
    if token_expired(e) {
        if let Err(e) = client.refresh_token().await {
            tracing::warn!(error = %e, "signing in to etcd again failed");
        }
    }
}

#[cfg(test)]
mod tests;
