//! A realistic demo data set: five depots, all 17 elements, a year of
//! acquisitions, releases and transfers, posted through the real ledger so
//! every balance, hash and sequence is genuine. Deterministic (fixed seed).

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use diesel::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::LedgerSettings;
use crate::db::schema::depots;
use crate::db::types::{self, Grade, Grams, Micros};
use crate::db::{write_transaction, DbConn};
use crate::depots::dto::NewDepot;
use crate::depots::model::DepotCode;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult};
use crate::ledger::model::{EntryDetails, EntryKind, Leg, StockpileKey};
use crate::ledger::post::{post, Posting};

const DEPOTS: [(&str, &str, &str, i64, i64); 5] = [
    ("NV1", "Nevada Desert Depot", "US-West", 6_000_000, 120_000),
    ("TX2", "Gulf Coast Depot", "US-South", 8_000_000, 150_000),
    ("PA3", "Allegheny Depot", "US-Northeast", 3_000_000, 60_000),
    ("OH4", "Ohio Valley Depot", "US-Midwest", 4_000_000, 80_000),
    (
        "WA5",
        "Columbia Basin Depot",
        "US-Northwest",
        2_500_000,
        50_000,
    ),
];

/// Element, form, grade and a typical acquisition lot in kg.
const HOLDINGS: [(&str, Form, &str, i64); 20] = [
    ("Sc", Form::Oxide, "99.99", 200),
    ("Y", Form::Oxide, "99.999", 20_000),
    ("La", Form::Oxide, "99.9", 60_000),
    ("La", Form::Carbonate, "99", 40_000),
    ("Ce", Form::Oxide, "99.5", 80_000),
    ("Pr", Form::Oxide, "99.5", 15_000),
    ("Nd", Form::Oxide, "99.5", 40_000),
    ("Nd", Form::Metal, "99.9", 10_000),
    ("Nd", Form::Alloy, "99", 25_000),
    ("Pm", Form::Other, "99", 1),
    ("Sm", Form::Alloy, "99.5", 5_000),
    ("Eu", Form::Oxide, "99.99", 800),
    ("Gd", Form::Oxide, "99.9", 6_000),
    ("Tb", Form::Oxide, "99.99", 1_500),
    ("Dy", Form::Oxide, "99.5", 4_000),
    ("Dy", Form::Metal, "99.9", 1_000),
    ("Ho", Form::Oxide, "99.9", 1_200),
    ("Er", Form::Oxide, "99.9", 2_500),
    ("Tm", Form::Oxide, "99.99", 300),
    ("Yb", Form::Oxide, "99.9", 900),
];

const ORIGINS: [&str; 6] = ["AU", "US", "MY", "VN", "BR", "CA"];

/// Seeds an empty database; returns `None` (and changes nothing) when depots exist.
pub fn seed(conn: &mut DbConn) -> ApiResult<Option<String>> {
    let existing: i64 = depots::table.count().get_result(conn)?;
    if existing > 0 {
        return Ok(None);
    }
    // All or nothing: a failed seed leaves the database empty, ready to retry.
    write_transaction(conn, |c| seed_all(c).map(Some))
}

