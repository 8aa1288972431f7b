//! `GET /openapi.yaml`, `GET /docs` and `GET /docs/{asset}`: the committed
//! OpenAPI document and Swagger UI (vendored from the npm package
//! `swagger-ui-dist`, see `vendor/swagger-ui-dist/README.md`), embedded at
//! build time so that nothing is fetched from another host, at run time or in
//! the browser. No token needed.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

use crate::error::ApiError;

/// The repository's `openapi.yaml`, as the binary was built with it.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

const INDEX_HTML: &str = include_str!("index.html");
const DOCS_JS: &str = include_str!("docs.js");
const SWAGGER_UI_BUNDLE_JS: &[u8] =
    include_bytes!("../../vendor/swagger-ui-dist/swagger-ui-bundle.js");
const SWAGGER_UI_CSS: &[u8] = include_bytes!("../../vendor/swagger-ui-dist/swagger-ui.css");

/// What the page may load: its own scripts, styles, and the document, from
/// this server only; Swagger UI's icons are `data:` images in its style sheet.
/// No inline script or style, no frames, no forms posted elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The assets may change with every build, so they are revalidated rather
/// than cached for long; they are small next to a page view's API calls.
const CACHE_CONTROL: &str = "no-cache";

/// A static file as served by `/docs` and the dashboard: never sniffed,
/// revalidated on every use.
pub(crate) fn file(content_type: &'static str, body: impl Into<web::Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(body.into())
}

/// `GET /openapi.yaml`.
pub async fn openapi_yaml() -> HttpResponse {
    file("application/yaml", OPENAPI_YAML)
}

/// `GET /docs`.
pub async fn page() -> HttpResponse {
    confined(
        file("text/html; charset=utf-8", INDEX_HTML),
        CONTENT_SECURITY_POLICY,
    )
}

/// Adds a page's policy: what it may load (`csp`), no framing, no referrer.
pub(crate) fn confined(mut response: HttpResponse, csp: &'static str) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `GET /docs/{asset}`: the page's script and Swagger UI's files.
pub async fn asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = path.into_inner();
    Ok(match name.as_str() {
        "swagger-ui-bundle.js" => file("text/javascript; charset=utf-8", SWAGGER_UI_BUNDLE_JS),
        "swagger-ui.css" => file("text/css; charset=utf-8", SWAGGER_UI_CSS),
        "docs.js" => file("text/javascript; charset=utf-8", DOCS_JS),
        _ => return Err(ApiError::NotFound(format!("no documentation file {name}"))),
    })
}
