//! Ingest throughput: 16 concurrent HTTP clients posting single acquisitions
//! against the real server, on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench ingest` — env: BENCH_SECONDS (default 10),
//! BENCH_CLIENTS (default 16), TEST_DATABASE_URL (PostgreSQL admin URL; the
//! PostgreSQL run is skipped with a note when RESERVE_TEST_SQLITE_ONLY=1).
//! The server (2 workers) and the clients share this process and its cores.

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hdrhistogram::Histogram;
use helpers::{movement, spawn_app, Backend};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let seconds = env_or("BENCH_SECONDS", 10);
    let clients = env_or("BENCH_CLIENTS", 16) as usize;
    let mut backends = vec![Backend::Sqlite];
    if !helpers::postgres_skipped() {
        backends.push(Backend::Postgres);
    }
    println!("ingest: {clients} clients, {seconds} s per backend, single acquisitions over HTTP");
    for backend in backends {
        actix_rt::System::new().block_on(run(backend, seconds, clients));
    }
}

async fn run(backend: Backend, seconds: u64, clients: usize) {
    let app = spawn_app(backend).await;
    app.create_depot("BENCH", "999999999999", "999999999999")
        .await;
    // Warm the pool and the statement caches.
    for _ in 0..50 {
        app.acquire("BENCH", "Nd", "1.5").await.expect(201);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let per_client = join_all((0..clients).map(|c| {
        let app = &app;
        async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
            let mut errors = 0u64;
            let element = helpers_element(c);
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = app
                    .post_new(
                        "/api/v1/acquisitions",
                        &app.operator,
                        &movement("BENCH", element, "1.250"),
                    )
                    .await;
                if r.status.as_u16() == 201 {
                    hist.record(t.elapsed().as_micros() as u64).ok();
                } else {
                    errors += 1;
                }
            }
            (hist, errors)
        }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
    let mut errors = 0;
    for (h, e) in per_client {
        hist.add(h).expect("same bounds");
        errors += e;
    }
    let verify = app.verify().await;
    println!(
        "{:<8} {:>7} postings in {:.1} s = {:>7.0} postings/s | latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} | errors {} | ledger verifies: {}",
        format!("{backend:?}"),
        hist.len(),
        elapsed,
        hist.len() as f64 / elapsed,
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.9) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
        errors,
        verify["ok"],
    );
    app.stop().await;
}

/// Spread clients over several stockpiles, as real depots would.
fn helpers_element(client: usize) -> &'static str {
    ["Nd", "Dy", "Tb", "Pr", "La", "Ce", "Sm", "Y"][client % 8]
}
