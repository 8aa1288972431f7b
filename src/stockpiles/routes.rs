//! `/api/v1/stockpiles`: list, create, get, and balance as of an instant.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::repo::{self, StockpileFilter, StockpileView};
use crate::auth::{AuthUser, Authorized, Operator};
use crate::db::types::{self, Grade, Grams};
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, IdempotencyKey};
use crate::idempotency;
use crate::ledger::model::StockpileKey;
use crate::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub form: Option<String>,
    pub grade: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// Validates the filters shared by stockpile and ledger lists.
pub fn parse_filters(
    depot: Option<&str>,
    element: Option<&str>,
    form: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> (Option<String>, Option<String>, Option<String>) {
    let depot = depot.and_then(|d| {
        DepotCode::parse(d)
            .map_err(|e| errors.push(FieldError::new("depot", e)))
            .ok()
    });
    let element = element.and_then(|e| {
        ElementSymbol::parse(e)
            .map_err(|m| errors.push(FieldError::new("element", m)))
            .ok()
    });
    let form = form.and_then(|f| {
        Form::parse(f)
            .map_err(|m| errors.push(FieldError::new("form", m)))
            .ok()
    });
    (
        depot.map(DepotCode::into_string),
        element.map(|e| e.to_string()),
        form.map(|f| f.as_str().to_string()),
    )
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
    let (depot, element, form) = parse_filters(
        q.depot.as_deref(),
        q.element.as_deref(),
        q.form.as_deref(),
        &mut errors,
    );
    let grade = q.grade.as_deref().and_then(|g| {
        Grade::parse(g)
            .map_err(|m| errors.push(FieldError::new("grade", m)))
            .ok()
    });
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = page?;
    let filter = StockpileFilter {
        depot,
        element,
        form,
        grade: grade.map(|g| g.to_string()),
    };
    let rows = state
        .db(move |conn| repo::list(conn, &filter, &page))
        .await?;
    let (items, next_cursor) = page.finish(rows, |r| r.id);
    if csv_wanted {
        let headers = [
            "id",
            "depot",
            "element",
            "form",
            "grade",
            "on_hand_kg",
            "reserved_kg",
            "available_kg",
        ];
        let rows = items
            .into_iter()
            .map(|s| {
                vec![
                    s.id.to_string(),
                    s.depot,
                    s.element,
                    s.form,
                    s.grade,
                    s.on_hand_kg,
                    s.reserved_kg,
                    s.available_kg,
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStockpileRequest {
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
}

pub async fn create(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<CreateStockpileRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let depot = DepotCode::parse(&body.depot)
        .map_err(|m| errors.push(FieldError::new("depot", m)))
        .ok();
    let element = ElementSymbol::parse(&body.element)
        .map_err(|m| errors.push(FieldError::new("element", m)))
        .ok();
    let form = Form::parse(&body.form)
        .map_err(|m| errors.push(FieldError::new("form", m)))
        .ok();
    let grade = Grade::parse(&body.grade)
        .map_err(|m| errors.push(FieldError::new("grade", m)))
        .ok();
    let (Some(depot), Some(element), Some(form), Some(grade)) = (depot, element, form, grade)
    else {
        return Err(ApiError::Validation(errors));
    };
    let stockpile_key = StockpileKey {
        depot,
        element,
        form,
        grade,
    };
    user.require_depot(stockpile_key.depot.as_str())?;
    let hash = idempotency::fingerprint("POST", "/api/v1/stockpiles", &body);
    // 201 when this request created the stockpile, 200 with the existing one
    // otherwise: either way the caller can post against it.
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0.clone(),
            hash,
            |found: &Found| {
                if found.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                }
            },
            move |c| {
                let (view, created) = repo::create(c, &stockpile_key)?;
                Ok(Found { view, created })
            },
        )
        .await?;
    Ok(stored.into_http())
}

/// A stockpile found or created by `POST /stockpiles`; serialised as the view.
#[derive(Serialize)]
#[serde(transparent)]
struct Found {
    view: StockpileView,
    #[serde(skip)]
    created: bool,
}

fn path_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("no stockpile with id {raw}")))
}

pub async fn get(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = path_id(&path.into_inner())?;
    let view: StockpileView = state.db(move |conn| repo::get(conn, id)).await?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BalanceView {
    pub stockpile_id: i64,
    pub as_of: String,
    pub on_hand_kg: String,
    /// Entries with `occurred_at <= as_of` that make up the balance.
    pub entries_counted: i64,
    pub last_sequence: Option<i64>,
}

pub async fn balance(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
    query: web::Query<BalanceQuery>,
) -> ApiResult<HttpResponse> {
    let id = path_id(&path.into_inner())?;
    let as_of = match &query.as_of {
        None => types::now(),
        Some(s) => crate::http::query_instant(s).map_err(|e| ApiError::field("as_of", e))?,
    };
    let view = state
        .db(move |conn| {
            let (sum, count, last) =
                crate::ledger::repo::balance_as_of(conn, id, types::to_db(as_of))?;
            if last.is_none() {
                // Nothing counted: a 404 if the stockpile does not exist. A
                // stockpile with entries exists (they reference it), so the
                // common case is one round trip.
                repo::get(conn, id)?;
            }
            Ok(BalanceView {
                stockpile_id: id,
                as_of: types::rfc3339(as_of),
                on_hand_kg: Grams(sum).to_kg_string(),
                entries_counted: count,
                last_sequence: last,
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
