//! Policy and ceiling rows. Every change locks the element's
//! `element_policies` row first, the lock every posting of the element takes
//! (see `ledger::limits`), so a change and a posting never interleave: a
//! posting sees the policy and ceilings either wholly before or wholly after.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::model::{ceiling_key, DrawdownDays, ElementPolicy, FiscalYear, Precondition};
use crate::db::schema::{ceilings, element_policies as ep, element_policy_history as eph};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::elements::model::ELEMENTS;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::ledger::limits::used_in_fiscal_year;
use crate::orders::model::fiscal_year_bounds;

/// One version of one element's policy, current or from the history.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ep)]
pub struct PolicyRow {
    pub element: String,
    pub reserve_floor_g: Option<i64>,
    pub consumption_g_per_year: Option<i64>,
    pub limited_drawdown_max_g: Option<i64>,
    pub limited_drawdown_max_days: Option<i32>,
    pub test_sale_max_g: Option<i64>,
    pub version: i64,
    /// When this version was written (`changed_at` in the history).
    pub updated_at: NaiveDateTime,
    /// Who wrote it (`changed_by` in the history).
    pub updated_by: String,
}

impl PolicyRow {
    /// The policy as domain values, for the decisions that depend on it
    /// (order kinds' caps, days of cover, release rules).
    pub fn policy(&self) -> ElementPolicy {
        ElementPolicy {
            reserve_floor: self.reserve_floor_g.map(Grams),
            consumption_per_year: self.consumption_g_per_year.map(Grams),
            limited_drawdown_max: self.limited_drawdown_max_g.map(Grams),
            limited_drawdown_max_days: self
                .limited_drawdown_max_days
                .map(DrawdownDays::from_stored),
            test_sale_max: self.test_sale_max_g.map(Grams),
        }
    }
}

fn not_found(element: &str) -> ApiError {
    ApiError::NotFound(format!("no policy for element {element}"))
}

/// The element's policy as it stands.
pub fn current(conn: &mut DbConn, element: &str) -> ApiResult<PolicyRow> {
    ep::table
        .filter(ep::element.eq(element))
        .select(PolicyRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| not_found(element))
}

/// The current policies of `elements`, in one query.
pub fn current_of<S: AsRef<str>>(conn: &mut DbConn, elements: &[S]) -> ApiResult<Policies> {
    let elements: Vec<&str> = elements.iter().map(AsRef::as_ref).collect();
    let rows: Vec<PolicyRow> = ep::table
        .filter(ep::element.eq_any(elements))
        .select(PolicyRow::as_select())
        .load(conn)?;
    Ok(Policies(
        rows.into_iter().map(|r| (r.element.clone(), r)).collect(),
    ))
}

/// Current policies read together, by element.
#[derive(Debug, Clone, Default)]
pub struct Policies(std::collections::HashMap<String, PolicyRow>);

impl Policies {
    /// The element's policy; 404 as `current` when it has none.
    pub fn get(&self, element: &str) -> ApiResult<&PolicyRow> {
        self.find(element).ok_or_else(|| not_found(element))
    }

    /// The element's policy, if it has one.
    pub fn find(&self, element: &str) -> Option<&PolicyRow> {
        self.0.get(element)
    }
}

/// The version of the element's policy that held at `at`: the last one
/// written at or before it. 404 before the first version.
pub fn as_of(conn: &mut DbConn, element: &str, at: NaiveDateTime) -> ApiResult<PolicyRow> {
    eph::table
        .filter(eph::element.eq(element))
        .filter(eph::changed_at.le(at))
        .order(eph::version.desc())
        .select((
            eph::element,
            eph::reserve_floor_g,
            eph::consumption_g_per_year,
            eph::limited_drawdown_max_g,
            eph::limited_drawdown_max_days,
            eph::test_sale_max_g,
            eph::version,
            eph::changed_at,
            eph::changed_by,
        ))
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no policy for element {element} had been written by {}",
                types::rfc3339(types::from_db(at))
            ))
        })
}

/// Takes the element's row lock, the one every posting of the element takes,
/// without changing the row. Returns whether the element has a row.
pub fn lock_element(conn: &mut DbConn, element: &str) -> ApiResult<bool> {
    let n = diesel::update(ep::table.filter(ep::element.eq(element)))
        .set(ep::version.eq(ep::version))
        .execute(conn)?;
    Ok(n == 1)
}

