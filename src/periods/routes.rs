//! `/api/v1/period-locks`: close the books before an instant (admins).

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::repo;
use crate::auth::{Admin, AuthUser, Authorized};
use crate::db::types;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::json::ApiJson;
use crate::http::pagination::Page;
use crate::http::{check_text, IdempotencyKey};
use crate::idempotency;
use crate::AppState;

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodLockRequest {
    pub locked_before: String,
    pub reason: String,
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    body: ApiJson<PeriodLockRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let locked_before = types::parse_rfc3339(&body.locked_before)
        .map_err(|e| errors.push(FieldError::new("locked_before", e)))
        .ok();
    let reason = check_text(&mut errors, "reason", &Some(body.reason.clone()), 500);
    let (Some(locked_before), Some(reason), true) = (locked_before, reason, errors.is_empty())
    else {
        return Err(ApiError::Validation(errors));
    };
    let hash = idempotency::fingerprint("POST", "/api/v1/period-locks", &body);
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0.clone(),
            hash,
            StatusCode::CREATED,
            move |c| repo::insert(c, locked_before, &reason, &user.subject),
        )
        .await?;
    Ok(stored.into_http())
}

pub async fn list(state: web::Data<AppState>, _user: AuthUser) -> ApiResult<HttpResponse> {
    let items = state.db(repo::list).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}
