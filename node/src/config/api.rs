//! Settings of the control-plane API: how users sign in (built-in accounts or an OpenID
//! Connect provider), which browser origins may call it, and how much history it keeps.

use hermes_api::oidc::parse_http_url;
pub use hermes_api::oidc::OidcSettings;

use super::{invalid, ConfigError, Sources};
use super::{
    AUTH_MODE, CORS_ORIGINS, HMAC_MAX_SKEW_SECS, MAX_DOCUMENT_BYTES, OIDC_CLIENT_ID,
    OIDC_CLIENT_SECRET, OIDC_CLIENT_SECRET_FILE, OIDC_INITIAL_ADMINS, OIDC_ISSUER,
    OIDC_REDIRECT_URL, RESOURCE_HISTORY,
};

/// How interactive users sign in (contracts/hermes.md §4.3, §4.4). Unlike the original there
/// is no "disabled" mode: a cluster always has at least its built-in admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// E-mail and password accounts kept in the store, HS256 session tokens.
    Builtin,
    /// An external OpenID Connect provider.
    Oidc(OidcSettings),
}

/// The API settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub auth: AuthMode,
    /// Origins (`scheme://host[:port]`) allowed to call the API from a browser; empty = none.
    pub cors_origins: Vec<String>,
    /// Versions of each domain and cluster kept in its history.
    pub resource_history: usize,
    /// How far an HMAC-signed request's timestamp may be from this node's clock, in seconds
    /// (default 60; the original allowed 300). Signatures are remembered this long, so a
    /// captured request cannot be replayed to this node.
    pub hmac_max_skew_secs: u64,
    /// The largest domain or cluster document the API stores, in bytes (default 512 KiB): each
    /// version of it is kept in the history, the change log and the store's revisions.
    pub max_document_bytes: usize,
}

impl Sources<'_> {
    pub(super) fn api(&self) -> Result<ApiSettings, ConfigError> {
        let auth = match self.get(AUTH_MODE, "builtin", |v| match v.trim() {
            "builtin" => Ok(false),
            "oidc" => Ok(true),
            _ => Err("expected builtin or oidc".to_string()),
        })? {
            false => {
                // Given with built-in sign-in, they would be accepted and ignored.
                self.refuse_given(
                    super::OIDC_SETTINGS,
                    &format!(
                        "sign-in through an OpenID Connect provider, which needs {} oidc",
                        AUTH_MODE.flag
                    ),
                )?;
                AuthMode::Builtin
            }
            true => AuthMode::Oidc(self.oidc()?),
        };
        Ok(ApiSettings {
            auth,
            cors_origins: self.get(CORS_ORIGINS, "", parse_origins)?,
            max_document_bytes: self.get(MAX_DOCUMENT_BYTES, "524288", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1024..=hermes_api::MAX_BODY_BYTES).contains(n))
                    .ok_or_else(|| {
                        format!("expected bytes from 1024 to {}", hermes_api::MAX_BODY_BYTES)
                    })
            })?,
            hmac_max_skew_secs: self.get(HMAC_MAX_SKEW_SECS, "60", |v| {
                v.parse::<u64>()
                    .ok()
                    .filter(|n| (5..=300).contains(n))
                    .ok_or_else(|| "expected seconds from 5 to 300".to_string())
            })?,
            resource_history: self.get(RESOURCE_HISTORY, "50", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| "expected a number of versions from 1 to 10000".to_string())
            })?,
        })
    }

    fn oidc(&self) -> Result<OidcSettings, ConfigError> {
        let required =
            |s: super::Setting| invalid(s, "", format!("required when {} is oidc", AUTH_MODE.flag));
        let issuer = self
            .get_opt(OIDC_ISSUER, |v| {
                parse_http_url(v).map(|u| u.trim_end_matches('/').to_string())
            })?
            .ok_or_else(|| required(OIDC_ISSUER))?;
        let client_id = self
            .get_opt(OIDC_CLIENT_ID, |v| Ok(v.trim().to_string()))?
            .ok_or_else(|| required(OIDC_CLIENT_ID))?;
        let secret = self.get_opt(OIDC_CLIENT_SECRET, |v| Ok(v.to_string()))?;
        let secret_file = self.get_opt(OIDC_CLIENT_SECRET_FILE, |v| {
            let text = std::fs::read_to_string(v).map_err(|e| format!("cannot read it: {e}"))?;
            match text.trim() {
                "" => Err("the file is empty".into()),
                t => Ok(t.to_string()),
            }
        })?;
        let client_secret = match (secret, secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Conflict(format!(
                    "give the OIDC client secret once: {} or {}, not both",
                    OIDC_CLIENT_SECRET.flag, OIDC_CLIENT_SECRET_FILE.flag
                )))
            }
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => return Err(required(OIDC_CLIENT_SECRET)),
        };
        let initial_admins = self.get(OIDC_INITIAL_ADMINS, "", |v| {
            Ok(v.split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect())
        })?;
        let redirect_url = self.get_opt(OIDC_REDIRECT_URL, parse_http_url)?;
        Ok(OidcSettings {
            issuer,
            client_id,
            client_secret,
            initial_admins,
            redirect_url,
        })
    }
}

/// `https://ui.example.com, http://localhost:5173` → origins, each without a path.
fn parse_origins(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let url = parse_http_url(s)?;
            let host = url.split_once("://").map(|(_, h)| h).unwrap_or_default();
            if host.contains('/') {
                return Err(format!("{s:?} is not an origin: it must have no path"));
            }
            Ok(url)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked() {
        assert_eq!(
            parse_origins(" https://a.example, http://127.0.0.1:5173 ").unwrap(),
            vec!["https://a.example", "http://127.0.0.1:5173"]
        );
        assert!(parse_origins("https://a.example/path").is_err());
        assert!(parse_origins("").unwrap().is_empty());
    }
}
