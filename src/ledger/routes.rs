//! Ledger endpoints: acquisitions, releases, transfers, batches, the entry list
//! and chain verification.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::dto::{BatchRequest, EntryView, MovementRequest, MovementView, TransferRequest};
use super::group;
use super::model::{EntryKind, Leg};
use super::post::{self, Posting};
use super::repo::{self, LedgerFilter};
use super::verify;
use crate::auth::{AuthUser, Authorized, Operator, Role};
use crate::db::types;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, IdempotencyKey};
use crate::idempotency;
use crate::stockpiles::routes::parse_filters;
use crate::AppState;

/// How the posted entries are answered: one entry, or the whole movement.
#[derive(Clone, Copy)]
enum Shape {
    Single,
    Movement,
}

/// Shared path of every ledger write: scope check, idempotency, `post`.
async fn post_legs(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    route: &'static str,
    request_hash: String,
    legs: Vec<Leg>,
    shape: Shape,
) -> ApiResult<HttpResponse> {
    for leg in &legs {
        user.require_depot(leg.key.depot.as_str())?;
    }
    let settings = state.settings.ledger.clone();
    tracing::debug!(route, legs = legs.len(), "posting");
    let (subject, idempotency_key) = (user.subject.clone(), key.0.clone());
    let stockpiles: Vec<_> = legs.iter().map(|l| l.key.clone()).collect();
    let work = move |c: &mut crate::db::DbConn,
                     known: Option<&mut post::Known>|
          -> ApiResult<serde_json::Value> {
        let posting = Posting {
            actor: &user.subject,
            idempotency_key: &key.0,
            legs,
            order: None,
        };
        let records = post::post_in(c, &settings, posting, known)?;
        let movement_id = records
            .first()
            .map(|r| r.entry.movement_id.clone())
            .unwrap_or_default();
        let mut entries: Vec<EntryView> = records
            .into_iter()
            .map(|r| EntryView::from_record(r, true))
            .collect();
        let value = match shape {
            Shape::Single => serde_json::to_value(entries.remove(0)),
            Shape::Movement => serde_json::to_value(MovementView {
                movement_id,
                entries,
            }),
        };
        value.map_err(ApiError::internal)
    };
    let stored = match &state.group_commit {
        Some(group) => {
            let request = group::Request {
                subject,
                key: idempotency_key,
                request_hash,
                stockpiles,
                work: Box::new(work),
                claim: None,
            };
            group::post(&state, group, request).await?
        }
        None => {
            state
                .idempotent(
                    subject,
                    idempotency_key,
                    request_hash,
                    StatusCode::CREATED,
                    move |c: &mut crate::db::DbConn| work(c, None),
                )
                .await?
        }
    };
    Ok(stored.into_http())
}

async fn movement(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    body: MovementRequest,
    kind: EntryKind,
    route: &'static str,
) -> ApiResult<HttpResponse> {
    let legs = body.into_legs(kind, types::now())?;
    let hash = idempotency::fingerprint("POST", route, &body);
    post_legs(state, user, key, route, hash, legs, Shape::Single).await
}

pub async fn acquire(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<MovementRequest>,
) -> ApiResult<HttpResponse> {
    movement(
        state,
        user,
        key,
        body.into_inner(),
        EntryKind::Acquisition,
        "/api/v1/acquisitions",
    )
    .await
}

pub async fn release(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<MovementRequest>,
) -> ApiResult<HttpResponse> {
    movement(
        state,
        user,
        key,
        body.into_inner(),
        EntryKind::Release,
        "/api/v1/releases",
    )
    .await
}

pub async fn transfer(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<TransferRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let legs = body.into_legs(types::now())?;
    let hash = idempotency::fingerprint("POST", "/api/v1/transfers", &body);
    post_legs(
        state,
        user,
        key,
        "/api/v1/transfers",
        hash,
        legs,
        Shape::Movement,
    )
    .await
}

