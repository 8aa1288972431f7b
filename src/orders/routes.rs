//! `/api/v1/release-orders` and `/api/v1/buyers`: HTTP only; the decisions
//! live in `model`, the storage in `repo`.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::dto::*;
use super::model::{OrderKind, Status};
use super::repo::{self, OrderFilter};
use crate::auth::{Admin, Approver, AuthUser, Authorized, Bidder, Operator};
use crate::elements::model::ElementSymbol;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest};
use crate::http::{csv, filter, IdempotencyKey};
use crate::idempotency;
use crate::ledger::dto::EntryView;
use crate::AppState;

/// Orders are assembled from several tables per item: pages stay small.
const MAX_ORDER_PAGE: i64 = 200;

fn order_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no release order {raw}")))
}

/// Runs one idempotent order write and answers with what it stored.
async fn write<T, F>(
    state: &web::Data<AppState>,
    user: &AuthUser,
    key: IdempotencyKey,
    route: String,
    body: &impl Serialize,
    status: StatusCode,
    f: F,
) -> ApiResult<HttpResponse>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&mut crate::db::DbConn, &str) -> ApiResult<T> + Send + 'static,
{
    let hash = idempotency::fingerprint("POST", &route, body);
    let k = key.0.clone();
    let stored = state
        .idempotent(user.subject.clone(), key.0, hash, status, move |c| f(c, &k))
        .await?;
    Ok(stored.into_http())
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<CreateOrderRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let order = body.validate()?;
    let actor = user.subject.clone();
    write(
        &state,
        &user,
        key,
        "/api/v1/release-orders".into(),
        &body,
        StatusCode::CREATED,
        move |c, _| repo::propose(c, &actor, &order),
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub element: Option<String>,
    pub rule_id: Option<i64>,
    pub overdue: Option<bool>,
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
    let status = filter(&mut errors, "status", q.status.as_deref(), |s| {
        Status::parse(s).map(|s| s.as_str().to_string())
    });
    let kind = filter(&mut errors, "kind", q.kind.as_deref(), |k| {
        OrderKind::parse(k).map(|k| k.as_str().to_string())
    });
    let element = filter(&mut errors, "element", q.element.as_deref(), |e| {
        ElementSymbol::parse(e).map(|e| e.to_string())
    });
    let page = PageRequest::parse_after(
        errors,
        q.limit,
        q.cursor.as_deref(),
        q.order.as_deref(),
        MAX_ORDER_PAGE,
    )?;
    let filter = OrderFilter {
        status,
        kind,
        element,
        rule_id: q.rule_id,
        overdue: q.overdue.unwrap_or(false),
    };
    let rows = state.db(move |c| repo::list(c, &filter, &page)).await?;
    let (items, next_cursor) = page.finish(rows, |o| o.id);
    if csv_wanted {
        let headers = [
            "id",
            "kind",
            "status",
            "element",
            "form",
            "grade",
            "quantity_kg",
            "method",
            "reserved_kg",
            "released_kg",
            "owed_kg",
            "returned_kg",
            "overdue",
            "proposed_by",
            "approved_by",
            "expected_completion",
            "created_at",
        ];
        let rows = items
            .into_iter()
            .map(|o| {
                vec![
                    o.id.to_string(),
                    o.kind,
                    o.status,
                    o.element,
                    o.form,
                    o.grade,
                    o.quantity_kg,
                    o.method,
                    o.reserved_kg,
                    o.released_kg,
                    o.owed_kg.unwrap_or_default(),
                    o.returned_kg,
                    o.overdue.to_string(),
                    o.proposed_by,
                    o.approved_by.unwrap_or_default(),
                    o.expected_completion.unwrap_or_default(),
                    o.created_at,
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
    let id = order_id(&path.into_inner())?;
    let view = state.db(move |c| repo::view(c, id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// The optional `{"note"}` body of approve, reject and cancel: an empty body
/// means `{}`; anything else must be that object (unknown fields refused).
fn note_of(body: &web::Bytes) -> ApiResult<(NoteRequest, Option<String>)> {
    let body: NoteRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        NoteRequest::default()
    } else {
        crate::http::json::parse(body)?
    };
    let note = body.validate()?;
    Ok((body, note))
}

/// An approver's decision on a proposed order: approve or reject.
type Decision = fn(&mut crate::db::DbConn, &str, i64, Option<&str>) -> ApiResult<OrderView>;

async fn decide(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
    action: &str,
    decision: Decision,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let (body, note) = note_of(&body)?;
    let actor = user.subject.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/{action}"),
        &body,
        StatusCode::OK,
        move |c, _| decision(c, &actor, id, note.as_deref()),
    )
    .await
}

pub async fn approve(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    decide(state, user, key, path, body, "approve", repo::approve).await
}

pub async fn reject(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    decide(state, user, key, path, body, "reject", repo::reject).await
}

pub async fn cancel(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let (body, note) = note_of(&body)?;
    let who = user.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/cancel"),
        &body,
        StatusCode::OK,
        move |c, _| repo::cancel(c, &who, id, note.as_deref()),
    )
    .await
}

pub async fn execute(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: ApiJson<ExecuteRequest>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let body = body.into_inner();
    let x = body.validate()?;
    user.require_depot(x.depot.as_str())?;
    let settings = state.settings.ledger.clone();
    let who = user.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/execute"),
        &body,
        StatusCode::CREATED,
        move |c, k| {
            repo::execute(c, &settings, &who, k, id, &x).map(|r| EntryView::from_record(r, true))
        },
    )
    .await
}

pub async fn returns(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: ApiJson<ReturnRequest>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let body = body.into_inner();
    let r = body.validate()?;
    user.require_depot(r.depot.as_str())?;
    let settings = state.settings.ledger.clone();
    let who = user.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/returns"),
        &body,
        StatusCode::CREATED,
        move |c, k| {
            repo::record_return(c, &settings, &who, k, id, &r)
                .map(|r| EntryView::from_record(r, true))
        },
    )
    .await
}

pub async fn notice(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: ApiJson<NoticeRequest>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let body = body.into_inner();
    let n = body.validate()?;
    let actor = user.subject.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/notice"),
        &body,
        StatusCode::OK,
        move |c, _| repo::notice(c, &actor, id, &n),
    )
    .await
}

pub async fn bid(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Bidder>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: ApiJson<BidRequest>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let body = body.into_inner();
    let (q, p) = body.validate()?;
    let buyer = parse_buyer_code(&user.subject).map_err(|_| {
        ApiError::Forbidden("a bidder token's subject must be a registered buyer code".into())
    })?;
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/bids"),
        &body,
        StatusCode::CREATED,
        move |c, _| repo::bid(c, &buyer, id, q, p),
    )
    .await
}

pub async fn list_bids(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let items = state.db(move |c| repo::visible_bids(c, &user, id)).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

pub async fn award(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = order_id(&path.into_inner())?;
    let actor = user.subject.clone();
    write(
        &state,
        &user,
        key,
        format!("/api/v1/release-orders/{id}/award"),
        &serde_json::Value::Null,
        StatusCode::OK,
        move |c, _| repo::award(c, &actor, id),
    )
    .await
}

pub async fn create_buyer(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    key: IdempotencyKey,
    body: ApiJson<BuyerRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let (code, name, country) = body.validate()?;
    let actor = user.subject.clone();
    write(
        &state,
        &user,
        key,
        "/api/v1/buyers".into(),
        &body,
        StatusCode::CREATED,
        move |c, _| repo::insert_buyer(c, &actor, &code, &name, &country),
    )
    .await
}

pub async fn list_buyers(state: web::Data<AppState>, _user: AuthUser) -> ApiResult<HttpResponse> {
    let items = state.db(repo::list_buyers).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}
