//! Release rules: the fixed arithmetic and the decision, pure, so that the
//! API, the scheduler and the simulator run one copy of it.
//!
//! By hand: the window is the `window_days` ending at the element's data
//! horizon (the latest `period_end` on record, never "now"); the baseline is
//! the `baseline_days` just before it. Each is the average grams per day of
//! the flows spread evenly over their periods. `drop% = (baseline − window) ÷
//! baseline × 100`; it breaches when `drop% ≥ threshold`, and the rule fires
//! after `consecutive_breaches` breaching evaluations in a row, if armed and
//! no order of its own is still open. It proposes `min(cap, coverage ×
//! shortfall over the window, stock above the floors, available material)`
//! in whole grams (each term rounded down).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::db::types::Grams;
use crate::flows::series::{self, FlowSpan};

/// A rule's settings, as the arithmetic needs them.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub window_days: i32,
    pub baseline_days: i32,
    pub drop_threshold_percent: Decimal,
    pub consecutive_breaches: i32,
    pub cooldown_days: i32,
    pub coverage_fraction: Decimal,
    pub cap_g: i64,
    pub floor_g: Option<i64>,
    pub floor_days_of_cover: Option<Decimal>,
    pub enabled: bool,
}

/// What a rule remembers between evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Breaching evaluations in a row, up to and including the last one.
    pub consecutive: i32,
    /// False from a firing until the drop falls below the threshold or the
    /// cooldown has passed.
    pub armed: bool,
    pub last_fired_at: Option<DateTime<Utc>>,
}

impl State {
    pub fn new() -> State {
        State {
            consecutive: 0,
            armed: true,
            last_fired_at: None,
        }
    }
}

/// The window and baseline of one evaluation, and how far imports dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub horizon: NaiveDate,
    pub window: (NaiveDate, NaiveDate),
    pub baseline: (NaiveDate, NaiveDate),
    pub window_g_per_day: Decimal,
    pub baseline_g_per_day: Decimal,
    /// Exact; negative when imports rose.
    pub drop_percent: Decimal,
}

impl Measurement {
    /// Grams the window fell short of the baseline's pace (0 if it did not).
    pub fn shortfall_g(&self, window_days: i32) -> Decimal {
        ((self.baseline_g_per_day - self.window_g_per_day) * Decimal::from(window_days))
            .max(Decimal::ZERO)
    }
}

/// The window and baseline spans for a data horizon: `((window), (baseline))`.
pub fn spans(s: &Settings, horizon: NaiveDate) -> ((NaiveDate, NaiveDate), (NaiveDate, NaiveDate)) {
    let window = series::days_ending(horizon, i64::from(s.window_days));
    let baseline = series::days_ending(window.0 - Duration::days(1), i64::from(s.baseline_days));
    (window, baseline)
}

/// Measures `flows` (already narrowed to the rule's origins) at `horizon`.
/// `None` when the baseline holds no imports at all: a drop from nothing is
/// no drop, and there is no shortfall to cover.
pub fn measure(s: &Settings, flows: &[FlowSpan], horizon: NaiveDate) -> Option<Measurement> {
    let (window, baseline) = spans(s, horizon);
    let window_g_per_day = series::grams_per_day(flows, window.0, window.1);
    let baseline_g_per_day = series::grams_per_day(flows, baseline.0, baseline.1);
    if baseline_g_per_day.is_zero() {
        return None;
    }
    let drop_percent =
        (baseline_g_per_day - window_g_per_day) / baseline_g_per_day * Decimal::from(100);
    Some(Measurement {
        horizon,
        window,
        baseline,
        window_g_per_day,
        baseline_g_per_day,
        drop_percent,
    })
}

