//! The three OIDC endpoints (§3.3): `GET /api/auth/login` sends the browser to the provider,
//! `GET /api/auth/token` exchanges the code the provider sent back, `POST /api/auth/refresh`
//! renews an access token. Paths, bodies and messages are the original's; the exchange also
//! requires the `state` of the sign-in and the cookie `login` set, which carries that state,
//! the nonce and the PKCE verifier.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    TokenResponse,
};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::http::Capture;
use super::provider::{Discovered, Provider};
use crate::{fields, ApiError, ApiState};

/// The cookie holding `state.nonce.pkce_verifier` between login and exchange.
const COOKIE: &str = "hermes_oidc";
/// How long a sign-in may take at the provider.
const COOKIE_MAX_AGE_SECS: u32 = 600;

fn provider(state: &ApiState) -> Result<&Arc<Provider>, ApiError> {
    // The OIDC routes exist only when a provider is configured.
    state
        .oidc
        .as_ref()
        .ok_or_else(|| ApiError::not_found("OIDC authentication not configured"))
}

async fn discovered(p: &Provider) -> Result<Arc<Discovered>, ApiError> {
    p.discovered()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))
}

/// `<scheme>://<Host>/auth/callback` as the original derived it, unless a fixed URL is set.
fn redirect_url(p: &Provider, headers: &HeaderMap) -> Result<(RedirectUrl, bool), ApiError> {
    let url = match &p.settings.redirect_url {
        Some(url) => url.clone(),
        None => {
            let text = |name| {
                headers
                    .get(name)
                    .and_then(|v: &HeaderValue| v.to_str().ok())
            };
            let scheme = match text("x-forwarded-proto") {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            };
            let host = text("host")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| ApiError::bad_request("the request has no Host header"))?;
            format!("{scheme}://{host}/auth/callback")
        }
    };
    let secure = url.starts_with("https://");
    RedirectUrl::new(url)
        .map(|u| (u, secure))
        .map_err(|e| ApiError::bad_request(format!("cannot build the callback URL: {e}")))
}

/// The client for one exchange; the code flow needs the callback URL, a refresh does not.
fn client(p: &Provider, d: &Discovered, redirect: Option<RedirectUrl>) -> OidcClient {
    let client = CoreClient::from_provider_metadata(
        d.metadata.clone(),
        ClientId::new(p.settings.client_id.clone()),
        Some(ClientSecret::new(p.settings.client_secret.clone())),
    );
    match redirect {
        Some(url) => client.set_redirect_uri(url),
        None => client,
    }
}

type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn cookie(value: &str, max_age: u32, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{COOKIE}={value}; Path=/api/auth; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    );
    // Values are base64url, so the header is always valid; fall back to clearing it.
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("hermes_oidc=; Max-Age=0"))
}

/// GET /api/auth/login → 302 to the provider's authorization endpoint.
pub async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = provider(&state)?;
    let d = discovered(p).await?;
    let (redirect, secure) = redirect_url(p, &headers)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = client(p, &d, Some(redirect));
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let value = format!("{}.{}.{}", csrf.secret(), nonce.secret(), verifier.secret());
    let location = HeaderValue::from_str(url.as_str()).map_err(|_| {
        ApiError::internal("the provider's authorization URL is not a valid header")
    })?;
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(
        header::SET_COOKIE,
        cookie(&value, COOKIE_MAX_AGE_SECS, secure),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The sign-in this browser started: its state, nonce and PKCE verifier.
fn pending(headers: &HeaderMap) -> Option<(String, String, String)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(&format!("{COOKIE}="))
                .map(str::to_string)
        })
        .find_map(|v| {
            let mut parts = v.split('.');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(s), Some(n), Some(v), None)
                    if !s.is_empty() && !n.is_empty() && !v.is_empty() =>
                {
                    Some((s.to_string(), n.to_string(), v.to_string()))
                }
                _ => None,
            }
        })
}

