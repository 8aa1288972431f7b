//! Release rules at scale: every rule of all 17 elements evaluated over five
//! years of monthly import flows from 20 origins (17 × 60 × 20 = 20,400
//! flows, two rules per element), and a two-year simulation of all 17
//! elements, on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench rules` — env: BENCH_ROUNDS (default 20),
//! TEST_DATABASE_URL (PostgreSQL admin URL; skipped with
//! RESERVE_TEST_SQLITE_ONLY=1). Issue 8's targets: a full evaluation under
//! 50 ms, a two-year simulation of every element within 1 s.

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use chrono::{Datelike, Months, NaiveDate, Utc};
use diesel::{Connection, ExpressionMethods, RunQueryDsl};
use helpers::{spawn_app, Backend, TestApp};
use serde_json::json;

const ELEMENTS: [&str; 17] = [
    "Sc", "Y", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",
    "Lu",
];
const ORIGINS: [&str; 20] = [
    "CN", "MM", "MY", "AU", "US", "JP", "VN", "EE", "IN", "RU", "TH", "LA", "BR", "ZA", "CA", "KR",
    "DE", "FR", "GB", "NO",
];

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut backends = vec![Backend::Sqlite];
    if !helpers::postgres_skipped() {
        backends.push(Backend::Postgres);
    }
    println!("rules: 17 elements x 60 months x 20 origins of flows, 34 rules; {rounds} rounds");
    for backend in backends {
        actix_rt::System::new().block_on(run(backend, rounds));
    }
}

fn insert_flows(app: &TestApp) {
    use reserve::db::schema::import_flows as f;
    let today = Utc::now().date_naive();
    let first_of_month = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap();
    let mut conn = app.state.pool.get().expect("connection");
    let now = Utc::now().naive_utc();
    let mut rows = Vec::new();
    for (e, element) in ELEMENTS.iter().enumerate() {
        for m in 1..=60u32 {
            let start = first_of_month - Months::new(m);
            let end = start + Months::new(1) - chrono::Duration::days(1);
            for (o, origin) in ORIGINS.iter().enumerate() {
                // China dominant; the newest two months from China cut by 60%.
                let base = if o == 0 {
                    50_000_000
                } else {
                    2_000_000 + 100_000 * o as i64
                };
                let q = if o == 0 && m <= 2 {
                    base * 4 / 10
                } else {
                    base
                } + e as i64 * 1000;
                rows.push((
                    f::element.eq(*element),
                    f::form.eq("oxide"),
                    f::origin_country.eq(*origin),
                    f::hs_code.eq("284690"),
                    f::period_start.eq(start),
                    f::period_end.eq(end),
                    f::quantity_g.eq(q),
                    f::source.eq("bench"),
                    f::external_id.eq(format!("{element}-{origin}-{start}")),
                    f::content_hash.eq("bench"),
                    f::recorded_at.eq(now),
                    f::recorded_by.eq("bench"),
                ));
            }
        }
    }
    conn.transaction::<_, diesel::result::Error, _>(|c| {
        for row in rows {
            diesel::insert_into(f::table).values(row).execute(c)?;
        }
        Ok(())
    })
    .expect("insert flows");
}

fn median_and_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(*v.last().unwrap()))
}

async fn run(backend: Backend, rounds: usize) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "999999999", "50000").await;
    for element in ELEMENTS {
        app.post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &json!({"depot": "NV1", "element": element, "form": "oxide", "grade": "99.5",
                    "quantity_kg": "500000"}),
        )
        .await
        .expect(201);
        app.put(
            &format!("/api/v1/elements/{element}/policy"),
            &app.admin,
            Some("*"),
            &json!({"reserve_floor_kg": "100000", "consumption_kg_per_year": "365000",
                    "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
                    "test_sale_max_kg": null}),
        )
        .await
        .expect(200);
        for origins in [json!(null), json!(["CN"])] {
            app.post_new(
                "/api/v1/release-rules",
                &app.admin,
                &json!({"element": element, "origin_countries": origins, "window_days": 60,
                        "baseline_days": 365, "drop_threshold_percent": "25",
                        "consecutive_breaches": 1, "cooldown_days": 30, "coverage_fraction": "0.5",
                        "cap_kg": "50000", "floor_days_of_cover": "90",
                        "order_kind": "limited_drawdown", "method": "sale", "enabled": true}),
            )
            .await
            .expect(201);
        }
    }
    let t = Instant::now();
    insert_flows(&app);
    println!(
        "{backend:?}: loaded 20,400 flows in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // The scheduled job's work, each round rolled back so every round is the
    // same evaluation of the same state: first with every rule firing (each
    // proposes an order), then, once that has happened, with every rule
    // cooling down (the daily case).
    for pass in ["every rule fires", "every rule cooling down"] {
        let mut times = Vec::new();
        let mut outcome = String::new();
        for _ in 0..rounds {
            let mut conn = app.state.pool.get().expect("connection");
            let t = Instant::now();
            let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
                outcome =
                    reserve::rules::repo::evaluate_scheduled(c, Utc::now()).expect("evaluate");
                Err(diesel::result::Error::RollbackTransaction)
            });
            times.push(t.elapsed());
        }
        let (median, max) = median_and_max(times);
        println!(
            "{backend:?}: evaluate all rules, {pass} ({outcome}): median {median:.1} ms, max {max:.1} ms"
        );
        let mut conn = app.state.pool.get().expect("connection");
        reserve::db::write_transaction(&mut conn, |c| {
            reserve::rules::repo::evaluate_scheduled(c, Utc::now())
        })
        .expect("evaluate");
    }

    let shocks: Vec<_> = ELEMENTS
        .iter()
        .map(|e| {
            json!({"element": e, "origin_country": "CN", "drop_percent": "80",
                        "start": Utc::now().date_naive().to_string(), "months": 6})
        })
        .collect();
    let body = json!({"shocks": shocks, "horizon_days": 730});
    let mut times = Vec::new();
    let mut firings = 0;
    for _ in 0..rounds.min(10) {
        let t = Instant::now();
        let r = app
            .post("/api/v1/simulations", &app.viewer, None, &body)
            .await
            .expect(200);
        times.push(t.elapsed());
        firings = r.body["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["firings"].as_array().unwrap().len())
            .sum();
    }
    let (median, max) = median_and_max(times);
    println!(
        "{backend:?}: simulate 17 elements x 730 days over HTTP ({firings} firings): median {median:.1} ms, max {max:.1} ms"
    );
}
