//! A realistic demo data set: five depots, all 17 elements, a year of
//! acquisitions, releases and transfers, posted through the real ledger so
//! every balance, hash and sequence is genuine. Deterministic (fixed seed).
//!
//! Also the demo's signing secret: `serve --demo` without a configured secret
//! keeps a generated one in a file beside its database, so that tokens survive
//! a restart and `reserve token` can mint tokens the demo server accepts.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use diesel::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::config::LedgerSettings;
use crate::db::schema::depots;
use crate::db::types::{self, Grade, Grams, Micros};
use crate::db::{write_transaction, DatabaseUrl, DbConn};
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
        fiscal_year_start_month: 10,
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
                    order: None,
                },
            )?;
        }
    }
    // Lutetium, the scarcest heavy rare earth: a few small lots a year. Drawn
    // from a stream of its own, after the rest, so that adding it left every
    // other figure of the demo (and of the README's tour) as it was.
    let mut lu_rng = StdRng::seed_from_u64(71);
    for quarter in 0..4i64 {
        let depot = [0usize, 1][quarter as usize % 2];
        let grams = 150_000 * lu_rng.gen_range(50..150) / 100;
        if !fits(depot_total[depot], depot, grams) {
            continue;
        }
        depot_total[depot] += grams;
        let week = quarter * 13 + lu_rng.gen_range(0..13);
        let when = types::truncate_micros(
            start + Duration::days(week * 7) + Duration::minutes(lu_rng.gen_range(0..1440)),
        );
        let leg = Leg {
            key: StockpileKey {
                depot: DepotCode::parse(DEPOTS[depot].0).expect("valid demo code"),
                element: ElementSymbol::parse("Lu").expect("valid demo element"),
                form: Form::Oxide,
                grade: Grade::parse("99.99").expect("valid demo grade"),
            },
            kind: EntryKind::Acquisition,
            quantity: Grams(grams),
            occurred_at: when,
            occurred_at_given: true,
            details: EntryDetails {
                reference: Some(format!("CTR-LU-{week:03}")),
                counterparty: Some("Allied Rare Earths Ltd".into()),
                origin_country: Some(ORIGINS[lu_rng.gen_range(0..ORIGINS.len())].into()),
                unit_price: Some(Micros(lu_rng.gen_range(700..1200) * 1_000_000)),
                currency: Some("USD".into()),
                note: None,
            },
            field_prefix: String::new(),
        };
        entries += 1;
        postings += 1;
        let key = format!("demo-{postings}");
        post(
            conn,
            &settings,
            Posting {
                actor: "demo-seed",
                idempotency_key: &key,
                legs: vec![leg],
                order: None,
            },
        )?;
    }
    seed_policies(conn)?;
    let orders = seed_orders(conn, &settings)?;
    let rules = seed_rules(conn)?;
    let (flows, fired) = seed_flows(conn, flows_today())?;
    Ok(format!(
        "{} depots, {postings} movements, {entries} ledger entries over the past year; {orders}; \
         {flows} monthly import flows over five years; {rules} release rules, {fired} of which fired",
        DEPOTS.len()
    ))
}

/// The day the demo's import statistics are seeded up to (they end with the
/// month before it): today, or `RESERVE_DEMO_TODAY` (`YYYY-MM-DD`), which the
/// README tour sets so that its rule figures are the same whenever it runs.
fn flows_today() -> chrono::NaiveDate {
    std::env::var("RESERVE_DEMO_TODAY")
        .ok()
        .and_then(|d| crate::orders::dto::parse_date(&d))
        .filter(|d| *d <= Utc::now().date_naive())
        .unwrap_or_else(|| Utc::now().date_naive())
}

