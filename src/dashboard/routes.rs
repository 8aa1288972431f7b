//! `GET /` and `GET /dashboard/{asset}`: the dashboard's files, built into the
//! binary with `include_str!` (no build step, nothing fetched from another
//! host). Every answer carries the same Content-Security-Policy, which allows
//! no inline script or style: the page's markup has neither, and its script
//! sets styles through the CSSOM (`el.style.x`), which the policy permits.

use actix_web::{web, HttpResponse};

use crate::docs::routes::{confined, file};
use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("static/index.html");

/// What the dashboard may load: its own script, style sheet and icon, and
/// API calls (including the event stream) to this server only. No inline
/// script or style, no `eval`, no frames, no forms posted anywhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The files under `/dashboard/`: name, content type, body.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("static/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("static/app.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("static/icon.svg")),
];

/// `GET /`.
pub async fn page() -> HttpResponse {
    confined(
        file("text/html; charset=utf-8", INDEX_HTML),
        CONTENT_SECURITY_POLICY,
    )
}

/// `GET /dashboard/{asset}`.
pub async fn asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {name}")))?;
    Ok(confined(file(content_type, *body), CONTENT_SECURITY_POLICY))
}
