//! Ledger rules that need no database: movement kinds, validated legs, running
//! balances and the as-of check for backdated outflows.

use chrono::{DateTime, Duration, NaiveTime, Utc};

use crate::db::types::{Grade, Grams, Micros};
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Acquisition,
    Release,
    TransferOut,
    TransferIn,
    LoanOut,
    LoanReturn,
    Adjustment,
}

impl EntryKind {
    pub const ALL: [EntryKind; 7] = [
        EntryKind::Acquisition,
        EntryKind::Release,
        EntryKind::TransferOut,
        EntryKind::TransferIn,
        EntryKind::LoanOut,
        EntryKind::LoanReturn,
        EntryKind::Adjustment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Acquisition => "acquisition",
            EntryKind::Release => "release",
            EntryKind::TransferOut => "transfer_out",
            EntryKind::TransferIn => "transfer_in",
            EntryKind::LoanOut => "loan_out",
            EntryKind::LoanReturn => "loan_return",
            EntryKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        EntryKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Material shipped out of a depot: limited by the depot's drawdown rate.
    pub fn is_shipment_out(self) -> bool {
        matches!(
            self,
            EntryKind::Release | EntryKind::TransferOut | EntryKind::LoanOut
        )
    }
}

/// Which stockpile a leg moves: element, form and grade at one depot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StockpileKey {
    pub depot: DepotCode,
    pub element: ElementSymbol,
    pub form: Form,
    pub grade: Grade,
}

/// Descriptive fields an entry carries besides its quantity.
#[derive(Debug, Clone, Default)]
pub struct EntryDetails {
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub origin_country: Option<String>,
    pub unit_price: Option<Micros>,
    pub currency: Option<String>,
    pub note: Option<String>,
}

/// One validated movement of one stockpile.
#[derive(Debug, Clone)]
pub struct Leg {
    pub key: StockpileKey,
    pub kind: EntryKind,
    /// Signed: negative for outflows.
    pub quantity: Grams,
    pub occurred_at: DateTime<Utc>,
    /// Whether the client said when the movement happened. When it did not,
    /// `post` dates the leg at the instant it is posted, under the stockpile's
    /// lock, so entries dated "now" stay in commit order on every stockpile.
    pub occurred_at_given: bool,
    pub details: EntryDetails,
    /// Prefix of this leg's fields in the request (`""`, `"entries[3]."`), so a
    /// refusal can name the field that caused it.
    pub field_prefix: String,
}

/// Invariant 3, checked where every posting passes: each `transfer_out` is
/// followed at once by its `transfer_in` of the same element, form and grade at
/// another depot, for the same quantity; and no `transfer_in` stands alone.
/// Returns the prefix of the first offending leg.
pub fn check_transfer_pairs(legs: &[Leg]) -> Result<(), String> {
    let mut i = 0;
    while i < legs.len() {
        let leg = &legs[i];
        match leg.kind {
            EntryKind::TransferOut => {
                let Some(into) = legs.get(i + 1).filter(|l| l.kind == EntryKind::TransferIn) else {
                    return Err(leg.field_prefix.clone());
                };
                let same_material = into.key.element == leg.key.element
                    && into.key.form == leg.key.form
                    && into.key.grade == leg.key.grade;
                if !same_material
                    || into.key.depot == leg.key.depot
                    || into.quantity.0 != -leg.quantity.0
                    || leg.quantity.0 >= 0
                {
                    return Err(leg.field_prefix.clone());
                }
                i += 2;
            }
            EntryKind::TransferIn => return Err(leg.field_prefix.clone()),
            _ => i += 1,
        }
    }
    Ok(())
}

/// Balances after each delta, starting from `start`.
pub fn running_balances(start: i64, deltas: &[i64]) -> Vec<i64> {
    deltas
        .iter()
        .scan(start, |balance, d| {
            *balance += d;
            Some(*balance)
        })
        .collect()
}

