//! Audit reports: for a period `(start, end]`, per stockpile the opening
//! balance (as of `start`), each kind of movement, the closing balance (as of
//! `end`, the same figure `GET /stockpiles/{id}/balance?as_of=end` gives) and
//! the reconciliation; counts, release orders with who proposed and approved
//! them, awards and bids, rule firings, open and overdue exchanges, ceilings
//! used, the chain head, the latest checkpoint and the verification result.
//!
//! A report is built once, stored as the canonical JSON its Ed25519 signature
//! covers (see `signing`), and never rebuilt: it is served from what was
//! stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::checkpoints::{self, CheckpointView};
use super::counts::{CountRow, CountView};
use super::model::{self, Movements};
use super::signing::{canonical_json, AuditKey};
use crate::config::Settings;
use crate::db::schema::{
    audit_reports as ar, bids, ceilings, counts, depots, ledger_entries as le, ledger_head,
    order_transitions as ot, release_orders as ro, stockpiles,
};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::jobs::{CatchUp, Job, Schedule};

/// The version tag every report body carries.
pub const FORMAT: &str = "reserve-audit-report-v1";

/// Sections served as tables (CSV `?section=`, HTML).
pub const SECTIONS: [&str; 10] = [
    "stockpiles",
    "elements",
    "counts",
    "release_orders",
    "awards",
    "bids",
    "rule_firings",
    "exchanges",
    "ceilings",
    "chain",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

fn kg(g: i64) -> String {
    Grams(g).to_kg_string()
}

fn kg_wide(g: i128) -> String {
    types::kg_string_wide(g)
}

fn at(t: NaiveDateTime) -> String {
    types::rfc3339(types::from_db(t))
}

fn sum(
    conn: &mut DbConn,
    stockpile: i64,
    kind: Option<&str>,
    from: Option<NaiveDateTime>,
    to: NaiveDateTime,
) -> ApiResult<i64> {
    let mut q = le::table
        .filter(le::stockpile_id.eq(stockpile))
        .filter(le::occurred_at.le(to))
        .select(crate::ledger::repo::sum_quantity())
        .into_boxed();
    if let Some(k) = kind {
        q = q.filter(le::kind.eq(k));
    }
    if let Some(f) = from {
        q = q.filter(le::occurred_at.gt(f));
    }
    Ok(q.first::<Option<i64>>(conn)?.unwrap_or(0))
}

const KINDS: [&str; 7] = [
    "acquisition",
    "release",
    "transfer_in",
    "transfer_out",
    "loan_out",
    "loan_return",
    "adjustment",
];

fn movements_json(m: &Movements) -> Vec<(&'static str, Value)> {
    vec![
        ("acquisitions_kg", json!(kg(m.acquisitions))),
        ("releases_kg", json!(kg(m.releases))),
        ("transfers_in_kg", json!(kg(m.transfers_in))),
        ("transfers_out_kg", json!(kg(m.transfers_out))),
        ("loans_out_kg", json!(kg(m.loans_out))),
        ("loan_returns_kg", json!(kg(m.loan_returns))),
        ("adjustments_kg", json!(kg(m.adjustments))),
    ]
}

/// Builds the report body. Run inside a transaction that holds `ledger_head`
/// (see `issue`), so every figure belongs to one state of the ledger.
pub fn build(
    conn: &mut DbConn,
    settings: &Settings,
    trusted_key: Option<String>,
    period: Period,
    schedule: &str,
    generated_by: &str,
) -> ApiResult<Value> {
    let (start, end) = (types::to_db(period.start), types::to_db(period.end));
    // ---- per stockpile ----
    let rows: Vec<(i64, String, String, String, String)> = stockpiles::table
        .inner_join(depots::table)
        .order(stockpiles::id.asc())
        .select((
            stockpiles::id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
        .load(conn)?;
    let mut stockpile_rows = Vec::new();
    let mut per_element: BTreeMap<String, (i128, Movements, i128)> = BTreeMap::new();
    let mut failures = Vec::new();
    for (id, depot, element, form, grade) in rows {
        let closing = sum(conn, id, None, None, end)?;
        let opening = sum(conn, id, None, None, start)?;
        let mut m = Movements::default();
        let mut any = false;
        for kind in KINDS {
            let q = sum(conn, id, Some(kind), Some(start), end)?;
            any |= q != 0;
            m.add(kind, q);
        }
        if opening == 0 && closing == 0 && !any {
            continue;
        }
        let reconciles = model::reconciles(opening, &m, closing);
        if !reconciles {
            failures.push(id);
        }
        let e = per_element.entry(element.clone()).or_default();
        e.0 += opening as i128;
        e.1.merge(&m);
        e.2 += closing as i128;
        let mut row = serde_json::Map::new();
        row.insert("stockpile_id".into(), json!(id));
        row.insert("depot".into(), json!(depot));
        row.insert("element".into(), json!(element));
        row.insert("form".into(), json!(form));
        row.insert("grade".into(), json!(grade));
        row.insert("opening_kg".into(), json!(kg(opening)));
        for (k, v) in movements_json(&m) {
            row.insert(k.into(), v);
        }
        row.insert("closing_kg".into(), json!(kg(closing)));
        row.insert("reconciles".into(), json!(reconciles));
        stockpile_rows.push(Value::Object(row));
    }
    let stockpile_count = stockpile_rows.len();
    let elements: Vec<Value> = per_element
        .iter()
        .map(|(element, (opening, m, closing))| {
            let mut row = serde_json::Map::new();
            row.insert("element".into(), json!(element));
            row.insert("opening_kg".into(), json!(kg_wide(*opening)));
            for (k, v) in movements_json(m) {
                row.insert(k.into(), v);
            }
            row.insert("closing_kg".into(), json!(kg_wide(*closing)));
            row.insert("reconciles".into(), json!(*opening + m.net() == *closing));
            Value::Object(row)
        })
        .collect();

    // ---- counts recorded or decided in the period ----
    let count_rows: Vec<(CountRow, String)> = counts::table
        .inner_join(depots::table)
        .filter(
            counts::counted_at
                .gt(start)
                .and(counts::counted_at.le(end))
                .or(counts::decided_at.gt(start).and(counts::decided_at.le(end))),
        )
        .order(counts::id.asc())
        .select((CountRow::as_select(), depots::code))
        .load(conn)?;
    let counts_json: Vec<Value> = count_rows
        .into_iter()
        .map(|(r, depot)| serde_json::to_value(CountView::from_row(r, depot, true)))
        .collect::<Result<_, _>>()
        .map_err(ApiError::internal)?;

    // ---- release orders that changed in the period ----
    let mut order_ids: Vec<i64> = ot::table
        .filter(ot::at.gt(start))
        .filter(ot::at.le(end))
        .select(ot::order_id)
        .distinct()
        .load(conn)?;
    order_ids.sort_unstable();
    let mut orders = Vec::new();
    let mut awards = Vec::new();
    let mut firings = Vec::new();
    for id in &order_ids {
        let o = crate::orders::repo::view(conn, *id)?;
        for a in &o.awards {
            awards.push(json!({
                "order_id": o.id, "buyer": a.buyer, "quantity_kg": a.quantity_kg,
                "price_per_kg": a.price_per_kg, "delivered_kg": a.delivered_kg,
            }));
        }
        let approved_at = o
            .history
            .iter()
            .find(|h| h.to == "approved")
            .map(|h| h.at.clone());
        if let Some(rule) = o.rule_id {
            // Proposed by a release rule (its proposer reads `rule:{id}`).
            if o.history.first().is_some_and(|h| {
                types::parse_rfc3339(&h.at).is_ok_and(|t| t > period.start && t <= period.end)
            }) {
                firings.push(json!({
                    "rule_id": rule, "order_id": o.id, "proposed_by": o.proposed_by,
                    "proposed_at": o.created_at, "element": o.element,
                    "quantity_kg": o.quantity_kg, "status": o.status,
                }));
            }
        }
        orders.push(json!({
            "id": o.id, "kind": o.kind, "status": o.status, "element": o.element,
            "form": o.form, "grade": o.grade, "quantity_kg": o.quantity_kg,
            "released_kg": o.released_kg, "method": o.method, "authority": o.authority,
            "counterparty": o.counterparty, "proposed_by": o.proposed_by,
            "approved_by": o.approved_by, "approved_at": approved_at, "rule_id": o.rule_id,
            "created_at": o.created_at,
        }));
    }
    let bid_rows: Vec<(i64, i64, String, i64, i64, NaiveDateTime)> = bids::table
        .filter(bids::placed_at.gt(start))
        .filter(bids::placed_at.le(end))
        .order(bids::id.asc())
        .select((
            bids::id,
            bids::order_id,
            bids::buyer,
            bids::quantity_g,
            bids::price_micros,
            bids::placed_at,
        ))
        .load(conn)?;
    let bids_json: Vec<Value> = bid_rows
        .into_iter()
        .map(|(id, order_id, buyer, q, p, placed)| {
            json!({"id": id, "order_id": order_id, "buyer": buyer, "quantity_kg": kg(q),
                   "price_per_kg": types::Micros(p).to_decimal_string(), "placed_at": at(placed)})
        })
        .collect();

    // ---- exchanges open at the end of the period ----
    type Exchange = (
        i64,
        Option<String>,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<chrono::NaiveDate>,
        String,
        String,
    );
    let exchanges: Vec<Exchange> = ro::table
        .filter(ro::kind.eq("exchange"))
        .filter(ro::released_g.gt(0))
        .filter(ro::created_at.le(end))
        .order(ro::id.asc())
        .select((
            ro::id,
            ro::counterparty,
            ro::released_g,
            ro::returned_g,
            ro::premium_percent,
            ro::late_premium_percent_per_day,
            ro::return_due,
            ro::status,
            ro::element,
        ))
        .load(conn)?;
    let end_day = period.end.date_naive();
    let mut exchanges_json = Vec::new();
    for (id, counterparty, released, returned, premium, late, due, status, element) in exchanges {
        let Some(due) = due else { continue };
        let pct = |v: &Option<String>| v.as_deref().and_then(|p| p.parse().ok());
        let owed = crate::orders::model::owed_g(
            released,
            pct(&premium).unwrap_or_default(),
            pct(&late),
            due,
            end_day,
        );
        if returned >= owed {
            continue;
        }
        exchanges_json.push(json!({
            "order_id": id, "element": element, "counterparty": counterparty, "status": status,
            "released_kg": kg(released), "owed_kg": kg(owed), "returned_kg": kg(returned),
            "return_due": due.to_string(),
            "overdue": crate::orders::model::is_overdue(due, end_day, owed, returned),
        }));
    }

    // ---- ceilings of the fiscal year the period ends in ----
    let start_month = settings.ledger.fiscal_year_start_month;
    let fy = crate::orders::model::fiscal_year(end_day, start_month);
    let ceiling_rows: Vec<(String, i64, i64)> = ceilings::table
        .filter(ceilings::fiscal_year.eq(fy))
        .order(ceilings::element.asc())
        .select((
            ceilings::element,
            ceilings::acquire_max_g,
            ceilings::dispose_max_g,
        ))
        .load(conn)?;
    let mut ceilings_json = Vec::new();
    for (element, acquire_max, dispose_max) in ceiling_rows {
        let acquired =
            crate::ledger::limits::used_in_fiscal_year(conn, &element, fy, start_month, "acquire")?;
        let disposed =
            crate::ledger::limits::used_in_fiscal_year(conn, &element, fy, start_month, "dispose")?;
        ceilings_json.push(json!({
            "element": element, "fiscal_year": fy,
            "acquire_max_kg": kg(acquire_max), "acquired_kg": kg(acquired),
            "dispose_max_kg": kg(dispose_max), "disposed_kg": kg(disposed),
        }));
    }

    // ---- the chain ----
    let last_sequence: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let last_entry_hash: Option<String> = le::table
        .order(le::sequence.desc())
        .select(le::hash)
        .first(conn)
        .optional()?;
    let heads = checkpoints::current_heads(conn)?;
    let report = crate::ledger::verify::verify_snapshot(
        conn,
        crate::ledger::verify::VerifyOptions {
            trusted_key,
            progress: None,
            second_reader: None,
            select_pages: false,
        },
    )?;
    let latest = checkpoints::latest(conn)?.map(|c| CheckpointView::from(&c));

    Ok(json!({
        "format": FORMAT,
        "reserve": settings.audit.reserve_name,
        "period": {
            "start": types::rfc3339(period.start),
            "end": types::rfc3339(period.end),
            "schedule": schedule,
            "convention": "opening is the balance as of start, closing as of end (entries with occurred_at at or before each); movements are those with start < occurred_at <= end",
        },
        "generated_at": types::rfc3339(types::now()),
        "generated_by": generated_by,
        "generator": {"name": "reserve", "version": env!("CARGO_PKG_VERSION")},
        "stockpiles": stockpile_rows,
        "elements": elements,
        "reconciliation": {
            "ok": failures.is_empty(),
            "stockpiles": stockpile_count,
            "failures": failures,
            "rule": "opening + movements = closing, for every stockpile and element",
        },
        "counts": counts_json,
        "release_orders": orders,
        "awards": awards,
        "bids": bids_json,
        "rule_firings": firings,
        "exchanges": exchanges_json,
        "ceilings": ceilings_json,
        "chain": {
            "last_sequence": last_sequence,
            "last_entry_hash": last_entry_hash,
            "stockpiles_with_entries": heads.len(),
            "heads_merkle_root": checkpoints::root_of(&heads),
            "latest_checkpoint": latest,
            "verification": {
                "ok": report.ok,
                "entries_checked": report.entries_checked,
                "verified_through": report.verified_through,
                "first_problem": report.first_problem,
            },
        },
    }))
}

/// A stored report's metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportMeta {
    pub id: i64,
    pub period_start: String,
    pub period_end: String,
    pub schedule: String,
    pub generated_at: String,
    pub generated_by: String,
    pub body_sha256: String,
    pub reconciles: bool,
    pub verified: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ar)]
pub struct ReportRow {
    pub id: i64,
    pub period_start: NaiveDateTime,
    pub period_end: NaiveDateTime,
    pub schedule: String,
    pub generated_at: NaiveDateTime,
    pub generated_by: String,
    pub body: String,
    pub body_sha256: String,
    pub public_key: String,
    pub signature: String,
}

impl ReportRow {
    pub fn meta(&self) -> ReportMeta {
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        ReportMeta {
            id: self.id,
            period_start: at(self.period_start),
            period_end: at(self.period_end),
            schedule: self.schedule.clone(),
            generated_at: at(self.generated_at),
            generated_by: self.generated_by.clone(),
            body_sha256: self.body_sha256.clone(),
            reconciles: body["reconciliation"]["ok"].as_bool().unwrap_or(false),
            verified: body["chain"]["verification"]["ok"]
                .as_bool()
                .unwrap_or(false),
        }
    }

    /// The signed document as served and as `reserve audit verify` reads it.
    pub fn document(&self) -> ApiResult<Value> {
        let report: Value = serde_json::from_str(&self.body).map_err(ApiError::internal)?;
        Ok(json!({
            "id": self.id,
            "report": report,
            "signature": {
                "algorithm": "Ed25519",
                "public_key": self.public_key,
                "value": self.signature,
                "body_sha256": self.body_sha256,
                "signed": "the UTF-8 bytes of the canonical JSON of `report`: keys sorted, no whitespace (docs/audit.md)",
            },
        }))
    }
}

/// Builds, signs and stores a report; sets the period lock at its end when
/// `lock` says so. Runs inside a write transaction.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    conn: &mut DbConn,
    settings: &Settings,
    key: &AuditKey,
    period: Period,
    schedule: &str,
    generated_by: &str,
    lock: bool,
) -> ApiResult<ReportMeta> {
    // Hold the ledger head: no posting commits while the report reads, so
    // every figure (and the verification) describes one state of the ledger.
    diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
        .set(ledger_head::last_sequence.eq(ledger_head::last_sequence))
        .execute(conn)?;
    let body = build(
        conn,
        settings,
        Some(key.public_base64()),
        period,
        schedule,
        generated_by,
    )?;
    let canonical = canonical_json(&body);
    let row_sha = hex::encode(Sha256::digest(canonical.as_bytes()));
    let signature = key.sign(canonical.as_bytes());
    let generated_at = body["generated_at"]
        .as_str()
        .and_then(|t| types::parse_rfc3339(t).ok())
        .unwrap_or_else(types::now);
    let id: i64 = diesel::insert_into(ar::table)
        .values((
            ar::period_start.eq(types::to_db(period.start)),
            ar::period_end.eq(types::to_db(period.end)),
            ar::schedule.eq(schedule),
            ar::generated_at.eq(types::to_db(generated_at)),
            ar::generated_by.eq(generated_by),
            ar::body.eq(&canonical),
            ar::body_sha256.eq(&row_sha),
            ar::public_key.eq(key.public_base64()),
            ar::signature.eq(&signature),
        ))
        .returning(ar::id)
        .get_result(conn)?;
    if lock {
        // Entries at exactly `end` belong to the period: close the books
        // before the next microsecond. Locks only move forward.
        let locked_before = period.end + chrono::Duration::microseconds(1);
        let current = crate::periods::repo::current_lock(conn)?;
        if current.is_none_or(|c| c < locked_before) && locked_before <= types::now() {
            crate::periods::repo::insert(
                conn,
                locked_before,
                &format!("audit report {id} ({schedule})"),
                generated_by,
            )?;
        }
    }
    let meta = get(conn, id)?.meta();
    crate::events::repo::stage(
        conn,
        crate::events::model::REPORT_ISSUED,
        None,
        None,
        Some(&format!("audit-report:{id}")),
        &serde_json::to_value(&meta).map_err(ApiError::internal)?,
    )?;
    Ok(meta)
}