pub async fn batch(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Operator>,
    key: IdempotencyKey,
    body: ApiJson<BatchRequest>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let legs = body.into_legs(types::now())?;
    let hash = idempotency::fingerprint("POST", "/api/v1/ledger/batch", &body);
    post_legs(
        state,
        user,
        key,
        "/api/v1/ledger/batch",
        hash,
        legs,
        Shape::Movement,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub form: Option<String>,
    pub kind: Option<String>,
    pub stockpile_id: Option<i64>,
    pub reference: Option<String>,
    pub movement_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// CSV pages may be longer than JSON ones: exports are their main use.
const MAX_CSV_LIMIT: i64 = 10_000;

pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    query: web::Query<LedgerQuery>,
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
    let kind = q.kind.as_deref().and_then(|k| match EntryKind::parse(k) {
        Some(k) => Some(k.as_str().to_string()),
        None => {
            errors.push(FieldError::new("kind", "is not an entry kind"));
            None
        }
    });
    let mut time = |name: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| {
            crate::http::query_instant(s)
                .map_err(|e| errors.push(FieldError::new(name, e)))
                .ok()
        })
    };
    let from = time("from", &q.from);
    let to = time("to", &q.to);
    // PostgreSQL refuses a NUL in a text parameter (a 500 before this check);
    // no stored reference or movement id can hold one.
    for (name, value) in [("reference", &q.reference), ("movement_id", &q.movement_id)] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            errors.push(FieldError::new(name, "must not contain a NUL character"));
        }
    }
    let max = if csv_wanted { MAX_CSV_LIMIT } else { MAX_LIMIT };
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), max);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = page?;
    let filter = LedgerFilter {
        depot,
        element,
        form,
        kind,
        stockpile_id: q.stockpile_id,
        reference: q.reference,
        movement_id: q.movement_id,
        from: from.map(types::to_db),
        to: to.map(types::to_db),
        ..LedgerFilter::default()
    };
    let rows = state
        .db(move |conn| repo::list(conn, &filter, &page))
        .await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.entry.sequence);
    let show_actor = user.may_see_actors();
    let items: Vec<EntryView> = rows
        .into_iter()
        .map(|r| EntryView::from_record(r, show_actor))
        .collect();
    if csv_wanted {
        let headers = [
            "sequence",
            "kind",
            "stockpile_id",
            "depot",
            "element",
            "form",
            "grade",
            "quantity_kg",
            "balance_after_kg",
            "occurred_at",
            "recorded_at",
            "actor",
            "reference",
            "counterparty",
            "origin_country",
            "unit_price",
            "currency",
            "note",
            "movement_id",
            "idempotency_key",
            "order_id",
            "prev_hash",
            "hash",
        ];
        let opt = |v: Option<String>| v.unwrap_or_default();
        let rows = items
            .into_iter()
            .map(|e| {
                vec![
                    e.sequence.to_string(),
                    e.kind,
                    e.stockpile_id.to_string(),
                    e.depot,
                    e.element,
                    e.form,
                    e.grade,
                    e.quantity_kg,
                    e.balance_after_kg,
                    e.occurred_at,
                    e.recorded_at,
                    opt(e.actor),
                    opt(e.reference),
                    opt(e.counterparty),
                    opt(e.origin_country),
                    opt(e.unit_price),
                    opt(e.currency),
                    opt(e.note),
                    e.movement_id,
                    opt(e.idempotency_key),
                    e.order_id.map(|o| o.to_string()).unwrap_or_default(),
                    e.prev_hash,
                    e.hash,
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Serialize)]
struct VerifyResponse {
    #[serde(flatten)]
    report: verify::VerifyReport,
}

pub async fn verify(state: web::Data<AppState>, user: AuthUser) -> ApiResult<HttpResponse> {
    if !(user.has(Role::Auditor) || user.has(Role::Admin)) {
        return Err(ApiError::Forbidden(
            "verifying the ledger needs the auditor or admin role".into(),
        ));
    }
    let trusted_key = state.audit_key.as_ref().map(|k| k.public_base64());
    // As `reserve verify` does: a second connection, opened for this
    // request outside the pool (so it cannot starve postings of pooled
    // connections), reads every other page in the same snapshot. Without
    // one (the database refuses it, or an in-memory SQLite), one reads. One
    // such connection at a time in this process: concurrent verifications
    // read with their pooled connection alone rather than open one each.
    let slot = SecondReaderSlot::take(&state.verify_second_reader);
    let second_reader = slot
        .as_ref()
        .and_then(|_| crate::db::DatabaseUrl::parse(&state.settings.database.url).ok());
    let report = state
        .db(move |c| {
            let _slot = slot;
            verify::verify_with(
                c,
                verify::VerifyOptions {
                    trusted_key,
                    progress: None,
                    second_reader,
                    select_pages: false,
                },
            )
        })
        .await?;
    Ok(HttpResponse::Ok().json(VerifyResponse { report }))
}

/// The one connection outside the pool that this app's verifications may
/// open at a time (see `verify`; `AppState::verify_second_reader` says
/// whether it is taken); released when dropped.
struct SecondReaderSlot(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl SecondReaderSlot {
    fn take(taken: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> Option<SecondReaderSlot> {
        use std::sync::atomic::Ordering;
        taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SecondReaderSlot(taken.clone()))
    }
}

impl Drop for SecondReaderSlot {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::SecondReaderSlot;

    #[test]
    fn one_second_reader_at_a_time_and_free_again_when_dropped() {
        let taken = std::sync::Arc::default();
        let first = SecondReaderSlot::take(&taken).expect("the slot is free");
        assert!(
            SecondReaderSlot::take(&taken).is_none(),
            "the slot is taken"
        );
        let other_app = std::sync::Arc::default();
        assert!(
            SecondReaderSlot::take(&other_app).is_some(),
            "another app has a slot of its own"
        );
        drop(first);
        assert!(
            SecondReaderSlot::take(&taken).is_some(),
            "the slot is free again"
        );
    }
}
