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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
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

/// `BENCH_TRACE=1`: per SQL text (binds left out), how many times it ran and
/// the time from sending it to its result, over one round.
#[derive(Clone, Default)]
struct Trace {
    started: Arc<Mutex<Option<Instant>>>,
    by_sql: Arc<Mutex<BTreeMap<String, (u32, Duration)>>>,
}

impl diesel::connection::Instrumentation for Trace {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent as E;
        match event {
            E::StartQuery { .. } => *self.started.lock().unwrap() = Some(Instant::now()),
            E::FinishQuery { query, .. } => {
                let took = self
                    .started
                    .lock()
                    .unwrap()
                    .take()
                    .map(|s| s.elapsed())
                    .unwrap_or_default();
                let text = query.to_string();
                let sql = text.split(" -- binds:").next().unwrap_or_default();
                let mut by_sql = self.by_sql.lock().unwrap();
                let e = by_sql
                    .entry(sql.trim().chars().take(110).collect())
                    .or_default();
                e.0 += 1;
                e.1 += took;
            }
            _ => {}
        }
    }
}

impl Trace {
    fn print(&self, what: &str) {
        let by_sql = self.by_sql.lock().unwrap();
        let n: u32 = by_sql.values().map(|v| v.0).sum();
        let t: Duration = by_sql.values().map(|v| v.1).sum();
        println!(
            "  {what}: {n} statements, {:.1} ms in them",
            t.as_secs_f64() * 1000.0
        );
        let mut rows: Vec<_> = by_sql.iter().collect();
        rows.sort_by_key(|(_, v)| std::cmp::Reverse(v.1));
        for (sql, (n, t)) in rows {
            println!("  {n:>5} {:>8.2} ms  {sql}", t.as_secs_f64() * 1000.0);
        }
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
        for round in 0..rounds {
            let mut conn = app.state.pool.get().expect("connection");
            let trace = Trace::default();
            let traced = round == 0 && std::env::var("BENCH_TRACE").is_ok();
            if traced {
                conn.set_instrumentation(trace.clone());
            }
            let t = Instant::now();
            let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
                outcome =
                    reserve::rules::repo::evaluate_scheduled(c, Utc::now()).expect("evaluate");
                Err(diesel::result::Error::RollbackTransaction)
            });
            times.push(t.elapsed());
            if traced {
                conn.set_instrumentation(Trace::default());
                trace.print(pass);
            }
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
