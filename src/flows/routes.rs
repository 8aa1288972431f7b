//! `/api/v1/import-flows` (upload as CSV or a JSON array; list) and
//! `/api/v1/cover` (days of cover and import reliance per element).

use actix_web::{http::header, http::StatusCode, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::repo::{self, FlowFilter, IngestOutcome, StoredFlow};
use super::upload::{self, Chunk, Fault, Format};
use super::{countries, cover};
use crate::auth::{AuthUser, Role};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::elements::model::{ElementSymbol, ELEMENTS};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{csv, OptionalIdempotencyKey};
use crate::idempotency;
use crate::AppState;

const ROUTE: &str = "/api/v1/import-flows";

/// Chunks of the body in flight between the connection and the reader.
const CHANNEL_CHUNKS: usize = 16;

/// The answer to an upload.
#[derive(Debug, Serialize)]
pub struct IngestView {
    /// Rows written now.
    pub inserted: u64,
    /// Rows already on record with the same content.
    pub unchanged: u64,
    /// Rows that repeated an identical earlier row of the same upload
    /// (counted once, in `inserted` or `unchanged`).
    pub repeated: u64,
    /// Distinct rows in the upload: `inserted + unchanged`.
    pub rows: u64,
    /// Elements that got new rows.
    pub elements_changed: Vec<ElementSymbol>,
    /// Every element the upload named.
    pub elements: Vec<ElementSymbol>,
    /// The release rules evaluated because their element got new rows.
    pub rule_evaluations: Vec<RuleOutcome>,
}

/// What one rule's evaluation after the upload decided.
#[derive(Debug, Serialize)]
pub struct RuleOutcome {
    pub rule_id: i64,
    pub evaluation_id: i64,
    pub decision: String,
    pub reason: String,
    pub order_id: Option<i64>,
}

impl IngestView {
    fn new(
        outcome: IngestOutcome,
        repeated: u64,
        evaluations: Vec<crate::rules::dto::EvaluationView>,
    ) -> IngestView {
        // Atomic-number order, as everywhere else elements are listed.
        let ordered = |set: std::collections::BTreeSet<ElementSymbol>| {
            let mut v: Vec<ElementSymbol> = set.into_iter().collect();
            v.sort_by_key(|e| ELEMENTS.iter().position(|(s, _)| *s == e.as_str()));
            v
        };
        IngestView {
            inserted: outcome.inserted,
            unchanged: outcome.unchanged,
            repeated,
            rows: outcome.inserted + outcome.unchanged,
            elements_changed: ordered(outcome.touched),
            elements: ordered(outcome.elements),
            rule_evaluations: evaluations
                .into_iter()
                .map(|e| RuleOutcome {
                    rule_id: e.rule_id,
                    evaluation_id: e.id,
                    decision: e.decision,
                    reason: e.reason,
                    order_id: e.order_id,
                })
                .collect(),
        }
    }
}

/// 201 when anything was written, 200 when the upload changed nothing.
fn status_of(view: &IngestView) -> StatusCode {
    if view.inserted > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

fn format_of(req: &HttpRequest) -> ApiResult<Format> {
    let essence = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match essence.as_str() {
        "text/csv" => Ok(Format::Csv),
        "application/json" => Ok(Format::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(Format::Json),
        _ => Err(ApiError::UnsupportedMediaType(
            "send the flows as CSV (`Content-Type: text/csv`) or as a JSON array \
             (`Content-Type: application/json`)"
                .into(),
        )),
    }
}

/// Feeds the body to the reader chunk by chunk, stopping at `limit` bytes.
/// Returns when the body ends or the reader stops listening.
async fn feed(mut payload: web::Payload, tx: mpsc::Sender<Chunk>, limit: usize) {
    let mut received = 0usize;
    while let Some(chunk) = payload.next().await {
        let item = match chunk {
            Ok(bytes) => {
                received += bytes.len();
                if received > limit {
                    let _ = tx.send(Err(Fault::TooLarge(limit))).await;
                    return;
                }
                Ok(bytes)
            }
            Err(e) => Err(Fault::Read(e.to_string())),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// `POST /api/v1/import-flows`: operators and admins.
///
/// The body streams through `upload::read` (validated row by row, spooled)
/// and is then ingested in one write transaction. `Idempotency-Key` is
/// optional: the rows are idempotent by (source, external_id) already, so a
/// retry without a key is safe and answers 200 with every row `unchanged`;
/// with a key a retry replays the first answer (201 and its counts) instead.
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    key: OptionalIdempotencyKey,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    if !(user.has(Role::Operator) || user.has(Role::Admin)) {
        return Err(ApiError::Forbidden(
            "uploading import flows needs the operator or admin role".into(),
        ));
    }
    let format = format_of(&req)?;
    let limit = state.settings.import_flows.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let today = chrono::Utc::now().date_naive();
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let reading = web::block(move || upload::read(rx, format, today));
    let (_, read) = futures_util::future::join(feed(payload, tx, limit), reading).await;
    let upload = read??;

    let repeated = upload.repeated;
    let request_hash = idempotency::fingerprint(
        "POST",
        ROUTE,
        &serde_json::json!({"format": format!("{format:?}"), "sha256": upload.body_sha256}),
    );
    let actor = user.subject.clone();
    let spool = upload.spool;
    let write = move |conn: &mut DbConn| -> ApiResult<IngestView> {
        let outcome = repo::ingest(conn, spool.rows()?, &actor)?;
        // Still inside the ingest's write transaction: a rule firing here
        // commits or rolls back with the flows that made it fire. Only
        // elements that got new rows: a resent file evaluates nothing.
        let touched: Vec<String> = outcome.touched.iter().map(|e| e.to_string()).collect();
        let evaluations = crate::rules::repo::evaluate_elements(conn, &touched, &actor)?;
        Ok(IngestView::new(outcome, repeated, evaluations))
    };
    match key.0 {
        Some(key) => Ok(state
            .idempotent(user.subject.clone(), key, request_hash, status_of, write)
            .await?
            .into_http()),
        None => {
            let view = state.write(write).await?;
            Ok(HttpResponse::build(status_of(&view)).json(view))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub element: Option<String>,
    pub origin: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub source: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// One stored flow as the API shows it.
#[derive(Debug, Serialize)]
pub struct FlowView {
    pub id: i64,
    pub element: String,
    pub form: String,
    pub origin_country: String,
    pub hs_code: String,
    pub period_start: String,
    pub period_end: String,
    pub quantity_kg: String,
    pub source: String,
    pub external_id: String,
    pub content_hash: String,
    pub recorded_at: String,
    /// Who uploaded it: shown to auditors and admins, `null` to others.
    pub recorded_by: Option<String>,
}

impl FlowView {
    fn new(f: StoredFlow, show_actor: bool) -> FlowView {
        FlowView {
            id: f.id,
            element: f.element,
            form: f.form,
            origin_country: f.origin_country,
            hs_code: f.hs_code,
            period_start: f.period_start.to_string(),
            period_end: f.period_end.to_string(),
            quantity_kg: Grams(f.quantity_g).to_kg_string(),
            source: f.source,
            external_id: f.external_id,
            content_hash: f.content_hash,
            recorded_at: types::rfc3339(types::from_db(f.recorded_at)),
            recorded_by: show_actor.then_some(f.recorded_by),
        }
    }
}

/// CSV pages may be longer than JSON ones: exports are their main use.
const MAX_CSV_LIMIT: i64 = 10_000;

/// `GET /api/v1/import-flows`: any role; newest first by id.
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let mut errors = Vec::new();
    let element = q.element.as_deref().and_then(|e| {
        ElementSymbol::parse(e)
            .map_err(|m| errors.push(FieldError::new("element", m)))
            .ok()
    });
    let origin = q.origin.as_deref().and_then(|o| {
        if countries::is_assigned(o) {
            Some(o.to_string())
        } else {
            errors.push(FieldError::new(
                "origin",
                "must be an officially assigned ISO 3166-1 alpha-2 code in capitals, e.g. \"CN\"",
            ));
            None
        }
    });
    let mut date = |name: &str, v: &Option<String>| {
        v.as_deref().and_then(|s| {
            super::model::parse_date(s)
                .map_err(|e| errors.push(FieldError::new(name, e)))
                .ok()
        })
    };
    let from = date("from", &q.from);
    let to = date("to", &q.to);
    if let (Some(f), Some(t)) = (from, to) {
        if f > t {
            errors.push(FieldError::new("from", "must not be after to"));
        }
    }
    let source = q.source.and_then(|s| {
        if s.contains('\0') || s.chars().count() > super::model::MAX_SOURCE_CHARS {
            errors.push(FieldError::new(
                "source",
                format!(
                    "must be at most {} characters without a NUL",
                    super::model::MAX_SOURCE_CHARS
                ),
            ));
            None
        } else {
            Some(s.trim().to_string())
        }
    });
    let max = if csv_wanted { MAX_CSV_LIMIT } else { MAX_LIMIT };
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), max);
    if let Err(ApiError::Validation(e)) = &page {
        errors.extend(e.iter().cloned());
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let page = page?;
    let filter = FlowFilter {
        element: element.map(|e| e.to_string()),
        origin,
        source,
        from,
        to,
    };
    let rows = state
        .db(move |conn| repo::list(conn, &filter, &page))
        .await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let show_actor = user.may_see_actors();
    let items: Vec<FlowView> = rows
        .into_iter()
        .map(|r| FlowView::new(r, show_actor))
        .collect();
    if csv_wanted {
        let headers = [
            "id",
            "element",
            "form",
            "origin_country",
            "hs_code",
            "period_start",
            "period_end",
            "quantity_kg",
            "source",
            "external_id",
            "content_hash",
            "recorded_at",
            "recorded_by",
        ];
        let rows = items
            .into_iter()
            .map(|f| {
                vec![
                    f.id.to_string(),
                    f.element,
                    f.form,
                    f.origin_country,
                    f.hs_code,
                    f.period_start,
                    f.period_end,
                    f.quantity_kg,
                    f.source,
                    f.external_id,
                    f.content_hash,
                    f.recorded_at,
                    f.recorded_by.unwrap_or_default(),
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverQuery {
    pub as_of: Option<String>,
}

/// `GET /api/v1/cover[?as_of=]`: any role.
pub async fn get_cover(
    state: web::Data<AppState>,
    _user: AuthUser,
    query: web::Query<CoverQuery>,
) -> ApiResult<HttpResponse> {
    let as_of = match &query.as_of {
        None => None,
        Some(s) => {
            let t = crate::http::query_instant(s).map_err(|e| ApiError::field("as_of", e))?;
            if t > types::now() {
                return Err(ApiError::field(
                    "as_of",
                    "must not be in the future: cover is known up to now",
                ));
            }
            Some(t)
        }
    };
    let view = state.db(move |conn| cover::load(conn, as_of)).await?;
    Ok(HttpResponse::Ok().json(view))
}
