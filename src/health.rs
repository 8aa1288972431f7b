//! `/healthz` (the process answers) and `/readyz` (the database answers and its
//! schema is current). Neither needs a token.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness. The body says only which of a few fixed reasons applies: the
/// driver's own error text (which can name the database host, user or
/// database) goes to the log, never to an unauthenticated caller.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let checked = web::block(move || -> Result<bool, String> {
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        crate::db::migrations_complete(&mut conn).map_err(|e| e.to_string())
    })
    .await;
    let reason = match checked {
        Ok(Ok(true)) => None,
        Ok(Ok(false)) => Some("database migrations are pending"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: the database did not answer");
            Some("the database is unreachable or failing; see the server log")
        }
        Err(_) => Some("server overloaded"),
    };
    let body = json!({
        "status": if reason.is_none() { "ready" } else { "not ready" },
        "database": state.backend,
        "reason": reason,
    });
    if reason.is_none() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}
