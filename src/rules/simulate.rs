//! What-if simulations: hypothetical import shocks run against today's
//! stock, consumption, flows and rules, day by day, through the same
//! `model::step` and `model::size` the real evaluations use. Nothing is
//! written.
//!
//! The assumptions, fixed so that a result can be redone by hand:
//! - Recorded flows stand as they are up to the element's data horizon.
//!   After it, each origin keeps shipping at its average daily rate over the
//!   365 days ending at the horizon.
//! - A shock cuts projected imports (never recorded ones) of its element,
//!   from one origin or from all, by `drop_percent` from `start` for
//!   `months` calendar months.
//! - Every rule of the element is evaluated once a day, from today, with the
//!   day itself as the data horizon, starting from the rule's stored state.
//! - A firing's order is approved at once and drawn from the next day at the
//!   element's drawdown capacity (the sum of the daily limits of the active
//!   depots that hold it); the rule's order stays open until fully drawn.
//! - The holding falls only by those releases; days of cover is its element
//!   mass over the policy's daily consumption.

use chrono::{Duration, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::model::{self, Settings, State, Stock};
use crate::db::types::Grams;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::flows::series::{self, FlowSpan};

/// `POST /api/v1/simulations`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    pub shocks: Vec<ShockRequest>,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub horizon_days: Option<i32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShockRequest {
    pub element: String,
    pub origin_country: Option<String>,
    pub drop_percent: String,
    pub start: String,
    #[serde(default, deserialize_with = "crate::http::json::whole_number")]
    pub months: Option<i32>,
}

/// A validated shock.
#[derive(Debug, Clone, PartialEq)]
pub struct Shock {
    pub element: String,
    pub origin_country: Option<String>,
    /// Fraction of imports that remains: 1 − drop ÷ 100.
    pub remaining: Decimal,
    pub start: NaiveDate,
    /// First day no longer shocked.
    pub end: NaiveDate,
}

pub const DEFAULT_HORIZON_DAYS: i32 = 365;
pub const MAX_HORIZON_DAYS: i32 = 1096;
pub const MAX_SHOCKS: usize = 100;

impl SimulationRequest {
    pub fn validate(&self) -> ApiResult<(Vec<Shock>, i32)> {
        let mut e = Vec::new();
        if self.shocks.is_empty() || self.shocks.len() > MAX_SHOCKS {
            e.push(FieldError::new(
                "shocks",
                format!("give 1 to {MAX_SHOCKS} shocks"),
            ));
        }
        let horizon = self.horizon_days.unwrap_or(DEFAULT_HORIZON_DAYS);
        if !(1..=MAX_HORIZON_DAYS).contains(&horizon) {
            e.push(FieldError::new(
                "horizon_days",
                format!("{horizon} is out of range: 1 to {MAX_HORIZON_DAYS}"),
            ));
        }
        let mut shocks = Vec::new();
        for (i, s) in self.shocks.iter().enumerate() {
            let f = |name: &str| format!("shocks[{i}].{name}");
            let element = crate::elements::model::ElementSymbol::parse(&s.element)
                .map_err(|m| e.push(FieldError::new(f("element"), m)))
                .ok();
            let origin = s.origin_country.clone();
            if let Some(o) = &origin {
                if !crate::flows::countries::is_assigned(o) {
                    e.push(FieldError::new(
                        f("origin_country"),
                        format!("{o:?} is not an ISO 3166-1 alpha-2 country code"),
                    ));
                }
            }
            let mut pe = Vec::new();
            let drop =
                crate::orders::dto::parse_percent(&f("drop_percent"), &s.drop_percent, &mut pe)
                    .filter(|d| *d <= Decimal::from(100));
            if drop.is_none() {
                e.push(FieldError::new(
                    f("drop_percent"),
                    "must be a percentage from \"0\" to \"100\" as a decimal string, at most 4 decimals",
                ));
            }
            let start = crate::orders::dto::parse_date(&s.start);
            if start.is_none() {
                e.push(FieldError::new(
                    f("start"),
                    "must be a date such as \"2027-03-01\"",
                ));
            }
            let months = match s.months {
                Some(m) if (1..=120).contains(&m) => Some(m),
                Some(m) => {
                    e.push(FieldError::new(
                        f("months"),
                        format!("{m} is out of range: 1 to 120"),
                    ));
                    None
                }
                None => {
                    e.push(FieldError::new(f("months"), "is required"));
                    None
                }
            };
            if let (Some(el), Some(d), Some(st), Some(m)) = (element, drop, start, months) {
                match st.checked_add_months(chrono::Months::new(m as u32)) {
                    Some(end) => shocks.push(Shock {
                        element: el.to_string(),
                        origin_country: origin,
                        remaining: Decimal::ONE - d / Decimal::from(100),
                        start: st,
                        end,
                    }),
                    None => e.push(FieldError::new(f("months"), "ends past the calendar")),
                }
            }
        }
        if !e.is_empty() {
            return Err(ApiError::Validation(e));
        }
        Ok((shocks, horizon))
    }
}

