//! Exact quantities, money and grades, and the conversion of timestamps between
//! the API (RFC 3339, UTC) and the database (`TIMESTAMP` holding UTC).
//!
//! Quantities travel as decimal strings of kilograms and are stored as integer
//! grams; prices as decimal strings stored as integer micro-units. Parsing is
//! strict: anything a float would have produced (`1e3`, `NaN`, `-0`, `.5`) and
//! any precision finer than what is stored is refused, never rounded.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// Largest quantity accepted anywhere: one billion tonnes, far above any real
/// stockpile, small enough that sums over thousands of stockpiles fit an i64.
pub const MAX_KG_DIGITS: usize = 12;

/// A mass in whole grams. Signed: ledger entries carry negative quantities for
/// outflows; inputs are parsed as non-negative and signed by the movement kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Grams(pub i64);

impl Grams {
    pub const ZERO: Grams = Grams(0);

    /// Parses a non-negative decimal string of kilograms with at most three
    /// decimals (`"1250.5"`, `"1250.500"`, `"0.001"`).
    pub fn parse_kg(s: &str) -> Result<Grams, String> {
        parse_fixed(s, 3, MAX_KG_DIGITS, "kilograms").map(Grams)
    }

    /// The value as kilograms with exactly three decimals, e.g. `"-12.040"`.
    pub fn to_kg_string(self) -> String {
        Decimal::new(self.0, 3).to_string()
    }

    /// The contained element mass of this gross mass, given the form's factor in
    /// parts per million; truncated to the gram (never overstates the holding).
    pub fn element_mass(self, ppm: i64) -> Grams {
        Grams(((self.0 as i128 * ppm as i128) / 1_000_000) as i64)
    }
}

/// A sum of gram quantities, which may exceed `i64` (the capacity of ten
/// thousand large depots does): sums are taken in `i128` and shown as kg.
pub fn kg_string_wide(grams: i128) -> String {
    match Decimal::try_from_i128_with_scale(grams, 3) {
        Ok(d) => d.to_string(),
        // Beyond Decimal's 96 bits: format by hand, still exact.
        Err(_) => {
            let sign = if grams < 0 { "-" } else { "" };
            let abs = grams.unsigned_abs();
            format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
        }
    }
}

impl fmt::Display for Grams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_kg_string())
    }
}

impl Serialize for Grams {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_kg_string())
    }
}

/// Money in millionths of the currency unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Micros {
    /// Parses a non-negative decimal string with at most six decimals.
    pub fn parse(s: &str) -> Result<Micros, String> {
        parse_fixed(s, 6, 12, "currency units").map(Micros)
    }

    pub fn to_decimal_string(self) -> String {
        Decimal::new(self.0, 6).normalize().to_string()
    }
}

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_decimal_string())
    }
}

/// Parses `^[0-9]{1,max_int}(\.[0-9]{1,scale})?$` into an integer scaled by
/// 10^scale. Hand-written rather than delegated to a general decimal parser,
/// which would accept exponents, underscores, signs or surrounding spaces.
fn parse_fixed(s: &str, scale: usize, max_int: usize, unit: &str) -> Result<i64, String> {
    let example = if scale == 3 {
        "\"1250.500\""
    } else {
        "\"12.50\""
    };
    let bad = || format!("must be a decimal string of {unit} such as {example}");
    if s.starts_with(['-', '+']) {
        let why = if scale == 3 {
            "; the kind of movement (acquisition or release) says which way stock goes"
        } else {
            ""
        };
        return Err(format!(
            "must not carry a sign (\"-\" or \"+\"): send a decimal string of {unit} \
             such as {example}{why}"
        ));
    }
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let digits = int.trim_start_matches('0');
    if digits.len() > max_int {
        return Err(format!(
            "is too large: at most {max_int} digits before the decimal point"
        ));
    }
    let frac = match frac {
        None => "",
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return Err(bad()),
        Some(f) => f,
    };
    // "1.2500" is fine: trailing zeros add no precision. "0.0001" kg is refused.
    let significant = frac.trim_end_matches('0');
    if significant.len() > scale {
        return Err(format!(
            "has more than {scale} decimal places; the ledger stores exact {} and does not round",
            if scale == 3 { "grams" } else { "micro-units" }
        ));
    }
    let mut value: i64 = digits.parse::<i64>().unwrap_or(0);
    for _ in 0..scale {
        value *= 10;
    }
    let mut frac_value: i64 = 0;
    for i in 0..scale {
        let d = significant
            .as_bytes()
            .get(i)
            .map(|b| (b - b'0') as i64)
            .unwrap_or(0);
        frac_value = frac_value * 10 + d;
    }
    Ok(value + frac_value)
}

