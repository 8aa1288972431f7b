//! Physical counts: recorded against the book balance as of the instant
//! counted, decided by an approver other than the counter. An accepted count
//! posts an `adjustment` through `ledger::post` that brings the book, as of
//! that instant, to the count.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::model::{self, CountStatus, DecisionRefused, Tolerance};
use crate::config::LedgerSettings;
use crate::db::schema::{counts, depots, stockpiles};
use crate::db::types::{self, Grade, Grams};
use crate::db::DbConn;
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::ledger::model::{EntryDetails, EntryKind, Leg, StockpileKey};
use crate::ledger::post::{post, Posting};

/// A validated count, as the request gave it.
#[derive(Debug, Clone)]
pub struct NewCount {
    pub key: StockpileKey,
    pub counted: Grams,
    pub counted_at: DateTime<Utc>,
    pub method: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = counts)]
pub struct CountRow {
    pub id: i64,
    pub depot_id: i64,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub counted_g: i64,
    pub book_g: i64,
    pub variance_g: i64,
    pub variance_percent: Option<String>,
    pub tolerance_g: i64,
    pub flagged: bool,
    pub counted_at: NaiveDateTime,
    pub method: String,
    pub note: Option<String>,
    pub counted_by: String,
    pub recorded_at: NaiveDateTime,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<NaiveDateTime>,
    pub decision_note: Option<String>,
    pub adjustment_sequence: Option<i64>,
}

/// A count as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountView {
    pub id: i64,
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub counted_kg: String,
    pub book_kg: String,
    pub variance_kg: String,
    pub variance_percent: Option<String>,
    pub tolerance_kg: String,
    pub flagged: bool,
    pub status: String,
    pub counted_at: String,
    pub method: String,
    pub note: Option<String>,
    pub counted_by: Option<String>,
    pub recorded_at: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub decision_note: Option<String>,
    pub adjustment_sequence: Option<i64>,
}

impl CountView {
    pub fn from_row(r: CountRow, depot: String, show_actors: bool) -> CountView {
        CountView {
            id: r.id,
            depot,
            element: r.element,
            form: r.form,
            grade: r.grade,
            counted_kg: Grams(r.counted_g).to_kg_string(),
            book_kg: Grams(r.book_g).to_kg_string(),
            variance_kg: Grams(r.variance_g).to_kg_string(),
            variance_percent: r.variance_percent,
            tolerance_kg: Grams(r.tolerance_g).to_kg_string(),
            flagged: r.flagged,
            status: r.status,
            counted_at: types::rfc3339(types::from_db(r.counted_at)),
            method: r.method,
            note: r.note,
            counted_by: show_actors.then_some(r.counted_by),
            recorded_at: types::rfc3339(types::from_db(r.recorded_at)),
            decided_by: r.decided_by.filter(|_| show_actors),
            decided_at: r.decided_at.map(|t| types::rfc3339(types::from_db(t))),
            decision_note: r.decision_note,
            adjustment_sequence: r.adjustment_sequence,
        }
    }
}

/// The stockpile of `key` at depot `depot_id`, if it exists.
fn stockpile_of(
    conn: &mut DbConn,
    depot_id: i64,
    element: &str,
    form: &str,
    grade: &str,
) -> ApiResult<Option<i64>> {
    Ok(stockpiles::table
        .filter(stockpiles::depot_id.eq(depot_id))
        .filter(stockpiles::element.eq(element))
        .filter(stockpiles::form.eq(form))
        .filter(stockpiles::grade.eq(grade))
        .select(stockpiles::id)
        .first(conn)
        .optional()?)
}

/// The book balance as of `at` (entries with `occurred_at <= at`).
fn book_as_of(
    conn: &mut DbConn,
    depot_id: i64,
    element: &str,
    form: &str,
    grade: &str,
    at: NaiveDateTime,
) -> ApiResult<i64> {
    match stockpile_of(conn, depot_id, element, form, grade)? {
        Some(id) => Ok(crate::ledger::repo::balance_as_of(conn, id, at)?.0),
        None => Ok(0),
    }
}

