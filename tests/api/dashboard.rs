//! The dashboard at `/`: its page and files are served without a token, with
//! their content types and a Content-Security-Policy that allows no inline
//! script or style; the page loads nothing from another host; its script calls
//! only routes the server has.

use reserve::dashboard::routes::{ASSETS, CONTENT_SECURITY_POLICY};
use reserve::routes::ROUTES;

use crate::docs::{essence, fetch, references};
use crate::helpers::{spawn_app, Backend, Reply};

fn assert_policy(r: &Reply, what: &str) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what} carries a Content-Security-Policy"));
    assert_eq!(csp, CONTENT_SECURITY_POLICY, "{what}");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: {directive} in {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{what}: {csp}"
    );
    assert!(!csp.contains("http"), "{what}: names no other host: {csp}");
    assert_eq!(
        r.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert!(r.header("x-request-id").is_some(), "{what}");
}

#[actix_rt::test]
async fn the_page_and_each_file_are_served_without_a_token_under_the_policy() {
    let app = spawn_app(Backend::Sqlite).await;
    let (page, _) = fetch(&app, "/").await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.text);
    assert_eq!(essence(&page), "text/html");
    assert_policy(&page, "/");
    assert_eq!(page.header("x-frame-options").as_deref(), Some("DENY"));

    for (name, content_type, body) in ASSETS {
        let path = format!("/dashboard/{name}");
        let (r, bytes) = fetch(&app, &path).await;
        assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text);
        assert_eq!(r.header("content-type").as_deref(), Some(*content_type));
        assert_policy(&r, &path);
        assert_eq!(bytes, body.as_bytes(), "{path} is the embedded file");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn an_unknown_dashboard_file_is_a_404_problem() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/dashboard/app.js.map",
        "/dashboard/index.html",
        "/dashboard/..%2Fopenapi.yaml",
        "/dashboard/APP.JS",
    ] {
        let (r, _) = fetch(&app, path).await;
        assert_eq!(r.status.as_u16(), 404, "{path}: {}", r.text);
        let body: serde_json::Value = serde_json::from_str(&r.text).expect("a JSON problem");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{path}"
        );
        assert_eq!(body["status"], 404, "{path}");
        assert!(
            body["type"].as_str().unwrap_or("").ends_with("not-found"),
            "{path}: {body}"
        );
    }
    // The page answers GET only.
    let r = app.client.post(app.url("/")).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET")
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_page_references_only_its_own_files_and_has_no_inline_code() {
    let app = spawn_app(Backend::Sqlite).await;
    let (page, _) = fetch(&app, "/").await;
    let html = &page.text;
    assert!(!html.contains("<style"), "no inline style element");
    assert!(!html.contains(" style="), "no style attribute");
    let handlers: Vec<&str> = html
        .match_indices(" on")
        .map(|(i, _)| &html[i + 1..])
        .filter(|rest| {
            let name = rest.split(|c: char| !c.is_ascii_lowercase()).next();
            name.is_some_and(|n| rest[n.len()..].starts_with('='))
        })
        .collect();
    assert!(handlers.is_empty(), "no inline event handler: {handlers:?}");
    for line in html.lines().filter(|l| l.contains("<script")) {
        assert!(
            line.contains("src=\"/dashboard/") && line.contains("></script>"),
            "no inline script: {line}"
        );
    }

    let refs = references(html);
    let mut served = Vec::new();
    for r in &refs {
        if r.starts_with('#') {
            continue; // the skip link, within the page
        }
        assert!(
            r.starts_with("/dashboard/") && !r.contains("//") && !r.contains(".."),
            "the page references only this server's dashboard files: {r}"
        );
        let name = &r["/dashboard/".len()..];
        assert!(
            ASSETS.iter().any(|(n, _, _)| *n == name),
            "{r} is a served file"
        );
        served.push(name.to_string());
    }
    served.sort();
    let mut all: Vec<String> = ASSETS.iter().map(|(n, _, _)| n.to_string()).collect();
    all.sort();
    assert_eq!(served, all, "every file is used by the page");
    app.stop().await;
}

/// What the script may reach: this server's API by relative path only, no
/// other scheme or host, no `eval`, no HTML parsing of data.
#[actix_rt::test]
async fn the_script_calls_only_routes_the_server_has() {
    let js = ASSETS
        .iter()
        .find(|(n, _, _)| *n == "app.js")
        .map(|(_, _, b)| *b)
        .expect("app.js");
    for forbidden in [
        "innerHTML",
        "outerHTML",
        "eval(",
        "new Function",
        "document.write",
    ] {
        assert!(!js.contains(forbidden), "app.js uses {forbidden}");
    }
    // The only absolute URL is the SVG namespace, which is never fetched.
    for (i, _) in js.match_indices("http") {
        assert!(
            js[i..].starts_with("http://www.w3.org/2000/svg\""),
            "app.js names another host: {}",
            &js[i..(i + 60).min(js.len())]
        );
    }
    let css = ASSETS
        .iter()
        .find(|(n, _, _)| *n == "app.css")
        .map(|(_, _, b)| *b)
        .expect("app.css");
    assert!(
        !css.contains("url(") && !css.contains("@import"),
        "app.css loads nothing"
    );

    // Every literal API path the script calls is a route (query strings and
    // `${…}` segments aside).
    let mut called = Vec::new();
    for prefix in ["api(\"", "allPages(\"", "api(`", "allPages(`"] {
        for (i, _) in js.match_indices(prefix) {
            let rest = &js[i + prefix.len()..];
            let end = rest.find(['"', '`', '?']).expect("end of path");
            called.push(rest[..end].to_string());
        }
    }
    assert!(called.len() >= 8, "{called:?}");
    for path in called.iter().filter(|p| !p.starts_with("${")) {
        let full = format!("/api/v1{path}");
        let wanted: Vec<&str> = full.split('/').collect();
        let known = ROUTES.iter().any(|(_, route)| {
            let segments: Vec<&str> = route.split('/').collect();
            segments.len() == wanted.len()
                && segments
                    .iter()
                    .zip(&wanted)
                    .all(|(r, w)| r == w || w.starts_with("${"))
        });
        assert!(
            known,
            "app.js calls {full}, which is not in the route table"
        );
    }
    for p in [
        "/summary",
        "/cover",
        "/depots",
        "/import-flows",
        "/release-orders",
    ] {
        assert!(
            called.iter().any(|c| c == p),
            "app.js reads {p}: {called:?}"
        );
    }
}
