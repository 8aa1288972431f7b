//! `/api/v1/release-rules`: admins keep the rules (`If-Match` on change);
//! anyone signed in reads them and their evaluations; admins and operators
//! may ask for an evaluation now.

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::{EvaluationView, RuleRequest, RuleView};
use super::repo::{self, Expected, RuleFilter, Trigger};
use crate::auth::{Admin, AuthUser, Authorized, Role};
use crate::db::{read_transaction, write_transaction};
use crate::elements::model::ElementSymbol;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, filter, IdempotencyKey};
use crate::idempotency;
use crate::AppState;

fn rule_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no release rule {raw}")))
}

fn with_etag(status: StatusCode, view: &RuleView) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, view.etag()))
        .json(view)
}

/// What `If-Match` demands of rule `id`: `*` or one of its ETags.
fn if_match(req: &HttpRequest, id: i64) -> ApiResult<Expected> {
    crate::http::if_match_version(req, "rule", id)
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    body: ApiJson<RuleRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let rule = body.validate()?;
    let hash = idempotency::fingerprint("POST", "/api/v1/release-rules", &body);
    let actor = user.subject.clone();
    let stored = state
        .idempotent(user.subject, key.0, hash, StatusCode::CREATED, move |c| {
            repo::create(c, &actor, &rule)
        })
        .await?;
    Ok(stored.into_http())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub element: Option<String>,
    pub enabled: Option<bool>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
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
    let mut errors = Vec::new();
    let element = filter(&mut errors, "element", q.element.as_deref(), |e| {
        ElementSymbol::parse(e).map(|e| e.to_string())
    });
    let page = PageRequest::parse_after(
        errors,
        q.limit,
        q.cursor.as_deref(),
        q.order.as_deref(),
        MAX_LIMIT,
    )?;
    let filter = RuleFilter {
        element,
        enabled: q.enabled,
    };
    let rows = state
        .db(move |c| read_transaction(c, |c| repo::list(c, &filter, &page)))
        .await?;
    let (items, next_cursor) = page.finish(rows, |r| r.id);
    if csv_wanted {
        let headers = [
            "id",
            "element",
            "origin_countries",
            "window_days",
            "baseline_days",
            "drop_threshold_percent",
            "consecutive_breaches",
            "cooldown_days",
            "coverage_fraction",
            "cap_kg",
            "floor_kg",
            "floor_days_of_cover",
            "order_kind",
            "enabled",
            "consecutive",
            "armed",
            "last_fired_at",
            "version",
        ];
        let rows = items
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.element.clone(),
                    r.origin_countries
                        .as_ref()
                        .map(|o| o.join(" "))
                        .unwrap_or_default(),
                    r.window_days.to_string(),
                    r.baseline_days.to_string(),
                    r.drop_threshold_percent.clone(),
                    r.consecutive_breaches.to_string(),
                    r.cooldown_days.to_string(),
                    r.coverage_fraction.clone(),
                    r.cap_kg.clone(),
                    r.floor_kg.clone().unwrap_or_default(),
                    r.floor_days_of_cover.clone().unwrap_or_default(),
                    r.order_kind.clone(),
                    r.enabled.to_string(),
                    r.state.consecutive.to_string(),
                    r.state.armed.to_string(),
                    r.state.last_fired_at.clone().unwrap_or_default(),
                    r.version.to_string(),
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
    let id = rule_id(&path.into_inner())?;
    let row = state.db(move |c| repo::find(c, id)).await?;
    Ok(with_etag(StatusCode::OK, &row.view()))
}

pub async fn replace(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
    body: ApiJson<RuleRequest>,
) -> ApiResult<HttpResponse> {
    let id = rule_id(&path.into_inner())?;
    let rule = body.into_inner().validate()?;
    let expected = if_match(&req, id)?;
    let view = state
        .db(move |c| write_transaction(c, |c| repo::replace(c, &user.subject, id, expected, &rule)))
        .await?;
    Ok(with_etag(StatusCode::OK, &view))
}

pub async fn delete(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = rule_id(&path.into_inner())?;
    let expected = if_match(&req, id)?;
    state
        .db(move |c| write_transaction(c, |c| repo::delete(c, &user.subject, id, expected)))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

pub async fn history(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = rule_id(&path.into_inner())?;
    let items = state
        .db(move |c| read_transaction(c, |c| repo::history(c, id)))
        .await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

/// Evaluates a rule now. It may propose an order, so it is a write with an
/// `Idempotency-Key`: a retry answers the first evaluation, not a second.
pub async fn evaluate(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    if !(user.has(Role::Admin) || user.has(Role::Operator)) {
        return Err(ApiError::Forbidden(
            "evaluating a rule needs the admin or operator role".into(),
        ));
    }
    let id = rule_id(&path.into_inner())?;
    let route = format!("/api/v1/release-rules/{id}/evaluate");
    let hash = idempotency::fingerprint("POST", &route, &serde_json::Value::Null);
    let actor = user.subject.clone();
    let stored = state
        .idempotent(user.subject, key.0, hash, StatusCode::OK, move |c| {
            repo::evaluate(c, id, Trigger::Manual, &actor)
        })
        .await?;
    Ok(stored.into_http())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationsQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

pub async fn evaluations(
    state: web::Data<AppState>,
    req: HttpRequest,
    _user: AuthUser,
    path: web::Path<String>,
    query: web::Query<EvaluationsQuery>,
) -> ApiResult<HttpResponse> {
    let id = rule_id(&path.into_inner())?;
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let rows = state
        .db(move |c| read_transaction(c, |c| repo::evaluations(c, id, &page)))
        .await?;
    let (items, next_cursor) = page.finish(rows, |e: &EvaluationView| e.id);
    if csv_wanted {
        let headers = [
            "id",
            "at",
            "trigger",
            "data_horizon",
            "window_start",
            "window_end",
            "baseline_start",
            "baseline_end",
            "window_kg_per_day",
            "baseline_kg_per_day",
            "drop_percent",
            "breach",
            "consecutive",
            "decision",
            "reason",
            "proposed_kg",
            "order_id",
            "detail",
        ];
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let date = |d: &Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let rows = items
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    e.at.clone(),
                    e.trigger.clone(),
                    date(&e.data_horizon),
                    date(&e.window_start),
                    date(&e.window_end),
                    date(&e.baseline_start),
                    date(&e.baseline_end),
                    opt(&e.window_kg_per_day),
                    opt(&e.baseline_kg_per_day),
                    opt(&e.drop_percent),
                    e.breach.to_string(),
                    e.consecutive.to_string(),
                    e.decision.clone(),
                    e.reason.clone(),
                    opt(&e.proposed_kg),
                    e.order_id.map(|i| i.to_string()).unwrap_or_default(),
                    e.detail.clone(),
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// Runs a what-if simulation. Writes nothing (a read-only transaction), so
/// it takes no Idempotency-Key. Any role.
pub async fn simulate(
    state: web::Data<AppState>,
    _user: AuthUser,
    body: ApiJson<super::simulate::SimulationRequest>,
) -> ApiResult<HttpResponse> {
    let (shocks, horizon) = body.into_inner().validate()?;
    let today = crate::db::types::now().date_naive();
    let view = state
        .db(move |c| read_transaction(c, |c| super::simulate::run(c, &shocks, horizon, today)))
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