fn depot_code(conn: &mut DbConn, depot_id: i64) -> ApiResult<String> {
    Ok(depots::table
        .filter(depots::id.eq(depot_id))
        .select(depots::code)
        .first(conn)?)
}

/// Records a count. Runs inside a write transaction.
pub fn create(
    conn: &mut DbConn,
    tolerance: &Tolerance,
    actor: &str,
    c: &NewCount,
) -> ApiResult<CountView> {
    let depot_id: i64 = depots::table
        .filter(depots::code.eq(c.key.depot.as_str()))
        .select(depots::id)
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::field("depot", format!("no depot with code {}", c.key.depot)))?;
    let (element, form, grade) = (
        c.key.element.as_str(),
        c.key.form.as_str(),
        c.key.grade.as_str(),
    );
    let at = types::to_db(c.counted_at);
    let book = book_as_of(conn, depot_id, element, form, grade, at)?;
    let v = model::variance(book, c.counted.0, tolerance);
    let id: i64 = diesel::insert_into(counts::table)
        .values((
            counts::depot_id.eq(depot_id),
            counts::element.eq(element),
            counts::form.eq(form),
            counts::grade.eq(grade),
            counts::counted_g.eq(c.counted.0),
            counts::book_g.eq(book),
            counts::variance_g.eq(v.variance_g),
            counts::variance_percent.eq(v.percent.map(|p| p.to_string())),
            counts::tolerance_g.eq(v.tolerance_g),
            counts::flagged.eq(v.flagged),
            counts::counted_at.eq(at),
            counts::method.eq(&c.method),
            counts::note.eq(&c.note),
            counts::counted_by.eq(actor),
            counts::recorded_at.eq(types::to_db(types::now())),
            counts::status.eq(CountStatus::Open.as_str()),
        ))
        .returning(counts::id)
        .get_result(conn)?;
    let counted = view(conn, id, true)?;
    if v.flagged {
        crate::events::repo::stage(
            conn,
            crate::events::model::COUNT_FLAGGED,
            Some(element),
            Some(c.key.depot.as_str()),
            Some(&format!("count:{id}")),
            &serde_json::to_value(&counted).map_err(ApiError::internal)?,
        )?;
    }
    Ok(counted)
}

