//! Days of cover and import reliance per element (`GET /api/v1/cover`).
//! `item` is the arithmetic, without a database, so each figure can be
//! redone by hand (docs/flows.md); `load` gathers its inputs.
//!
//! Rounding: every derived figure is computed exactly (`Decimal`) and rounded
//! once, when shown, half away from zero: kilograms to 3 decimals, percents
//! to 2, days to 1. Element mass alone is truncated to the gram, as in the
//! summary, so it never overstates what is held.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use diesel::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use super::series::{self, FlowSpan};
use crate::db::schema::{ledger_entries as le, stockpiles};
use crate::db::types::{self, kg_string_wide};
use crate::db::DbConn;
use crate::elements::model::{ElementSymbol, ELEMENTS};
use crate::error::{ApiError, ApiResult};

/// Days of the short window, and of the baseline just before it.
pub const WINDOW_DAYS: i64 = 30;
pub const BASELINE_DAYS: i64 = 365;

/// What one element's figures are computed from.
#[derive(Debug, Clone)]
pub struct CoverInputs {
    pub element: ElementSymbol,
    /// `(on-hand grams, element-mass factor in ppm)` per form held.
    pub holding_by_form: Vec<(i64, i64)>,
    /// Grams reserved by approved orders now; `None` for a past `as_of`
    /// (reservations are not kept per instant).
    pub reserved_g: Option<i64>,
    pub consumption_g_per_year: Option<i64>,
    pub reserve_floor_g: Option<i64>,
    /// The element's flows overlapping the 395 days ending on `as_of`.
    pub flows: Vec<FlowSpan>,
    pub as_of: NaiveDate,
    pub data_horizon: Option<NaiveDate>,
}

/// One element's line of `GET /api/v1/cover`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CoverItem {
    pub element: ElementSymbol,
    pub holding_kg: String,
    pub element_mass_kg: String,
    pub available_kg: Option<String>,
    pub reserve_floor_kg: Option<String>,
    pub consumption_kg_per_year: Option<String>,
    pub consumption_kg_per_day: Option<String>,
    pub days_of_cover: Option<String>,
    pub imports_30d_kg: String,
    pub imports_90d_kg: String,
    pub imports_365d_kg: String,
    pub change_30d_percent: Option<String>,
    pub days_of_imports: Option<String>,
    pub top_origin: Option<String>,
    pub top_origin_share_percent: Option<String>,
    pub data_horizon: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoverView {
    pub as_of: String,
    pub items: Vec<CoverItem>,
}

/// `d` rounded half away from zero to `dp` decimals, written with exactly
/// `dp` decimals (never `-0.0`).
pub fn fixed(d: Decimal, dp: u32) -> String {
    let mut r = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    if r.is_zero() {
        r = Decimal::ZERO;
    }
    r.rescale(dp);
    r.to_string()
}

/// Grams as kilograms with 3 decimals (to the gram, half away from zero).
fn kg(grams: Decimal) -> String {
    fixed(grams / Decimal::from(1000), 3)
}