/// Why an evaluation did or did not fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Fired,
    Disabled,
    NoData,
    BelowThreshold,
    NotEnoughConsecutiveBreaches,
    Cooldown,
    OpenOrderExists,
    FloorLeavesNothing,
    /// The orders code refused the proposal (a policy limit, say).
    OrderRefused,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Fired => "fired",
            Reason::Disabled => "disabled",
            Reason::NoData => "no_data",
            Reason::BelowThreshold => "below_threshold",
            Reason::NotEnoughConsecutiveBreaches => "not_enough_consecutive_breaches",
            Reason::Cooldown => "cooldown",
            Reason::OpenOrderExists => "open_order_exists",
            Reason::FloorLeavesNothing => "floor_leaves_nothing",
            Reason::OrderRefused => "order_refused",
        }
    }

    pub const ALL: [Reason; 9] = [
        Reason::Fired,
        Reason::Disabled,
        Reason::NoData,
        Reason::BelowThreshold,
        Reason::NotEnoughConsecutiveBreaches,
        Reason::Cooldown,
        Reason::OpenOrderExists,
        Reason::FloorLeavesNothing,
        Reason::OrderRefused,
    ];
}

/// One evaluation's verdict before sizing.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub breach: bool,
    /// The state to store (before any firing is recorded).
    pub state: State,
    /// `Ok` when the rule should now size and propose an order.
    pub verdict: Result<(), Reason>,
}

/// Whether `cooldown_days` have passed since `last_fired_at`.
pub fn cooled_down(s: &Settings, last_fired_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_fired_at.is_none_or(|t| now >= t + Duration::days(i64::from(s.cooldown_days)))
}

/// Evaluates once: counts the breach, re-arms, and says whether to fire. A
/// disabled rule or one without data keeps its state untouched: an
/// evaluation that saw nothing neither extends nor breaks a run of breaches.
pub fn step(
    s: &Settings,
    state: &State,
    m: Option<&Measurement>,
    open_order: bool,
    now: DateTime<Utc>,
) -> Step {
    let unchanged = |reason| Step {
        breach: false,
        state: *state,
        verdict: Err(reason),
    };
    if !s.enabled {
        return unchanged(Reason::Disabled);
    }
    let Some(m) = m else {
        return unchanged(Reason::NoData);
    };
    let breach = m.drop_percent >= s.drop_threshold_percent;
    let next = State {
        consecutive: if breach { state.consecutive + 1 } else { 0 },
        armed: state.armed || !breach || cooled_down(s, state.last_fired_at, now),
        last_fired_at: state.last_fired_at,
    };
    let verdict = if !breach {
        Err(Reason::BelowThreshold)
    } else if next.consecutive < s.consecutive_breaches {
        Err(Reason::NotEnoughConsecutiveBreaches)
    } else if !next.armed {
        Err(Reason::Cooldown)
    } else if open_order {
        Err(Reason::OpenOrderExists)
    } else {
        Ok(())
    };
    Step {
        breach,
        state: next,
        verdict,
    }
}

/// The state after a firing at `now`.
pub fn fired(state: &State, now: DateTime<Utc>) -> State {
    State {
        consecutive: state.consecutive,
        armed: false,
        last_fired_at: Some(now),
    }
}

/// The stock a proposal is sized against.
#[derive(Debug, Clone, PartialEq)]
pub struct Stock {
    /// Material of the element not held by approved orders, all forms.
    pub unreserved_g: i64,
    /// The same in contained element mass (each form by its factor).
    pub unreserved_element_g: Decimal,
    /// Available material of the form and grade the order would release.
    pub available_g: i64,
    /// Element-mass factor of that form, in parts per million.
    pub form_ppm: i64,
    /// The element policy's consumption, element mass per day.
    pub consumption_g_per_day: Option<Decimal>,
    /// The policy's reserve floor, if the order kind must respect it.
    pub reserve_floor_g: Option<i64>,
    /// The policy's cap on one order of this kind, if any.
    pub policy_cap_g: Option<i64>,
}

