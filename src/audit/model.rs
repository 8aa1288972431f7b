//! Audit rules that need no database: count variances against a tolerance,
//! who may decide a count, and the reconciliation of a report's figures.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::db::types::Grams;

/// How far a physical count may differ from the book unflagged: the larger of
/// a share of the book balance and a fixed quantity (a small stockpile is
/// judged by the fixed quantity, a large one by the percentage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    pub percent: Decimal,
    pub grams: i64,
}

impl Tolerance {
    /// Parses the two settings; errors name the setting.
    pub fn parse(percent: &str, kg: &str) -> Result<Tolerance, String> {
        let percent: Decimal = percent
            .trim()
            .parse()
            .map_err(|_| format!("tolerance_percent {percent:?} is not a decimal"))?;
        if percent.is_sign_negative() || percent > Decimal::from(100) {
            return Err("tolerance_percent must lie between 0 and 100".into());
        }
        let grams = Grams::parse_kg(kg.trim()).map_err(|e| format!("tolerance_kg {e}"))?;
        if grams.0 < 0 {
            return Err("tolerance_kg must not be negative".into());
        }
        Ok(Tolerance {
            percent,
            grams: grams.0,
        })
    }

    /// Grams a count of a stockpile whose book holds `book_g` may differ by.
    pub fn allowance_g(&self, book_g: i64) -> i64 {
        let share = Decimal::from(book_g.unsigned_abs()) * self.percent / Decimal::from(100);
        // Truncated: the allowance never exceeds the stated percentage.
        let share = share.trunc().to_i64().unwrap_or(i64::MAX);
        share.max(self.grams)
    }
}

/// A count compared with the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variance {
    /// counted − book, grams.
    pub variance_g: i64,
    /// variance ÷ book × 100, to three decimals (half away from zero); `None`
    /// when the book holds nothing.
    pub percent: Option<Decimal>,
    pub tolerance_g: i64,
    pub flagged: bool,
}

pub fn variance(book_g: i64, counted_g: i64, tolerance: &Tolerance) -> Variance {
    let variance_g = counted_g - book_g;
    let percent = (book_g != 0).then(|| {
        let mut p = (Decimal::from(variance_g) * Decimal::from(100) / Decimal::from(book_g))
            .round_dp_with_strategy(3, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        // Always three decimals, as shown.
        p.rescale(3);
        p
    });
    let tolerance_g = tolerance.allowance_g(book_g);
    Variance {
        variance_g,
        percent,
        tolerance_g,
        flagged: variance_g.unsigned_abs() > tolerance_g.unsigned_abs(),
    }
}

/// Where a count stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountStatus {
    Open,
    Accepted,
    Rejected,
}

impl CountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CountStatus::Open => "open",
            CountStatus::Accepted => "accepted",
            CountStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<CountStatus> {
        [
            CountStatus::Open,
            CountStatus::Accepted,
            CountStatus::Rejected,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Why a decision on a count is refused, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionRefused {
    /// Invariant 8: whoever counted may not approve their own variance.
    SameSubject,
    AlreadyDecided(CountStatus),
}

pub fn may_decide(
    status: CountStatus,
    counted_by: &str,
    approver: &str,
) -> Result<(), DecisionRefused> {
    if status != CountStatus::Open {
        return Err(DecisionRefused::AlreadyDecided(status));
    }
    if counted_by == approver {
        return Err(DecisionRefused::SameSubject);
    }
    Ok(())
}

/// A stockpile's movements over a period, by kind, signed grams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Movements {
    pub acquisitions: i64,
    pub releases: i64,
    pub transfers_in: i64,
    pub transfers_out: i64,
    pub loans_out: i64,
    pub loan_returns: i64,
    pub adjustments: i64,
}

impl Movements {
    /// Adds `quantity_g` of an entry of `kind`; false for an unknown kind.
    pub fn add(&mut self, kind: &str, quantity_g: i64) -> bool {
        let slot = match kind {
            "acquisition" => &mut self.acquisitions,
            "release" => &mut self.releases,
            "transfer_in" => &mut self.transfers_in,
            "transfer_out" => &mut self.transfers_out,
            "loan_out" => &mut self.loans_out,
            "loan_return" => &mut self.loan_returns,
            "adjustment" => &mut self.adjustments,
            _ => return false,
        };
        *slot += quantity_g;
        true
    }

    pub fn net(&self) -> i128 {
        [
            self.acquisitions,
            self.releases,
            self.transfers_in,
            self.transfers_out,
            self.loans_out,
            self.loan_returns,
            self.adjustments,
        ]
        .iter()
        .map(|v| *v as i128)
        .sum()
    }

    pub fn merge(&mut self, other: &Movements) {
        self.acquisitions += other.acquisitions;
        self.releases += other.releases;
        self.transfers_in += other.transfers_in;
        self.transfers_out += other.transfers_out;
        self.loans_out += other.loans_out;
        self.loan_returns += other.loan_returns;
        self.adjustments += other.adjustments;
    }
}

/// The reconciliation every report states: opening + movements = closing.
pub fn reconciles(opening_g: i64, movements: &Movements, closing_g: i64) -> bool {
    opening_g as i128 + movements.net() == closing_g as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(p: &str, kg: &str) -> Tolerance {
        Tolerance::parse(p, kg).unwrap()
    }

    #[test]
    fn the_larger_allowance_applies() {
        let t = tol("0.5", "1.000");
        // 0.5 % of 100 kg is 500 g, below the 1 kg floor.
        assert_eq!(t.allowance_g(100_000), 1_000);
        // 0.5 % of 1 t is 5 kg.
        assert_eq!(t.allowance_g(1_000_000), 5_000);
        assert_eq!(t.allowance_g(0), 1_000);
    }

    #[test]
    fn variances_beyond_the_allowance_are_flagged() {
        let t = tol("0.5", "1.000");
        let v = variance(1_000_000, 994_999, &t);
        assert_eq!(v.variance_g, -5_001);
        assert!(v.flagged);
        assert_eq!(v.percent.unwrap().to_string(), "-0.500");
        let v = variance(1_000_000, 995_000, &t);
        assert!(!v.flagged, "exactly at the allowance is within it");
        let v = variance(0, 2_000, &t);
        assert_eq!(v.percent, None);
        assert!(v.flagged);
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(Tolerance::parse("x", "1")
            .unwrap_err()
            .contains("tolerance_percent"));
        assert!(Tolerance::parse("101", "1").is_err());
        assert!(Tolerance::parse("1", "1.0001")
            .unwrap_err()
            .contains("tolerance_kg"));
        assert!(Tolerance::parse("1", "-1").is_err());
    }

    #[test]
    fn the_counter_cannot_decide_and_decisions_are_final() {
        assert_eq!(
            may_decide(CountStatus::Open, "ann", "ann"),
            Err(DecisionRefused::SameSubject)
        );
        assert!(may_decide(CountStatus::Open, "ann", "bob").is_ok());
        assert_eq!(
            may_decide(CountStatus::Rejected, "ann", "bob"),
            Err(DecisionRefused::AlreadyDecided(CountStatus::Rejected))
        );
    }

    #[test]
    fn reconciliation_adds_every_kind() {
        let mut m = Movements::default();
        for (k, q) in [
            ("acquisition", 100),
            ("release", -30),
            ("transfer_in", 5),
            ("transfer_out", -5),
            ("loan_out", -10),
            ("loan_return", 11),
            ("adjustment", -1),
        ] {
            assert!(m.add(k, q));
        }
        assert!(!m.add("gift", 1));
        assert!(reconciles(50, &m, 120));
        assert!(!reconciles(50, &m, 121));
    }
}
