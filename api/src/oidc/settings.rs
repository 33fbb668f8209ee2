//! How this node talks to its OpenID Connect provider, as the node's configuration resolves it.

/// The provider and this node's client registration with it. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// Issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Usernames or e-mails (lower-cased) made admins when they first sign in.
    pub initial_admins: Vec<String>,
    /// Fixed callback URL; when `None` it is derived from each request's `Host`, as the
    /// original did.
    pub redirect_url: Option<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("initial_admins", &self.initial_admins)
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// An absolute `http://` or `https://` URL with a host (an issuer, a redirect URL, a browser
/// origin).
pub fn parse_http_url(v: &str) -> Result<String, String> {
    let v = v.trim();
    let url = openidconnect::url::Url::parse(v).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL needs a host".into());
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let s = OidcSettings {
            issuer: "https://idp.example".into(),
            client_id: "hermes".into(),
            client_secret: "s3cr3t-value".into(),
            initial_admins: vec![],
            redirect_url: None,
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("hermes"), "{shown}");
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert_eq!(
            parse_http_url(" https://idp.example/realm ").unwrap(),
            "https://idp.example/realm"
        );
        assert!(parse_http_url("ftp://idp.example").is_err());
        assert!(parse_http_url("idp.example").is_err());
        assert!(parse_http_url("http://").is_err());
        assert!(parse_http_url("not a url").is_err());
    }
}