fn query(uri: &axum::http::Uri, name: &str) -> String {
    uri.query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

/// GET /api/auth/token?code=…&state=… → the provider's token response, verbatim.
pub async fn token(
    State(state): State<ApiState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let p = provider(&state)?;
    let code = query(&uri, "code");
    if code.is_empty() {
        return Err(ApiError::bad_request("code is required"));
    }
    let given_state = query(&uri, "state");
    if given_state.is_empty() {
        return Err(ApiError::bad_request("state is required"));
    }
    let (expected_state, nonce, verifier) = pending(&headers).ok_or_else(|| {
        ApiError::bad_request(
            "no sign-in in progress in this browser (its cookie is missing or expired); sign in again",
        )
    })?;
    if !bool::from(given_state.as_bytes().ct_eq(expected_state.as_bytes())) {
        return Err(ApiError::bad_request(
            "state does not match this browser's sign-in; sign in again",
        ));
    }
    let d = discovered(p).await?;
    let (redirect, secure) = redirect_url(p, &headers)?;
    let client = client(p, &d, Some(redirect));
    let request = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| ApiError::internal(format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier));
    let capture = Arc::new(Capture::default());
    let http = p.http.exchanger(Some(capture.clone()));
    let response = match request.request_async(&http).await {
        Ok(r) => r,
        Err(RequestTokenError::Request(e)) => {
            tracing::warn!(error = %super::provider::error_chain(&e), "OIDC token exchange failed");
            return Err(bad_gateway("token exchange failed".into()));
        }
        Err(_) if !(200..300).contains(&capture.status()) => {
            let body = String::from_utf8_lossy(&capture.body()).into_owned();
            return Err(bad_gateway(format!("token exchange failed: {body}")));
        }
        Err(_) => return Err(ApiError::internal("invalid token response")),
    };
    let id_token = response
        .id_token()
        .ok_or_else(|| {
            bad_gateway("token exchange failed: the provider returned no ID token".into())
        })?
        .to_string();
    let mut claims = p
        .verify_id_token(&id_token, &Nonce::new(nonce))
        .await
        .map_err(|e| bad_gateway(format!("token exchange failed: ID token rejected: {e}")))?;
    // Some providers keep profile claims out of the ID token; a JWT access token may have them.
    if let Ok(at) = p.verify_bearer(response.access_token().secret()).await {
        if at.sub == claims.sub {
            // An e-mail comes with its own verification flag, never with the ID token's.
            if claims.email.is_empty() {
                claims.email_verified = at.email_verified;
            }
            for (mine, theirs) in [
                (&mut claims.preferred_username, at.preferred_username),
                (&mut claims.email, at.email),
                (&mut claims.name, at.name),
            ] {
                if mine.is_empty() {
                    *mine = theirs;
                }
            }
        }
    }
    super::sync_user(state.store.as_ref(), p, &claims, true).await?;
    let mut out = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        capture.body(),
    )
        .into_response();
    let h = out.headers_mut();
    h.insert(header::SET_COOKIE, cookie("", 0, secure));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(out)
}

fn bad_gateway(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", message)
}

/// POST /api/auth/refresh {"refresh_token"} → `{"access_token", "refresh_token"?}`.
pub async fn refresh(
    State(state): State<ApiState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let p = provider(&state)?;
    let body = fields::object(&body)?;
    fields::only(&body, &["refresh_token"])?;
    let token = fields::string(&body, "refresh_token")?.unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request("refresh_token is required"));
    }
    let d = discovered(p).await?;
    let client = client(p, &d, None);
    let token = RefreshToken::new(token);
    let request = client
        .exchange_refresh_token(&token)
        .map_err(|e| ApiError::internal(format!("the provider has no token endpoint: {e}")))?;
    let capture = Arc::new(Capture::default());
    let http = p.http.exchanger(Some(capture.clone()));
    match request.request_async(&http).await {
        Ok(r) => {
            let mut out = json!({"access_token": r.access_token().secret()});
            if let Some(rt) = r.refresh_token() {
                out["refresh_token"] = json!(rt.secret());
            }
            Ok(Json(out).into_response())
        }
        Err(RequestTokenError::Request(e)) => {
            tracing::warn!(error = %super::provider::error_chain(&e), "OIDC token refresh failed");
            Err(bad_gateway("refresh failed".into()))
        }
        Err(_) => {
            let status = StatusCode::from_u16(capture.status())
                .ok()
                .filter(|s| !s.is_success() && !s.is_informational())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            Err(ApiError::new(status, "refresh_failed", "refresh failed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_sign_in_is_read_from_its_cookie() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; hermes_oidc=st.no.ver; x=y"),
        );
        assert_eq!(pending(&h), Some(("st".into(), "no".into(), "ver".into())));
        let mut bad = HeaderMap::new();
        bad.append(
            header::COOKIE,
            HeaderValue::from_static("hermes_oidc=st.no"),
        );
        assert_eq!(pending(&bad), None);
        assert_eq!(pending(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_scoped_to_the_auth_api() {
        let c = cookie("a.b.c", 600, true);
        let c = c.to_str().unwrap();
        assert!(c.starts_with("hermes_oidc=a.b.c; Path=/api/auth; Max-Age=600"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
    }
}
