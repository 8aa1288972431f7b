//! The arithmetic every import figure rests on, fixed so anyone can redo it by
//! hand: a flow's quantity is spread evenly over the days of its period
//! (both ends included), and a span of days holds each flow's share for the
//! days it overlaps. Sums stay exact `Decimal` grams; nothing is rounded
//! until it is shown.

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

/// One flow as the arithmetic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSpan {
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub quantity_g: i64,
    pub origin_country: String,
}

impl FlowSpan {
    /// Days in the flow's period, both ends included (at least 1).
    pub fn days(&self) -> i64 {
        (self.period_end - self.period_start).num_days() + 1
    }

    /// Grams of this flow falling on `from..=to`.
    pub fn grams_within(&self, from: NaiveDate, to: NaiveDate) -> Decimal {
        let start = self.period_start.max(from);
        let end = self.period_end.min(to);
        if start > end {
            return Decimal::ZERO;
        }
        let overlap = (end - start).num_days() + 1;
        Decimal::from(self.quantity_g) * Decimal::from(overlap) / Decimal::from(self.days())
    }
}

/// Days in `from..=to` (0 when `to < from`).
pub fn span_days(from: NaiveDate, to: NaiveDate) -> i64 {
    ((to - from).num_days() + 1).max(0)
}

/// Grams of all `flows` falling on `from..=to`.
pub fn grams_between(flows: &[FlowSpan], from: NaiveDate, to: NaiveDate) -> Decimal {
    flows.iter().map(|f| f.grams_within(from, to)).sum()
}

/// Average grams per day over `from..=to`.
pub fn grams_per_day(flows: &[FlowSpan], from: NaiveDate, to: NaiveDate) -> Decimal {
    match span_days(from, to) {
        0 => Decimal::ZERO,
        n => grams_between(flows, from, to) / Decimal::from(n),
    }
}

/// The `days` days ending on `end` (inclusive): `(first, end)`.
pub fn days_ending(end: NaiveDate, days: i64) -> (NaiveDate, NaiveDate) {
    (end - Duration::days(days - 1), end)
}

/// Grams per day on each day of `from..=to`, for charts and simulations.
/// One pass over the flows with a difference array, so a two-year horizon
/// over many flows stays linear.
pub fn daily(flows: &[FlowSpan], from: NaiveDate, to: NaiveDate) -> Vec<Decimal> {
    let n = span_days(from, to) as usize;
    let mut delta = vec![Decimal::ZERO; n + 1];
    for f in flows {
        let start = f.period_start.max(from);
        let end = f.period_end.min(to);
        if start > end {
            continue;
        }
        let per_day = Decimal::from(f.quantity_g) / Decimal::from(f.days());
        delta[(start - from).num_days() as usize] += per_day;
        delta[(end - from).num_days() as usize + 1] -= per_day;
    }
    let mut running = Decimal::ZERO;
    delta[..n]
        .iter()
        .map(|d| {
            running += d;
            running
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn flow(start: &str, end: &str, g: i64) -> FlowSpan {
        FlowSpan {
            period_start: d(start),
            period_end: d(end),
            quantity_g: g,
            origin_country: "CN".into(),
        }
    }

    #[test]
    fn a_flow_spreads_evenly_over_its_days() {
        // 30 days of June carry 3,000 kg: 100 kg a day.
        let june = flow("2026-06-01", "2026-06-30", 3_000_000);
        assert_eq!(june.days(), 30);
        assert_eq!(
            june.grams_within(d("2026-06-01"), d("2026-06-10")),
            dec("1000000")
        );
        // Overlapping only the last day of the window.
        assert_eq!(
            june.grams_within(d("2026-05-01"), d("2026-06-01")),
            dec("100000")
        );
        assert_eq!(
            june.grams_within(d("2026-07-01"), d("2026-07-31")),
            Decimal::ZERO
        );
    }

    #[test]
    fn uneven_shares_stay_exact_until_shown() {
        // 1,000 g over 3 days: a third each, and the three thirds sum back.
        let f = flow("2026-01-01", "2026-01-03", 1000);
        let one = f.grams_within(d("2026-01-01"), d("2026-01-01"));
        let all: Decimal = (1..=3)
            .map(|i| {
                let day = d(&format!("2026-01-0{i}"));
                f.grams_within(day, day)
            })
            .sum();
        assert_eq!(one.round_dp(3), dec("333.333"));
        assert_eq!(all.round_dp(9), dec("1000"));
    }

    #[test]
    fn per_day_average_and_windows() {
        let flows = vec![
            flow("2026-01-01", "2026-01-31", 3_100_000),
            flow("2026-02-01", "2026-02-28", 1_400_000),
        ];
        let (from, to) = days_ending(d("2026-02-28"), 28);
        assert_eq!(from, d("2026-02-01"));
        assert_eq!(grams_per_day(&flows, from, to), dec("50000"));
        assert_eq!(
            grams_per_day(&flows, d("2026-01-01"), d("2026-01-31")),
            dec("100000")
        );
    }

    #[test]
    fn daily_series_matches_the_direct_sum() {
        let flows = vec![
            flow("2026-01-01", "2026-01-31", 3_100_000),
            flow("2026-01-15", "2026-02-13", 3_000_000),
        ];
        let (from, to) = (d("2026-01-10"), d("2026-02-20"));
        let series = daily(&flows, from, to);
        assert_eq!(series.len() as i64, span_days(from, to));
        let mut day = from;
        for g in &series {
            assert_eq!(g.round_dp(9), grams_between(&flows, day, day).round_dp(9));
            day = day.succ_opt().unwrap();
        }
        assert_eq!(series[0], dec("100000"));
        assert_eq!(series[5], dec("200000")); // 15 January: both flows
    }
}