/// How a proposal was sized: every term, and which one bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    pub shortfall_kg: String,
    pub coverage_kg: String,
    pub cap_kg: String,
    /// Unreserved material above the larger of the rule's `floor_kg` and
    /// the policy's reserve floor.
    pub above_floor_kg: Option<String>,
    /// Unreserved element mass above `floor_days_of_cover` days of
    /// consumption, in material of the released form.
    pub above_days_floor_kg: Option<String>,
    pub available_kg: String,
    pub policy_cap_kg: Option<String>,
    pub proposed_kg: String,
    /// The term that set the proposal: `cap`, `coverage`, `floor`,
    /// `days_floor`, `available`, `policy_cap`.
    pub bound_by: &'static str,
    pub note: Option<String>,
    #[serde(skip)]
    pub proposed_g: i64,
}

fn whole_grams(d: Decimal) -> i64 {
    d.round_dp_with_strategy(0, RoundingStrategy::ToNegativeInfinity)
        .try_into()
        .unwrap_or(i64::MAX)
}

fn kg(g: i64) -> String {
    Grams(g).to_kg_string()
}

/// Sizes the proposal: the least of the cap, the coverage of the shortfall,
/// the stock above each floor and the available material, whole grams
/// rounded down, never below zero.
pub fn size(s: &Settings, m: &Measurement, stock: &Stock) -> Sizing {
    let shortfall = m.shortfall_g(s.window_days);
    let coverage = whole_grams(s.coverage_fraction * shortfall);
    let mut terms: Vec<(&'static str, i64)> = vec![("cap", s.cap_g), ("coverage", coverage)];
    let kg_floor = match (s.floor_g, stock.reserve_floor_g) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).max(b.unwrap_or(0))),
    };
    let above_floor = kg_floor.map(|f| stock.unreserved_g - f);
    if let Some(a) = above_floor {
        terms.push(("floor", a));
    }
    let mut note = None;
    let above_days_floor = match (s.floor_days_of_cover, stock.consumption_g_per_day) {
        (None, _) => None,
        (Some(_), None) => {
            note = Some(
                "floor_days_of_cover needs the element policy's consumption_kg_per_year, which is not set: nothing can be released above an unknown floor".to_string(),
            );
            Some(0)
        }
        (Some(days), Some(per_day)) => {
            let spare_element = stock.unreserved_element_g - days * per_day;
            Some(whole_grams(
                spare_element * Decimal::from(1_000_000) / Decimal::from(stock.form_ppm.max(1)),
            ))
        }
    };
    if let Some(a) = above_days_floor {
        terms.push(("days_floor", a));
    }
    terms.push(("available", stock.available_g));
    if let Some(c) = stock.policy_cap_g {
        terms.push(("policy_cap", c));
    }
    let (bound_by, least) = terms
        .iter()
        .copied()
        .min_by_key(|(_, g)| *g)
        .unwrap_or(("cap", 0));
    let proposed_g = least.max(0);
    Sizing {
        shortfall_kg: kg(whole_grams(shortfall)),
        coverage_kg: kg(coverage),
        cap_kg: kg(s.cap_g),
        above_floor_kg: above_floor.map(kg),
        above_days_floor_kg: above_days_floor.map(kg),
        available_kg: kg(stock.available_g),
        policy_cap_kg: stock.policy_cap_g.map(kg),
        proposed_kg: kg(proposed_g),
        bound_by,
        note,
        proposed_g,
    }
}

/// Grams per day shown as kg per day, to the gram, half away from zero.
pub fn kg_per_day(g_per_day: Decimal) -> String {
    let kg = (g_per_day / Decimal::from(1000))
        .round_dp_with_strategy(3, RoundingStrategy::MidpointAwayFromZero);
    format!("{kg:.3}")
}

