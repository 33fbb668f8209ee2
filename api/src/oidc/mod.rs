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
mod settings;

use hermes_control::auth::token::Claims;
use hermes_control::model::{now_rfc3339, Operator, User};
use hermes_control::store::{ControlError, ControlStore};

pub use flow::{login, refresh, token};
pub use provider::{OidcError, Provider};
pub use settings::{parse_http_url, OidcSettings};

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

/// Whether `claims` name one of the configured initial admins: by `sub`, or by an e-mail the
/// provider says it verified. Never by username, which many providers let people choose.
fn is_initial_admin(admins: &[String], claims: &Claims) -> bool {
    let sub = claims.sub.to_lowercase();
    let email = claims.email.to_lowercase();
    admins
        .iter()
        .any(|a| *a == sub || (claims.email_verified && !email.is_empty() && *a == email))
}

/// The user record for verified `claims`. A person seen for the first time is created (made an
/// admin when `is_initial_admin`): at sign-in (`signing_in`, the code exchange) or at the
/// first request with a token the provider issued elsewhere. An existing record is written
/// only at sign-in (profile and `last_seen`), never on an ordinary request, and an existing
/// user is never promoted here.
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
            Some(user) if !signing_in => return Ok(user),
            Some(_) => {
                // The profile goes onto the record as stored: an admin flag revoked through
                // another node a moment ago is not written back.
                let seen = now_rfc3339();
                let profile = |u: &mut User| {
                    u.username = username.clone();
                    u.email = claims.email.clone();
                    u.name = claims.name.clone();
                    u.last_seen = seen.clone();
                    Ok(())
                };
                match store
                    .update_user(&claims.sub, None, &operator, &profile)
                    .await
                {
                    Ok(user) => return Ok(user),
                    // Deleted meanwhile: create it again below.
                    Err(ControlError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            None => {
                let user = User {
                    sub: claims.sub.clone(),
                    username: username.clone(),
                    email: claims.email.clone(),
                    name: claims.name.clone(),
                    is_admin: is_initial_admin(&provider.settings.initial_admins, claims),
                    must_change_password: false,
                    last_seen: now_rfc3339(),
                    password_hash: String::new(),
                    token_epoch: 0,
                };
                match store
                    .create_user(user.clone(), hermes_control::store::SYNC_ACTION, &operator)
                    .await
                {
                    // What the store made: it keeps the admin flag off for an identity that
                    // had a record before, and this copy must not grant it for even one
                    // request.
                    Ok(()) => {
                        if let Some(stored) = store.user(&claims.sub).await? {
                            return Ok(stored);
                        }
                    }
                    // Another request (or node) created it first: use theirs. Otherwise the
                    // e-mail belongs to someone else, and the sign-in is refused.
                    Err(ControlError::AlreadyExists(m)) => {
                        if store.user(&claims.sub).await?.is_none() {
                            return Err(ControlError::AlreadyExists(m));
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ControlError::Conflict(
        "the user record kept changing; try again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, email: &str, verified: bool, username: &str) -> Claims {
        Claims {
            sub: sub.into(),
            preferred_username: username.into(),
            email: email.into(),
            name: String::new(),
            iat: 0,
            exp: 0,
            iss: String::new(),
            aud: String::new(),
            groups: Vec::new(),
            epoch: 0,
            email_verified: verified,
        }
    }

    #[test]
    fn initial_admins_match_sub_or_a_verified_email_only() {
        let admins = vec!["alice".to_string(), "frank@example.com".to_string()];
        assert!(is_initial_admin(&admins, &claims("alice", "", false, "")));
        assert!(is_initial_admin(
            &admins,
            &claims("f-1", "Frank@Example.com", true, "f")
        ));
        // An unverified e-mail, or a chosen username, is not enough.
        assert!(!is_initial_admin(
            &admins,
            &claims("f-2", "frank@example.com", false, "f")
        ));
        assert!(!is_initial_admin(
            &admins,
            &claims("m-1", "m@example.com", true, "alice")
        ));
    }
}