/// The figures of one element. Windows are whole UTC days ending on (and
/// including) the `as_of` date.
pub fn item(i: &CoverInputs) -> CoverItem {
    let holding: i128 = i.holding_by_form.iter().map(|(g, _)| *g as i128).sum();
    let mass_g: i128 = i
        .holding_by_form
        .iter()
        .map(|(g, ppm)| *g as i128 * *ppm as i128)
        .sum::<i128>()
        / 1_000_000;
    let mass = Decimal::from_i128_with_scale(mass_g, 0);
    let year = Decimal::from(365);
    let consumption = i.consumption_g_per_year.map(Decimal::from);
    let days_of_cover = consumption
        .filter(|c| !c.is_zero())
        .map(|c| fixed(mass * year / c, 1));

    let d = i.as_of;
    let window = |days| {
        let (from, to) = series::days_ending(d, days);
        series::grams_between(&i.flows, from, to)
    };
    let (imports_30, imports_90, imports_365) = (window(30), window(90), window(365));
    let (w_from, _) = series::days_ending(d, WINDOW_DAYS);
    let base_to = w_from - Duration::days(1);
    let (base_from, _) = series::days_ending(base_to, BASELINE_DAYS);
    let baseline = series::grams_per_day(&i.flows, base_from, base_to);
    let change = (!baseline.is_zero()).then(|| {
        let recent = imports_30 / Decimal::from(WINDOW_DAYS);
        fixed((recent - baseline) / baseline * Decimal::from(100), 2)
    });
    let days_of_imports = (!imports_365.is_zero()).then(|| fixed(mass * year / imports_365, 1));

    let (from_365, _) = series::days_ending(d, 365);
    let mut by_origin: BTreeMap<&str, Decimal> = BTreeMap::new();
    for f in &i.flows {
        *by_origin.entry(f.origin_country.as_str()).or_default() += f.grams_within(from_365, d);
    }
    // Most grams wins; a tie goes to the first code alphabetically.
    let top = by_origin.into_iter().filter(|(_, g)| !g.is_zero()).fold(
        None::<(&str, Decimal)>,
        |best, (o, g)| match best {
            Some((_, bg)) if bg >= g => best,
            _ => Some((o, g)),
        },
    );
    CoverItem {
        element: i.element,
        holding_kg: kg_string_wide(holding),
        element_mass_kg: kg_string_wide(mass_g),
        available_kg: i.reserved_g.map(|r| kg_string_wide(holding - r as i128)),
        reserve_floor_kg: i.reserve_floor_g.map(|g| kg(Decimal::from(g))),
        consumption_kg_per_year: consumption.map(kg),
        consumption_kg_per_day: consumption.map(|c| kg(c / year)),
        days_of_cover,
        imports_30d_kg: kg(imports_30),
        imports_90d_kg: kg(imports_90),
        imports_365d_kg: kg(imports_365),
        change_30d_percent: change,
        days_of_imports,
        top_origin: top.map(|(o, _)| o.to_string()),
        top_origin_share_percent: top.map(|(_, g)| fixed(g / imports_365 * Decimal::from(100), 2)),
        data_horizon: i.data_horizon.map(|h| h.to_string()),
    }
}

/// Every element's figures at `as_of` (now when `None`), in atomic-number
/// order, read in one snapshot.
///
/// Holding now is the stockpiles' on-hand; at a given `as_of` it is the sum
/// of ledger entries with `occurred_at <= as_of`, as a stockpile's balance
/// is. The policy is the version in force at `as_of`. Flows are counted by
/// their periods, as on record now.
pub fn load(conn: &mut DbConn, as_of: Option<DateTime<Utc>>) -> ApiResult<CoverView> {
    load_with(conn, as_of, true)
}

/// Every element's stock figures now (holding, element mass, available, days
/// of cover) without reading import flows: what a `/metrics` scrape needs,
/// at the cost of one grouped stockpile query and the policies. The import
/// figures of these items read as if no flows were on record.
pub fn stock_now(conn: &mut DbConn) -> ApiResult<Vec<CoverItem>> {
    Ok(load_with(conn, None, false)?.items)
}

