//! `/healthz` (the process answers) and `/readyz` (the database answers and its
//! schema is current). Neither needs a token.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let checked = web::block(move || -> Result<bool, String> {
        let mut conn = pool
            .get()
            .map_err(|e| format!("database unreachable: {e}"))?;
        crate::db::migrations_complete(&mut conn).map_err(|e| e.to_string())
    })
    .await;
    let (ready, reason) = match checked {
        Ok(Ok(true)) => (true, None),
        Ok(Ok(false)) => (false, Some("database migrations are pending".to_string())),
        Ok(Err(e)) => (false, Some(e)),
        Err(_) => (false, Some("server overloaded".to_string())),
    };
    let body = json!({ "status": if ready { "ready" } else { "not ready" }, "database": state.backend, "reason": reason });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(body)
    }
}
