//! Audit endpoints: physical counts, the audit trail, checkpoints and
//! audit reports.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::checkpoints::{self, CheckpointView};
use super::counts::{self, CountFilter, CountView, NewCount};
use super::model::{CountStatus, Tolerance};
use super::reports::{self, Period, ReportMeta, ReportRow};
use super::trail::{self, TrailFilter, TrailView};
use crate::auth::{Approver, Auditor, AuthUser, Authorized, Role};
use crate::db::types::{self, Grade, Grams};
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::json::ApiJson;
use crate::http::pagination::{Page, PageRequest, MAX_LIMIT};
use crate::http::{check_text, csv, filter, query_instant, IdempotencyKey};
use crate::idempotency;
use crate::ledger::model::StockpileKey;
use crate::orders::dto::NoteRequest;
use crate::AppState;

/// `POST /api/v1/counts`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub counted_kg: String,
    pub counted_at: String,
    pub method: String,
    pub note: Option<String>,
}

impl CountRequest {
    fn validate(&self, max_future_skew_secs: i64) -> ApiResult<NewCount> {
        let mut errors = Vec::new();
        let depot = ok(&mut errors, "depot", DepotCode::parse(&self.depot));
        let element = ok(&mut errors, "element", ElementSymbol::parse(&self.element));
        let form = ok(&mut errors, "form", Form::parse(&self.form));
        let grade = ok(&mut errors, "grade", Grade::parse(&self.grade));
        let counted = ok(
            &mut errors,
            "counted_kg",
            Grams::parse_kg(&self.counted_kg).and_then(|g| {
                if g.0 < 0 {
                    Err("must not be negative".into())
                } else {
                    Ok(g)
                }
            }),
        );
        let horizon = types::now() + chrono::Duration::seconds(max_future_skew_secs);
        let counted_at = ok(
            &mut errors,
            "counted_at",
            types::parse_rfc3339(&self.counted_at).and_then(|t| {
                if t > horizon {
                    Err("lies in the future".into())
                } else {
                    Ok(t)
                }
            }),
        );
        let method = check_text(&mut errors, "method", &Some(self.method.clone()), 100);
        let note = check_text(&mut errors, "note", &self.note, 2000);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        match (depot, element, form, grade, counted, counted_at, method) {
            (
                Some(depot),
                Some(element),
                Some(form),
                Some(grade),
                Some(counted),
                Some(counted_at),
                Some(method),
            ) => Ok(NewCount {
                key: StockpileKey {
                    depot,
                    element,
                    form,
                    grade,
                },
                counted,
                counted_at,
                method,
                note,
            }),
            _ => Err(ApiError::field("body", "invalid count")),
        }
    }
}

/// The value of a parse, or `None` with the field's error recorded.
fn ok<T>(errors: &mut Vec<FieldError>, name: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| errors.push(FieldError::new(name, e))).ok()
}

fn tolerance(state: &AppState) -> ApiResult<Tolerance> {
    Tolerance::parse(
        &state.settings.audit.tolerance_percent,
        &state.settings.audit.tolerance_kg,
    )
    .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))
}

/// Operators record counts at the depots in their scope; auditors anywhere.
pub async fn create_count(
    state: web::Data<AppState>,
    user: AuthUser,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<ApiJson<CountRequest>, ApiError>,
) -> ApiResult<HttpResponse> {
    if !(user.has(Role::Auditor) || user.has(Role::Operator)) {
        return Err(ApiError::Forbidden(
            "recording a count needs the operator or the auditor role".into(),
        ));
    }
    let key = key?;
    let body = body?.into_inner();
    let new = body.validate(state.settings.ledger.max_future_skew_secs)?;
    if !user.has(Role::Auditor) {
        user.require_depot(new.key.depot.as_str())?;
    }
    let tolerance = tolerance(&state)?;
    let hash = idempotency::fingerprint("POST", "/api/v1/counts", &body);
    let subject = user.subject.clone();
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0,
            hash,
            StatusCode::CREATED,
            move |c| counts::create(c, &tolerance, &subject, &new),
        )
        .await?;
    Ok(stored.into_http())
}

fn count_id(raw: &str) -> ApiResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no count {raw}")))
}

