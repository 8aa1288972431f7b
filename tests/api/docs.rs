//! `/openapi.yaml` and `/docs`: served without a token, with the right content
//! types, and the page loads nothing from another host.

use crate::helpers::{spawn_app, Backend, Reply};

/// GETs `path` without a token: the reply and its raw bytes.
pub(crate) async fn fetch(app: &crate::helpers::TestApp, path: &str) -> (Reply, Vec<u8>) {
    let mut res = app.client.get(app.url(path)).send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.body().limit(16 * 1024 * 1024).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        Reply {
            status,
            headers,
            body: serde_json::Value::Null,
            text,
        },
        bytes.to_vec(),
    )
}

/// The content type without its parameters.
pub(crate) fn essence(r: &Reply) -> String {
    r.header("content-type")
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Every `src="…"` and `href="…"` value in an HTML page.
pub(crate) fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').expect("closing quote");
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[actix_rt::test]
async fn the_spec_is_served_without_a_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let (r, bytes) = fetch(&app, "/openapi.yaml").await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.text);
    assert_eq!(essence(&r), "application/yaml");
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert_eq!(
        bytes, committed,
        "the committed openapi.yaml, byte for byte"
    );
    let spec: serde_yaml::Value = serde_yaml::from_slice(&bytes).expect("YAML");
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    assert!(r.header("x-request-id").is_some());
    app.stop().await;
}

#[actix_rt::test]
async fn the_docs_page_and_its_assets_are_local_and_need_no_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let (page, _) = fetch(&app, "/docs").await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.text);
    assert_eq!(essence(&page), "text/html");
    let csp = page
        .header("content-security-policy")
        .expect("the page carries a Content-Security-Policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(
        !csp.contains("http"),
        "the policy names no other host: {csp}"
    );

    // No inline script or style: the policy would block it.
    assert!(!page.text.contains("<style"), "{}", page.text);
    assert!(!page.text.contains(" style="), "{}", page.text);
    let refs = references(&page.text);
    assert!(refs.len() >= 3, "{refs:?}");
    for r in &refs {
        assert!(
            r.starts_with('/') && !r.starts_with("//"),
            "the page references only this server: {r}"
        );
    }
    let mut scripts = 0;
    for line in page.text.lines().filter(|l| l.contains("<script")) {
        assert!(line.contains("src=\"/docs/"), "no inline script: {line}");
        scripts += 1;
    }
    assert_eq!(scripts, 2);

    for (path, kind) in [
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/docs.js", "text/javascript"),
    ] {
        assert!(refs.iter().any(|r| r == path), "{path} is referenced");
        let (r, bytes) = fetch(&app, path).await;
        assert_eq!(r.status.as_u16(), 200, "{path}");
        assert_eq!(essence(&r), kind, "{path}");
        assert!(bytes.len() > 100, "{path}");
    }
    let (init, _) = fetch(&app, "/docs/docs.js").await;
    assert!(
        init.text.contains("url: \"/openapi.yaml\""),
        "{}",
        init.text
    );
    assert!(!init.text.contains("http"), "{}", init.text);
    assert!(init.text.contains("validatorUrl: null"), "{}", init.text);

    let (missing, _) = fetch(&app, "/docs/swagger-ui.css.map").await;
    assert_eq!(missing.status.as_u16(), 404);
    let (missing, _) = fetch(&app, "/docs/..%2Fopenapi.yaml").await;
    assert_eq!(missing.status.as_u16(), 404);
    app.stop().await;
}