/// Three release rules, created by the demo admin before the flows arrive,
/// so the ingest evaluates them as an upload would: dysprosium from China
/// (whose last two months fell 60%) fires a limited drawdown; terbium and
/// neodymium see no breach.
fn seed_rules(conn: &mut DbConn) -> ApiResult<usize> {
    use crate::rules::dto::RuleRequest;
    let rule = |element: &str,
                origins: Option<&[&str]>,
                window: i32,
                threshold: &str,
                consecutive: i32,
                cap: &str| RuleRequest {
        element: element.into(),
        origin_countries: origins.map(|o| o.iter().map(|c| c.to_string()).collect()),
        window_days: Some(window),
        baseline_days: Some(365),
        drop_threshold_percent: threshold.into(),
        consecutive_breaches: Some(consecutive),
        cooldown_days: Some(30),
        coverage_fraction: "0.5".into(),
        cap_kg: cap.into(),
        floor_kg: None,
        floor_days_of_cover: Some("60".into()),
        order_kind: "limited_drawdown".into(),
        enabled: true,
        form: None,
        grade: None,
        authority: Some("Defense Production Act, Title III (demo)".into()),
        method: Some("sale".into()),
        counterparty: None,
        emergency_finding: None,
        premium_percent: None,
        return_after_days: None,
        late_premium_percent_per_day: None,
    };
    let rules = [
        rule("Dy", Some(&["CN"]), 60, "25", 1, "2000"),
        rule("Tb", None, 30, "25", 1, "1000"),
        rule("Nd", Some(&["CN"]), 90, "20", 2, "20000"),
    ];
    for r in &rules {
        crate::rules::repo::create(conn, "demo-admin", &r.validate()?)?;
    }
    Ok(rules.len())
}