fn load_with(
    conn: &mut DbConn,
    as_of: Option<DateTime<Utc>>,
    with_flows: bool,
) -> ApiResult<CoverView> {
    crate::db::read_transaction(conn, |conn| {
        let at = as_of.unwrap_or_else(types::now);
        let day = at.date_naive();
        let factors = crate::elements::repo::factors(conn)?;
        let holdings = holdings(conn, as_of)?;
        let symbols: Vec<&str> = ELEMENTS.iter().map(|(s, _)| *s).collect();
        // One query each for every element's policies, flows and horizons:
        // one an element cost 51 round trips.
        let policies = match as_of {
            None => Some(crate::policy::repo::current_of(conn, &symbols)?),
            Some(_) => None,
        };
        let from = day - Duration::days(WINDOW_DAYS + BASELINE_DAYS - 1);
        let (mut flows, horizons) = if with_flows {
            (
                super::repo::spans_of(conn, &symbols, None, from, day)?,
                super::repo::data_horizons(conn, &symbols)?,
            )
        } else {
            Default::default()
        };
        let mut items = Vec::with_capacity(ELEMENTS.len());
        for (symbol, _) in ELEMENTS {
            let element =
                ElementSymbol::parse(symbol).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
            let mine: Vec<&(String, String, i64, i64)> =
                holdings.iter().filter(|h| h.0 == symbol).collect();
            let holding_by_form = mine
                .iter()
                .map(|(e, form, on_hand, _)| {
                    let ppm = factors
                        .get(&(e.clone(), form.clone()))
                        .copied()
                        .unwrap_or(1_000_000);
                    (*on_hand, ppm)
                })
                .collect();
            let reserved_g = as_of
                .is_none()
                .then(|| mine.iter().map(|h| h.3).sum::<i64>());
            let policy = match (&policies, as_of) {
                (Some(p), _) => Some(p.get(symbol)?.clone()),
                (None, Some(t)) => {
                    match crate::policy::repo::as_of(conn, symbol, types::to_db(t)) {
                        Ok(p) => Some(p),
                        Err(ApiError::NotFound(_)) => None,
                        Err(e) => return Err(e),
                    }
                }
                (None, None) => None,
            };
            items.push(item(&CoverInputs {
                element,
                holding_by_form,
                reserved_g,
                consumption_g_per_year: policy.as_ref().and_then(|p| p.consumption_g_per_year),
                reserve_floor_g: policy.as_ref().and_then(|p| p.reserve_floor_g),
                flows: flows.remove(symbol).unwrap_or_default(),
                as_of: day,
                data_horizon: horizons.get(symbol).copied(),
            }));
        }
        Ok(CoverView {
            as_of: types::rfc3339(at),
            items,
        })
    })
}

