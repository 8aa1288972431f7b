//! `/api/v1/depots`: create, list, get, update (If-Match), suspend, activate, close.

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::{CreateDepotRequest, DepotView, PatchDepotRequest};
use super::model::{DepotCode, DepotStatus};
use super::repo;
use crate::auth::{Admin, AuthUser, Authorized};
use crate::db::write_transaction;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, IdempotencyKey};
use crate::idempotency;
use crate::AppState;

fn with_etag(status: StatusCode, view: &DepotView) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, view.etag()))
        .json(view)
}

fn path_code(raw: &str) -> ApiResult<DepotCode> {
    DepotCode::parse(raw).map_err(|_| ApiError::NotFound(format!("no depot with code {raw}")))
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    body: ApiJson<CreateDepotRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let depot = body.validate()?;
    let hash = idempotency::fingerprint("POST", "/api/v1/depots", &body);
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0.clone(),
            hash,
            StatusCode::CREATED,
            move |c| repo::insert(c, &depot, &user.subject).map(DepotView::from),
        )
        .await?;
    respond_with_etag(stored)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub status: Option<String>,
    pub format: Option<String>,
}

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    _user: AuthUser,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s @ ("active" | "suspended" | "closed")) => Some(s.to_string()),
        Some(_) => {
            return Err(ApiError::field(
                "status",
                "must be active, suspended or closed",
            ))
        }
    };
    let rows = state
        .db(move |conn| repo::list(conn, &page, status.as_deref()))
        .await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let items: Vec<DepotView> = rows.into_iter().map(DepotView::from).collect();
    if csv_wanted {
        let headers = [
            "id",
            "code",
            "name",
            "region",
            "status",
            "capacity_kg",
            "max_drawdown_kg_per_day",
            "on_hand_kg",
            "utilisation_pct",
        ];
        let rows = items
            .into_iter()
            .map(|d| {
                vec![
                    d.id.to_string(),
                    d.code,
                    d.name,
                    d.region,
                    d.status,
                    d.capacity_kg,
                    d.max_drawdown_kg_per_day,
                    d.on_hand_kg,
                    d.utilisation_pct,
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

pub async fn get(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let code = path_code(&path.into_inner())?;
    let row = state
        .db(move |conn| repo::by_code(conn, code.as_str()))
        .await?;
    Ok(with_etag(StatusCode::OK, &DepotView::from(row)))
}

/// What an `If-Match` header demands: `*` (the depot exists) or one ETag.
fn if_match(req: &HttpRequest) -> ApiResult<repo::Precondition> {
    let value = req
        .headers()
        .get(header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::PreconditionRequired(
                "send If-Match with the depot's ETag to update it".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed("If-Match is not a valid ETag".into()))?
        .trim();
    if value == "*" {
        return Ok(repo::Precondition::Any);
    }
    let mismatch =
        || ApiError::PreconditionFailed("If-Match does not match the depot's current ETag".into());
    let inner = value
        .strip_prefix("\"depot-")
        .and_then(|v| v.strip_suffix('"'))
        .ok_or_else(mismatch)?;
    let (id, version) = inner.split_once("-v").ok_or_else(mismatch)?;
    Ok(repo::Precondition::Version {
        id: id.parse().map_err(|_| mismatch())?,
        version: version.parse().map_err(|_| mismatch())?,
    })
}

pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
    body: ApiJson<PatchDepotRequest>,
) -> ApiResult<HttpResponse> {
    let code = path_code(&path.into_inner())?;
    let changes = body.into_inner().validate()?;
    let precondition = if_match(&req)?;
    let row = state
        .db(move |conn| {
            write_transaction(conn, |c| {
                repo::update(c, code.as_str(), precondition, &changes, &user.subject)
            })
        })
        .await?;
    Ok(with_etag(StatusCode::OK, &DepotView::from(row)))
}

async fn change_status(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    raw_code: String,
    to: DepotStatus,
) -> ApiResult<HttpResponse> {
    let code = path_code(&raw_code)?;
    let route = format!("/api/v1/depots/{code}/{}", to.as_str());
    let hash = idempotency::fingerprint("POST", &route, &serde_json::Value::Null);
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0.clone(),
            hash,
            StatusCode::OK,
            move |c| repo::set_status(c, code.as_str(), to, &user.subject).map(DepotView::from),
        )
        .await?;
    respond_with_etag(stored)
}

/// A stored depot response, with the depot's ETag header restored.
fn respond_with_etag(stored: idempotency::StoredResponse) -> ApiResult<HttpResponse> {
    let view: DepotView = serde_json::from_str(&stored.body).map_err(ApiError::internal)?;
    let mut response = stored.into_http();
    if let Ok(v) = header::HeaderValue::from_str(&view.etag()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

pub async fn suspend(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    change_status(state, user, key, path.into_inner(), DepotStatus::Suspended).await
}

pub async fn activate(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    change_status(state, user, key, path.into_inner(), DepotStatus::Active).await
}

pub async fn close(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    change_status(state, user, key, path.into_inner(), DepotStatus::Closed).await
}
