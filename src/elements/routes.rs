//! `GET /api/v1/elements`, `GET /api/v1/elements/{symbol}`.

use actix_web::{web, HttpResponse};

use super::{model::ElementSymbol, repo};
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::Page;
use crate::AppState;

pub async fn list(state: web::Data<AppState>, _user: AuthUser) -> ApiResult<HttpResponse> {
    let items = state.db(|conn| repo::list(conn, None)).await?;
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

pub async fn get(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let symbol = ElementSymbol::parse(&path.into_inner())
        .map_err(|_| ApiError::NotFound("no such element".into()))?;
    let mut found = state
        .db(move |conn| repo::list(conn, Some(symbol.as_str())))
        .await?;
    let element = found
        .pop()
        .ok_or_else(|| ApiError::NotFound("no such element".into()))?;
    Ok(HttpResponse::Ok().json(element))
}