fn seed_all(conn: &mut DbConn) -> ApiResult<String> {
    let mut rng = StdRng::seed_from_u64(2026);
    {
        let c = &mut *conn;
        for (code, name, region, capacity_t, drawdown_kg) in DEPOTS {
            let depot = NewDepot {
                code: DepotCode::parse(code).map_err(ApiError::BadRequest)?,
                name: name.into(),
                region: region.into(),
                capacity: Grams(capacity_t * 1_000),
                max_drawdown_per_day: Grams(drawdown_kg * 1_000),
            };
            crate::depots::repo::insert(c, &depot, "demo")?;
        }
    }

    let settings = LedgerSettings {
        max_future_skew_secs: 60,
        idempotency_retention_days: 30,
    };
    let start = Utc::now() - Duration::days(365);
    // In-memory mirror of the balances, so every generated movement is valid.
    let mut held: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    let mut depot_total = [0i64; DEPOTS.len()];
    // Keep every depot below 90% of capacity.
    let fits =
        |total: i64, depot: usize, grams: i64| total + grams <= DEPOTS[depot].3 * 1_000 * 9 / 10;
    let mut postings = 0usize;
    let mut entries = 0usize;
    for week in 0..52i64 {
        let mut legs_this_week: Vec<Vec<Leg>> = Vec::new();
        for (h, (symbol, form, grade, lot_kg)) in HOLDINGS.iter().enumerate() {
            let key = |depot: usize| StockpileKey {
                depot: DepotCode::parse(DEPOTS[depot].0).expect("valid demo code"),
                element: ElementSymbol::parse(symbol).expect("valid demo element"),
                form: *form,
                grade: Grade::parse(grade).expect("valid demo grade"),
            };
            let when = types::truncate_micros(
                start
                    + Duration::days(week * 7 + rng.gen_range(0..7))
                    + Duration::minutes(rng.gen_range(0..1440)),
            );
            let roll: f64 = rng.gen();
            let home = h % DEPOTS.len();
            if week == 0 || roll < 0.45 {
                let depot = if roll < 0.3 {
                    home
                } else {
                    (home + 1) % DEPOTS.len()
                };
                let grams = (*lot_kg * 1_000 * rng.gen_range(50..150) / 100).max(1);
                if !fits(depot_total[depot], depot, grams) {
                    continue;
                }
                depot_total[depot] += grams;
                let price = rng.gen_range(5..400) * 1_000_000;
                legs_this_week.push(vec![Leg {
                    key: key(depot),
                    kind: EntryKind::Acquisition,
                    quantity: Grams(grams),
                    occurred_at: when,
                    occurred_at_given: true,
                    details: EntryDetails {
                        reference: Some(format!("CTR-{}-{:03}", symbol.to_uppercase(), week)),
                        counterparty: Some("Allied Rare Earths Ltd".into()),
                        origin_country: Some(ORIGINS[rng.gen_range(0..ORIGINS.len())].into()),
                        unit_price: Some(Micros(price)),
                        currency: Some("USD".into()),
                        note: None,
                    },
                    field_prefix: String::new(),
                }]);
                *held.entry((h, depot)).or_default() += grams;
            } else if roll < 0.6 {
                let depot = home;
                let available = held.get(&(h, depot)).copied().unwrap_or(0);
                let grams =
                    (available * rng.gen_range(5..20) / 100).min(DEPOTS[depot].4 * 1_000 / 4);
                if grams > 0 {
                    legs_this_week.push(vec![Leg {
                        key: key(depot),
                        kind: EntryKind::Release,
                        quantity: Grams(-grams),
                        occurred_at: when,
                        occurred_at_given: true,
                        details: EntryDetails {
                            reference: Some(format!("REL-{}-{:03}", symbol.to_uppercase(), week)),
                            counterparty: Some("Defense Logistics Agency".into()),
                            note: Some(
                                "supply to magnet manufacturer under exchange programme".into(),
                            ),
                            ..Default::default()
                        },
                        field_prefix: String::new(),
                    }]);
                    *held.entry((h, depot)).or_default() -= grams;
                    depot_total[depot] -= grams;
                }
            } else if roll < 0.7 {
                let from = home;
                let to = (home + 2) % DEPOTS.len();
                let available = held.get(&(h, from)).copied().unwrap_or(0);
                let grams =
                    (available * rng.gen_range(10..30) / 100).min(DEPOTS[from].4 * 1_000 / 4);
                if grams > 0 && fits(depot_total[to], to, grams) {
                    depot_total[from] -= grams;
                    depot_total[to] += grams;
                    let details = EntryDetails {
                        reference: Some(format!("BOL-{}-{:03}", symbol.to_uppercase(), week)),
                        ..Default::default()
                    };
                    legs_this_week.push(vec![
                        Leg {
                            key: key(from),
                            kind: EntryKind::TransferOut,
                            quantity: Grams(-grams),
                            occurred_at: when,
                            occurred_at_given: true,
                            details: details.clone(),
                            field_prefix: String::new(),
                        },
                        Leg {
                            key: key(to),
                            kind: EntryKind::TransferIn,
                            quantity: Grams(grams),
                            occurred_at: when,
                            occurred_at_given: true,
                            details,
                            field_prefix: String::new(),
                        },
                    ]);
                    *held.entry((h, from)).or_default() -= grams;
                    *held.entry((h, to)).or_default() += grams;
                }
            }
        }
        // Post in time order.
        legs_this_week.sort_by_key(|legs| legs[0].occurred_at);
        for legs in legs_this_week {
            entries += legs.len();
            postings += 1;
            let key = format!("demo-{postings}");
            post(
                conn,
                &settings,
                Posting {
                    actor: "demo-seed",
                    idempotency_key: &key,
                    legs,
                },
            )?;
        }
    }
    Ok(format!(
        "{} depots, {postings} movements, {entries} ledger entries over the past year",
        DEPOTS.len()
    ))
}
