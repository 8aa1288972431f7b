//! Element policy and annual ceilings as values: what a policy holds, which
//! fiscal years and drawdown durations are acceptable, how an `If-Match`
//! names a policy version, and how much of a ceiling is left. No HTTP, no SQL.

use crate::db::types::Grams;

/// One element's policy. `None` means no limit (a floor of zero, no cap) or,
/// for consumption, unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementPolicy {
    /// The holding below which only an emergency drawdown may take the element.
    pub reserve_floor: Option<Grams>,
    /// Yearly consumption, for days of cover and release rules.
    pub consumption_per_year: Option<Grams>,
    /// Most a limited drawdown may release.
    pub limited_drawdown_max: Option<Grams>,
    /// Within how many days a limited drawdown must complete.
    pub limited_drawdown_max_days: Option<DrawdownDays>,
    /// Most a test sale may sell.
    pub test_sale_max: Option<Grams>,
}

/// A limited drawdown's longest duration: 1 to 3650 days (ten years; the
/// SPR's is 60).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DrawdownDays(i32);

impl DrawdownDays {
    pub const MAX: i64 = 3650;

    pub fn parse(days: i64) -> Result<DrawdownDays, String> {
        if (1..=Self::MAX).contains(&days) {
            Ok(DrawdownDays(days as i32))
        } else {
            Err(format!(
                "must be a whole number of days from 1 to {}",
                Self::MAX
            ))
        }
    }

    /// Wraps a value read back from the database, where only parsed values go.
    pub fn from_stored(days: i32) -> DrawdownDays {
        DrawdownDays(days)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// A fiscal year, named by the calendar year it ends in (FY2027 starts on
/// 1 October 2026 with the default start month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FiscalYear(i32);

impl FiscalYear {
    pub const FIRST: i32 = 1900;
    pub const LAST: i32 = 9999;

    pub fn parse(s: &str) -> Result<FiscalYear, String> {
        let bad = || {
            format!(
                "must be a fiscal year from {} to {}, named by the calendar year it ends in (e.g. 2027)",
                Self::FIRST,
                Self::LAST
            )
        };
        if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i32 = s.parse().map_err(|_| bad())?;
        if (Self::FIRST..=Self::LAST).contains(&year) {
            Ok(FiscalYear(year))
        } else {
            Err(bad())
        }
    }

    pub fn from_stored(year: i32) -> FiscalYear {
        FiscalYear(year)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// The `ETag` of one version of one element's policy.
pub fn policy_etag(element: &str, version: i64) -> String {
    format!("\"policy-{element}-v{version}\"")
}

/// What an `If-Match` on a policy demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// `*`: whatever version is current.
    Any,
    /// Exactly this version.
    Version(i64),
}

/// Why an `If-Match` value cannot be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatchError {
    /// Not an ETag this service issues for policies.
    Malformed,
    /// An ETag of another element's policy.
    OtherElement,
}

/// Reads an `If-Match` value against `element`'s policy: `*` or the ETag of
/// one of its versions (`"policy-Nd-v3"`, also in a list with one entry).
pub fn parse_if_match(value: &str, element: &str) -> Result<Precondition, IfMatchError> {
    let value = value.trim();
    if value == "*" {
        return Ok(Precondition::Any);
    }
    let inner = value
        .strip_prefix("\"policy-")
        .and_then(|v| v.strip_suffix('"'))
        .ok_or(IfMatchError::Malformed)?;
    let (symbol, version) = inner.rsplit_once("-v").ok_or(IfMatchError::Malformed)?;
    let version: i64 = version.parse().map_err(|_| IfMatchError::Malformed)?;
    if version < 1 {
        return Err(IfMatchError::Malformed);
    }
    if symbol != element {
        return Err(IfMatchError::OtherElement);
    }
    Ok(Precondition::Version(version))
}

/// What is left under a ceiling: never negative, even when the ceiling was
/// lowered below what had already been used (nothing more may pass then).
pub fn headroom(max: Grams, used: Grams) -> Grams {
    Grams((max.0 - used.0).max(0))
}

/// A sort key for a ceiling, for the list and its cursor: fiscal year, then
/// the element's atomic number (below 100).
pub fn ceiling_key(fiscal_year: i32, atomic_number: i32) -> i64 {
    fiscal_year as i64 * 100 + atomic_number as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_days_run_from_one_day_to_ten_years() {
        assert!(DrawdownDays::parse(0).is_err());
        assert!(DrawdownDays::parse(-5).is_err());
        assert_eq!(DrawdownDays::parse(1).unwrap().get(), 1);
        assert_eq!(DrawdownDays::parse(3650).unwrap().get(), 3650);
        assert!(DrawdownDays::parse(3651).is_err());
        assert!(DrawdownDays::parse(i64::MAX).is_err());
    }

    #[test]
    fn fiscal_years_are_plain_four_digit_years() {
        assert_eq!(FiscalYear::parse("2027").unwrap().get(), 2027);
        assert_eq!(FiscalYear::parse("1900").unwrap().get(), 1900);
        assert_eq!(FiscalYear::parse("9999").unwrap().get(), 9999);
        for bad in [
            "1899", "10000", "-2027", "+2027", "20 7", "", "2027.0", "FY27",
        ] {
            assert!(FiscalYear::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_match_names_a_version_of_this_elements_policy() {
        assert_eq!(parse_if_match("*", "Nd"), Ok(Precondition::Any));
        assert_eq!(
            parse_if_match(&policy_etag("Nd", 3), "Nd"),
            Ok(Precondition::Version(3))
        );
        assert_eq!(
            parse_if_match(" \"policy-Nd-v12\" ", "Nd"),
            Ok(Precondition::Version(12))
        );
        assert_eq!(
            parse_if_match(&policy_etag("Dy", 3), "Nd"),
            Err(IfMatchError::OtherElement)
        );
        for bad in [
            "policy-Nd-v3",
            "\"depot-1-v3\"",
            "\"policy-Nd-vx\"",
            "\"policy-Nd-v0\"",
            "W/\"policy-Nd-v3\"",
            "",
        ] {
            assert_eq!(
                parse_if_match(bad, "Nd"),
                Err(IfMatchError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headroom_is_never_negative() {
        assert_eq!(headroom(Grams(1_000_000), Grams(999_999)), Grams(1));
        assert_eq!(headroom(Grams(1_000_000), Grams(1_000_000)), Grams(0));
        assert_eq!(headroom(Grams(500), Grams(800)), Grams(0));
    }

    #[test]
    fn ceiling_keys_order_by_year_then_atomic_number() {
        assert!(ceiling_key(2027, 21) < ceiling_key(2027, 71));
        assert!(ceiling_key(2027, 71) < ceiling_key(2028, 21));
    }
}
