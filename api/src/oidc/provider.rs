//! The identity provider as this node knows it: its discovery document and signing keys,
//! fetched on first use and refreshed when stale (5 min, the original's JWKS TTL) or when a
//! token names a key id the cached set lacks, and the verification of the bearer tokens it
//! issues. Unlike the original (§10.1 S6), `iss` is checked; as in the original, the audience
//! is this client (`aud` contains it, or `azp` is it) and only asymmetric algorithms are
//! accepted, so the client secret can never sign a token.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AdditionalClaims, ClientId, IdToken, IdTokenClaims, IssuerUrl, JsonWebTokenType, Nonce,
};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::sync::Mutex;

use hermes_control::auth::token::{self, Claims};
use hermes_control::model::unix_now;

use super::http::ProviderClient;
use super::settings::OidcSettings;

/// How long fetched signing keys are trusted without a refetch.
const KEYS_TTL: Duration = Duration::from_secs(300);
/// The least time between two fetches caused by unknown key ids or a provider that is down,
/// so that forged tokens cannot turn this node into a flood of requests to the provider.
const MIN_REFETCH: Duration = Duration::from_secs(2);

/// Signing algorithms accepted on tokens: asymmetric ones only.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 8] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider is not reachable: {0}")]
    Unavailable(String),
    #[error("malformed token")]
    Malformed,
    #[error("{0}")]
    Rejected(String),
    #[error("audience mismatch")]
    Audience,
}

/// Claims beyond the standard ones that Hermes reads: `groups`, for group bindings (a
/// provider that sends one group as a string, or `null`, is understood too), and `nbf`, which
/// the ID-token verifier does not look at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extra {
    #[serde(default, deserialize_with = "string_or_list")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

impl AdditionalClaims for Extra {}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Groups {
        One(String),
        Many(Vec<String>),
        None(()),
    }
    Ok(match Groups::deserialize(d)? {
        Groups::One(g) => vec![g],
        Groups::Many(g) => g,
        Groups::None(()) => Vec::new(),
    })
}

/// A JWT in the shape of an ID token (access tokens of Keycloak and the like are).
pub type Token =
    IdToken<Extra, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// What discovery found.
#[derive(Debug)]
pub struct Discovered {
    pub metadata: CoreProviderMetadata,
    fetched: Instant,
}

#[derive(Debug)]
pub struct Provider {
    pub settings: OidcSettings,
    issuer: IssuerUrl,
    pub http: ProviderClient,
    current: ArcSwapOption<Discovered>,
    /// Held while fetching, so concurrent misses share one fetch; holds the last attempt.
    fetching: Mutex<Option<Instant>>,
}

