//! Import-flow upload: one CSV of BENCH_ROWS rows (default 50,000) posted
//! over HTTP, then posted again (every row unchanged), on SQLite and on
//! PostgreSQL, reporting rows/s and the process's peak resident memory.
//!
//! `cargo bench --bench flows` — env: BENCH_ROWS, TEST_DATABASE_URL
//! (PostgreSQL admin URL; skipped with a note when RESERVE_TEST_SQLITE_ONLY=1).
//! The server (2 workers) and the client share this process: the peak RSS
//! (VmHWM) includes the client's copy of the body, so it is shown beside the
//! peak before the first upload.

#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::Instant;

use helpers::{spawn_app, Backend};

const HEADER: &str =
    "element,form,origin_country,hs_code,period_start,period_end,quantity_kg,source,external_id";

/// Peak resident set size of this process so far, in MiB (Linux VmHWM).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Monthly flows of seven elements from eight origins, 2020 to 2025.
fn body(rows: u32) -> String {
    let elements = ["Nd", "Pr", "Dy", "Tb", "Y", "La", "Ce"];
    let origins = ["CN", "MM", "MY", "AU", "US", "VN", "JP", "EE"];
    let mut body = String::with_capacity(rows as usize * 80);
    body.push_str(HEADER);
    body.push('\n');
    for i in 0..rows {
        let month = i % 12 + 1;
        let year = 2020 + (i / 12) % 6;
        let last = chrono::NaiveDate::from_ymd_opt((year + month / 12) as i32, month % 12 + 1, 1)
            .and_then(|d| d.pred_opt())
            .expect("a date");
        body.push_str(&format!(
            "{},oxide,{},2846.90.8000,{year}-{month:02}-01,{last},{}.{:03},USITC-DataWeb,R{i:07}\n",
            elements[i as usize % elements.len()],
            origins[i as usize % origins.len()],
            1 + i % 5000,
            i % 1000,
        ));
    }
    body
}

fn main() {
    let rows: u32 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let mut backends = vec![Backend::Sqlite];
    if !helpers::postgres_skipped() {
        backends.push(Backend::Postgres);
    }
    // Bytes: the copies the uploads send share one buffer.
    let body = actix_web::web::Bytes::from(body(rows));
    println!(
        "flows: one CSV upload of {rows} rows ({:.1} MiB) over HTTP, then the same again",
        body.len() as f64 / (1024.0 * 1024.0)
    );
    for backend in backends {
        actix_rt::System::new().block_on(run(backend, body.clone(), rows));
    }
}

async fn post(
    app: &helpers::TestApp,
    body: actix_web::web::Bytes,
) -> (u16, serde_json::Value, f64) {
    let started = Instant::now();
    let mut res = app
        .client
        .post(app.url("/api/v1/import-flows"))
        .insert_header(("Authorization", format!("Bearer {}", app.operator)))
        .insert_header(("Content-Type", "text/csv"))
        .send_body(body)
        .await
        .expect("request");
    let bytes = res.body().await.expect("body");
    let secs = started.elapsed().as_secs_f64();
    (
        res.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
        secs,
    )
}

async fn run(backend: Backend, body: actix_web::web::Bytes, rows: u32) {
    let app = spawn_app(backend).await;
    let before = peak_rss_mib();
    let (status, answer, first) = post(&app, body.clone()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["inserted"], rows);
    let (status, answer, again) = post(&app, body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["unchanged"], rows);
    println!(
        "{:<8} insert {:>6.2} s = {:>8.0} rows/s | resend (unchanged) {:>6.2} s = {:>8.0} rows/s | peak RSS {:.0} MiB (before the uploads {:.0} MiB)",
        format!("{backend:?}"),
        first,
        rows as f64 / first,
        again,
        rows as f64 / again,
        peak_rss_mib(),
        before,
    );
    app.stop().await;
}