/// A percentage shown to two decimals, half away from zero.
pub fn percent(p: Decimal) -> String {
    let p = p.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    format!("{p:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn settings() -> Settings {
        Settings {
            window_days: 30,
            baseline_days: 360,
            drop_threshold_percent: dec("25"),
            consecutive_breaches: 1,
            cooldown_days: 30,
            coverage_fraction: dec("0.5"),
            cap_g: 1_000_000_000,
            floor_g: None,
            floor_days_of_cover: None,
            enabled: true,
        }
    }

    /// Thirteen 30-day periods, 2025-10-03 to 2026-10-27: twelve of 30,000 kg, then
    /// one carrying `last_kg`.
    fn thirteen_periods(last_kg: i64) -> Vec<FlowSpan> {
        let start = d("2025-10-03");
        (0..13)
            .map(|i| FlowSpan {
                period_start: start + Duration::days(30 * i),
                period_end: start + Duration::days(30 * i + 29),
                quantity_g: if i == 12 { last_kg } else { 30_000 } * 1000,
                origin_country: "CN".into(),
            })
            .collect()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 0).unwrap()
    }

    #[test]
    fn a_forty_percent_drop_is_measured_by_hand() {
        let flows = thirteen_periods(18_000);
        let horizon = d("2026-10-27");
        let m = measure(&settings(), &flows, horizon).unwrap();
        assert_eq!(m.window, (d("2026-09-28"), d("2026-10-27")));
        assert_eq!(m.baseline, (d("2025-10-03"), d("2026-09-27")));
        // Window: 18,000 kg over 30 days = 600 kg/day. Baseline: the twelve
        // earlier periods, 360 days of 1,000 kg/day, exactly the baseline.
        assert_eq!(m.window_g_per_day, dec("600000"));
        assert_eq!(m.baseline_g_per_day, dec("1000000"));
        assert_eq!(m.drop_percent, dec("40"));
        assert_eq!(m.shortfall_g(30), dec("12000000"));
        assert_eq!(kg_per_day(m.window_g_per_day), "600.000");
        assert_eq!(percent(m.drop_percent), "40.00");
    }

    #[test]
    fn the_threshold_decides_the_breach() {
        let flows = thirteen_periods(18_000);
        let m = measure(&settings(), &flows, d("2026-10-27")).unwrap();
        let fires = step(&settings(), &State::new(), Some(&m), false, now());
        assert!(fires.breach);
        assert_eq!(fires.verdict, Ok(()));
        let fifty = Settings {
            drop_threshold_percent: dec("50"),
            ..settings()
        };
        let quiet = step(&fifty, &State::new(), Some(&m), false, now());
        assert!(!quiet.breach);
        assert_eq!(quiet.verdict, Err(Reason::BelowThreshold));
        // Exactly at the threshold breaches.
        let forty = Settings {
            drop_threshold_percent: dec("40"),
            ..settings()
        };
        assert!(step(&forty, &State::new(), Some(&m), false, now()).breach);
    }

    #[test]
    fn consecutive_breaches_count_evaluations_in_a_row() {
        let s = Settings {
            consecutive_breaches: 2,
            ..settings()
        };
        let flows = thirteen_periods(18_000);
        let m = measure(&s, &flows, d("2026-10-27")).unwrap();
        let first = step(&s, &State::new(), Some(&m), false, now());
        assert_eq!(first.state.consecutive, 1);
        assert_eq!(first.verdict, Err(Reason::NotEnoughConsecutiveBreaches));
        let second = step(&s, &first.state, Some(&m), false, now());
        assert_eq!(second.state.consecutive, 2);
        assert_eq!(second.verdict, Ok(()));
        // A quiet evaluation in between breaks the run.
        let calm = measure(&s, &thirteen_periods(30_000), d("2026-10-27")).unwrap();
        let broken = step(&s, &first.state, Some(&calm), false, now());
        assert_eq!(broken.state.consecutive, 0);
        // No data neither extends nor breaks it.
        let blind = step(&s, &first.state, None, false, now());
        assert_eq!(blind.state, first.state);
        assert_eq!(blind.verdict, Err(Reason::NoData));
    }

    #[test]
    fn after_firing_the_rule_rearms_on_recovery_or_after_the_cooldown() {
        let s = settings();
        let m = measure(&s, &thirteen_periods(18_000), d("2026-10-27")).unwrap();
        let calm = measure(&s, &thirteen_periods(30_000), d("2026-10-27")).unwrap();
        let first = step(&s, &State::new(), Some(&m), false, now());
        let after = fired(&first.state, now());
        // Still breaching a day later: cooling down.
        let next_day = now() + Duration::days(1);
        let held = step(&s, &after, Some(&m), false, next_day);
        assert_eq!(held.verdict, Err(Reason::Cooldown));
        // Still breaching once the 30 days have passed: armed again.
        let later = step(&s, &held.state, Some(&m), false, now() + Duration::days(30));
        assert_eq!(later.verdict, Ok(()));
        // Or the drop recovers: armed at once, and a new drop fires again.
        let recovered = step(&s, &held.state, Some(&calm), false, next_day);
        assert!(recovered.state.armed);
        let again = step(&s, &recovered.state, Some(&m), false, next_day);
        assert_eq!(again.verdict, Ok(()));
        // Never while its own order is open.
        let open = step(&s, &recovered.state, Some(&m), true, next_day);
        assert_eq!(open.verdict, Err(Reason::OpenOrderExists));
    }

    #[test]
    fn disabled_rules_and_empty_baselines_do_not_fire() {
        let s = Settings {
            enabled: false,
            ..settings()
        };
        let m = measure(&s, &thirteen_periods(18_000), d("2026-10-27")).unwrap();
        assert_eq!(
            step(&s, &State::new(), Some(&m), false, now()).verdict,
            Err(Reason::Disabled)
        );
        // Only the window has data: nothing to compare with.
        let only_recent = thirteen_periods(18_000).split_off(12);
        assert_eq!(measure(&settings(), &only_recent, d("2026-10-27")), None);
    }

    fn stock() -> Stock {
        Stock {
            unreserved_g: 100_000_000,
            unreserved_element_g: dec("100000000"),
            available_g: 80_000_000,
            form_ppm: 1_000_000,
            consumption_g_per_day: Some(dec("1000000")),
            reserve_floor_g: None,
            policy_cap_g: None,
        }
    }

    #[test]
    fn the_proposal_is_the_least_of_cap_coverage_floors_and_stock() {
        let m = measure(&settings(), &thirteen_periods(18_000), d("2026-10-27")).unwrap();
        // Shortfall 400 kg/day × 30 days = 12,000 kg; half of it is 6,000 kg.
        let by_coverage = size(&settings(), &m, &stock());
        assert_eq!(by_coverage.shortfall_kg, "12000.000");
        assert_eq!(by_coverage.coverage_kg, "6000.000");
        assert_eq!(by_coverage.proposed_g, 6_000_000);
        assert_eq!(by_coverage.bound_by, "coverage");
        // A 2,500 kg cap binds.
        let capped = Settings {
            cap_g: 2_500_000,
            ..settings()
        };
        assert_eq!(size(&capped, &m, &stock()).proposed_g, 2_500_000);
        // A 96,000 kg floor leaves 100,000 − 96,000 = 4,000 kg.
        let floored = Settings {
            floor_g: Some(96_000_000),
            ..settings()
        };
        let f = size(&floored, &m, &stock());
        assert_eq!((f.proposed_g, f.bound_by), (4_000_000, "floor"));
        // 97 days of 1,000 kg/day leaves 100,000 − 97,000 = 3,000 kg.
        let days = Settings {
            floor_days_of_cover: Some(dec("97")),
            ..settings()
        };
        let f = size(&days, &m, &stock());
        assert_eq!((f.proposed_g, f.bound_by), (3_000_000, "days_floor"));
        // In oxide at 85.7% element, 3,000 kg of element is 3,500.583... kg.
        let oxide = Stock {
            form_ppm: 857_000,
            ..stock()
        };
        assert_eq!(size(&days, &m, &oxide).proposed_g, 3_500_583);
        // A floor above the holding leaves nothing.
        let deep = Settings {
            floor_g: Some(200_000_000),
            ..settings()
        };
        assert_eq!(size(&deep, &m, &stock()).proposed_g, 0);
        // Without consumption a days floor cannot be honoured: nothing.
        let blind = Stock {
            consumption_g_per_day: None,
            ..stock()
        };
        let b = size(&days, &m, &blind);
        assert_eq!(b.proposed_g, 0);
        assert!(b.note.is_some());
    }
}
