//! Per-element limits every posting obeys, whichever endpoint it comes from
//! (single movements, batches, order executions, returns): the reserve floor
//! and the annual ceilings. Checked by `post` after the stockpile locks, under
//! the lock of each element's `element_policies` row, which every posting
//! touching the element takes (and so do policy and ceiling changes): the
//! totals read here cannot change before the posting commits.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use diesel::prelude::*;
use serde_json::json;

use super::model::{EntryKind, Leg};
use super::post::Known;
use crate::config::LedgerSettings;
use crate::db::schema::{ceilings, element_policies, ledger_entries as le, stockpiles};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::orders::model::{fiscal_year, fiscal_year_bounds};

/// Locks the elements' rows (in symbol order) and checks the floor and the
/// ceilings. Runs after the stockpile rows are updated, so the element's
/// holding read here already includes this posting.
pub fn check(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    legs: &[Leg],
    floor_exempt: bool,
    known: Option<&Known>,
) -> ApiResult<()> {
    let elements: BTreeSet<&str> = legs.iter().map(|l| l.key.element.as_str()).collect();
    for element in elements {
        // A group locked the element's row ahead and read its floor and
        // ceilings under that lock (`ledger::group`).
        let known = known.filter(|k| k.floors.contains_key(element));
        let floor: Option<i64> = match known {
            Some(k) => k.floors[element],
            None => diesel::update(
                element_policies::table.filter(element_policies::element.eq(element)),
            )
            .set(element_policies::version.eq(element_policies::version))
            .returning(element_policies::reserve_floor_g)
            .get_result::<Option<i64>>(conn)
            .optional()?
            .flatten(),
        };
        let mine: Vec<&Leg> = legs
            .iter()
            .filter(|l| l.key.element.as_str() == element)
            .collect();
        if let Some(floor) = floor.filter(|_| !floor_exempt) {
            check_floor(conn, element, floor, &mine)?;
        }
        check_ceilings(conn, settings, element, &mine, known)?;
    }
    Ok(())
}

/// Outflows that leave the reserve: releases (and sales) and loans.
fn leaves_reserve(kind: EntryKind) -> bool {
    matches!(kind, EntryKind::Release | EntryKind::LoanOut)
}

fn check_floor(conn: &mut DbConn, element: &str, floor: i64, legs: &[&Leg]) -> ApiResult<()> {
    let leaving: i64 = legs
        .iter()
        .filter(|l| leaves_reserve(l.kind))
        .map(|l| -l.quantity.0)
        .sum();
    if leaving == 0 {
        return Ok(());
    }
    let (holding, _) = holding(conn, element)?;
    if holding < floor {
        let leg = legs
            .iter()
            .find(|l| leaves_reserve(l.kind))
            .expect("an outflow");
        return Err(ApiError::conflict(
            "below-reserve-floor",
            format!(
                "{}quantity_kg: releasing {} kg would leave {} kg of {element} in the reserve, below its floor of {} kg; only an emergency drawdown may go below it",
                leg.field_prefix,
                Grams(leaving),
                Grams(holding),
                Grams(floor)
            ),
            json!({
                "element": element,
                "reserve_floor_kg": Grams(floor).to_kg_string(),
                "holding_after_kg": Grams(holding).to_kg_string(),
                "requested_kg": Grams(leaving).to_kg_string(),
                "headroom_kg": Grams((holding + leaving - floor).max(0)).to_kg_string(),
            }),
        ));
    }
    Ok(())
}

/// The element's holding across every depot: grams on hand and grams held
/// reserved by approved orders. (SUM of a BIGINT is NUMERIC on PostgreSQL,
/// which the shared connection cannot read: cast.)
pub fn holding(conn: &mut DbConn, element: &str) -> ApiResult<(i64, i64)> {
    type Sum = diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
    let (on_hand, reserved): (Option<i64>, Option<i64>) = stockpiles::table
        .filter(stockpiles::element.eq(element))
        .select((
            diesel::dsl::sql::<Sum>("CAST(SUM(stockpiles.on_hand_g) AS BIGINT)"),
            diesel::dsl::sql::<Sum>("CAST(SUM(stockpiles.reserved_g) AS BIGINT)"),
        ))
        .first(conn)?;
    Ok((on_hand.unwrap_or(0), reserved.unwrap_or(0)))
}

