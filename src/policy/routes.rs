//! `/api/v1/elements/{symbol}/policy` (read by anyone, replaced by admins with
//! `If-Match`) and `/api/v1/ceilings` (annual ceilings, set by admins).

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::dto::{CeilingRequest, CeilingView, PolicyRequest, PolicyView};
use super::model::{parse_if_match, FiscalYear, IfMatchError, Precondition};
use super::repo;
use crate::auth::{Admin, AuthUser, Authorized};
use crate::db::{read_transaction, types, write_transaction};
use crate::elements::model::ElementSymbol;
use crate::error::{ApiError, ApiResult};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, query_instant};
use crate::AppState;

fn path_element(raw: &str) -> ApiResult<ElementSymbol> {
    ElementSymbol::parse(raw)
        .map_err(|_| ApiError::NotFound(format!("no rare-earth element with symbol {raw}")))
}

fn with_etag(view: &PolicyView) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, view.etag()))
        .json(view)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuery {
    pub as_of: Option<String>,
}

/// The element's policy now, or the version that held at `as_of`.
pub async fn get_policy(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
    query: web::Query<PolicyQuery>,
) -> ApiResult<HttpResponse> {
    let element = path_element(&path.into_inner())?;
    let as_of = match &query.as_of {
        None => None,
        Some(s) => Some(query_instant(s).map_err(|e| ApiError::field("as_of", e))?),
    };
    let row = state
        .db(move |conn| match as_of {
            None => repo::current(conn, element.as_str()),
            Some(at) => repo::as_of(conn, element.as_str(), types::to_db(at)),
        })
        .await?;
    Ok(with_etag(&PolicyView::from(row)))
}

/// What the `If-Match` header demands of the element's policy.
fn if_match(req: &HttpRequest, element: ElementSymbol) -> ApiResult<Precondition> {
    let value = req
        .headers()
        .get(header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::PreconditionRequired(
                "send If-Match with the policy's ETag (or *) to replace it".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed("If-Match is not a valid ETag".into()))?;
    parse_if_match(value, element.as_str()).map_err(|e| {
        ApiError::PreconditionFailed(match e {
            IfMatchError::Malformed => {
                "If-Match does not match the policy's current ETag".to_string()
            }
            IfMatchError::OtherElement => {
                format!("If-Match holds another element's policy ETag, not {element}'s")
            }
        })
    })
}

/// Replaces the element's policy (every field; `null` for no limit).
pub async fn put_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<String>,
    body: ApiJson<PolicyRequest>,
) -> ApiResult<HttpResponse> {
    let element = path_element(&path.into_inner())?;
    let policy = body.into_inner().validate()?;
    let precondition = if_match(&req, element)?;
    let row = state
        .db(move |conn| {
            write_transaction(conn, |c| {
                repo::replace(c, element.as_str(), precondition, &policy, &user.subject)
            })
        })
        .await?;
    Ok(with_etag(&PolicyView::from(row)))
}

fn path_ceiling(raw: (String, String)) -> ApiResult<(ElementSymbol, FiscalYear)> {
    let element = path_element(&raw.0)?;
    let fy = FiscalYear::parse(&raw.1).map_err(|e| ApiError::field("fiscal_year", e))?;
    Ok((element, fy))
}

/// Sets an element's acquisition and disposal ceilings for a fiscal year.
pub async fn put_ceiling(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Admin>,
    path: web::Path<(String, String)>,
    body: ApiJson<CeilingRequest>,
) -> ApiResult<HttpResponse> {
    let (element, fy) = path_ceiling(path.into_inner())?;
    let (acquire_max, dispose_max) = body.into_inner().validate()?;
    let start_month = state.settings.ledger.fiscal_year_start_month;
    let record = state
        .db(move |conn| {
            write_transaction(conn, |c| {
                repo::put_ceiling(
                    c,
                    element.as_str(),
                    fy,
                    acquire_max,
                    dispose_max,
                    &user.subject,
                    start_month,
                )
            })
        })
        .await?;
    Ok(HttpResponse::build(StatusCode::OK).json(CeilingView::from(record)))
}

/// One element's ceilings for one fiscal year, with what has been used.
pub async fn get_ceiling(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (element, fy) = path_ceiling(path.into_inner())?;
    let start_month = state.settings.ledger.fiscal_year_start_month;
    let record = state
        .db(move |conn| {
            read_transaction(conn, |c| {
                repo::ceiling(c, element.as_str(), fy, start_month)
            })
        })
        .await?;
    Ok(HttpResponse::Ok().json(CeilingView::from(record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingListQuery {
    pub element: Option<String>,
    pub fiscal_year: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// Every ceiling set, newest fiscal year first, optionally for one element or
/// one fiscal year.
pub async fn list_ceilings(
    state: web::Data<AppState>,
    req: HttpRequest,
    _user: AuthUser,
    query: web::Query<CeilingListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let mut errors = Vec::new();
    let element = q.element.as_deref().and_then(|e| {
        ElementSymbol::parse(e)
            .map_err(|m| errors.push(crate::error::FieldError::new("element", m)))
            .ok()
    });
    let fy = q.fiscal_year.as_deref().and_then(|y| {
        FiscalYear::parse(y)
            .map_err(|m| errors.push(crate::error::FieldError::new("fiscal_year", m)))
            .ok()
    });
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let start_month = state.settings.ledger.fiscal_year_start_month;
    let rows = state
        .db(move |conn| {
            read_transaction(conn, |c| {
                repo::list_ceilings(c, &page, element.map(|e| e.as_str()), fy, start_month)
            })
        })
        .await?;
    let (rows, next_cursor) = page.finish(rows, |r| repo::key_of(&r.row));
    let items: Vec<CeilingView> = rows.into_iter().map(CeilingView::from).collect();
    if csv_wanted {
        let headers = [
            "element",
            "fiscal_year",
            "acquire_max_kg",
            "dispose_max_kg",
            "acquired_kg",
            "disposed_kg",
            "acquire_headroom_kg",
            "dispose_headroom_kg",
            "fiscal_year_start",
            "fiscal_year_end",
            "updated_at",
            "updated_by",
        ];
        let rows = items
            .into_iter()
            .map(|c| {
                vec![
                    c.element,
                    c.fiscal_year.to_string(),
                    c.acquire_max_kg,
                    c.dispose_max_kg,
                    c.acquired_kg,
                    c.disposed_kg,
                    c.acquire_headroom_kg,
                    c.dispose_headroom_kg,
                    c.fiscal_year_start,
                    c.fiscal_year_end,
                    c.updated_at,
                    c.updated_by,
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}