/// A rule as the simulation runs it.
#[derive(Debug, Clone)]
pub struct SimRule {
    pub id: i64,
    pub origins: Option<Vec<String>>,
    pub settings: Settings,
    pub state: State,
    /// Grams of its real order still to be drawn, if one is open.
    pub open_remaining_g: i64,
    pub form_ppm: i64,
    pub reserve_floor_g: Option<i64>,
    pub policy_cap_g: Option<i64>,
}

/// Everything one element's simulation reads.
#[derive(Debug, Clone)]
pub struct ElementInput {
    pub element: String,
    pub today: NaiveDate,
    pub horizon_days: i32,
    pub data_horizon: Option<NaiveDate>,
    pub flows: Vec<FlowSpan>,
    pub shocks: Vec<Shock>,
    pub rules: Vec<SimRule>,
    pub holding_g: i64,
    /// Element mass of the holding, exact.
    pub element_mass_g: Decimal,
    /// Available material of the form each rule would release, at the start.
    pub available_g: i64,
    /// Held by approved orders other than the rules' own, for the whole run.
    pub reserved_g: i64,
    pub consumption_g_per_day: Option<Decimal>,
    pub drawdown_g_per_day: i64,
    pub reserve_floor_g: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimDay {
    pub date: NaiveDate,
    pub imports_kg: String,
    pub released_kg: String,
    pub holding_kg: String,
    pub days_of_cover: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimFiring {
    pub rule_id: i64,
    pub date: NaiveDate,
    pub proposed_kg: String,
    pub drop_percent: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimFloor {
    /// `reserve_floor` (the policy's), `rule_floor_kg` or `rule_floor_days_of_cover`.
    pub floor: String,
    pub rule_id: Option<i64>,
    pub floor_kg: Option<String>,
    pub floor_days_of_cover: Option<String>,
    pub below_on: Option<NaiveDate>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimElement {
    pub element: String,
    pub data_horizon: Option<NaiveDate>,
    pub days: Vec<SimDay>,
    pub firings: Vec<SimFiring>,
    /// The first day the holding falls below any floor (none: `null`).
    pub below_floor_on: Option<NaiveDate>,
    pub floors: Vec<SimFloor>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimulationView {
    pub today: NaiveDate,
    pub horizon_days: i32,
    pub elements: Vec<SimElement>,
}

/// Daily imports per origin over `from..=to`: recorded up to the data
/// horizon, projected (and shocked) after it.
fn daily_by_origin(
    input: &ElementInput,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<String, Vec<Decimal>> {
    let mut by_origin: BTreeMap<String, Vec<FlowSpan>> = BTreeMap::new();
    for f in &input.flows {
        by_origin
            .entry(f.origin_country.clone())
            .or_default()
            .push(f.clone());
    }
    let n = series::span_days(from, to) as usize;
    by_origin
        .into_iter()
        .map(|(origin, flows)| {
            let mut days = series::daily(&flows, from, to);
            if let Some(h) = input.data_horizon {
                let (r0, r1) = series::days_ending(h, 365);
                let rate = series::grams_per_day(&flows, r0, r1);
                for (i, g) in days.iter_mut().enumerate().take(n) {
                    let day = from + Duration::days(i as i64);
                    if day <= h {
                        continue;
                    }
                    let mut v = rate;
                    for s in &input.shocks {
                        let hits = s.origin_country.as_ref().is_none_or(|o| *o == origin);
                        if hits && day >= s.start && day < s.end {
                            v *= s.remaining;
                        }
                    }
                    *g = v;
                }
            }
            (origin, days)
        })
        .collect()
}

fn kg3(g: Decimal) -> String {
    let kg =
        (g / Decimal::from(1000)).round_dp_with_strategy(3, RoundingStrategy::MidpointAwayFromZero);
    format!("{kg:.3}")
}

fn days_of_cover(mass_g: Decimal, per_day: Option<Decimal>) -> Option<Decimal> {
    per_day.filter(|p| !p.is_zero()).map(|p| mass_g / p)
}

fn one_dp(d: Decimal) -> String {
    format!(
        "{:.1}",
        d.round_dp_with_strategy(1, RoundingStrategy::MidpointAwayFromZero)
    )
}

/// Runs one element's simulation.
pub fn simulate_element(input: &ElementInput) -> SimElement {
    let longest = input
        .rules
        .iter()
        .map(|r| i64::from(r.settings.window_days) + i64::from(r.settings.baseline_days))
        .max()
        .unwrap_or(0)
        .max(1);
    let first = input.today - Duration::days(longest);
    let last = input.today + Duration::days(i64::from(input.horizon_days) - 1);
    let per_origin = daily_by_origin(input, first, last);
    let n = series::span_days(first, last) as usize;
    // Prefix sums per rule (its origins) and for the element as a whole.
    let prefix = |origins: Option<&Vec<String>>| -> Vec<Decimal> {
        let mut p = vec![Decimal::ZERO; n + 1];
        for (origin, days) in &per_origin {
            if origins.is_some_and(|o| !o.contains(origin)) {
                continue;
            }
            for (i, g) in days.iter().enumerate() {
                p[i + 1] += g;
            }
        }
        for i in 0..n {
            let prev = p[i];
            p[i + 1] += prev;
        }
        p
    };
    let total = prefix(None);
    let rule_prefix: Vec<Vec<Decimal>> = input
        .rules
        .iter()
        .map(|r| prefix(r.origins.as_ref()))
        .collect();
    let index = |d: NaiveDate| (d - first).num_days();
    let per_day = |p: &[Decimal], from: NaiveDate, to: NaiveDate| -> Decimal {
        let (a, b) = (index(from).max(0), index(to));
        if b < a || b < 0 {
            return Decimal::ZERO;
        }
        (p[(b + 1) as usize] - p[a as usize]) / Decimal::from(series::span_days(from, to))
    };

    let mass_ratio = if input.holding_g > 0 {
        input.element_mass_g / Decimal::from(input.holding_g)
    } else {
        Decimal::ONE
    };
    let mut holding = input.holding_g;
    let mut drawn_total: i64 = 0;
    let mut states: Vec<State> = input.rules.iter().map(|r| r.state).collect();
    let mut remaining: Vec<i64> = input.rules.iter().map(|r| r.open_remaining_g).collect();
    let mut days = Vec::with_capacity(input.horizon_days as usize);
    let mut firings = Vec::new();
    let mut floors: Vec<SimFloor> = Vec::new();
    if let Some(f) = input.reserve_floor_g {
        floors.push(SimFloor {
            floor: "reserve_floor".into(),
            rule_id: None,
            floor_kg: Some(Grams(f).to_kg_string()),
            floor_days_of_cover: None,
            below_on: None,
        });
    }
    for r in &input.rules {
        if let Some(f) = r.settings.floor_g {
            floors.push(SimFloor {
                floor: "rule_floor_kg".into(),
                rule_id: Some(r.id),
                floor_kg: Some(Grams(f).to_kg_string()),
                floor_days_of_cover: None,
                below_on: None,
            });
        }
        if let Some(d) = r.settings.floor_days_of_cover {
            floors.push(SimFloor {
                floor: "rule_floor_days_of_cover".into(),
                rule_id: Some(r.id),
                floor_kg: None,
                floor_days_of_cover: Some(d.to_string()),
                below_on: None,
            });
        }
    }

    for step in 0..input.horizon_days {
        let day = input.today + Duration::days(i64::from(step));
        // Draw open orders at the drawdown capacity, oldest rule first.
        let mut capacity = input.drawdown_g_per_day;
        let mut released = 0;
        for rem in remaining.iter_mut() {
            let take = (*rem).min(capacity).min(holding - released).max(0);
            *rem -= take;
            capacity -= take;
            released += take;
        }
        holding -= released;
        drawn_total += released;
        let reserved: i64 = remaining.iter().sum();
        let mass = Decimal::from(holding) * mass_ratio;
        // Evaluate every rule with today as the data horizon.
        let now = day.and_hms_opt(6, 0, 0).expect("06:00").and_utc();
        for (i, r) in input.rules.iter().enumerate() {
            let (window, baseline) = model::spans(&r.settings, day);
            let p = &rule_prefix[i];
            let b = per_day(p, baseline.0, baseline.1);
            let m = (!b.is_zero()).then(|| {
                let w = per_day(p, window.0, window.1);
                model::Measurement {
                    horizon: day,
                    window,
                    baseline,
                    window_g_per_day: w,
                    baseline_g_per_day: b,
                    drop_percent: (b - w) / b * Decimal::from(100),
                }
            });
            let s = model::step(&r.settings, &states[i], m.as_ref(), remaining[i] > 0, now);
            states[i] = s.state;
            let (Ok(()), Some(m)) = (s.verdict, m) else {
                continue;
            };
            let unreserved = holding - reserved - input.reserved_g;
            let stock = Stock {
                unreserved_g: unreserved,
                unreserved_element_g: Decimal::from(unreserved) * mass_ratio,
                available_g: (input.available_g - drawn_total - reserved).min(unreserved),
                form_ppm: r.form_ppm,
                consumption_g_per_day: input.consumption_g_per_day,
                reserve_floor_g: r.reserve_floor_g,
                policy_cap_g: r.policy_cap_g,
            };
            let sizing = model::size(&r.settings, &m, &stock);
            if sizing.proposed_g <= 0 {
                continue;
            }
            remaining[i] = sizing.proposed_g;
            states[i] = model::fired(&states[i], now);
            firings.push(SimFiring {
                rule_id: r.id,
                date: day,
                proposed_kg: sizing.proposed_kg.clone(),
                drop_percent: model::percent(m.drop_percent),
            });
        }
        let cover = days_of_cover(mass, input.consumption_g_per_day);
        for f in floors.iter_mut().filter(|f| f.below_on.is_none()) {
            let below = match (&f.floor_kg, &f.floor_days_of_cover) {
                (Some(kg), _) => Grams::parse_kg(kg).is_ok_and(|g| holding < g.0),
                (None, Some(d)) => {
                    let d: Decimal = d.parse().unwrap_or_default();
                    cover.is_some_and(|c| c < d)
                }
                _ => false,
            };
            if below {
                f.below_on = Some(day);
            }
        }
        let imports = per_day(&total, day, day);
        days.push(SimDay {
            date: day,
            imports_kg: kg3(imports),
            released_kg: Grams(released).to_kg_string(),
            holding_kg: Grams(holding).to_kg_string(),
            days_of_cover: cover.map(one_dp),
        });
    }
    let below_floor_on = floors.iter().filter_map(|f| f.below_on).min();
    SimElement {
        element: input.element.clone(),
        data_horizon: input.data_horizon,
        days,
        firings,
        below_floor_on,
        floors,
    }
}

/// Loads what each shocked element's simulation reads and runs it. Reads
/// only; the caller runs it in a read-only transaction.
pub fn run(
    conn: &mut crate::db::DbConn,
    shocks: &[Shock],
    horizon_days: i32,
    today: NaiveDate,
) -> ApiResult<SimulationView> {
    use super::repo;
    use crate::db::schema::{depots, release_orders as ro, release_rules as rr, stockpiles};
    use diesel::prelude::*;

    let mut elements: Vec<String> = Vec::new();
    for s in shocks {
        if !elements.contains(&s.element) {
            elements.push(s.element.clone());
        }
    }
    let mut out = Vec::new();
    for element in elements {
        let rows: Vec<repo::RuleRow> = rr::table
            .filter(rr::element.eq(&element))
            .filter(rr::enabled.eq(true))
            .filter(rr::deleted_at.is_null())
            .order(rr::id.asc())
            .select(repo::RuleRow::as_select())
            .load(conn)?;
        let book = repo::StockBook::load(conn, &[&element])?;
        let holding = book.holding(&element);
        let mut rules = Vec::new();
        let mut available_g = 0;
        let mut rules_open = 0;
        for row in &rows {
            let (form, available) = match book.material(row) {
                Some((form, _, available)) => (form, available),
                None => ("oxide".to_string(), 0),
            };
            available_g = available_g.max(available);
            let stock = book.stock(row, &form, available)?;
            let open_remaining_g = match repo::open_order(conn, row.id)? {
                Some(id) => {
                    let (q, r): (i64, i64) = ro::table
                        .filter(ro::id.eq(id))
                        .select((ro::quantity_g, ro::released_g))
                        .first(conn)?;
                    (q - r).max(0)
                }
                None => 0,
            };
            rules_open += open_remaining_g;
            rules.push(SimRule {
                id: row.id,
                origins: row.origins(),
                settings: row.settings(),
                state: row.state(),
                open_remaining_g,
                form_ppm: stock.form_ppm,
                reserve_floor_g: stock.reserve_floor_g,
                policy_cap_g: stock.policy_cap_g,
            });
        }
        let longest = rows
            .iter()
            .map(|r| i64::from(r.window_days) + i64::from(r.baseline_days))
            .max()
            .unwrap_or(1);
        let data_horizon = crate::flows::repo::data_horizon(conn, &element)?;
        let from = (today - Duration::days(longest)).min(
            data_horizon
                .map(|h| h - Duration::days(364))
                .unwrap_or(today),
        );
        let flows = match data_horizon {
            Some(h) => crate::flows::repo::spans(conn, &element, None, from, h)?,
            None => Vec::new(),
        };
        let policy = crate::policy::repo::current(conn, &element)?.policy();
        type Sum = diesel::sql_types::Nullable<diesel::sql_types::BigInt>;
        let drawdown: Option<i64> = depots::table
            .filter(depots::status.eq("active"))
            .filter(diesel::dsl::exists(
                stockpiles::table
                    .filter(stockpiles::depot_id.eq(depots::id))
                    .filter(stockpiles::element.eq(&element))
                    .filter(stockpiles::on_hand_g.gt(0)),
            ))
            .select(diesel::dsl::sql::<Sum>(
                "CAST(SUM(depots.max_drawdown_g_per_day) AS BIGINT)",
            ))
            .first(conn)?;
        let input = ElementInput {
            element: element.clone(),
            today,
            horizon_days,
            data_horizon,
            flows,
            shocks: shocks
                .iter()
                .filter(|s| s.element == element)
                .cloned()
                .collect(),
            rules,
            holding_g: holding.on_hand_g,
            element_mass_g: holding.on_hand_element_g,
            available_g,
            reserved_g: (holding.reserved_g - rules_open).max(0),
            consumption_g_per_day: policy
                .consumption_per_year
                .map(|g| Decimal::from(g.0) / Decimal::from(365)),
            drawdown_g_per_day: drawdown.unwrap_or(0),
            reserve_floor_g: policy.reserve_floor.map(|g| g.0),
        };
        out.push(simulate_element(&input));
    }
    Ok(SimulationView {
        today,
        horizon_days,
        elements: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// A year of 30,000 kg every 30 days from CN, up to 2026-11-28.
    fn input(shock_drop: &str) -> ElementInput {
        let horizon = d("2026-11-28");
        let flows = (0..13)
            .map(|i| FlowSpan {
                period_start: horizon - Duration::days(389 - 30 * i),
                period_end: horizon - Duration::days(360 - 30 * i),
                quantity_g: 30_000_000,
                origin_country: "CN".into(),
            })
            .collect();
        ElementInput {
            element: "Dy".into(),
            today: d("2026-11-29"),
            horizon_days: 120,
            data_horizon: Some(horizon),
            flows,
            shocks: vec![Shock {
                element: "Dy".into(),
                origin_country: Some("CN".into()),
                remaining: Decimal::ONE - dec(shock_drop) / Decimal::from(100),
                start: d("2027-01-01"),
                end: d("2027-07-01"),
            }],
            rules: vec![SimRule {
                id: 7,
                origins: None,
                settings: Settings {
                    window_days: 30,
                    baseline_days: 365,
                    drop_threshold_percent: dec("25"),
                    consecutive_breaches: 1,
                    cooldown_days: 30,
                    coverage_fraction: dec("1"),
                    cap_g: 1_000_000_000,
                    floor_g: Some(90_000_000),
                    floor_days_of_cover: None,
                    enabled: true,
                },
                state: State::new(),
                open_remaining_g: 0,
                form_ppm: 1_000_000,
                reserve_floor_g: None,
                policy_cap_g: None,
            }],
            holding_g: 100_000_000,
            element_mass_g: dec("100000000"),
            available_g: 100_000_000,
            reserved_g: 0,
            consumption_g_per_day: Some(dec("1000000")),
            drawdown_g_per_day: 2_000_000,
            reserve_floor_g: None,
        }
    }

    #[test]
    fn imports_are_projected_at_the_trailing_rate_and_cut_by_the_shock() {
        let out = simulate_element(&input("80"));
        // 30,000 kg every 30 days: 1,000 kg a day before the shock...
        assert_eq!(out.days[0].date, d("2026-11-29"));
        assert_eq!(out.days[0].imports_kg, "1000.000");
        // ...and 200 kg a day from 1 January (an 80% cut).
        let jan1 = out.days.iter().find(|x| x.date == d("2027-01-01")).unwrap();
        assert_eq!(jan1.imports_kg, "200.000");
        assert_eq!(out.days[0].days_of_cover.as_deref(), Some("100.0"));
    }

    #[test]
    fn the_rule_fires_when_the_window_has_dropped_enough_and_draws_to_its_floor() {
        let out = simulate_element(&input("80"));
        // The 30-day window ending on day k of the shock averages
        // (k × 200 + (30 − k) × 1,000) ÷ 30 kg/day; the 365-day baseline is
        // 1,000 kg/day until the shock enters it. The drop reaches 25% when
        // 800 k ÷ 30 ≥ 250, i.e. k ≥ 9.375: on the 10th day, 10 January.
        let f = &out.firings[0];
        assert_eq!((f.rule_id, f.date), (7, d("2027-01-10")));
        // Shortfall: (1,000 − 733.333...) × 30 = 8,000 kg; coverage 1: all of
        // it. Within the 10,000 kg above the 90,000 kg floor.
        assert_eq!(f.proposed_kg, "8000.000");
        // Drawn at 2,000 kg a day from the next day: four days.
        let drawn: Vec<&SimDay> = out
            .days
            .iter()
            .filter(|x| x.released_kg != "0.000")
            .collect();
        assert_eq!(drawn[0].date, d("2027-01-11"));
        assert_eq!(drawn[3].date, d("2027-01-14"));
        assert_eq!(drawn[3].holding_kg, "92000.000");
        // Still breaching when the 30-day cooldown ends (9 February), it fires
        // again, now bound by the floor: 92,000 − 90,000 = 2,000 kg.
        let g = &out.firings[1];
        assert_eq!(
            (g.date, g.proposed_kg.as_str()),
            (d("2027-02-09"), "2000.000")
        );
        assert_eq!(drawn.len(), 5);
        assert_eq!(out.days.last().unwrap().holding_kg, "90000.000");
        // The rule floor is never crossed by the rule's own releases.
        assert_eq!(out.below_floor_on, None);
    }

    #[test]
    fn a_mild_shock_fires_nothing() {
        let out = simulate_element(&input("10"));
        assert!(out.firings.is_empty());
        assert_eq!(out.days.last().unwrap().holding_kg, "100000.000");
    }
}