/// Which way a leg counts against a ceiling: acquisitions acquire; releases
/// (sales among them) dispose. Loans, returns, transfers and adjustments are
/// neither.
fn ceiling_side(kind: EntryKind) -> Option<&'static str> {
    match kind {
        EntryKind::Acquisition => Some("acquire"),
        EntryKind::Release => Some("dispose"),
        _ => None,
    }
}

fn check_ceilings(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    element: &str,
    legs: &[&Leg],
    known: Option<&Known>,
) -> ApiResult<()> {
    let start_month = settings.fiscal_year_start_month;
    let mut requested: BTreeMap<(i32, &'static str), (i64, &Leg)> = BTreeMap::new();
    for leg in legs {
        if let Some(side) = ceiling_side(leg.kind) {
            let fy = fiscal_year(leg.occurred_at.date_naive(), start_month);
            requested.entry((fy, side)).or_insert((0, leg)).0 += leg.quantity.0.abs();
        }
    }
    for ((fy, side), (amount, leg)) in requested {
        let ceiling: Option<(i64, i64)> = match known {
            Some(k) => k.ceilings.get(&(element.to_string(), fy)).copied(),
            None => ceilings::table
                .filter(ceilings::element.eq(element))
                .filter(ceilings::fiscal_year.eq(fy))
                .select((ceilings::acquire_max_g, ceilings::dispose_max_g))
                .first(conn)
                .optional()?,
        };
        let Some((acquire_max, dispose_max)) = ceiling else {
            continue;
        };
        let max = if side == "acquire" {
            acquire_max
        } else {
            dispose_max
        };
        let used = used_in_fiscal_year(conn, element, fy, start_month, side)?;
        if used + amount > max {
            return Err(ApiError::conflict(
                "ceiling-exceeded",
                format!(
                    "{}quantity_kg: the FY{fy} ceiling to {side} {element} is {} kg, {} kg is used and {} kg more was requested",
                    leg.field_prefix,
                    Grams(max),
                    Grams(used),
                    Grams(amount)
                ),
                json!({
                    "element": element,
                    "fiscal_year": fy,
                    "ceiling": side,
                    "max_kg": Grams(max).to_kg_string(),
                    "used_kg": Grams(used).to_kg_string(),
                    "requested_kg": Grams(amount).to_kg_string(),
                    "headroom_kg": Grams((max - used).max(0)).to_kg_string(),
                }),
            ));
        }
    }
    Ok(())
}

/// The ceilings of `elements` in every fiscal year, in one statement
/// (group commit, `ledger::group`): (element, fiscal year) → (acquire max,
/// dispose max), as `check_ceilings` reads one of them.
pub fn ceilings_of(
    conn: &mut DbConn,
    elements: &[String],
) -> ApiResult<BTreeMap<(String, i32), (i64, i64)>> {
    Ok(ceilings::table
        .filter(ceilings::element.eq_any(elements))
        .select((
            ceilings::element,
            ceilings::fiscal_year,
            ceilings::acquire_max_g,
            ceilings::dispose_max_g,
        ))
        .load::<(String, i32, i64, i64)>(conn)?
        .into_iter()
        .map(|(e, fy, a, d)| ((e, fy), (a, d)))
        .collect())
}

/// Grams acquired (or disposed of) of `element` in fiscal year `fy`, by
/// `occurred_at`, as the ledger holds them now.
pub fn used_in_fiscal_year(
    conn: &mut DbConn,
    element: &str,
    fy: i32,
    start_month: u32,
    side: &str,
) -> ApiResult<i64> {
    let Some((first, last)) = fiscal_year_bounds(fy, start_month) else {
        return Ok(0);
    };
    let from = day_start(first);
    let to = day_start(last + Duration::days(1));
    let kind = if side == "acquire" {
        "acquisition"
    } else {
        "release"
    };
    let sum: Option<i64> = le::table
        .inner_join(stockpiles::table)
        .filter(stockpiles::element.eq(element))
        .filter(le::kind.eq(kind))
        .filter(le::occurred_at.ge(from))
        .filter(le::occurred_at.lt(to))
        .select(super::repo::sum_quantity())
        .first(conn)?;
    Ok(sum.unwrap_or(0).abs())
}

fn day_start(d: NaiveDate) -> chrono::NaiveDateTime {
    types::to_db(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
}