/// Yearly imports per element in kg (a reserve the size of the demo's), and
/// each origin's share in percent, with the form and HTS code it arrives as.
/// China dominates the heavy rare earths; the light ones also come from
/// Lynas (Malaysia, Australia), Mountain Pass (USA), Japan, Vietnam and
/// Estonia (NPM Silmet).
#[allow(clippy::type_complexity)]
const IMPORTS: [(&str, i64, &[(&str, i64, Form, &str)]); 17] = [
    (
        "Sc",
        1_200,
        &[
            ("CN", 60, Form::Oxide, "2846.90.8000"),
            ("PH", 25, Form::Oxide, "2846.90.8000"),
            ("JP", 15, Form::Metal, "2805.30.0000"),
        ],
    ),
    (
        "Y",
        600_000,
        &[
            ("CN", 90, Form::Oxide, "2846.90.4000"),
            ("EE", 5, Form::Oxide, "2846.90.4000"),
            ("JP", 5, Form::Oxide, "2846.90.4000"),
        ],
    ),
    (
        "La",
        2_400_000,
        &[
            ("CN", 55, Form::Oxide, "2846.90.2015"),
            ("MY", 25, Form::Oxide, "2846.90.2015"),
            ("EE", 10, Form::Carbonate, "2846.90.2005"),
            ("JP", 10, Form::Oxide, "2846.90.2015"),
        ],
    ),
    (
        "Ce",
        2_000_000,
        &[
            ("CN", 50, Form::Oxide, "2846.10.0050"),
            ("MY", 30, Form::Oxide, "2846.10.0050"),
            ("EE", 10, Form::Carbonate, "2846.10.0010"),
            ("US", 10, Form::Oxide, "2846.10.0050"),
        ],
    ),
    (
        "Pr",
        300_000,
        &[
            ("CN", 55, Form::Oxide, "2846.90.8000"),
            ("MY", 20, Form::Oxide, "2846.90.8000"),
            ("AU", 10, Form::Oxide, "2846.90.8000"),
            ("VN", 10, Form::Metal, "2805.30.0000"),
            ("US", 5, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Nd",
        900_000,
        &[
            ("CN", 55, Form::Oxide, "2846.90.8000"),
            ("MY", 20, Form::Oxide, "2846.90.8000"),
            ("JP", 10, Form::Alloy, "8505.11.0070"),
            ("VN", 10, Form::Metal, "2805.30.0000"),
            ("US", 5, Form::Oxide, "2846.90.8000"),
        ],
    ),
    ("Pm", 1, &[("RU", 100, Form::Other, "2846.90.8000")]),
    (
        "Sm",
        150_000,
        &[
            ("CN", 70, Form::Oxide, "2846.90.8000"),
            ("JP", 15, Form::Alloy, "8505.11.0070"),
            ("EE", 15, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Eu",
        20_000,
        &[
            ("CN", 90, Form::Oxide, "2846.90.8000"),
            ("JP", 10, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Gd",
        100_000,
        &[
            ("CN", 85, Form::Oxide, "2846.90.8000"),
            ("JP", 15, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Tb",
        15_000,
        &[
            ("CN", 92, Form::Oxide, "2846.90.8000"),
            ("MM", 8, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Dy",
        40_000,
        &[
            ("CN", 85, Form::Oxide, "2846.90.8000"),
            ("MM", 10, Form::Oxide, "2846.90.8000"),
            ("VN", 5, Form::Metal, "2805.30.0000"),
        ],
    ),
    (
        "Ho",
        5_000,
        &[
            ("CN", 95, Form::Oxide, "2846.90.8000"),
            ("MM", 5, Form::Oxide, "2846.90.8000"),
        ],
    ),
    (
        "Er",
        10_000,
        &[
            ("CN", 95, Form::Oxide, "2846.90.8000"),
            ("MM", 5, Form::Oxide, "2846.90.8000"),
        ],
    ),
    ("Tm", 1_000, &[("CN", 100, Form::Oxide, "2846.90.8000")]),
    (
        "Yb",
        3_000,
        &[
            ("CN", 95, Form::Oxide, "2846.90.8000"),
            ("JP", 5, Form::Oxide, "2846.90.8000"),
        ],
    ),
    ("Lu", 1_000, &[("CN", 100, Form::Oxide, "2846.90.8000")]),
];

/// Months of import statistics the demo holds.
const FLOW_MONTHS: i32 = 60;

/// Five years of monthly import flows per element and origin, ending with
/// the last full month before `today`, through the same ingest an upload
/// takes. Deterministic: a fixed seed varies each month by ±15% around a
/// mild upward trend. Dysprosium from China falls by 60% in the last two
/// months, so a release rule with a 25% threshold has a breach to show.
/// The ingest evaluates the release rules of every element, as an upload's
/// does. Returns how many flows it recorded and how many rules fired.
fn seed_flows(conn: &mut DbConn, today: chrono::NaiveDate) -> ApiResult<(u64, usize)> {
    use crate::flows::model::{parse_hs_code, FlowRow};
    use chrono::{Datelike, Months, NaiveDate};
    let mut rng = StdRng::seed_from_u64(8505);
    let this_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("a month");
    let first = this_month - Months::new(FLOW_MONTHS as u32);
    let mut rows = Vec::new();
    for (symbol, kg_per_year, origins) in IMPORTS {
        let element = ElementSymbol::parse(symbol).expect("valid demo element");
        for (origin, share, form, hs) in origins {
            for m in 0..FLOW_MONTHS {
                let start = first + Months::new(m as u32);
                let end = start + Months::new(1) - Duration::days(1);
                // Grams this month: the origin's share of a twelfth of the
                // year, growing 2% a year, ±15%.
                let trend = 1000 + 20 * m as i64 / 12;
                let mut grams = kg_per_year * 1000 * share / 100 / 12 * trend / 1000
                    * rng.gen_range(85..=115)
                    / 100;
                if symbol == "Dy" && *origin == "CN" && m >= FLOW_MONTHS - 2 {
                    grams = grams * 40 / 100;
                }
                let hs_code = parse_hs_code(hs).map_err(ApiError::BadRequest)?;
                rows.push(FlowRow {
                    element,
                    form: *form,
                    origin_country: origin.to_string(),
                    external_id: format!(
                        "{}-{origin}-{}-{}",
                        symbol.to_ascii_uppercase(),
                        hs_code.replace('.', ""),
                        start.format("%Y-%m")
                    ),
                    hs_code,
                    period_start: start,
                    period_end: end,
                    quantity: Grams(grams.max(1)),
                    source: "USITC-DataWeb".into(),
                });
            }
        }
    }
    let outcome = crate::flows::repo::ingest(
        conn,
        rows.into_iter().enumerate().map(|(i, r)| Ok((i as u64, r))),
        "demo-seed",
    )?;
    let touched: Vec<String> = outcome.touched.iter().map(|e| e.to_string()).collect();
    let evaluations = crate::rules::repo::evaluate_elements(conn, &touched, "demo-seed")?;
    let fired = evaluations.iter().filter(|e| e.decision == "fired").count();
    Ok((outcome.inserted, fired))
}

/// Element policies: a reserve floor at roughly half of what the demo holds
/// (Lu, Pm and Sc, held in token amounts, get none), a yearly consumption
/// that gives a few months of cover, and the SPR-style caps on limited
/// drawdowns (a quarter of the holding within 60 days) and test sales.
fn seed_policies(conn: &mut DbConn) -> ApiResult<()> {
    use crate::db::schema::stockpiles;
    use crate::policy::model::{DrawdownDays, ElementPolicy};
    let held: Vec<(String, i64)> = stockpiles::table
        .select((stockpiles::element, stockpiles::on_hand_g))
        .load(conn)?;
    let mut per_element: BTreeMap<String, i64> = BTreeMap::new();
    for (element, g) in held {
        *per_element.entry(element).or_default() += g;
    }
    for (element, holding) in per_element {
        let token = matches!(element.as_str(), "Lu" | "Pm" | "Sc");
        let kg = |g: i64| Some(Grams(g / 1_000 * 1_000));
        let policy = ElementPolicy {
            reserve_floor: if token { None } else { kg(holding / 2) },
            consumption_per_year: kg(holding * 3),
            limited_drawdown_max: kg(holding / 4),
            limited_drawdown_max_days: DrawdownDays::parse(60).ok(),
            test_sale_max: kg(holding / 50),
        };
        crate::policy::repo::replace(
            conn,
            &element,
            crate::policy::model::Precondition::Any,
            &policy,
            "demo-admin",
        )?;
    }
    Ok(())
}

/// Three qualified buyers, one completed test sale awarded to them, and one
/// open exchange (a loan of dysprosium oxide due back in 90 days), each
/// proposed by one person and approved by another, through the real code.
fn seed_orders(conn: &mut DbConn, settings: &LedgerSettings) -> ApiResult<String> {
    use crate::orders::dto::{Execution, NewOrder, Notice};
    use crate::orders::model::{Method, OrderKind};
    use crate::orders::repo;
    let planner = crate::auth::AuthUser {
        subject: "demo-planner".into(),
        roles: [crate::auth::Role::Operator].into(),
        depots: None,
        expires_at: i64::MAX,
    };
    let buyers = [
        ("MAGNA-JP", "Magna Materials KK", "JP"),
        ("VULCAN-DE", "Vulcan Magnetwerk GmbH", "DE"),
        ("HANSOL-KR", "Hansol Advanced Metals", "KR"),
    ];
    for (code, name, country) in buyers {
        repo::insert_buyer(conn, "demo-admin", code, name, country)?;
    }
    let order = |kind, element: &str, grade: &str, kg: i64, method| NewOrder {
        kind,
        element: ElementSymbol::parse(element).expect("demo element"),
        form: Form::Oxide,
        grade: Grade::parse(grade).expect("demo grade"),
        quantity: Grams(kg * 1_000),
        method,
        authority: "Strategic Materials Act, section 9".into(),
        reason: "demo".into(),
        counterparty: None,
        emergency_finding: None,
        law: None,
        fiscal_year: None,
        premium_percent: None,
        return_due: None,
        late_premium_percent_per_day: None,
    };
    let mut keys = 0;
    let mut key = || {
        keys += 1;
        format!("demo-order-{keys}")
    };

    // A test sale of 1,000 kg of cerium oxide, three bids, awarded, delivered.
    let sale = order(OrderKind::TestSale, "Ce", "99.5", 1_000, Method::Sale);
    let sale = repo::propose(conn, &planner.subject, &sale)?;
    repo::approve(
        conn,
        "demo-approver",
        sale.id,
        Some("within the test-sale cap"),
    )?;
    let closes_at = types::now() + Duration::milliseconds(300);
    repo::notice(
        conn,
        "demo-approver",
        sale.id,
        &Notice {
            closes_at,
            minimum_price: Some(Micros(20_000_000)),
            currency: "USD".into(),
        },
    )?;
    for (buyer, kg, price) in [
        ("MAGNA-JP", 400, 31_000_000),
        ("VULCAN-DE", 500, 29_500_000),
        ("HANSOL-KR", 300, 33_000_000),
    ] {
        repo::bid(conn, buyer, sale.id, Grams(kg * 1_000), Micros(price))?;
    }
    std::thread::sleep(std::time::Duration::from_millis(350));
    let awarded = repo::award(conn, "demo-approver", sale.id)?;
    let mut allocation: Vec<(String, i64)> = awarded
        .allocation
        .iter()
        .map(|a| {
            (
                a.depot.clone(),
                Grams::parse_kg(&a.quantity_kg).map(|g| g.0).unwrap_or(0),
            )
        })
        .collect();
    for award in &awarded.awards {
        let mut left = Grams::parse_kg(&award.quantity_kg)
            .map(|g| g.0)
            .unwrap_or(0);
        for (depot, remaining) in allocation.iter_mut().filter(|(_, r)| *r > 0) {
            let take = left.min(*remaining);
            if take == 0 {
                continue;
            }
            let x = Execution {
                depot: DepotCode::parse(depot).map_err(ApiError::BadRequest)?,
                quantity: Grams(take),
                occurred_at: None,
                buyer: Some(award.buyer.clone()),
                reference: None,
                note: None,
            };
            repo::execute(conn, settings, &planner, &key(), sale.id, &x)?;
            *remaining -= take;
            left -= take;
        }
    }

    // An exchange: 500 kg of dysprosium oxide lent at a 5% premium.
    let mut loan = order(OrderKind::Exchange, "Dy", "99.5", 500, Method::Loan);
    loan.counterparty = Some("Hansol Advanced Metals".into());
    loan.premium_percent = Some(rust_decimal::Decimal::new(5, 0));
    loan.late_premium_percent_per_day = Some(rust_decimal::Decimal::new(5, 2));
    loan.return_due = Some(Utc::now().date_naive() + Duration::days(90));
    let loan = repo::propose(conn, &planner.subject, &loan)?;
    let loan = repo::approve(conn, "demo-approver", loan.id, None)?;
    for a in &loan.allocation {
        let x = Execution {
            depot: DepotCode::parse(&a.depot).map_err(ApiError::BadRequest)?,
            quantity: Grams::parse_kg(&a.quantity_kg).map_err(ApiError::BadRequest)?,
            occurred_at: None,
            buyer: None,
            reference: None,
            note: None,
        };
        repo::execute(conn, settings, &planner, &key(), loan.id, &x)?;
    }
    Ok(format!(
        "test sale {} completed, exchange {} open",
        sale.id, loan.id
    ))
}

/// Where the demo keeps its generated signing secret: beside a SQLite database
/// file (`data/reserve.db` → `data/reserve.demo-secret`), and for PostgreSQL or
/// an in-memory SQLite database, `data/reserve-<backend>.demo-secret` under the
/// working directory.
pub fn secret_path(url: &DatabaseUrl) -> PathBuf {
    match url {
        DatabaseUrl::Sqlite(path) if path != ":memory:" => {
            Path::new(path).with_extension("demo-secret")
        }
        other => Path::new("data").join(format!("reserve-{}.demo-secret", other.backend())),
    }
}

/// Reads the demo secret at `path`, if there is one.
pub fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let secret = text.trim().to_string();
    anyhow::ensure!(
        secret.len() >= crate::auth::MIN_SECRET_BYTES,
        "{} does not hold a usable secret (at least {} bytes); delete it and run `serve --demo` again",
        path.display(),
        crate::auth::MIN_SECRET_BYTES
    );
    Ok(Some(secret))
}

/// The demo secret at `path`, generated and written (mode 0600) when missing.
/// Returns the secret and whether it was just created.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<(String, bool)> {
    use anyhow::Context;
    if let Some(secret) = read_secret(path)? {
        return Ok((secret, false));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{secret}\n").as_bytes())
                .and_then(|_| file.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok((secret, true))
        }
        // Another demo process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let secret = read_secret(path)?
                .with_context(|| format!("{} vanished while being read", path.display()))?;
            Ok((secret, false))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// Where `serve --demo` keeps its audit signing key for this database, beside
/// the demo secret (`data/reserve.demo-audit-key`).
pub fn audit_key_path(url: &DatabaseUrl) -> PathBuf {
    secret_path(url).with_extension("demo-audit-key")
}

/// Posts `entries` valid entries through `ledger::post`, in postings of
/// 5,000 legs (inserted 500 rows a statement), at a depot `LOAD` it creates:
/// acquisitions over the demo's twenty materials, every seventh leg a release. For measuring verification at
/// scale (`reserve load-ledger`); every hash and balance is genuine.
pub fn load_entries(
    conn: &mut DbConn,
    entries: usize,
    progress: &mut dyn FnMut(usize),
) -> ApiResult<usize> {
    const BATCH: usize = 5_000;
    let code = DepotCode::parse("LOAD").map_err(ApiError::BadRequest)?;
    let exists: i64 = depots::table
        .filter(depots::code.eq(code.as_str()))
        .count()
        .get_result(conn)?;
    if exists == 0 {
        write_transaction(conn, |c| {
            crate::depots::repo::insert(
                c,
                &NewDepot {
                    code: code.clone(),
                    name: "Load test depot".into(),
                    region: "US-Test".into(),
                    capacity: Grams(1_000_000_000_000_000),
                    max_drawdown_per_day: Grams(1_000_000_000_000_000),
                },
                "load",
            )
            .map(|_| ())
        })?;
    }
    let settings = LedgerSettings {
        max_future_skew_secs: 60,
        idempotency_retention_days: 30,
        fiscal_year_start_month: 10,
    };
    let keys: Vec<StockpileKey> = HOLDINGS
        .iter()
        .map(|(symbol, form, grade, _)| StockpileKey {
            depot: code.clone(),
            element: ElementSymbol::parse(symbol).expect("valid demo element"),
            form: *form,
            grade: Grade::parse(grade).expect("valid demo grade"),
        })
        .collect();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut posted = 0;
    while posted < entries {
        let n = BATCH.min(entries - posted);
        let legs: Vec<Leg> = (0..n)
            .map(|i| {
                let at = posted + i;
                // Releases only after the stockpile's first lap of acquisitions.
                let release = at % 7 == 6 && at >= 2 * keys.len();
                Leg {
                    key: keys[at % keys.len()].clone(),
                    kind: if release {
                        EntryKind::Release
                    } else {
                        EntryKind::Acquisition
                    },
                    quantity: Grams(if release { -500 } else { 1_000 }),
                    occurred_at: types::now(),
                    occurred_at_given: false,
                    details: EntryDetails::default(),
                    field_prefix: String::new(),
                }
            })
            .collect();
        let key = format!("load-{run}-{posted}");
        write_transaction(conn, |c| {
            post(
                c,
                &settings,
                Posting {
                    actor: "load",
                    idempotency_key: &key,
                    legs,
                    order: None,
                },
            )
        })?;
        posted += n;
        progress(posted);
    }
    Ok(posted)
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn the_demo_holds_stock_of_every_element() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("demo.db").display().to_string());
        let mut conn = crate::db::open(&url).unwrap();
        crate::db::run_migrations(&mut conn).unwrap();
        seed(&mut conn)
            .unwrap()
            .expect("an empty database is seeded");
        use crate::db::schema::stockpiles;
        let held: Vec<String> = stockpiles::table
            .filter(stockpiles::on_hand_g.gt(0i64))
            .select(stockpiles::element)
            .distinct()
            .load(&mut conn)
            .unwrap();
        for (symbol, _) in crate::elements::model::ELEMENTS {
            assert!(held.iter().any(|h| h == symbol), "no stock of {symbol}");
        }
        // Import flows of every element, ending last month; Dy from China
        // down about 60% over the last two months.
        let today = Utc::now().date_naive();
        let now = crate::flows::cover::load(&mut conn, None).unwrap();
        let horizon: chrono::NaiveDate = now.items[0]
            .data_horizon
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        // Import windows end on the as_of date: judged at the data horizon,
        // not today, whose last weeks no statistic covers yet.
        let at = horizon.and_hms_opt(23, 59, 59).unwrap().and_utc();
        let cover = crate::flows::cover::load(&mut conn, Some(at)).unwrap();
        for item in &cover.items {
            let horizon: chrono::NaiveDate = item.data_horizon.as_deref().unwrap().parse().unwrap();
            assert!(horizon < today && today - horizon <= Duration::days(31));
            assert!(item.top_origin.is_some(), "{} has no imports", item.element);
        }
        let dy = cover
            .items
            .iter()
            .find(|i| i.element.as_str() == "Dy")
            .unwrap();
        let change: f64 = dy.change_30d_percent.as_deref().unwrap().parse().unwrap();
        assert!(change < -25.0, "Dy imports fell by only {change}%");
        // The ingest evaluated the demo's rules: the dysprosium one fired.
        use crate::db::schema::release_orders as ro;
        let by_rules: Vec<(Option<i64>, String, String)> = ro::table
            .filter(ro::rule_id.is_not_null())
            .select((ro::rule_id, ro::proposed_by, ro::element))
            .load(&mut conn)
            .unwrap();
        assert_eq!(
            by_rules,
            vec![(Some(1), "rule:1".to_string(), "Dy".to_string())]
        );
        let nd = cover
            .items
            .iter()
            .find(|i| i.element.as_str() == "Nd")
            .unwrap();
        let change: f64 = nd.change_30d_percent.as_deref().unwrap().parse().unwrap();
        assert!(change > -25.0, "Nd imports fell by {change}%");
        // Seeding again writes nothing.
        assert!(seed(&mut conn).unwrap().is_none());
    }

    #[test]
    fn the_secret_lives_beside_the_database() {
        let at = |u: &str| secret_path(&DatabaseUrl::parse(u).unwrap());
        assert_eq!(
            at("sqlite://data/reserve.db"),
            PathBuf::from("data/reserve.demo-secret")
        );
        assert_eq!(
            at("sqlite:///tmp/x/demo"),
            PathBuf::from("/tmp/x/demo.demo-secret")
        );
        assert_eq!(
            at("postgres://postgres@127.0.0.1/reserve"),
            PathBuf::from("data/reserve-postgres.demo-secret")
        );
        assert_eq!(
            at("sqlite::memory:"),
            PathBuf::from("data/reserve-sqlite.demo-secret")
        );
    }

    #[test]
    fn the_secret_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/reserve.demo-secret");
        assert_eq!(read_secret(&path).unwrap(), None);
        let (first, created) = load_or_create_secret(&path).unwrap();
        assert!(created && first.len() >= crate::auth::MIN_SECRET_BYTES);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = load_or_create_secret(&path).unwrap();
        assert_eq!((again.as_str(), created), (first.as_str(), false));
        std::fs::write(&path, "short").unwrap();
        assert!(read_secret(&path).is_err());
    }
}
