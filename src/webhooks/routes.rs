//! `/api/v1/webhooks`: admins register receivers (`If-Match` on change),
//! read each one's delivery log, and ask for a delivery again.

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::{CreateWebhook, PatchWebhook, WebhookView};
use super::repo;
use crate::auth::{Admin, Authorized};
use crate::db::read_transaction;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{filter, if_match_version, IdempotencyKey};
use crate::idempotency;
use crate::AppState;

fn webhook_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no webhook {raw}")))
}

fn with_etag(status: StatusCode, view: &WebhookView) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, view.etag()))
        .json(view)
}

fn retry_window(state: &AppState) -> chrono::Duration {
    chrono::Duration::hours(state.settings.webhooks.retry_window_hours as i64)
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    body: ApiJson<CreateWebhook>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let change = body.validate()?;
    let hash = idempotency::fingerprint("POST", "/api/v1/webhooks", &body);
    let actor = user.subject.clone();
    let stored = state
        .idempotent(user.subject, key.0, hash, StatusCode::CREATED, move |c| {
            repo::create(c, &actor, &change)
        })
        .await?;
    Ok(stored.into_http())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub enabled: Option<bool>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    _admin: Authorized<Admin>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let enabled = q.enabled;
    let rows = state
        .db(move |c| read_transaction(c, |c| repo::list(c, enabled, &page)))
        .await?;
    let (items, next_cursor) = page.finish(rows, |w| w.id);
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

pub async fn get(
    state: web::Data<AppState>,
    _admin: Authorized<Admin>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = webhook_id(&path.into_inner())?;
    let row = state.db(move |c| repo::find(c, id)).await?;
    Ok(with_etag(StatusCode::OK, &row.view()))
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
    body: ApiJson<PatchWebhook>,
) -> ApiResult<HttpResponse> {
    let id = webhook_id(&path.into_inner())?;
    let change = body.into_inner().validate()?;
    let expected = if_match_version(&req, "webhook", id)?;
    let view = state
        .write(move |c| repo::update(c, &user.subject, id, expected, &change))
        .await?;
    Ok(with_etag(StatusCode::OK, &view))
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = webhook_id(&path.into_inner())?;
    let expected = if_match_version(&req, "webhook", id)?;
    state
        .write(move |c| repo::delete(c, &user.subject, id, expected))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

const STATUSES: &[&str] = &["pending", "delivered", "failed", "cancelled"];

pub async fn deliveries(
    state: web::Data<AppState>,
    _admin: Authorized<Admin>,
    path: web::Path<String>,
    query: web::Query<DeliveriesQuery>,
) -> ApiResult<HttpResponse> {
    let id = webhook_id(&path.into_inner())?;
    let q = query.into_inner();
    let mut errors = Vec::new();
    let status = filter(&mut errors, "status", q.status.as_deref(), |s| {
        STATUSES
            .contains(&s)
            .then(|| s.to_string())
            .ok_or_else(|| format!("must be one of {}", STATUSES.join(", ")))
    });
    let page = PageRequest::parse_after(
        errors,
        q.limit,
        q.cursor.as_deref(),
        q.order.as_deref(),
        MAX_LIMIT,
    )?;
    let rows = state
        .db(move |c| read_transaction(c, |c| repo::deliveries(c, id, status.as_deref(), &page)))
        .await?;
    let (rows, next_cursor) = page.finish(rows, |(key, _)| *key);
    let items: Vec<_> = rows.into_iter().map(|(_, v)| v).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

pub async fn delivery(
    state: web::Data<AppState>,
    _admin: Authorized<Admin>,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, delivery_id) = path.into_inner();
    let id = webhook_id(&id)?;
    let view = state
        .db(move |c| read_transaction(c, |c| repo::delivery(c, id, &delivery_id)))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Sends a delivery again now, whatever became of it. A write with an
/// `Idempotency-Key`: a retried request does not queue a second redelivery.
pub async fn redeliver(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (id, delivery_id) = path.into_inner();
    let id = webhook_id(&id)?;
    let window = retry_window(&state);
    let route = format!("/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver");
    let hash = idempotency::fingerprint("POST", &route, &());
    let stored = state
        .idempotent(user.subject, key.0, hash, StatusCode::ACCEPTED, move |c| {
            repo::redeliver(c, id, &delivery_id, window)
        })
        .await?;
    Ok(stored.into_http())
}