/// Replaces the element's policy if it still matches `precondition`, and
/// keeps the new version in the history. Runs inside a write transaction.
///
/// The conditional UPDATE on `version` takes the row lock and checks the
/// `If-Match` at once (a concurrent change makes it match nothing, so the
/// loser gets 412 rather than overwriting). The time is read after that, under
/// the lock, as a posting reads its `recorded_at`: versions and postings are
/// then dated in the order they took the lock, which is what `as_of` relies on.
pub fn replace(
    conn: &mut DbConn,
    element: &str,
    precondition: Precondition,
    policy: &ElementPolicy,
    actor: &str,
) -> ApiResult<PolicyRow> {
    let before = current(conn, element)?;
    let expected = match precondition {
        Precondition::Any => before.version,
        Precondition::Version(v) => v,
    };
    let stale = |now: i64| {
        ApiError::PreconditionFailed(format!(
            "the policy of {element} changed since you read it (now version {now}); fetch it again and retry"
        ))
    };
    if before.version != expected {
        return Err(stale(before.version));
    }
    let locked = diesel::update(
        ep::table
            .filter(ep::element.eq(element))
            .filter(ep::version.eq(expected)),
    )
    .set(ep::version.eq(ep::version))
    .execute(conn)?;
    if locked == 0 {
        let now = current(conn, element)?;
        return Err(stale(now.version));
    }
    let now = types::to_db(types::now());
    let g = |v: Option<Grams>| v.map(|g| g.0);
    let days = policy.limited_drawdown_max_days.map(|d| d.get());
    diesel::update(ep::table.filter(ep::element.eq(element)))
        .set((
            ep::reserve_floor_g.eq(g(policy.reserve_floor)),
            ep::consumption_g_per_year.eq(g(policy.consumption_per_year)),
            ep::limited_drawdown_max_g.eq(g(policy.limited_drawdown_max)),
            ep::limited_drawdown_max_days.eq(days),
            ep::test_sale_max_g.eq(g(policy.test_sale_max)),
            ep::version.eq(ep::version + 1),
            ep::updated_at.eq(now),
            ep::updated_by.eq(actor),
        ))
        .execute(conn)?;
    let row = current(conn, element)?;
    diesel::insert_into(eph::table)
        .values((
            eph::element.eq(element),
            eph::version.eq(row.version),
            eph::reserve_floor_g.eq(row.reserve_floor_g),
            eph::consumption_g_per_year.eq(row.consumption_g_per_year),
            eph::limited_drawdown_max_g.eq(row.limited_drawdown_max_g),
            eph::limited_drawdown_max_days.eq(row.limited_drawdown_max_days),
            eph::test_sale_max_g.eq(row.test_sale_max_g),
            eph::changed_at.eq(row.updated_at),
            eph::changed_by.eq(&row.updated_by),
        ))
        .execute(conn)?;
    Ok(row)
}

#[derive(Debug, Clone, Queryable)]
pub struct CeilingRow {
    pub element: String,
    pub fiscal_year: i32,
    pub acquire_max_g: i64,
    pub dispose_max_g: i64,
    pub updated_at: NaiveDateTime,
    pub updated_by: String,
}

/// A ceiling with what the ledger has used of it so far.
#[derive(Debug, Clone)]
pub struct CeilingRecord {
    pub row: CeilingRow,
    pub acquired_g: i64,
    pub disposed_g: i64,
    /// First and last day of the fiscal year.
    pub first_day: chrono::NaiveDate,
    pub last_day: chrono::NaiveDate,
}

const CEILING_COLUMNS: (
    ceilings::element,
    ceilings::fiscal_year,
    ceilings::acquire_max_g,
    ceilings::dispose_max_g,
    ceilings::updated_at,
    ceilings::updated_by,
) = (
    ceilings::element,
    ceilings::fiscal_year,
    ceilings::acquire_max_g,
    ceilings::dispose_max_g,
    ceilings::updated_at,
    ceilings::updated_by,
);

fn ceiling_row(conn: &mut DbConn, element: &str, fy: i32) -> ApiResult<Option<CeilingRow>> {
    Ok(ceilings::table
        .filter(ceilings::element.eq(element))
        .filter(ceilings::fiscal_year.eq(fy))
        .select(CEILING_COLUMNS)
        .first(conn)
        .optional()?)
}

