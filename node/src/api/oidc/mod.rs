//! Sign-in through an external OpenID Connect provider (contracts/hermes.md §4.3): the
//! authorization code flow, refresh, and verification of the provider's bearer tokens.
//!
//! Fixes of the original's weaknesses (§10.1 S6, §10.3 C15): the flow carries `state`, a
//! `nonce` and PKCE, kept in a short-lived HttpOnly cookie of the browser that started it, so
//! any node can finish a sign-in another node began with nothing stored; the ID token is
//! verified (signature, `iss`, `aud`, expiry, nonce) and the user record is made from it, not
//! from an unverified access token; a valid token of a user who never signed in through
//! Hermes creates the user instead of being refused.

mod flow;
mod http;
mod provider;

use hermes_control::auth::token::Claims;
use hermes_control::model::{now_rfc3339, Operator, User};
use hermes_control::store::{ControlError, ControlStore};

pub use flow::{login, refresh, token};
pub use provider::{OidcError, Provider};

/// Discovers the provider once at start and logs the outcome; requests discover it on
/// demand anyway, so a provider that is down at start costs nothing but a warning.
pub async fn warm_up(
    provider: std::sync::Arc<Provider>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::select! {
        r = provider.discovered() => {
            // A failure is logged where it happens.
            if r.is_ok() {
                tracing::info!(issuer = %provider.settings.issuer, "OpenID Connect provider discovered");
            }
        }
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// The user record for verified `claims`, created on first sight (an admin when its username
/// or e-mail is among the configured initial admins) and refreshed when the provider's view
/// of the person changed. `last_seen` moves on sign-in (`signing_in`), not on every request.
pub async fn sync_user(
    store: &dyn ControlStore,
    provider: &Provider,
    claims: &Claims,
    signing_in: bool,
) -> Result<User, ControlError> {
    let username = if claims.preferred_username.is_empty() {
        claims.email.clone()
    } else {
        claims.preferred_username.clone()
    };
    let operator = Operator(username.clone());
    for _ in 0..3 {
        match store.user(&claims.sub).await? {
            Some(mut user) => {
                let changed = user.username != username
                    || user.email != claims.email
                    || user.name != claims.name;
                if !changed && !signing_in {
                    return Ok(user);
                }
                user.username = username.clone();
                user.email = claims.email.clone();
                user.name = claims.name.clone();
                if signing_in {
                    user.last_seen = now_rfc3339();
                }
                match store.update_user(user.clone(), None, &operator).await {
                    Ok(()) => return Ok(user),
                    // Deleted meanwhile: create it again below.
                    Err(ControlError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            None => {
                let admins = &provider.settings.initial_admins;
                let is_admin = [&username, &claims.email]
                    .iter()
                    .any(|n| !n.is_empty() && admins.contains(&n.to_lowercase()));
                let user = User {
                    sub: claims.sub.clone(),
                    username: username.clone(),
                    email: claims.email.clone(),
                    name: claims.name.clone(),
                    is_admin,
                    must_change_password: false,
                    last_seen: now_rfc3339(),
                    password_hash: String::new(),
                };
                match store
                    .create_user(user.clone(), "user.sync", &operator)
                    .await
                {
                    Ok(()) => return Ok(user),
                    // Another request (or node) created it first: use theirs.
                    Err(ControlError::AlreadyExists(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ControlError::Conflict(
        "the user record kept changing; try again".into(),
    ))
}