impl Provider {
    pub fn new(settings: OidcSettings) -> Result<Provider, OidcError> {
        let issuer = IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| OidcError::Unavailable(format!("invalid issuer URL: {e}")))?;
        Ok(Provider {
            settings,
            issuer,
            http: ProviderClient::new(),
            current: ArcSwapOption::empty(),
            fetching: Mutex::new(None),
        })
    }

    /// The discovery document and keys, fetching them on first use.
    pub async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.current.load_full() {
            return Ok(d);
        }
        self.refetch(|_| true).await
    }

    /// Fetches discovery and keys again unless `fresh_enough` says what another caller fetched
    /// meanwhile will do, or the last attempt was too recent; then keeps what it has.
    async fn refetch(
        &self,
        fresh_enough: impl Fn(&Discovered) -> bool,
    ) -> Result<Arc<Discovered>, OidcError> {
        let mut last = self.fetching.lock().await;
        let current = self.current.load_full();
        let recent = last.is_some_and(|at| at.elapsed() < MIN_REFETCH);
        match &current {
            Some(d) if recent || fresh_enough(d) => return Ok(d.clone()),
            None if recent => {
                return Err(OidcError::Unavailable(
                    "discovery failed moments ago; retrying shortly".into(),
                ))
            }
            _ => {}
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(metadata) => {
                let d = Arc::new(Discovered {
                    metadata,
                    fetched: Instant::now(),
                });
                self.current.store(Some(d.clone()));
                Ok(d)
            }
            Err(e) => match current {
                // A stale key set beats none while the provider is down.
                Some(d) => {
                    tracing::warn!(error = %e, "could not refresh the identity provider's keys; using the cached ones");
                    Ok(d)
                }
                None => {
                    tracing::warn!(error = %e, issuer = %self.settings.issuer, "OpenID Connect discovery failed");
                    Err(e)
                }
            },
        }
    }

    async fn fetch(&self) -> Result<CoreProviderMetadata, OidcError> {
        let client = self.http.exchanger(None);
        // Discovery also fetches the key set (`jwks_uri`).
        CoreProviderMetadata::discover_async(self.issuer.clone(), &client)
            .await
            .map_err(|e| OidcError::Unavailable(error_chain(&e)))
    }

    /// Signing keys that can check a token signed with `kid`.
    async fn keys_for(&self, kid: Option<&str>) -> Result<Arc<Discovered>, OidcError> {
        let has_key = |d: &Discovered| match kid {
            None => true,
            Some(kid) => d
                .metadata
                .jwks()
                .keys()
                .iter()
                .any(|k| openidconnect::JsonWebKey::key_id(k).is_some_and(|id| **id == *kid)),
        };
        let usable = |d: &Discovered| d.fetched.elapsed() < KEYS_TTL && has_key(d);
        match self.current.load_full() {
            Some(d) if usable(&d) => Ok(d),
            _ => self.refetch(usable).await,
        }
    }

    /// A verifier for tokens of this provider with `keys`.
    pub fn verifier<'a>(&self, keys: &CoreJsonWebKeySet) -> CoreIdTokenVerifier<'a> {
        CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(ALGORITHMS)
    }

    /// Verifies a bearer token (an access token in JWT form) and maps its claims into the
    /// claims the rest of the API understands.
    pub async fn verify_bearer(&self, token: &str) -> Result<Claims, OidcError> {
        let kid = key_id(token)?;
        let parsed: Token = token.parse().map_err(|_| OidcError::Malformed)?;
        let d = self.keys_for(kid.as_deref()).await?;
        let verifier = self
            .verifier(d.metadata.jwks())
            // Access tokens name the API or the client in `aud`; checked below as the
            // original did.
            .require_audience_match(false)
            .set_allowed_jose_types(
                ["application/jwt", "application/at+jwt", "application/jose"]
                    .into_iter()
                    .filter_map(|t| JsonWebTokenType::new(t.to_string()).normalize().ok()),
            );
        let claims = parsed
            .into_claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map_err(|e| OidcError::Rejected(e.to_string()))?;
        let client_id = self.settings.client_id.as_str();
        let ours = claims.audiences().iter().any(|a| a.as_str() == client_id)
            || claims
                .authorized_party()
                .is_some_and(|azp| azp.as_str() == client_id);
        if !ours {
            return Err(OidcError::Audience);
        }
        self.claims(&claims)
    }

    /// Verifies the ID token of a code exchange against the nonce of the sign-in.
    pub async fn verify_id_token(
        &self,
        id_token: &str,
        nonce: &Nonce,
    ) -> Result<Claims, OidcError> {
        let kid = key_id(id_token)?;
        let parsed: Token = id_token.parse().map_err(|_| OidcError::Malformed)?;
        let d = self.keys_for(kid.as_deref()).await?;
        let claims = parsed
            .into_claims(&self.verifier(d.metadata.jwks()), nonce)
            .map_err(|e| OidcError::Rejected(e.to_string()))?;
        self.claims(&claims)
    }

    /// The claims the API understands, once `nbf` (not before) has passed, with
    /// [`token::MAX_CLOCK_SKEW_SECS`] of slack for clocks.
    fn claims(&self, c: &IdTokenClaims<Extra, CoreGenderClaim>) -> Result<Claims, OidcError> {
        if let Some(nbf) = c.additional_claims().nbf {
            if nbf > unix_now().saturating_add(token::MAX_CLOCK_SKEW_SECS) {
                return Err(OidcError::Rejected("token not yet valid (nbf)".into()));
            }
        }
        Ok(Claims {
            sub: c.subject().to_string(),
            preferred_username: c
                .preferred_username()
                .map(|u| u.to_string())
                .unwrap_or_default(),
            email: c.email().map(|e| e.to_string()).unwrap_or_default(),
            name: c
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string())
                .unwrap_or_default(),
            iat: c.issue_time().timestamp(),
            exp: c.expiration().timestamp(),
            iss: c.issuer().to_string(),
            aud: self.settings.client_id.clone(),
            groups: c.additional_claims().groups.clone(),
            epoch: 0,
            email_verified: c.email_verified() == Some(true),
        })
    }
}

/// The `kid` of a JWT's header, read before verification only to pick the key.
fn key_id(token: &str) -> Result<Option<String>, OidcError> {
    let header = token.split('.').next().ok_or(OidcError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| OidcError::Malformed)?;
    #[derive(Deserialize)]
    struct Header {
        kid: Option<String>,
    }
    let h: Header = serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed)?;
    Ok(h.kid)
}

pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_read_from_the_header() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1"}"#);
        assert_eq!(
            key_id(&format!("{header}.e30.sig")).unwrap().as_deref(),
            Some("k1")
        );
        let no_kid = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        assert_eq!(key_id(&format!("{no_kid}.e30.sig")).unwrap(), None);
        assert!(key_id("not a token").is_err());
    }

    #[test]
    fn groups_may_be_a_list_a_string_or_null() {
        let e: Extra = serde_json::from_str(r#"{"groups":["a","b"]}"#).unwrap();
        assert_eq!(e.groups, vec!["a", "b"]);
        let e: Extra = serde_json::from_str(r#"{"groups":"/eng"}"#).unwrap();
        assert_eq!(e.groups, vec!["/eng"]);
        let e: Extra = serde_json::from_str(r#"{"groups":null}"#).unwrap();
        assert!(e.groups.is_empty());
        let e: Extra = serde_json::from_str("{}").unwrap();
        assert!(e.groups.is_empty());
    }
}