fn with_usage(conn: &mut DbConn, row: CeilingRow, start_month: u32) -> ApiResult<CeilingRecord> {
    let (first_day, last_day) =
        fiscal_year_bounds(row.fiscal_year, start_month).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("FY{} has no bounds", row.fiscal_year))
        })?;
    let acquired_g =
        used_in_fiscal_year(conn, &row.element, row.fiscal_year, start_month, "acquire")?;
    let disposed_g =
        used_in_fiscal_year(conn, &row.element, row.fiscal_year, start_month, "dispose")?;
    Ok(CeilingRecord {
        row,
        acquired_g,
        disposed_g,
        first_day,
        last_day,
    })
}

/// Sets the element's ceilings for `fy`. Runs inside a write transaction.
///
/// Locks the element's row first, so the change waits for postings of the
/// element in flight and postings after it see the new ceiling; and since
/// every ceiling change takes that lock too, "update, else insert" cannot race
/// another writer of the same ceiling.
pub fn put_ceiling(
    conn: &mut DbConn,
    element: &str,
    fy: FiscalYear,
    acquire_max: Grams,
    dispose_max: Grams,
    actor: &str,
    start_month: u32,
) -> ApiResult<CeilingRecord> {
    if !lock_element(conn, element)? {
        return Err(not_found(element));
    }
    let now = types::to_db(types::now());
    let target = ceilings::table
        .filter(ceilings::element.eq(element))
        .filter(ceilings::fiscal_year.eq(fy.get()));
    let updated = diesel::update(target)
        .set((
            ceilings::acquire_max_g.eq(acquire_max.0),
            ceilings::dispose_max_g.eq(dispose_max.0),
            ceilings::updated_at.eq(now),
            ceilings::updated_by.eq(actor),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(ceilings::table)
            .values((
                ceilings::element.eq(element),
                ceilings::fiscal_year.eq(fy.get()),
                ceilings::acquire_max_g.eq(acquire_max.0),
                ceilings::dispose_max_g.eq(dispose_max.0),
                ceilings::updated_at.eq(now),
                ceilings::updated_by.eq(actor),
            ))
            .execute(conn)?;
    }
    let row = ceiling_row(conn, element, fy.get())?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("the ceiling just written is gone")))?;
    with_usage(conn, row, start_month)
}

/// The element's ceilings for `fy` with their usage; 404 when none is set.
pub fn ceiling(
    conn: &mut DbConn,
    element: &str,
    fy: FiscalYear,
    start_month: u32,
) -> ApiResult<CeilingRecord> {
    let row = ceiling_row(conn, element, fy.get())?.ok_or_else(|| {
        ApiError::NotFound(format!("no ceiling is set for {element} in FY{}", fy.get()))
    })?;
    with_usage(conn, row, start_month)
}

/// The list's sort key of a ceiling (see `model::ceiling_key`).
pub fn key_of(row: &CeilingRow) -> i64 {
    let atomic = ELEMENTS
        .iter()
        .find(|(s, _)| *s == row.element)
        .map(|(_, n)| *n)
        .unwrap_or(0);
    ceiling_key(row.fiscal_year, atomic)
}

/// One page of ceilings (plus one more row, for `PageRequest::finish`),
/// newest fiscal year first unless asked otherwise. The table holds at most
/// one row per element and year, so it is filtered and ordered here rather
/// than in SQL, which would need the atomic number by a join.
pub fn list_ceilings(
    conn: &mut DbConn,
    page: &PageRequest,
    element: Option<&str>,
    fy: Option<FiscalYear>,
    start_month: u32,
) -> ApiResult<Vec<CeilingRecord>> {
    let mut q = ceilings::table.select(CEILING_COLUMNS).into_boxed();
    if let Some(e) = element {
        q = q.filter(ceilings::element.eq(e.to_string()));
    }
    if let Some(fy) = fy {
        q = q.filter(ceilings::fiscal_year.eq(fy.get()));
    }
    let mut rows: Vec<CeilingRow> = q.load(conn)?;
    rows.retain(|r| match (page.order, page.after) {
        (_, None) => true,
        (Order::NewestFirst, Some(after)) => key_of(r) < after,
        (Order::OldestFirst, Some(after)) => key_of(r) > after,
    });
    rows.sort_by_key(key_of);
    if page.order == Order::NewestFirst {
        rows.reverse();
    }
    rows.truncate(page.limit as usize + 1);
    rows.into_iter()
        .map(|r| with_usage(conn, r, start_month))
        .collect()
}