/// For backdated postings: given the balance `base` as of just before the
/// earliest new leg, and every movement (existing and new) dated after that,
/// returns the first instant at which the balance *as of that instant* would be
/// negative, with that balance. Movements at the same instant count together,
/// as an as-of query sees them.
pub fn first_negative_as_of(
    base: i64,
    mut events: Vec<(DateTime<Utc>, i64)>,
) -> Option<(DateTime<Utc>, i64)> {
    events.sort_by_key(|e| e.0);
    let mut balance = base;
    let mut i = 0;
    while i < events.len() {
        let t = events[i].0;
        while i < events.len() && events[i].0 == t {
            balance += events[i].1;
            i += 1;
        }
        if balance < 0 {
            return Some((t, balance));
        }
    }
    None
}

/// The UTC calendar day holding `t`, as `[start, end)`: the drawdown-rate window.
pub fn utc_day(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = t.date_naive().and_time(NaiveTime::MIN).and_utc();
    (start, start + Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(h: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
    }

    fn transfer_leg(depot: &str, kind: EntryKind, grams: i64) -> Leg {
        Leg {
            key: StockpileKey {
                depot: DepotCode::parse(depot).unwrap(),
                element: ElementSymbol::parse("Nd").unwrap(),
                form: Form::Oxide,
                grade: Grade::parse("99.5").unwrap(),
            },
            kind,
            quantity: Grams(grams),
            occurred_at: at(1),
            occurred_at_given: true,
            details: EntryDetails::default(),
            field_prefix: String::new(),
        }
    }

    #[test]
    fn transfers_come_in_matching_pairs() {
        let out = transfer_leg("NV1", EntryKind::TransferOut, -5);
        let into = transfer_leg("TX2", EntryKind::TransferIn, 5);
        assert!(check_transfer_pairs(&[out.clone(), into.clone()]).is_ok());
        assert!(
            check_transfer_pairs(std::slice::from_ref(&out)).is_err(),
            "half a transfer"
        );
        assert!(
            check_transfer_pairs(std::slice::from_ref(&into)).is_err(),
            "an arrival from nowhere"
        );
        assert!(
            check_transfer_pairs(&[out.clone(), transfer_leg("NV1", EntryKind::TransferIn, 5)])
                .is_err(),
            "same depot"
        );
        assert!(
            check_transfer_pairs(&[out, transfer_leg("TX2", EntryKind::TransferIn, 4)]).is_err(),
            "quantity changed on the way"
        );
    }

    #[test]
    fn kinds_round_trip() {
        for k in EntryKind::ALL {
            assert_eq!(EntryKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EntryKind::parse("Release"), None);
    }

    #[test]
    fn backdated_release_that_empties_history_is_found() {
        // 10 kg arrived at 12:00; a release of 5 kg dated 09:00 would make the
        // 09:00 balance -5 even though today's balance is fine.
        let found = first_negative_as_of(0, vec![(at(12), 10), (at(9), -5)]);
        assert_eq!(found, Some((at(9), -5)));
        assert_eq!(
            first_negative_as_of(0, vec![(at(9), 10), (at(12), -5)]),
            None
        );
    }

    #[test]
    fn movements_at_one_instant_count_together() {
        assert_eq!(
            first_negative_as_of(0, vec![(at(9), -5), (at(9), 10)]),
            None
        );
    }

    #[test]
    fn utc_day_bounds() {
        let (s, e) = utc_day(at(13));
        assert_eq!(s, at(0));
        assert_eq!(e - s, Duration::days(1));
    }

    proptest! {
        #[test]
        fn running_balances_end_at_the_sum(start in 0i64..1_000_000, deltas in proptest::collection::vec(-1000i64..1000, 0..50)) {
            let b = running_balances(start, &deltas);
            prop_assert_eq!(b.len(), deltas.len());
            prop_assert_eq!(b.last().copied().unwrap_or(start), start + deltas.iter().sum::<i64>());
        }

        #[test]
        fn no_negative_report_when_every_prefix_is_non_negative(deltas in proptest::collection::vec(0i64..1000, 0..30)) {
            let events = deltas.iter().enumerate().map(|(i, d)| (at(0) + Duration::minutes(i as i64), *d)).collect();
            prop_assert_eq!(first_negative_as_of(0, events), None);
        }
    }
}
