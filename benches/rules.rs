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
#[path = "data/rules.rs"]
mod rules_data;

use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::Connection;
use helpers::{spawn_app, Backend};
use rules_data::ELEMENTS;
use serde_json::json;

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

fn median_and_max(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(*v.last().unwrap()))
}

async fn run(backend: Backend, rounds: usize) {
    let app = spawn_app(backend).await;
    let t = Instant::now();
    rules_data::load(&app).await;
    println!(
        "{backend:?}: loaded stock, rules and 20,400 flows in {:.2} s",
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