/// `(element, form, on-hand grams, reserved grams)` summed over depots and
/// grades: now from the stockpile rows, at a past instant from the ledger
/// (reserved then reads 0: it is not kept per instant).
fn holdings(
    conn: &mut DbConn,
    as_of: Option<DateTime<Utc>>,
) -> ApiResult<Vec<(String, String, i64, i64)>> {
    type Sum = diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
    match as_of {
        None => {
            let rows: Vec<(String, String, Option<i64>, Option<i64>)> = stockpiles::table
                .group_by((stockpiles::element, stockpiles::form))
                .select((
                    stockpiles::element,
                    stockpiles::form,
                    diesel::dsl::sql::<Sum>("CAST(SUM(stockpiles.on_hand_g) AS BIGINT)"),
                    diesel::dsl::sql::<Sum>("CAST(SUM(stockpiles.reserved_g) AS BIGINT)"),
                ))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|(e, f, o, r)| (e, f, o.unwrap_or(0), r.unwrap_or(0)))
                .collect())
        }
        Some(t) => {
            let rows: Vec<(String, String, Option<i64>)> = le::table
                .inner_join(stockpiles::table)
                .filter(le::occurred_at.le(types::to_db(t)))
                .group_by((stockpiles::element, stockpiles::form))
                .select((
                    stockpiles::element,
                    stockpiles::form,
                    crate::ledger::repo::sum_quantity(),
                ))
                .load(conn)?;
            Ok(rows
                .into_iter()
                .map(|(e, f, o)| (e, f, o.unwrap_or(0), 0))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn flow(start: &str, end: &str, kg: i64, origin: &str) -> FlowSpan {
        FlowSpan {
            period_start: d(start),
            period_end: d(end),
            quantity_g: kg * 1000,
            origin_country: origin.into(),
        }
    }

    fn inputs() -> CoverInputs {
        CoverInputs {
            element: ElementSymbol::parse("Dy").unwrap(),
            holding_by_form: vec![(10_000_000, 871_324), (1_000_000, 1_000_000)],
            reserved_g: Some(500_000),
            consumption_g_per_year: Some(36_500_000),
            reserve_floor_g: None,
            flows: vec![],
            as_of: d("2026-11-30"),
            data_horizon: None,
        }
    }

    #[test]
    fn rounding_is_half_away_from_zero_with_fixed_decimals() {
        assert_eq!(fixed(Decimal::new(25, 2), 1), "0.3");
        assert_eq!(fixed(Decimal::new(-25, 2), 1), "-0.3");
        assert_eq!(fixed(Decimal::new(-4, 2), 1), "0.0");
        assert_eq!(fixed(Decimal::from(5), 2), "5.00");
    }

    #[test]
    fn stock_figures_without_flows() {
        // 10,000 kg of Dy2O3 (871,324 ppm) holds 8,713.240 kg Dy; plus
        // 1,000 kg of metal: 9,713.240 kg. Consumption 36,500 kg a year is
        // 100 kg a day, so 97.1324 days, shown as 97.1.
        let item = item(&inputs());
        assert_eq!(item.holding_kg, "11000.000");
        assert_eq!(item.element_mass_kg, "9713.240");
        assert_eq!(item.available_kg.as_deref(), Some("10500.000"));
        assert_eq!(item.consumption_kg_per_day.as_deref(), Some("100.000"));
        assert_eq!(item.days_of_cover.as_deref(), Some("97.1"));
        assert_eq!(item.imports_365d_kg, "0.000");
        assert_eq!(item.change_30d_percent, None);
        assert_eq!(item.days_of_imports, None);
        assert_eq!(item.top_origin, None);
    }

    #[test]
    fn no_or_zero_consumption_leaves_days_of_cover_null() {
        let mut i = inputs();
        i.consumption_g_per_year = Some(0);
        assert_eq!(item(&i).days_of_cover, None);
        i.consumption_g_per_year = None;
        assert_eq!(item(&i).consumption_kg_per_day, None);
        assert_eq!(item(&i).days_of_cover, None);
    }

    #[test]
    fn import_windows_change_and_top_origin() {
        let mut i = inputs();
        // Baseline: 2025-11-01..2026-10-31 (365 days): 365 kg/day from CN
        // over exactly that span. Window: 2026-11-01..30: CN 30 days at
        // 100 kg/day (3,000 kg) and MY 1,500 kg over the same days.
        i.flows = vec![
            flow("2025-11-01", "2026-10-31", 133_225, "CN"),
            flow("2026-11-01", "2026-11-30", 3_000, "CN"),
            flow("2026-11-01", "2026-11-30", 1_500, "MY"),
        ];
        let item = item(&i);
        assert_eq!(item.imports_30d_kg, "4500.000");
        // 90 days = 30 of the window + 60 of the baseline at 365 kg/day.
        assert_eq!(item.imports_90d_kg, "26400.000");
        // 365 days = 30 of the window + 335 baseline days (2025-12-01..).
        assert_eq!(item.imports_365d_kg, "126775.000");
        // (150 - 365) / 365 * 100 = -58.9041...
        assert_eq!(item.change_30d_percent.as_deref(), Some("-58.90"));
        // 9,713.240 kg / (126,775 / 365 kg/day) = 27.9656... days.
        assert_eq!(item.days_of_imports.as_deref(), Some("28.0"));
        // CN: 335 * 365 + 3,000 = 125,275 of 126,775 kg = 98.8168...%.
        assert_eq!(item.top_origin.as_deref(), Some("CN"));
        assert_eq!(item.top_origin_share_percent.as_deref(), Some("98.82"));
    }
}
