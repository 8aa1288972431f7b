//! Property test of the ledger invariants: random sequences of acquisitions,
//! releases, transfers and batches, posted through `ledger::post` on a real
//! database, compared after every step with a plain in-memory model.

use std::collections::BTreeMap;

use proptest::prelude::*;
use reserve::config::LedgerSettings;
use reserve::db::types::{Grade, Grams};
use reserve::db::{write_transaction, DbConn};
use reserve::depots::dto::NewDepot;
use reserve::depots::model::DepotCode;
use reserve::elements::model::{ElementSymbol, Form};
use reserve::error::ApiError;
use reserve::ledger::model::{EntryDetails, EntryKind, Leg, StockpileKey};
use reserve::ledger::post::{post, Posting};

use crate::helpers::{Backend, TestDb};

const DEPOTS: [&str; 3] = ["AA1", "BB2", "CC3"];
const CAPACITY_G: i64 = 50_000;
const ELEMENTS: [&str; 2] = ["Nd", "Dy"];

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        depot: usize,
        element: usize,
        grams: i64,
    },
    Release {
        depot: usize,
        element: usize,
        grams: i64,
    },
    Transfer {
        from: usize,
        to: usize,
        element: usize,
        grams: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..2usize, 1..30_000i64).prop_map(|(depot, element, grams)| Op::Acquire {
            depot,
            element,
            grams
        }),
        (0..3usize, 0..2usize, 1..30_000i64).prop_map(|(depot, element, grams)| Op::Release {
            depot,
            element,
            grams
        }),
        (0..3usize, 0..3usize, 0..2usize, 1..30_000i64).prop_map(|(from, to, element, grams)| {
            Op::Transfer {
                from,
                to,
                element,
                grams,
            }
        }),
    ]
}

fn key(depot: usize, element: usize) -> StockpileKey {
    StockpileKey {
        depot: DepotCode::parse(DEPOTS[depot]).unwrap(),
        element: ElementSymbol::parse(ELEMENTS[element]).unwrap(),
        form: Form::Oxide,
        grade: Grade::parse("99.5").unwrap(),
    }
}

fn leg(depot: usize, element: usize, kind: EntryKind, grams: i64) -> Leg {
    Leg {
        key: key(depot, element),
        kind,
        quantity: Grams(grams),
        occurred_at: reserve::db::types::now(),
        occurred_at_given: false,
        details: EntryDetails::default(),
        field_prefix: String::new(),
    }
}

fn legs_of(op: &Op) -> Vec<Leg> {
    match *op {
        Op::Acquire {
            depot,
            element,
            grams,
        } => vec![leg(depot, element, EntryKind::Acquisition, grams)],
        Op::Release {
            depot,
            element,
            grams,
        } => vec![leg(depot, element, EntryKind::Release, -grams)],
        Op::Transfer {
            from,
            to,
            element,
            grams,
        } => vec![
            leg(from, element, EntryKind::TransferOut, -grams),
            leg(to, element, EntryKind::TransferIn, grams),
        ],
    }
}

/// What the model says the ledger must do with `op`: the new balances, or a refusal.
fn model_apply(
    model: &BTreeMap<(usize, usize), i64>,
    op: &Op,
) -> Option<BTreeMap<(usize, usize), i64>> {
    let mut next = model.clone();
    for l in legs_of(op) {
        let d = DEPOTS
            .iter()
            .position(|c| *c == l.key.depot.as_str())
            .unwrap();
        let e = ELEMENTS
            .iter()
            .position(|c| *c == l.key.element.as_str())
            .unwrap();
        *next.entry((d, e)).or_default() += l.quantity.0;
    }
    if let Op::Transfer { from, to, .. } = op {
        if from == to {
            return None;
        }
    }
    let depot_total = |d: usize| {
        next.iter()
            .filter(|((dd, _), _)| *dd == d)
            .map(|(_, g)| g)
            .sum::<i64>()
    };
    let ok = next.values().all(|g| *g >= 0) && (0..3).all(|d| depot_total(d) <= CAPACITY_G);
    ok.then_some(next)
}