/// A purity grade in percent, `0 < grade <= 100`, at most four decimals, kept in
/// one normal form (`"99.50"` and `"99.5"` name the same grade).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Grade(String);

impl Grade {
    pub fn parse(s: &str) -> Result<Grade, String> {
        let ten_thousandths = parse_fixed(s, 4, 3, "percent")
            .map_err(|e| format!("{e} (a purity in percent such as \"99.5\")"))?;
        if ten_thousandths == 0 || ten_thousandths > 100_0000 {
            return Err("must be a purity in percent greater than 0 and at most 100".into());
        }
        Ok(Grade(
            Decimal::new(ten_thousandths, 4).normalize().to_string(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a value read back from the database, where only parsed grades go.
    pub fn from_stored(s: String) -> Grade {
        Grade(s)
    }
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Grade {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Current time, truncated to the microsecond both databases store.
pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.nanosecond() / 1_000 * 1_000;
    t.with_nanosecond(nanos).unwrap_or(t)
}

pub fn to_db(t: DateTime<Utc>) -> NaiveDateTime {
    truncate_micros(t).naive_utc()
}

pub fn from_db(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// RFC 3339 in UTC with microseconds: `2026-11-26T09:30:00.000000Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an RFC 3339 timestamp with an explicit offset, between the years
/// 1900 and 9999 in UTC (an offset can push `0000-01-01T00:00+00:01` into year
/// -1, which RFC 3339 cannot write back).
pub fn parse_rfc3339(s: &str) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map(|t| truncate_micros(t.with_timezone(&Utc)))
        .map_err(|_| {
            "must be an RFC 3339 timestamp with offset, e.g. \"2026-11-26T09:30:00Z\"".to_string()
        })?;
    if !(1900..=9999).contains(&t.year()) {
        return Err("must lie between the years 1900 and 9999 (UTC)".into());
    }
    // chrono keeps a leap second as second 59 with over a second of nanos, which
    // the databases store as the next second (even the next day): what a check
    // saw would then not be what is stored. UTC as stored has no second 60.
    if t.nanosecond() >= 1_000_000_000 {
        return Err(
            "second 60 (a leap second) is not accepted: use 23:59:59.999999 or the next second"
                .into(),
        );
    }
    Ok(t)
}

/// Serde helper: `DateTime<Utc>` fields as `rfc3339`.
pub mod rfc3339_format {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::Serializer;

        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::rfc3339(*t)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kilograms_parse_exactly() {
        assert_eq!(Grams::parse_kg("1250.5"), Ok(Grams(1_250_500)));
        assert_eq!(Grams::parse_kg("1250.500"), Ok(Grams(1_250_500)));
        assert_eq!(Grams::parse_kg("0.001"), Ok(Grams(1)));
        assert_eq!(Grams::parse_kg("0"), Ok(Grams(0)));
        assert_eq!(Grams::parse_kg("007"), Ok(Grams(7_000)));
        assert_eq!(Grams::parse_kg("1.0000"), Ok(Grams(1_000)));
        assert_eq!(
            Grams::parse_kg("999999999999.999"),
            Ok(Grams(999_999_999_999_999))
        );
    }

    #[test]
    fn kilograms_refuse_what_a_float_would_accept() {
        for bad in [
            "0.0001",
            "1e3",
            "1E3",
            "NaN",
            "inf",
            "-0",
            "-1",
            "+1",
            ".5",
            "5.",
            " 1",
            "1 ",
            "",
            "1_000",
            "1,5",
            "0x10",
            "١٢",
            "1.2.3",
            "1000000000000",
            "１",
        ] {
            assert!(Grams::parse_kg(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(Grams::parse_kg("0.0001")
            .unwrap_err()
            .contains("more than 3 decimal places"));
        for signed in ["-5", "+5", "-0"] {
            let e = Grams::parse_kg(signed).unwrap_err();
            assert!(e.contains("must not carry a sign"), "{signed}: {e}");
        }
    }

    #[test]
    fn wide_sums_format_exactly() {
        assert_eq!(kg_string_wide(12_040), "12.040");
        assert_eq!(kg_string_wide(-5), "-0.005");
        let big = i64::MAX as i128 * 3;
        assert_eq!(kg_string_wide(big), "27670116110564327.421");
        assert_eq!(
            kg_string_wide(i128::MAX / 7),
            format!("{}.{:03}", i128::MAX / 7 / 1000, i128::MAX / 7 % 1000)
        );
    }

    #[test]
    fn kilograms_format_with_three_decimals() {
        assert_eq!(Grams(1_250_500).to_kg_string(), "1250.500");
        assert_eq!(Grams(-40).to_kg_string(), "-0.040");
        assert_eq!(Grams(0).to_kg_string(), "0.000");
    }

    #[test]
    fn element_mass_truncates_to_the_gram() {
        assert_eq!(Grams(1_000_000).element_mass(857_356), Grams(857_356));
        assert_eq!(Grams(1).element_mass(857_356), Grams(0));
    }

    #[test]
    fn money_keeps_six_decimals() {
        assert_eq!(Micros::parse("12.5"), Ok(Micros(12_500_000)));
        assert_eq!(Micros::parse("0.000001"), Ok(Micros(1)));
        assert!(Micros::parse("0.0000001").is_err());
        assert_eq!(Micros(12_500_000).to_decimal_string(), "12.5");
    }

    #[test]
    fn grades_normalise() {
        assert_eq!(Grade::parse("99.50").unwrap().as_str(), "99.5");
        assert_eq!(Grade::parse("100.0").unwrap().as_str(), "100");
        assert_eq!(Grade::parse("099.99").unwrap().as_str(), "99.99");
        assert!(Grade::parse("0").is_err());
        assert!(Grade::parse("100.01").is_err());
        assert!(Grade::parse("99.99999").is_err());
    }

    #[test]
    fn timestamps_round_trip_at_microsecond_precision() {
        let t = parse_rfc3339("2026-11-26T10:30:00.123456789+01:00").unwrap();
        assert_eq!(rfc3339(t), "2026-11-26T09:30:00.123456Z");
        assert_eq!(from_db(to_db(t)), t);
        assert!(parse_rfc3339("2026-11-26 09:30:00").is_err());
        assert!(parse_rfc3339("0000-01-01T00:00:00+00:01").is_err());
        assert!(parse_rfc3339("9999-12-31T23:59:59-23:59").is_err());
        assert!(parse_rfc3339("9999-12-31T23:59:59Z").is_ok());
        assert!(parse_rfc3339("2026-11-28T23:59:60.1Z").is_err());
        assert!(parse_rfc3339("2016-12-31T23:59:60Z").is_err());
        assert!(parse_rfc3339("6745-11-09T22:05:60Z").is_err());
    }

    proptest! {
        #[test]
        fn any_gram_count_round_trips(g in 0i64..999_999_999_999_999) {
            prop_assert_eq!(Grams::parse_kg(&Grams(g).to_kg_string()), Ok(Grams(g)));
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,24}") {
            let _ = Grams::parse_kg(&s);
            let _ = Micros::parse(&s);
            let _ = Grade::parse(&s);
        }

        #[test]
        fn a_fourth_significant_decimal_is_always_refused(int in 0u32..1_000_000, frac in 1u32..10_000) {
            prop_assume!(frac % 10 != 0);
            let s = format!("{int}.{frac:04}");
            prop_assert!(Grams::parse_kg(&s).is_err());
        }
    }
}