async fn decide(
    state: web::Data<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
    accept: bool,
) -> ApiResult<HttpResponse> {
    let id = count_id(&path.into_inner())?;
    let body: NoteRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        NoteRequest::default()
    } else {
        crate::http::json::parse(&body)?
    };
    let note = body.validate()?;
    let action = if accept { "accept" } else { "reject" };
    let hash = idempotency::fingerprint("POST", &format!("/api/v1/counts/{id}/{action}"), &body);
    let settings = state.settings.ledger.clone();
    let k = key.0.clone();
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0,
            hash,
            StatusCode::OK,
            move |c| {
                counts::decide(
                    c,
                    &settings,
                    &user.subject,
                    &k,
                    id,
                    accept,
                    note.as_deref(),
                    |depot| user.require_depot(depot),
                )
            },
        )
        .await?;
    Ok(stored.into_http())
}

pub async fn accept_count(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    decide(state, user, key, path, body, true).await
}

pub async fn reject_count(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Approver>,
    key: IdempotencyKey,
    path: web::Path<String>,
    body: web::Bytes,
) -> ApiResult<HttpResponse> {
    decide(state, user, key, path, body, false).await
}

pub async fn get_count(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = count_id(&path.into_inner())?;
    let show = user.may_see_actors() || user.has(Role::Approver);
    let view = state.db(move |c| counts::view(c, id, show)).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// A list's `from`/`to` (stored form) and page, parsed after its own
/// filters (`errors`): every bad parameter is answered in one 422.
fn window_and_page(
    mut errors: Vec<FieldError>,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
    order: Option<&str>,
) -> ApiResult<(
    Option<chrono::NaiveDateTime>,
    Option<chrono::NaiveDateTime>,
    PageRequest,
)> {
    let from = filter(&mut errors, "from", from, query_instant);
    let to = filter(&mut errors, "to", to, query_instant);
    let page = PageRequest::parse_after(errors, limit, cursor, order, MAX_LIMIT)?;
    Ok((from.map(types::to_db), to.map(types::to_db), page))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountQuery {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub status: Option<String>,
    pub flagged: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

pub async fn list_counts(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    query: web::Query<CountQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let mut errors = Vec::new();
    let depot = filter(&mut errors, "depot", q.depot.as_deref(), |d| {
        DepotCode::parse(d).map(|c| c.into_string())
    });
    let element = filter(&mut errors, "element", q.element.as_deref(), |e| {
        ElementSymbol::parse(e).map(|s| s.as_str().to_string())
    });
    let status = filter(&mut errors, "status", q.status.as_deref(), |s| {
        CountStatus::parse(s)
            .map(|s| s.as_str().to_string())
            .ok_or_else(|| "must be open, accepted or rejected".to_string())
    });
    let flagged = filter(&mut errors, "flagged", q.flagged.as_deref(), |f| match f {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("must be true or false".to_string()),
    });
    let (from, to, page) = window_and_page(
        errors,
        q.from.as_deref(),
        q.to.as_deref(),
        q.limit,
        q.cursor.as_deref(),
        q.order.as_deref(),
    )?;
    let filter = CountFilter {
        depot,
        element,
        status,
        flagged,
        from,
        to,
    };
    let rows = state.db(move |c| counts::list(c, &filter, &page)).await?;
    let (rows, next_cursor) = page.finish(rows, |(r, _)| r.id);
    let show = user.may_see_actors() || user.has(Role::Approver);
    let items: Vec<CountView> = rows
        .into_iter()
        .map(|(r, depot)| CountView::from_row(r, depot, show))
        .collect();
    if csv_wanted {
        let headers = [
            "id",
            "depot",
            "element",
            "form",
            "grade",
            "counted_kg",
            "book_kg",
            "variance_kg",
            "variance_percent",
            "tolerance_kg",
            "flagged",
            "status",
            "counted_at",
            "method",
            "counted_by",
            "decided_by",
            "adjustment_sequence",
        ];
        let rows = items
            .into_iter()
            .map(|c| {
                vec![
                    c.id.to_string(),
                    c.depot,
                    c.element,
                    c.form,
                    c.grade,
                    c.counted_kg,
                    c.book_kg,
                    c.variance_kg,
                    c.variance_percent.unwrap_or_default(),
                    c.tolerance_kg,
                    c.flagged.to_string(),
                    c.status,
                    c.counted_at,
                    c.method,
                    c.counted_by.unwrap_or_default(),
                    c.decided_by.unwrap_or_default(),
                    c.adjustment_sequence
                        .map(|s| s.to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrailQuery {
    pub subject: Option<String>,
    pub method: Option<String>,
    pub status: Option<i32>,
    pub outcome: Option<String>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
    pub format: Option<String>,
}

/// `GET /api/v1/audit-trail`: every authenticated write attempt (auditors).
pub async fn list_trail(
    state: web::Data<AppState>,
    req: HttpRequest,
    _auditor: Authorized<Auditor>,
    query: web::Query<TrailQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let csv_wanted = csv::wants_csv(&req, q.format.as_deref())?;
    let mut errors = Vec::new();
    let method = filter(&mut errors, "method", q.method.as_deref(), |m| {
        let m = m.to_ascii_uppercase();
        if matches!(m.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            Ok(m)
        } else {
            Err("must be POST, PUT, PATCH or DELETE".into())
        }
    });
    if q.status.is_some_and(|s| !(100..=599).contains(&s)) {
        errors.push(FieldError::new(
            "status",
            "must be an HTTP status, 100 to 599",
        ));
    }
    let refused = filter(&mut errors, "outcome", q.outcome.as_deref(), |o| match o {
        "refused" => Ok(true),
        "accepted" => Ok(false),
        _ => Err("must be accepted or refused".into()),
    });
    for (name, v) in [
        ("subject", &q.subject),
        ("route", &q.route),
        ("request_id", &q.request_id),
    ] {
        if v.as_deref()
            .is_some_and(|v| v.contains('\0') || v.len() > 2000)
        {
            errors.push(FieldError::new(
                name,
                "must be at most 2000 characters, without NUL",
            ));
        }
    }
    let (from, to, page) = window_and_page(
        errors,
        q.from.as_deref(),
        q.to.as_deref(),
        q.limit,
        q.cursor.as_deref(),
        q.order.as_deref(),
    )?;
    let filter = TrailFilter {
        subject: q.subject,
        method,
        status: q.status,
        refused,
        route: q.route,
        request_id: q.request_id,
        from,
        to,
    };
    let rows = state.db(move |c| trail::list(c, &filter, &page)).await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let items: Vec<TrailView> = rows.into_iter().map(TrailView::from).collect();
    if csv_wanted {
        let headers = [
            "id",
            "at",
            "subject",
            "roles",
            "request_id",
            "method",
            "route",
            "path",
            "status",
            "outcome",
            "problem_type",
            "idempotency_key",
        ];
        let rows = items
            .into_iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.at,
                    t.subject,
                    t.roles.join(" "),
                    t.request_id,
                    t.method,
                    t.route,
                    t.path,
                    t.status.to_string(),
                    t.outcome,
                    t.problem_type.unwrap_or_default(),
                    t.idempotency_key.unwrap_or_default(),
                ]
            })
            .collect();
        return csv::respond(&headers, rows, next_cursor);
    }
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

fn audit_key(state: &AppState) -> ApiResult<std::sync::Arc<super::signing::AuditKey>> {
    state
        .audit_key
        .clone()
        .map(std::sync::Arc::new)
        .ok_or_else(|| {
            ApiError::Unavailable(
                "no audit signing key is configured (audit.signing_key); checkpoints and reports cannot be signed"
                    .into(),
            )
        })
}

/// `POST /api/v1/ledger/checkpoints`: take a signed checkpoint now (auditors).
pub async fn create_checkpoint(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Auditor>,
    key: IdempotencyKey,
) -> ApiResult<HttpResponse> {
    let signing = audit_key(&state)?;
    let hash = idempotency::fingerprint("POST", "/api/v1/ledger/checkpoints", &());
    let subject = user.subject.clone();
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0,
            hash,
            StatusCode::CREATED,
            move |c| checkpoints::create(c, &signing, &subject),
        )
        .await?;
    Ok(stored.into_http())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub order: Option<String>,
}

pub async fn list_checkpoints(
    state: web::Data<AppState>,
    _user: AuthUser,
    query: web::Query<CheckpointQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let rows = state.db(move |c| checkpoints::list(c, &page)).await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let items: Vec<CheckpointView> = rows.iter().map(CheckpointView::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    pub stockpile: Option<String>,
}

pub async fn checkpoint_proof(
    state: web::Data<AppState>,
    _user: AuthUser,
    path: web::Path<String>,
    query: web::Query<ProofQuery>,
) -> ApiResult<HttpResponse> {
    let raw = path.into_inner();
    let id = raw
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no checkpoint {raw}")))?;
    let stockpile = match query.into_inner().stockpile {
        None => {
            return Err(ApiError::field(
                "stockpile",
                "name the stockpile id to prove",
            ))
        }
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| ApiError::field("stockpile", "must be a stockpile id"))?,
    };
    let proof = state
        .db(move |c| checkpoints::proof(c, id, stockpile))
        .await?;
    Ok(HttpResponse::Ok().json(proof))
}

/// `POST /api/v1/audit-reports`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub period_start: String,
    pub period_end: String,
}

impl ReportRequest {
    fn validate(&self, max_future_skew_secs: i64) -> ApiResult<Period> {
        let mut errors = Vec::new();
        let start = ok(
            &mut errors,
            "period_start",
            types::parse_rfc3339(&self.period_start),
        );
        let end = ok(
            &mut errors,
            "period_end",
            types::parse_rfc3339(&self.period_end),
        );
        if let (Some(s), Some(e)) = (start, end) {
            if s >= e {
                errors.push(FieldError::new("period_end", "must be after period_start"));
            } else if e > types::now() + chrono::Duration::seconds(max_future_skew_secs) {
                errors.push(FieldError::new(
                    "period_end",
                    "lies in the future: a report is issued once, for a period that is over",
                ));
            }
        }
        match (start, end, errors.is_empty()) {
            (Some(start), Some(end), true) => Ok(Period { start, end }),
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

fn reports_on(state: &AppState) -> ApiResult<()> {
    if state.settings.audit.reports_enabled {
        Ok(())
    } else {
        Err(ApiError::Unavailable(
            "audit reports are turned off (audit.reports_enabled)".into(),
        ))
    }
}

pub async fn create_report(
    state: web::Data<AppState>,
    Authorized(user, _): Authorized<Auditor>,
    key: IdempotencyKey,
    body: ApiJson<ReportRequest>,
) -> ApiResult<HttpResponse> {
    reports_on(&state)?;
    let body = body.into_inner();
    let period = body.validate(state.settings.ledger.max_future_skew_secs)?;
    let signing = audit_key(&state)?;
    let hash = idempotency::fingerprint("POST", "/api/v1/audit-reports", &body);
    let settings = state.settings.clone();
    let subject = user.subject.clone();
    let stored = state
        .idempotent(
            user.subject.clone(),
            key.0,
            hash,
            StatusCode::CREATED,
            move |c| reports::issue(c, &settings, &signing, period, "on-demand", &subject, false),
        )
        .await?;
    Ok(stored.into_http())
}

fn may_read_reports(user: &AuthUser) -> ApiResult<()> {
    if user.has(Role::Auditor) || user.has(Role::Admin) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "audit reports need the auditor or admin role".into(),
        ))
    }
}

pub async fn list_reports(
    state: web::Data<AppState>,
    user: AuthUser,
    query: web::Query<CheckpointQuery>,
) -> ApiResult<HttpResponse> {
    may_read_reports(&user)?;
    let q = query.into_inner();
    let page = PageRequest::parse(q.limit, q.cursor.as_deref(), q.order.as_deref(), MAX_LIMIT)?;
    let rows = state.db(move |c| reports::list(c, &page)).await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let items: Vec<ReportMeta> = rows.iter().map(ReportRow::meta).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    pub format: Option<String>,
    pub section: Option<String>,
}

pub async fn get_report(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<ReportQuery>,
) -> ApiResult<HttpResponse> {
    may_read_reports(&user)?;
    let raw = path.into_inner();
    let id = raw
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("no audit report {raw}")))?;
    let q = query.into_inner();
    let format = match q.format.as_deref() {
        Some("html") => "html",
        Some("csv") => "csv",
        Some("json") => "json",
        Some(_) => return Err(ApiError::field("format", "must be json, csv or html")),
        None if csv::wants_csv(&req, None)? => "csv",
        None => "json",
    };
    if let Some(s) = q.section.as_deref() {
        if !reports::SECTIONS.contains(&s) {
            return Err(ApiError::field(
                "section",
                format!("must be one of {}", reports::SECTIONS.join(", ")),
            ));
        }
    }
    let row = state.db(move |c| reports::get(c, id)).await?;
    let document = row.document()?;
    match format {
        "csv" => {
            let text = super::render::csv(&document["report"], q.section.as_deref())
                .map_err(ApiError::internal)?;
            Ok(HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .body(text))
        }
        "html" => Ok(HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(super::render::html(id, &document))),
        _ => Ok(HttpResponse::Ok().json(document)),
    }
}

/// `GET /api/v1/audit-reports/public-key`: the key checkpoints and reports
/// are signed with.
pub async fn public_key(state: web::Data<AppState>, _user: AuthUser) -> ApiResult<HttpResponse> {
    let key = audit_key(&state)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "algorithm": "Ed25519",
        "public_key": key.public_base64(),
        "public_key_hex": hex::encode(key.public_bytes()),
    })))
}