fn run_case(backend: Backend, ops: &[Op]) -> Result<(), TestCaseError> {
    let db = TestDb::new(backend);
    let url = reserve::db::DatabaseUrl::parse(db.url()).unwrap();
    let mut conn: DbConn = reserve::db::establish(&url).unwrap();
    reserve::db::run_migrations(&mut conn).unwrap();
    for code in DEPOTS {
        let d = NewDepot {
            code: DepotCode::parse(code).unwrap(),
            name: code.into(),
            region: "test".into(),
            capacity: Grams(CAPACITY_G),
            max_drawdown_per_day: Grams(i64::MAX / 4),
        };
        write_transaction(&mut conn, |c| reserve::depots::repo::insert(c, &d, "test")).unwrap();
    }
    let settings = LedgerSettings {
        max_future_skew_secs: 60,
        idempotency_retention_days: 30,
        fiscal_year_start_month: 10,
    };
    let mut model: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let expected = model_apply(&model, op);
        let key = format!("prop-{i}");
        let posted = write_transaction(&mut conn, |c| {
            post(
                c,
                &settings,
                Posting {
                    actor: "prop",
                    idempotency_key: &key,
                    legs: legs_of(op),
                    order: None,
                },
            )
        });
        match (&expected, &posted) {
            (Some(next), Ok(_)) => model = next.clone(),
            (None, Err(ApiError::Conflict { .. })) => {}
            (None, Err(ApiError::Validation(_))) if matches!(op, Op::Transfer { from, to, .. } if from == to) =>
                {}
            (None, Err(e)) if matches!(op, Op::Transfer { from, to, .. } if from == to) => {
                prop_assert!(false, "same-depot transfer refused oddly: {e:?}")
            }
            _ => prop_assert!(
                false,
                "op {i} {op:?}: model says {expected:?}, ledger says {posted:?}"
            ),
        }
    }
    // The database agrees with the model, and the chain and balances verify.
    let report = reserve::ledger::verify::verify(&mut conn).unwrap();
    prop_assert!(report.ok, "{report:?}");
    let page = reserve::http::pagination::PageRequest::parse(Some(1000), None, None, 1000).unwrap();
    let stockpiles =
        reserve::stockpiles::repo::list(&mut conn, &Default::default(), &page).unwrap();
    for s in stockpiles {
        let d = DEPOTS.iter().position(|c| *c == s.depot).unwrap();
        let e = ELEMENTS.iter().position(|c| *c == s.element).unwrap();
        prop_assert_eq!(
            crate::helpers::grams(&s.on_hand_kg),
            model.get(&(d, e)).copied().unwrap_or(0)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn ledger_matches_the_model_on_sqlite(ops in proptest::collection::vec(op(), 1..40)) {
        run_case(Backend::Sqlite, &ops)?;
    }

    #[test]
    fn ledger_matches_the_model_on_postgres(ops in proptest::collection::vec(op(), 1..40)) {
        if !crate::helpers::postgres_skipped() {
            run_case(Backend::Postgres, &ops)?;
        }
    }
}

/// One leg of the as-of property: grams in (or out when negative) of one of
/// two stockpiles, dated `minutes` after a base instant a month back, or
/// undated (posted now).
#[derive(Debug, Clone)]
struct DatedLeg {
    element: usize,
    grams: i64,
    minutes: Option<i64>,
}

fn dated_leg() -> impl Strategy<Value = DatedLeg> {
    (
        0..2usize,
        prop_oneof![3 => 1..5_000i64, 1 => -3_000..0i64],
        // Few distinct instants, so that entries share an occurred_at too.
        prop_oneof![4 => (0..40i64).prop_map(|m| Some(m * 720)), 1 => Just(None)],
    )
        .prop_map(|(element, grams, minutes)| DatedLeg {
            element,
            grams,
            minutes,
        })
}

/// `balance?as_of=` reads `ledger_balances`, kept by the posting path; with
/// back-dated, same-instant and undated entries, single and batched, it must
/// equal the sum over the entries with `occurred_at <= as_of`, at every
/// entry's instant and just before and after it.
fn run_as_of_case(backend: Backend, postings: &[Vec<DatedLeg>]) -> Result<(), TestCaseError> {
    use diesel::prelude::*;
    use reserve::db::schema::ledger_entries as le;
    let db = TestDb::new(backend);
    let url = reserve::db::DatabaseUrl::parse(db.url()).unwrap();
    let mut conn: DbConn = reserve::db::establish(&url).unwrap();
    reserve::db::run_migrations(&mut conn).unwrap();
    let d = NewDepot {
        code: DepotCode::parse(DEPOTS[0]).unwrap(),
        name: "as-of".into(),
        region: "test".into(),
        capacity: Grams(i64::MAX / 4),
        max_drawdown_per_day: Grams(i64::MAX / 4),
    };
    write_transaction(&mut conn, |c| reserve::depots::repo::insert(c, &d, "test")).unwrap();
    let settings = LedgerSettings {
        max_future_skew_secs: 60,
        idempotency_retention_days: 30,
        fiscal_year_start_month: 10,
    };
    let base = reserve::db::types::now() - chrono::Duration::days(30);
    for (i, legs) in postings.iter().enumerate() {
        let legs: Vec<Leg> = legs
            .iter()
            .map(|l| {
                let kind = if l.grams > 0 {
                    EntryKind::Acquisition
                } else {
                    EntryKind::Release
                };
                let mut leg = leg(0, l.element, kind, l.grams);
                if let Some(m) = l.minutes {
                    leg.occurred_at = base + chrono::Duration::minutes(m);
                    leg.occurred_at_given = true;
                }
                leg
            })
            .collect();
        let key = format!("as-of-{i}");
        // Refusals (stock, back-dated below zero) are part of the property:
        // what was refused left no row behind.
        let _ = write_transaction(&mut conn, |c| {
            post(
                c,
                &settings,
                Posting {
                    actor: "prop",
                    idempotency_key: &key,
                    legs,
                    order: None,
                },
            )
        });
    }
    let entries: Vec<(i64, i64, chrono::NaiveDateTime, i64)> = le::table
        .select((
            le::sequence,
            le::stockpile_id,
            le::occurred_at,
            le::quantity_g,
        ))
        .load(&mut conn)
        .unwrap();
    let mut instants: Vec<(i64, chrono::NaiveDateTime)> = Vec::new();
    for (_, s, t, _) in &entries {
        for dt in [-1, 0, 1] {
            instants.push((*s, *t + chrono::Duration::microseconds(dt)));
        }
    }
    instants.push((1, reserve::db::types::to_db(base)));
    for (stockpile, at) in instants {
        let counted: Vec<&(i64, i64, chrono::NaiveDateTime, i64)> = entries
            .iter()
            .filter(|(_, s, t, _)| *s == stockpile && *t <= at)
            .collect();
        let expected = (
            counted.iter().map(|e| e.3).sum::<i64>(),
            counted.len() as i64,
            counted.iter().map(|e| e.0).max(),
        );
        let got = reserve::ledger::repo::balance_as_of(&mut conn, stockpile, at).unwrap();
        prop_assert_eq!(got, expected, "stockpile {} as of {}", stockpile, at);
    }
    let report = reserve::ledger::verify::verify(&mut conn).unwrap();
    prop_assert!(report.ok, "{report:?}");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn balance_as_of_matches_the_entries_on_sqlite(
        postings in proptest::collection::vec(proptest::collection::vec(dated_leg(), 1..6), 1..25)
    ) {
        run_as_of_case(Backend::Sqlite, &postings)?;
    }

    #[test]
    fn balance_as_of_matches_the_entries_on_postgres(
        postings in proptest::collection::vec(proptest::collection::vec(dated_leg(), 1..6), 1..25)
    ) {
        if !crate::helpers::postgres_skipped() {
            run_as_of_case(Backend::Postgres, &postings)?;
        }
    }
}
