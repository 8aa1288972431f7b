//! Depot rules that need no database.

use std::fmt;

use serde::Serialize;

/// A depot code: 2–16 of `A–Z`, `0–9`, `-`, starting with a letter or digit.
/// Lower case is folded to upper case; any non-ASCII character is refused, so a
/// Cyrillic "NV1" can never shadow the Latin one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DepotCode(String);

impl DepotCode {
    pub fn parse(s: &str) -> Result<DepotCode, String> {
        let upper = s.to_ascii_uppercase();
        let ok = (2..=16).contains(&upper.len())
            && upper
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            && upper.as_bytes()[0] != b'-';
        if ok {
            Ok(DepotCode(upper))
        } else {
            Err("must be 2 to 16 characters of A-Z, 0-9 and '-', e.g. \"NV1\"".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for DepotCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DepotStatus {
    /// Receives and ships.
    Active,
    /// Temporarily takes no movements in or out.
    Suspended,
    /// Permanently out of service; only an empty depot can be closed.
    Closed,
}

impl DepotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DepotStatus::Active => "active",
            DepotStatus::Suspended => "suspended",
            DepotStatus::Closed => "closed",
        }
    }

    pub fn from_stored(s: &str) -> DepotStatus {
        match s {
            "suspended" => DepotStatus::Suspended,
            "closed" => DepotStatus::Closed,
            _ => DepotStatus::Active,
        }
    }

    /// Whether a depot may move from `self` to `to`. Closing is final.
    pub fn may_become(self, to: DepotStatus) -> bool {
        !matches!(self, DepotStatus::Closed) && self != to
    }
}

/// Share of capacity in use, as a percentage with two decimals (`"12.34"`).
pub fn utilisation_pct(on_hand_g: impl Into<i128>, capacity_g: impl Into<i128>) -> String {
    let (on_hand_g, capacity_g) = (on_hand_g.into(), capacity_g.into());
    if capacity_g <= 0 {
        return "0.00".into();
    }
    let basis_points = (on_hand_g * 10_000) / capacity_g;
    rust_decimal::Decimal::new(basis_points as i64, 2).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ascii_and_upper_case() {
        assert_eq!(DepotCode::parse("nv1").unwrap().as_str(), "NV1");
        assert!(DepotCode::parse("N").is_err());
        assert!(DepotCode::parse("-NV").is_err());
        assert!(DepotCode::parse("NV 1").is_err());
        assert!(DepotCode::parse("NV1\u{200b}").is_err());
        assert!(DepotCode::parse("НV1").is_err(), "Cyrillic look-alike");
        assert!(DepotCode::parse("ABCDEFGHIJKLMNOPQ").is_err());
    }

    #[test]
    fn closing_is_final() {
        assert!(DepotStatus::Active.may_become(DepotStatus::Suspended));
        assert!(DepotStatus::Suspended.may_become(DepotStatus::Active));
        assert!(!DepotStatus::Closed.may_become(DepotStatus::Active));
        assert!(!DepotStatus::Active.may_become(DepotStatus::Active));
    }

    #[test]
    fn utilisation_is_a_two_decimal_percentage() {
        assert_eq!(utilisation_pct(1, 3), "33.33");
        assert_eq!(utilisation_pct(0, 0), "0.00");
        assert_eq!(utilisation_pct(5, 5), "100.00");
    }
}