pub fn get(conn: &mut DbConn, id: i64) -> ApiResult<ReportRow> {
    ar::table
        .filter(ar::id.eq(id))
        .select(ReportRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no audit report {id}")))
}

pub fn list(conn: &mut DbConn, page: &PageRequest) -> ApiResult<Vec<ReportRow>> {
    let q = ar::table.select(ReportRow::as_select()).into_boxed();
    let q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(ar::id.lt(a)).order(ar::id.desc()),
        (Order::NewestFirst, None) => q.order(ar::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(ar::id.gt(a)).order(ar::id.asc()),
        (Order::OldestFirst, None) => q.order(ar::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}

pub const DAILY_JOB: &str = "audit.report.daily";
pub const MONTH_END_JOB: &str = "audit.report.month_end";

/// The period a scheduled slot reports on: from the schedule's previous slot
/// to this one.
pub fn period_of(schedule: &Schedule, slot: DateTime<Utc>) -> Period {
    let start = schedule
        .latest(slot - chrono::Duration::microseconds(1))
        .unwrap_or(slot - chrono::Duration::days(1));
    Period { start, end: slot }
}

pub fn scheduled(settings: &Settings, key: &Arc<AuditKey>) -> Vec<Job> {
    if !settings.audit.reports_enabled {
        return Vec::new();
    }
    let mut jobs = Vec::new();
    for (name, label, expr, lock) in [
        (DAILY_JOB, "daily", &settings.audit.daily_report_cron, false),
        (
            MONTH_END_JOB,
            "month-end",
            &settings.audit.month_end_report_cron,
            settings.audit.lock_period_on_month_end,
        ),
    ] {
        let Some(schedule) = super::jobs::schedule_of(expr) else {
            continue;
        };
        let (key, settings, sched) = (key.clone(), settings.clone(), schedule.clone());
        jobs.push(Job {
            name,
            schedule,
            // Every period needs its report, even one missed while every
            // replica was down.
            catch_up: CatchUp::Every,
            work: Arc::new(move |c, slot| {
                let period = period_of(&sched, slot);
                issue(c, &settings, &key, period, label, "schedule", lock)
                    .map(|m| format!("report {} for {} .. {}", m.id, m.period_start, m.period_end))
            }),
        });
    }
    jobs
}
