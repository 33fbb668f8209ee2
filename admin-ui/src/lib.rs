//! hermes-admin-ui: the web UI every node serves on its admin listener, built into the binary.
//!
//! `/` and `/ui` redirect to `/ui/`; `/ui/` and every other `/ui/…` path that is not an asset
//! answer `index.html` (the UI routes in the browser), as does `/auth/callback`, where an
//! OpenID Connect provider sends the browser back; never `/api/…`. Assets live under
//! `/ui/assets/<version>/…`, where the version is a hash of every asset (`build.rs`), so they are
//! cached for a year and `index.html`, which names them, is never cached. Text assets are
//! gzipped once, when first asked for, for clients that accept it.
//!
//! Authorization: the assets are public. They hold no data (every datum comes from the API,
//! which authenticates each call), and the sign-in page is one of them.
//!
//! The policy lets the console frame the origins of the configured Grafana dashboards, which
//! the node names at each page load ([`FrameSources`]); nothing else may be framed.
//!
//! Vue 3 is the runtime-only production build (no template compiler: views are render
//! functions), so the Content-Security-Policy needs neither `unsafe-eval` nor `unsafe-inline`;
//! the one inline script, the import map, is allowed by its hash.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock};

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use sha2::{Digest, Sha256};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

pub use assets::VERSION;

/// The origins (`https://grafana.example:3000`) the console may show in frames, asked for at
/// each page load.
pub type FrameSources =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<String>> + Send>> + Send + Sync>;

/// A frame source fit for the policy: `scheme://host[:port]` of http or https, nothing else (a
/// stored value cannot add a directive or a wildcard).
fn frame_source(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))?;
    let fit = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    fit.then_some(origin)
}

/// Where the assets are served from, version included.
fn assets_base() -> String {
    format!("/ui/assets/{VERSION}/")
}

/// `index.html` with its asset URLs versioned, and the CSP that allows its import map.
struct Index {
    html: Arc<[u8]>,
    csp: HeaderValue,
}

static INDEX: LazyLock<Index> = LazyLock::new(|| {
    let template = asset("index.html").map_or(&b""[..], |(_, bytes)| bytes);
    let html = String::from_utf8_lossy(template).replace("%ASSETS%", &assets_base());
    let import_map = html
        .split_once("<script type=\"importmap\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .map_or("", |(map, _)| map);
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(import_map));
    let csp = format!(
        "default-src 'none'; script-src 'self' 'sha256-{hash}'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    Index {
        html: Arc::from(html.into_bytes()),
        // Built from base64 and fixed text: always a valid header value.
        csp: HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'self'")),
    }
});

/// The gzipped form of each asset, made when first asked for.
static GZIPPED: LazyLock<Vec<OnceLock<Option<Vec<u8>>>>> =
    LazyLock::new(|| assets::ASSETS.iter().map(|_| OnceLock::new()).collect());

fn asset(path: &str) -> Option<(usize, &'static [u8])> {
    assets::ASSETS
        .iter()
        .enumerate()
        .find(|(_, (name, _))| *name == path)
        .map(|(i, (_, bytes))| (i, *bytes))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

fn compressible(path: &str) -> bool {
    content_type(path).starts_with("text/") || path.ends_with(".svg") || path.ends_with(".json")
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q == 0.0))
            });
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

/// Headers every UI response carries.
fn hardened(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, INDEX.csp.clone());
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn index(frames: FrameSources) -> Response {
    let mut response = hardened(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            axum::body::Bytes::from_owner(INDEX.html.clone()),
        )
            .into_response(),
    );
    let mut sources: Vec<String> = frames()
        .await
        .iter()
        .filter_map(|o| frame_source(o).map(str::to_string))
        .collect();
    sources.sort();
    sources.dedup();
    if !sources.is_empty() {
        let csp = format!(
            "{}; frame-src {}",
            INDEX.csp.to_str().unwrap_or_default(),
            sources.join(" ")
        );
        if let Ok(v) = HeaderValue::from_str(&csp) {
            response
                .headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    response
}

async fn serve_asset(
    Path((version, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((i, bytes)) = asset(&path).filter(|_| path != "index.html") else {
        return hardened(
            (
                StatusCode::NOT_FOUND,
                [(header::CACHE_CONTROL, "no-cache")],
                "not found\n",
            )
                .into_response(),
        );
    };
    // Another version's URL (a page loaded from another node in the middle of an upgrade):
    // today's bytes, not to be cached under that name.
    let cache = if version == VERSION {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if compressible(&path) && accepts_gzip(&headers) {
        match GZIPPED[i].get_or_init(|| gzip(bytes)) {
            Some(gz) => (
                [(header::CONTENT_ENCODING, "gzip")],
                axum::body::Bytes::from_static(gz),
            )
                .into_response(),
            None => axum::body::Bytes::from_static(bytes).into_response(),
        }
    } else {
        axum::body::Bytes::from_static(bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    hardened(response)
}

/// The UI's routes; merge into the admin listener's router before its fallback. `frames`
/// names the origins the console may frame.
pub fn router<S: Clone + Send + Sync + 'static>(frames: FrameSources) -> Router<S> {
    let page = move || index(frames.clone());
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page.clone()))
        .route("/ui/assets/{version}/{*path}", get(serve_asset))
        .route("/ui/{*route}", get(page.clone()))
        // Where an OpenID Connect provider sends the browser back (the original's path).
        .route("/auth/callback", get(page))
}

#[cfg(test)]
mod tests;
