use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn no_frames() -> FrameSources {
    Arc::new(|| Box::pin(async { Vec::new() }))
}

async fn get(path: &str, gzip: bool) -> Response {
    let mut req = Request::get(path);
    if gzip {
        req = req.header(header::ACCEPT_ENCODING, "br, gzip;q=0.8");
    }
    router::<()>(no_frames())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(r: Response) -> Vec<u8> {
    r.into_body().collect().await.unwrap().to_bytes().to_vec()
}

#[tokio::test]
async fn the_root_redirects_and_ui_routes_get_the_index() {
    let r = get("/", false).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/ui/");
    for path in [
        "/ui/",
        "/ui/domains",
        "/ui/domains/a/history",
        "/auth/callback",
    ] {
        let r = get(path, false).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self' 'sha256-"));
        assert!(!csp.contains("unsafe"), "{csp}");
        let html = String::from_utf8(body(r).await).unwrap();
        assert!(
            html.contains(&format!("/ui/assets/{VERSION}/app.js")),
            "{html}"
        );
        assert!(!html.contains("%ASSETS%"));
    }
}

#[tokio::test]
async fn the_import_map_hash_in_the_policy_is_the_maps_own() {
    let html = String::from_utf8(body(get("/ui/", false).await).await).unwrap();
    let map = html
        .split_once("<script type=\"importmap\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .unwrap()
        .0;
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(map));
    let r = get("/ui/", false).await;
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains(&format!("'sha256-{hash}'")), "{csp}");
    // Every module the map names is served.
    for url in map.split('"').filter(|s| s.starts_with("/ui/assets/")) {
        assert_eq!(get(url, false).await.status(), StatusCode::OK, "{url}");
    }
}

#[tokio::test]
async fn assets_are_versioned_cached_and_gzipped_on_request() {
    let url = format!("/ui/assets/{VERSION}/vendor/vue/vue.runtime.esm-browser.prod.js");
    let plain = get(&url, false).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        plain.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    let plain = body(plain).await;
    let gz = get(&url, true).await;
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz.headers()[header::VARY], "Accept-Encoding");
    let gz = body(gz).await;
    assert!(
        gz.len() < plain.len() / 2,
        "{} of {}",
        gz.len(),
        plain.len()
    );
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped).unwrap();
    assert_eq!(unzipped, plain);
    // Refused explicitly: plain.
    let mut req = Request::get(&url);
    req = req.header(header::ACCEPT_ENCODING, "gzip;q=0");
    let r = router::<()>(no_frames())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    // Another version's URL: served, but not cached under it.
    let r = get("/ui/assets/0000000000000000/app.js", false).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
}

#[tokio::test]
async fn only_well_formed_dashboard_origins_may_be_framed() {
    let frames: FrameSources = Arc::new(|| {
        Box::pin(async {
            vec![
                "https://grafana.example:3000".to_string(),
                "http://10.0.0.7".to_string(),
                "https://grafana.example:3000".to_string(),
                "https://x.example; script-src *".to_string(),
                "javascript:alert(1)".to_string(),
                "*".to_string(),
            ]
        })
    });
    let r = router::<()>(frames)
        .oneshot(Request::get("/ui/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.ends_with("; frame-src http://10.0.0.7 https://grafana.example:3000"),
        "{csp}"
    );
    // Without dashboards nothing may be framed (default-src 'none').
    let r = get("/ui/", false).await;
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(!csp.contains("frame-src"), "{csp}");
}

#[tokio::test]
async fn unknown_assets_are_404_and_api_paths_are_not_the_uis() {
    let r = get(&format!("/ui/assets/{VERSION}/nope.js"), false).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The template is not an asset.
    let r = get(&format!("/ui/assets/{VERSION}/index.html"), false).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get("/api/v1/domains", false).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_vendored_vue_is_the_recorded_one() {
    let notes = include_str!("../vendor/VENDOR.md");
    for (name, bytes) in assets::ASSETS
        .iter()
        .filter(|(n, _)| n.starts_with("vendor/"))
    {
        let sum = hex_sha256(bytes);
        assert!(
            notes.contains(&format!("{sum}  {name}")),
            "{name} ({sum}) is not recorded in vendor/VENDOR.md"
        );
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