pub fn row(conn: &mut DbConn, id: i64) -> ApiResult<CountRow> {
    counts::table
        .filter(counts::id.eq(id))
        .select(CountRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no count {id}")))
}

pub fn view(conn: &mut DbConn, id: i64, show_actors: bool) -> ApiResult<CountView> {
    let r = row(conn, id)?;
    let depot = depot_code(conn, r.depot_id)?;
    Ok(CountView::from_row(r, depot, show_actors))
}

/// Accepts (posting the adjustment) or rejects an open count. `scope` checks
/// the approver may act at the count's depot. Runs inside a write transaction.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    approver: &str,
    idempotency_key: &str,
    id: i64,
    accept: bool,
    note: Option<&str>,
    scope: impl Fn(&str) -> ApiResult<()>,
) -> ApiResult<CountView> {
    let r = row(conn, id)?;
    let depot = depot_code(conn, r.depot_id)?;
    scope(&depot)?;
    let status = CountStatus::parse(&r.status).unwrap_or(CountStatus::Open);
    match model::may_decide(status, &r.counted_by, approver) {
        Ok(()) => {}
        Err(DecisionRefused::SameSubject) => {
            return Err(ApiError::SameSubject(format!(
                "count {id} was recorded by {approver}; another approver must decide it"
            )))
        }
        Err(DecisionRefused::AlreadyDecided(s)) => {
            return Err(ApiError::conflict(
                "count-decided",
                format!("count {id} is already {}", s.as_str()),
                json!({ "status": s.as_str() }),
            ))
        }
    }
    let mut adjustment = None;
    if accept {
        // Recomputed here, under the write transaction: a backdated entry
        // posted since the count was recorded changes what the book held.
        let book = book_as_of(
            conn,
            r.depot_id,
            &r.element,
            &r.form,
            &r.grade,
            r.counted_at,
        )?;
        let delta = r.counted_g - book;
        if delta != 0 {
            let key = StockpileKey {
                depot: DepotCode::parse(&depot)
                    .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?,
                element: ElementSymbol::parse(&r.element)
                    .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?,
                form: Form::parse(&r.form).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?,
                grade: Grade::from_stored(r.grade.clone()),
            };
            let leg = Leg {
                key,
                kind: EntryKind::Adjustment,
                quantity: Grams(delta),
                occurred_at: types::from_db(r.counted_at),
                occurred_at_given: true,
                details: EntryDetails {
                    reference: Some(format!("count:{id}")),
                    note: Some(format!(
                        "physical count {id} ({}) accepted by {approver}",
                        r.method
                    )),
                    ..Default::default()
                },
                field_prefix: String::new(),
            };
            let records = post(
                conn,
                settings,
                Posting {
                    actor: approver,
                    idempotency_key,
                    legs: vec![leg],
                    order: None,
                },
            )?;
            adjustment = records.first().map(|e| e.entry.sequence);
        }
    }
    let to = if accept {
        CountStatus::Accepted
    } else {
        CountStatus::Rejected
    };
    let changed = diesel::update(
        counts::table
            .filter(counts::id.eq(id))
            .filter(counts::status.eq(CountStatus::Open.as_str())),
    )
    .set((
        counts::status.eq(to.as_str()),
        counts::decided_by.eq(approver),
        counts::decided_at.eq(types::to_db(types::now())),
        counts::decision_note.eq(note),
        counts::adjustment_sequence.eq(adjustment),
    ))
    .execute(conn)?;
    if changed == 0 {
        // Another approver decided it meanwhile; roll back our adjustment.
        return Err(ApiError::conflict(
            "count-decided",
            format!("count {id} was decided meanwhile"),
            json!({}),
        ));
    }
    view(conn, id, true)
}

/// Filters of `GET /api/v1/counts`.
#[derive(Debug, Clone, Default)]
pub struct CountFilter {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub status: Option<String>,
    pub flagged: Option<bool>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

/// One page of counts (plus one), by id.
pub fn list(
    conn: &mut DbConn,
    f: &CountFilter,
    page: &PageRequest,
) -> ApiResult<Vec<(CountRow, String)>> {
    let mut q = counts::table
        .inner_join(depots::table)
        .select((CountRow::as_select(), depots::code))
        .into_boxed();
    if let Some(d) = &f.depot {
        q = q.filter(depots::code.eq(d.clone()));
    }
    if let Some(e) = &f.element {
        q = q.filter(counts::element.eq(e.clone()));
    }
    if let Some(s) = &f.status {
        q = q.filter(counts::status.eq(s.clone()));
    }
    if let Some(fl) = f.flagged {
        q = q.filter(counts::flagged.eq(fl));
    }
    if let Some(t) = f.from {
        q = q.filter(counts::counted_at.ge(t));
    }
    if let Some(t) = f.to {
        q = q.filter(counts::counted_at.lt(t));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(counts::id.lt(a)).order(counts::id.desc()),
        (Order::NewestFirst, None) => q.order(counts::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(counts::id.gt(a)).order(counts::id.asc()),
        (Order::OldestFirst, None) => q.order(counts::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}

/// Open counts whose variance is beyond tolerance, oldest first: the
/// dashboard's to-do list.
pub fn open_flagged(conn: &mut DbConn, limit: i64) -> ApiResult<(i64, Vec<(CountRow, String)>)> {
    let open = || {
        counts::table
            .filter(counts::status.eq(CountStatus::Open.as_str()))
            .filter(counts::flagged.eq(true))
    };
    let total: i64 = open().count().get_result(conn)?;
    let rows = open()
        .inner_join(depots::table)
        .order(counts::id.asc())
        .limit(limit)
        .select((CountRow::as_select(), depots::code))
        .load(conn)?;
    Ok((total, rows))
}
