//! The performance suite (issue 11): real `reserve serve` processes on
//! PostgreSQL and SQLite on loopback, driven by an in-process load generator
//! (keep-alive HTTP/1.1, N concurrent clients, a unique Idempotency-Key per
//! request, a fixed duration, an HdrHistogram of latencies), each figure set
//! beside the limit it is measured against in the same run: `pgbench` over
//! exactly the statements of one posting (`benches/limit/posting.pgbench.sql`)
//! on PostgreSQL, the same statements in a tight loop on SQLite, `sha256sum`
//! over the bytes `reserve verify` hashes.
//!
//! Run it with `scripts/bench.sh` (`--smoke` for the short CI run). Prints
//! one table and writes it to `target/bench/results.json`. Environment:
//! TEST_DATABASE_URL (PostgreSQL admin URL), BENCH_SECONDS (per load
//! scenario), BENCH_CLIENTS (32), BENCH_ENTRIES (ledger size of scenarios 4–6),
//! BENCH_ONLY (a comma-separated list of scenario numbers to run, e.g.
//! `1,10`; unset runs all: see `only`).
//! See docs/performance.md.

#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "data/rules.rs"]
mod rules_data;
#[path = "limit/script.rs"]
mod script;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";
/// 17 elements × 5 depots: the 85 stockpiles of scenario 1.
const ELEMENTS: [&str; 17] = [
    "Sc", "Y", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb",
    "Lu",
];
const DEPOTS: [&str; 5] = ["B01", "B02", "B03", "B04", "B05"];

struct Opts {
    /// Per load scenario (pgbench runs whole seconds: at least 1).
    seconds: f64,
    clients: usize,
    entries: usize,
    postgres: bool,
}

/// One line of the table.
#[derive(Default, Clone)]
struct Row {
    scenario: String,
    backend: &'static str,
    throughput: Option<f64>,
    unit: &'static str,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    peak_rss_mib: Option<f64>,
    limit: String,
    limit_value: Option<f64>,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
    note: String,
}

impl Row {
    fn json(&self) -> Value {
        json!({
            "scenario": self.scenario, "backend": self.backend,
            "throughput": self.throughput, "unit": self.unit,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms,
            "peak_rss_mib": self.peak_rss_mib,
            "limit": self.limit, "limit_value": self.limit_value,
            "ratio": self.ratio, "target": self.target, "met": self.met, "note": self.note,
        })
    }
}

/// Whether scenario `n` runs: every one unless BENCH_ONLY lists some.
/// PostgreSQL's scenario 1 always runs (it is the reference of 3 and 10);
/// the SQLite run (8, its own 1–3 and 10) runs when 8 is listed; 4–6 run
/// (with the reads they compare against) when any of them is listed.
fn only(n: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|s| s.trim() == n),
        _ => true,
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let opts = Opts {
        seconds: std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if smoke { 0.5 } else { 10.0 }),
        clients: env_or("BENCH_CLIENTS", 32) as usize,
        entries: env_or("BENCH_ENTRIES", if smoke { 3_000 } else { 1_000_000 }) as usize,
        postgres: !helpers::postgres_skipped(),
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    actix_rt::System::new().block_on(async {
        if opts.postgres {
            rows.extend(postgres_run(&opts).await);
        }
        if only("8") {
            rows.extend(sqlite_run(&opts).await);
        }
        let rounds = if smoke { 3 } else { 20 };
        if opts.postgres && only("9") {
            rows.push(rules_row(helpers::Backend::Postgres, rounds).await);
        }
        if only("9") {
            rows.push(rules_row(helpers::Backend::Sqlite, rounds).await);
        }
    });
    print_table(&rows);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    let file = out.join(if smoke {
        "results-smoke.json"
    } else {
        "results.json"
    });
    let doc = json!({
        "smoke": smoke, "seconds_per_scenario": opts.seconds, "clients": opts.clients,
        "entries": opts.entries, "wall_seconds": started.elapsed().as_secs(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
    });
    std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).expect("write results");
    println!(
        "\nwritten to {} ({} s)",
        file.display(),
        started.elapsed().as_secs()
    );
    if rows.iter().any(|r| r.note.starts_with("FAILED")) {
        eprintln!("bench: a scenario failed (see the notes)");
        std::process::exit(1);
    }
}

/// 9: `cover` and the scheduled evaluation of every rule, all 34 firing, on
/// a fresh database of the backend holding `benches/data/rules.rs`' data (17
/// elements × 5 years × 20 origins of import flows). A round is one
/// `flows::cover::load` plus one `rules::repo::evaluate_scheduled`, rolled
/// back so that every round evaluates the same state; p50 is the median
/// round, p99 the slowest. In-process (the library, a pool of the service's
/// connections): the scheduled job has no HTTP endpoint.
async fn rules_row(backend: helpers::Backend, rounds: usize) -> Row {
    let name = match backend {
        helpers::Backend::Sqlite => "sqlite",
        helpers::Backend::Postgres => "postgres",
    };
    let app = helpers::spawn_app(backend).await;
    rules_data::load(&app).await;
    let mut times = Vec::new();
    let mut outcome = String::new();
    for _ in 0..rounds {
        let mut conn = app.state.pool.get().expect("connection");
        let t = Instant::now();
        reserve::flows::cover::load(&mut conn, None).expect("cover");
        let _ = conn.transaction::<(), diesel::result::Error, _>(|c| {
            outcome =
                reserve::rules::repo::evaluate_scheduled(c, chrono::Utc::now()).expect("evaluate");
            Err(diesel::result::Error::RollbackTransaction)
        });
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    app.stop().await;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let all_fired = outcome.contains("34 fired");
    Row {
        scenario: "9 cover + every rule, 17 el x 5 y x 20 orig".into(),
        backend: name,
        p50_ms: Some(median),
        p99_ms: times.last().copied(),
        target: "p50 < 50 ms".into(),
        met: Some(median < 50.0),
        note: if all_fired {
            outcome
        } else {
            format!("FAILED: not every rule fired: {outcome}")
        },
        ..Row::default()
    }
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

#[allow(clippy::print_literal)]
fn print_table(rows: &[Row]) {
    println!(
        "\n{:<44} {:<8} {:>12} {:<10} {:>8} {:>8} {:>8}  {:<34} {:>10} {:>7}  {:<18} {}",
        "scenario",
        "backend",
        "throughput",
        "unit",
        "p50 ms",
        "p99 ms",
        "RSS MiB",
        "limit",
        "limit",
        "ratio",
        "target",
        "met"
    );
    for r in rows {
        println!(
            "{:<44} {:<8} {:>12} {:<10} {:>8} {:>8} {:>8}  {:<34} {:>10} {:>7}  {:<18} {}{}",
            r.scenario,
            r.backend,
            fmt(r.throughput, 0),
            r.unit,
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(r.peak_rss_mib, 1),
            r.limit,
            fmt(r.limit_value, 0),
            fmt(r.ratio, 2),
            r.target,
            match r.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            },
            if r.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", r.note)
            }
        );
    }
}

// ---------------------------------------------------------------- the server

/// A `reserve serve` process of the release build.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    /// The server of scenarios 1–8: group commit off (window 0), so the
    /// single-posting scenarios measure one transaction per posting, as
    /// their limits do; scenario 10 starts its own with the window on.
    async fn start(db_url: &str) -> Server {
        Self::start_with(db_url, &[("RESERVE_GROUP_COMMIT__WINDOW_US", "0".into())]).await
    }

    /// A server with extra `RESERVE_*` settings (e.g. group commit's window).
    async fn start_with(db_url: &str, env: &[(&str, String)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_reserve"))
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("RESERVE_DATABASE_URL", db_url)
            .env("RESERVE_JWT_SECRET", SECRET)
            .env("RESERVE_JOBS__ENABLED", "false")
            .env("RESERVE_AUDIT__REPORTS_ENABLED", "false")
            .env("RESERVE_AUTH__MAX_FAILURES_PER_MINUTE", "0")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .expect("start reserve serve");
        let base = format!("http://127.0.0.1:{port}");
        let client = awc::Client::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the server did not get ready");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        Server { child, base }
    }

    fn status_kib(&self, field: &str) -> Option<f64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = s.lines().find(|l| l.starts_with(field))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    fn rss_mib(&self) -> Option<f64> {
        self.status_kib("VmRSS:").map(|k| k / 1024.0)
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        self.status_kib("VmHWM:").map(|k| k / 1024.0)
    }

    /// Resets the kernel's peak-RSS mark, so the next peak is one scenario's.
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tokens() -> (String, String, String) {
    let mut settings = reserve::config::Settings::load(None, &[]).expect("default settings");
    settings.auth.jwt_secret = SECRET.into();
    let keys = reserve::auth::TokenKeys::hs256(SECRET.as_bytes(), &settings.auth).expect("keys");
    let hours = chrono::Duration::hours(2);
    use reserve::auth::Role;
    let mint = |sub: &str, role: Role| keys.mint(sub, &[role], None, hours).expect("token");
    (
        mint("bench-admin", Role::Admin),
        mint("bench-operator", Role::Operator),
        mint("bench-viewer", Role::Viewer),
    )
}

// ---------------------------------------------------------- load generator

/// One request of a scenario.
struct Req {
    path: String,
    body: Option<Value>,
    /// Ledger entries it posts (for entries/s).
    entries: u64,
}

struct Load {
    requests: u64,
    entries: u64,
    errors: u64,
    first_error: String,
    seconds: f64,
    hist: Histogram<u64>,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.seconds
    }
    fn entries_per_second(&self) -> f64 {
        self.entries as f64 / self.seconds
    }
    fn p(&self, q: f64) -> Option<f64> {
        (!self.hist.is_empty()).then(|| self.hist.value_at_quantile(q) as f64 / 1000.0)
    }
}

/// `clients` keep-alive connections, each sending requests back to back for
/// `seconds`; `make(client, i)` builds the i-th request of a client.
async fn load(
    base: &str,
    token: &str,
    clients: usize,
    seconds: f64,
    make: Rc<dyn Fn(usize, u64) -> Req>,
) -> Load {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let results = join_all((0..clients).map(|c| {
        let make = make.clone();
        let run = run.clone();
        async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(120))
                .finish();
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("hist");
            let (mut ok, mut entries, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
            let mut i = 0u64;
            while Instant::now() < deadline {
                let req = make(c, i);
                let url = format!("{base}{}", req.path);
                let t = Instant::now();
                let sent = match &req.body {
                    Some(body) => {
                        client
                            .post(url)
                            .insert_header(("Authorization", format!("Bearer {token}")))
                            .insert_header(("Idempotency-Key", format!("{run}-{c}-{i}")))
                            .content_type("application/json")
                            .send_body(serde_json::to_vec(body).expect("json"))
                            .await
                    }
                    None => {
                        client
                            .get(url)
                            .insert_header(("Authorization", format!("Bearer {token}")))
                            .send()
                            .await
                    }
                };
                let outcome = match sent {
                    Ok(mut r) => {
                        let body = r.body().limit(64 << 20).await;
                        match body {
                            Ok(b) if r.status().is_success() => Ok(b.len()),
                            Ok(b) => Err(format!("{} {}", r.status(), String::from_utf8_lossy(&b))),
                            Err(e) => Err(format!("body: {e}")),
                        }
                    }
                    Err(e) => Err(format!("send: {e}")),
                };
                match outcome {
                    Ok(_) => {
                        hist.record(t.elapsed().as_micros().max(1) as u64).ok();
                        ok += 1;
                        entries += req.entries;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
                i += 1;
            }
            (hist, ok, entries, errors, first_error)
        }
    }))
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut total = Load {
        requests: 0,
        entries: 0,
        errors: 0,
        first_error: String::new(),
        seconds,
        hist: Histogram::new_with_bounds(1, 120_000_000, 3).expect("hist"),
    };
    for (h, ok, entries, errors, first) in results {
        total.hist.add(h).expect("same bounds");
        total.requests += ok;
        total.entries += entries;
        total.errors += errors;
        if total.first_error.is_empty() {
            total.first_error = first.unwrap_or_default();
        }
    }
    total
}

fn movement(depot: &str, element: &str, kg: &str) -> Value {
    json!({"depot": depot, "element": element, "form": "oxide", "grade": "99.5", "quantity_kg": kg})
}

/// Scenario 1's request: client c's i-th posting, an acquisition or a release
/// of 1 kg, spread over the 85 stockpiles (or on one, for the hot spot).
fn posting(c: usize, i: u64, hot: bool) -> Req {
    let n = if hot {
        0
    } else {
        (c as u64 * 7919 + i * 31) as usize % (ELEMENTS.len() * DEPOTS.len())
    };
    let (depot, element) = (DEPOTS[n / ELEMENTS.len()], ELEMENTS[n % ELEMENTS.len()]);
    let path = if i.is_multiple_of(2) {
        "/api/v1/acquisitions"
    } else {
        "/api/v1/releases"
    };
    Req {
        path: path.into(),
        body: Some(movement(depot, element, "1")),
        entries: 1,
    }
}

fn load_row(scenario: &str, backend: &'static str, l: &Load, unit: &'static str) -> Row {
    let throughput = if unit == "entries/s" {
        l.entries_per_second()
    } else {
        l.per_second()
    };
    Row {
        scenario: scenario.into(),
        backend,
        throughput: Some(throughput),
        unit,
        p50_ms: l.p(0.5),
        p99_ms: l.p(0.99),
        note: if l.errors > 0 {
            format!(
                "FAILED: {} of {} requests: {}",
                l.errors,
                l.errors + l.requests,
                l.first_error.chars().take(200).collect::<String>()
            )
        } else if l.requests == 0 {
            "FAILED: no request completed".into()
        } else {
            String::new()
        },
        ..Row::default()
    }
}

fn with_limit(mut row: Row, limit: &str, value: Option<f64>, target: &str, min: f64) -> Row {
    row.limit = limit.into();
    row.limit_value = value;
    row.ratio = match (row.throughput, value) {
        (Some(t), Some(v)) if v > 0.0 => Some(t / v),
        _ => None,
    };
    row.target = target.into();
    row.met = row.ratio.map(|r| r >= min);
    row
}

/// Creates the five depots and the 85 stockpiles, each holding 1,000,000 kg
/// so releases never run dry, through the API.
async fn setup(base: &str, admin: &str, operator: &str) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    let post = |path: &str, token: &str, key: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Idempotency-Key", key))
            .send_json(&body)
    };
    for d in DEPOTS {
        let body = json!({"code": d, "name": format!("Bench depot {d}"), "region": "US-Test",
            "capacity_kg": "999999999999", "max_drawdown_kg_per_day": "999999999999"});
        let mut r = post("/api/v1/depots", admin, format!("depot-{d}"), body)
            .await
            .expect("create depot");
        assert!(r.status().is_success(), "{:?}", r.body().await);
    }
    let entries: Vec<Value> = DEPOTS
        .iter()
        .flat_map(|d| {
            ELEMENTS.iter().map(move |e| {
                let mut m = movement(d, e, "1000000");
                m["kind"] = json!("acquisition");
                m
            })
        })
        .collect();
    let mut r = post(
        "/api/v1/ledger/batch",
        operator,
        "setup-batch".into(),
        json!({ "entries": entries }),
    )
    .await
    .expect("seed stock");
    assert!(r.status().is_success(), "{:?}", r.body().await);
}

/// Brings the ledger to `entries` (from the 85 of `setup`) with one batch,
/// for the reads "at 1,000 entries".
async fn top_up(base: &str, operator: &str, entries: usize) {
    let mut req = batch(0, 0);
    let legs = req.body.as_mut().unwrap()["entries"]
        .as_array_mut()
        .unwrap();
    legs.truncate(entries - ELEMENTS.len() * DEPOTS.len());
    let mut r = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish()
        .post(format!("{base}{}", req.path))
        .insert_header(("Authorization", format!("Bearer {operator}")))
        .insert_header(("Idempotency-Key", "top-up"))
        .send_json(req.body.as_ref().unwrap())
        .await
        .expect("top up");
    assert!(r.status().is_success(), "{:?}", r.body().await);
}

/// A batch of 1,000 acquisitions spread over the 85 stockpiles.
fn batch(c: usize, i: u64) -> Req {
    let entries: Vec<Value> = (0..1000)
        .map(|k| {
            let n = (c * 13 + i as usize * 7 + k) % (ELEMENTS.len() * DEPOTS.len());
            let mut m = movement(
                DEPOTS[n / ELEMENTS.len()],
                ELEMENTS[n % ELEMENTS.len()],
                "1",
            );
            m["kind"] = json!("acquisition");
            m
        })
        .collect();
    Req {
        path: "/api/v1/ledger/batch".into(),
        body: Some(json!({ "entries": entries })),
        entries: 1000,
    }
}

// ------------------------------------------------------------ PostgreSQL

/// The ids the limit scripts need, read from the database: (stockpile id,
/// depot id, depot code, element) of the 85 benchmark stockpiles.
fn stockpile_ids(conn: &mut reserve::db::DbConn) -> QueryResult<Vec<(i64, i64, String, String)>> {
    use reserve::db::schema::{depots, stockpiles};
    stockpiles::table
        .inner_join(depots::table)
        .filter(depots::code.like("B0%"))
        .select((
            stockpiles::id,
            depots::id,
            depots::code,
            stockpiles::element,
        ))
        .order(stockpiles::id)
        .load(conn)
}

/// pgbench over the posting script: one copy of it per stockpile (pgbench
/// picks one at random per transaction), the same clients, the same time.
fn pgbench(
    url: &str,
    clients: usize,
    seconds: f64,
    stockpiles: &[(i64, i64, String, String)],
) -> Result<f64, String> {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/limit/posting.pgbench.sql"),
    )
    .map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let today = chrono::Utc::now().date_naive();
    let day_start = today.and_hms_opt(0, 0, 0).unwrap();
    let mut cmd = Command::new("pgbench");
    cmd.args([
        "-n",
        "-M",
        "prepared",
        "-c",
        &clients.to_string(),
        "-j",
        "2",
    ])
    .args(["-T", &(seconds.ceil().max(1.0) as u64).to_string()]);
    let now = chrono::Utc::now()
        .naive_utc()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let body = json!({"sequence": 1, "stockpile_id": 1, "depot": "B01", "element": "Nd", "form": "oxide",
        "grade": "99.5", "kind": "acquisition", "quantity_kg": "1.000", "balance_after_kg": "1000001.000",
        "occurred_at": "2026-11-29T12:00:00.000000Z", "recorded_at": "2026-11-29T12:00:00.000000Z",
        "actor": "bench-operator", "idempotency_key": "0123456789abcdef0123456789abcdef-0-0",
        "movement_id": uuid::Uuid::new_v4().to_string(), "prev_hash": "0".repeat(64), "hash": "0".repeat(64)})
    .to_string();
    let fiscal_year = today.format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let constants = [
        ("subject", "bench-operator".to_string()),
        ("one", "1".into()),
        ("form", "oxide".into()),
        ("grade", "99.5".into()),
        ("active", "active".into()),
        ("kind_in", "acquisition".into()),
        ("kind_out", "release".into()),
        ("quantity_in", "1000".into()),
        ("quantity_out", "-1000".into()),
        ("withdrawn", "1000".into()),
        ("fiscal_year", fiscal_year.to_string()),
        ("now", now),
        ("actor", "bench-operator".into()),
        ("hash", "ab".repeat(32)),
        ("status", "201".into()),
        ("response_body", body),
        ("shipment_kinds", "{release,transfer_out,loan_out}".into()),
        ("day_start", day_start.to_string()),
        (
            "day_end",
            (day_start + chrono::Duration::days(1)).to_string(),
        ),
    ];
    for (k, v) in constants {
        cmd.args(["-D", &format!("{k}={v}")]);
    }
    for (n, (sid, did, code, element)) in stockpiles.iter().enumerate() {
        cmd.args(["-D", &format!("element_{element}={element}")]);
        cmd.args(["-D", &format!("depot_codes_{code}={{{code}}}")]);
        let copy = format!(
            "\\set depot_id {did}\n\\set stockpile_id {sid}\n{}",
            template
        )
        .replace(":element", &format!(":element_{element}"))
        .replace(":depot_codes", &format!(":depot_codes_{code}"));
        let path = dir.path().join(format!("posting-{n}.sql"));
        std::fs::write(&path, copy).map_err(|e| e.to_string())?;
        cmd.arg("-f").arg(&path);
    }
    let out = cmd.arg(url).output().map_err(|e| format!("pgbench: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let failed = text
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .unwrap_or("");
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse::<f64>().ok());
    match tps {
        Some(t) if out.status.success() && (failed.is_empty() || failed.contains(": 0 ")) => Ok(t),
        _ => Err(format!(
            "pgbench failed: {}{}",
            text.lines().last().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" | ")
        )),
    }
}

/// Runs SQL on the admin connection (database creation from a template).
fn admin_sql(sql: &str) {
    let mut conn = PgConnection::establish(&helpers::postgres_admin_url()).expect("admin");
    diesel::sql_query(sql).execute(&mut conn).expect(sql);
}

async fn postgres_run(o: &Opts) -> Vec<Row> {
    let (admin, operator, viewer) = tokens();
    let db = helpers::TestDb::new(helpers::Backend::Postgres);
    let url = db.url().to_string();
    let mut rows = Vec::new();
    let secs = o.seconds;
    let server = Server::start(&url).await;
    setup(&server.base, &admin, &operator).await;
    // The limit runs on a copy of this database, so its rows (hashed by no
    // one) never reach the ledger the service verifies.
    server.stop();
    let helpers::TestDb::Postgres { name, .. } = &db else {
        unreachable!()
    };
    let limit_name = format!("{name}_limit");
    admin_sql(&format!("CREATE DATABASE {limit_name} TEMPLATE {name}"));
    let limit_url = url.replace(name.as_str(), &limit_name);
    let server = Server::start(&url).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    rows.push(Row {
        scenario: "7a idle server".into(),
        backend: "postgres",
        peak_rss_mib: server.rss_mib(),
        target: "<= 30 MiB".into(),
        met: server.rss_mib().map(|m| m <= 30.0),
        unit: "",
        ..Row::default()
    });

    // Reads at the small ledger (85 entries of setup plus 915 more).
    top_up(&server.base, &operator, 1000).await;
    let large = only("4") || only("5") || only("6");
    let small_reads = if large {
        reads(&server.base, &viewer, o, 1).await
    } else {
        BTreeMap::new()
    };

    // 1: single postings spread over 85 stockpiles.
    server.reset_peak();
    let l1 = load(
        &server.base,
        &operator,
        o.clients,
        secs,
        Rc::new(|c, i| posting(c, i, false)),
    )
    .await;
    let rss1 = server.peak_rss_mib();
    let sp = stockpile_ids(&mut open(&url)).expect("stockpiles");
    let limit1 = pgbench(&limit_url, o.clients, o.seconds, &sp);
    let mut r1 = with_limit(
        load_row(
            "1 single postings, 85 stockpiles",
            "postgres",
            &l1,
            "postings/s",
        ),
        "pgbench posting script",
        limit1.as_ref().ok().copied(),
        ">= 0.60",
        0.60,
    );
    r1.peak_rss_mib = rss1;
    if let Err(e) = &limit1 {
        r1.note = format!("FAILED: {e}");
    }
    let s1 = r1.throughput;
    rows.push(r1);
    rows.push(Row {
        scenario: "7b server during scenario 1".into(),
        backend: "postgres",
        peak_rss_mib: rss1,
        target: "<= 150 MiB".into(),
        met: rss1.map(|m| m <= 150.0),
        ..Row::default()
    });

    // 2: the hot spot.
    if only("2") {
        let l2 = load(
            &server.base,
            &operator,
            o.clients,
            secs,
            Rc::new(|c, i| posting(c, i, true)),
        )
        .await;
        let hot: Vec<_> = sp
            .iter()
            .filter(|(_, _, code, el)| code == DEPOTS[0] && el == ELEMENTS[0])
            .cloned()
            .collect();
        let limit2 = pgbench(&limit_url, o.clients, o.seconds, &hot);
        let mut r2 = with_limit(
            load_row("2 hot spot: one stockpile", "postgres", &l2, "postings/s"),
            "pgbench, same row",
            limit2.as_ref().ok().copied(),
            ">= 0.40",
            0.40,
        );
        if let Err(e) = &limit2 {
            r2.note = format!("FAILED: {e}");
        }
        rows.push(r2);
    }

    // 10: scenario 1 again, against a server with group commit on.
    if only("10") {
        rows.push(
            group_commit_row(
                o,
                "postgres",
                &url,
                &operator,
                ("pgbench posting script", limit1.as_ref().ok().copied()),
            )
            .await,
        );
    }
    admin_sql(&format!(
        "DROP DATABASE IF EXISTS {limit_name} WITH (FORCE)"
    ));

    // 3: batches of 1,000 entries.
    if only("3") {
        let l3 = load(&server.base, &operator, 4, secs, Rc::new(batch)).await;
        let mut r3 = load_row(
            "3 batch, 1,000 entries a request",
            "postgres",
            &l3,
            "entries/s",
        );
        r3 = with_limit(r3, "scenario 1 postings/s", s1, ">= 20x", 20.0);
        rows.push(r3);
    }

    // 4–6 at the large ledger.
    if large {
        rows.extend(large_ledger(o, &server, &url, &viewer, small_reads).await);
    }
    server.stop();
    rows
}

/// Scenario 10: scenario 1's load against a second server on the same
/// database with group commit on (`group_commit.window_us`, from
/// BENCH_GROUP_COMMIT_US, default 2,000 as in config/default.toml), measured against the same limit as
/// the single postings: pgbench's one posting per transaction on PostgreSQL,
/// the Rust loop on SQLite.
async fn group_commit_row(
    o: &Opts,
    backend: &'static str,
    url: &str,
    operator: &str,
    limit: (&str, Option<f64>),
) -> Row {
    let window_us = env_or("BENCH_GROUP_COMMIT_US", 2_000);
    let server = Server::start_with(
        url,
        &[("RESERVE_GROUP_COMMIT__WINDOW_US", window_us.to_string())],
    )
    .await;
    server.reset_peak();
    let l = load(
        &server.base,
        operator,
        o.clients,
        o.seconds,
        Rc::new(|c, i| posting(c, i, false)),
    )
    .await;
    let mut row = with_limit(
        load_row("10 scenario 1 with group commit", backend, &l, "postings/s"),
        limit.0,
        limit.1,
        ">= 1.00",
        1.0,
    );
    row.peak_rss_mib = server.peak_rss_mib();
    if row.note.is_empty() {
        row.note = format!("window {window_us} us");
        if let Some((groups, members)) = group_counts(&server.base).await {
            let mean = members / groups.max(1.0);
            row.note += &format!(", {groups} groups of {mean:.1} postings on average");
        }
    }
    server.stop();
    row
}

/// The server's `reserve_group_commit_groups_total` and `…_members_total`.
async fn group_counts(base: &str) -> Option<(f64, f64)> {
    let mut reply = awc::Client::default()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?;
    let body = reply.body().limit(1 << 20).await.ok()?;
    let text = std::str::from_utf8(&body).ok()?;
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    Some((
        value("reserve_group_commit_groups_total")?,
        value("reserve_group_commit_members_total")?,
    ))
}

/// p99 of each read at the current ledger size, under 8 clients; the as-of
/// balance also alone (one client), where its p99 is the request's own cost
/// rather than its wait behind seven others on two shared cores.
async fn reads(base: &str, viewer: &str, o: &Opts, stockpile: i64) -> BTreeMap<&'static str, Load> {
    let secs = (o.seconds / 2.0).max(0.25);
    let mut out = BTreeMap::new();
    let as_of = format!(
        "/api/v1/stockpiles/{stockpile}/balance?as_of={}",
        (chrono::Utc::now() - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ")
    );
    let paths: [(&'static str, String, usize); 5] = [
        ("summary", "/api/v1/summary".into(), 8),
        ("stockpile list", "/api/v1/stockpiles".into(), 8),
        (
            "balance",
            format!("/api/v1/stockpiles/{stockpile}/balance"),
            8,
        ),
        ("balance?as_of=", as_of.clone(), 8),
        ("balance?as_of=, 1 client", as_of, 1),
    ];
    for (name, path, clients) in paths {
        let l = load(
            base,
            viewer,
            clients,
            secs,
            Rc::new(move |_, _| Req {
                path: path.clone(),
                body: None,
                entries: 0,
            }),
        )
        .await;
        out.insert(name, l);
    }
    out
}

/// Loads the ledger to `o.entries` with the fast loader, then scenarios 4–6.
async fn large_ledger(
    o: &Opts,
    server: &Server,
    url: &str,
    viewer: &str,
    small: BTreeMap<&'static str, Load>,
) -> Vec<Row> {
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let mut rows = Vec::new();
    let current = ledger_len(url);
    let t = Instant::now();
    let want = o.entries.saturating_sub(current as usize);
    let loaded = Command::new(env!("CARGO_BIN_EXE_reserve"))
        .args(["seed-demo", "--entries", &want.to_string()])
        .env("RESERVE_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let load_secs = t.elapsed().as_secs_f64();
    let total = ledger_len(url);
    rows.push(Row {
        scenario: format!("loader: seed-demo --entries {want}"),
        backend,
        throughput: Some(want as f64 / load_secs),
        unit: "entries/s",
        note: if loaded {
            format!("ledger now {total} entries")
        } else {
            "FAILED: the loader failed".into()
        },
        ..Row::default()
    });
    // The loader's stockpile with the longest history.
    let deep = deepest_stockpile(url);
    let big = reads(&server.base, viewer, o, deep).await;
    for (name, l) in &big {
        let before = small.get(name).and_then(|s| s.p(0.99));
        let mut r = load_row(
            &format!("4 {name} at {total} entries"),
            backend,
            l,
            "requests/s",
        );
        if name.starts_with("balance?as_of=") {
            r.scenario = format!("5 {name} at {total} entries");
            r.target = "p99 <= 10 ms".into();
            r.met = r.p99_ms.map(|p| p <= 10.0);
        } else {
            r.limit = "p99 at ~1,000 entries".into();
            r.limit_value = before;
            r.ratio = match (r.p99_ms, before) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            r.target = "p99 ratio <= 1.5".into();
            r.met = r.ratio.map(|x| x <= 1.5);
        }
        rows.push(r);
    }
    rows.push(verify_row(url, backend, total));
    rows
}

fn open(url: &str) -> reserve::db::DbConn {
    reserve::db::open(&reserve::db::DatabaseUrl::parse(url).expect("a database URL")).expect("open")
}

fn ledger_len(url: &str) -> i64 {
    use reserve::db::schema::ledger_head;
    let mut conn = open(url);
    ledger_head::table
        .select(ledger_head::last_sequence)
        .first(&mut conn)
        .unwrap_or(0)
}

fn deepest_stockpile(url: &str) -> i64 {
    use reserve::db::schema::stockpiles;
    let mut conn = open(url);
    stockpiles::table
        .select(stockpiles::id)
        .order(stockpiles::entry_count.desc())
        .first(&mut conn)
        .unwrap_or(1)
}

/// 6: `reserve verify` against `sha256sum` over the bytes it hashes (each
/// entry's previous hash and canonical encoding), written to a file first.
fn verify_row(url: &str, backend: &'static str, total: i64) -> Row {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_reserve"))
        .args(["verify", "--stats"])
        .env("RESERVE_DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output();
    let verify_secs = t.elapsed().as_secs_f64();
    let report: Value = out
        .as_ref()
        .ok()
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(Value::Null);
    let ok = report["ok"] == json!(true);
    let rss = report["peak_rss_kib"].as_f64().map(|k| k / 1024.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("chain.bin");
    let bytes = write_chain_bytes(url, &file);
    let t = Instant::now();
    let sha = Command::new("sha256sum").arg(&file).output();
    let sha_secs = t.elapsed().as_secs_f64();
    let mb = bytes as f64 / 1e6;
    let mut r = Row {
        scenario: format!("6 reserve verify, {total} entries"),
        backend,
        throughput: Some(mb / verify_secs),
        unit: "MB/s",
        peak_rss_mib: rss,
        limit: format!("sha256sum over the same {mb:.0} MB"),
        limit_value: Some(mb / sha_secs),
        target: ">= 0.50".into(),
        ..Row::default()
    };
    r.ratio = Some(sha_secs / verify_secs);
    r.met = r.ratio.map(|x| x >= 0.5);
    if !ok || sha.map(|s| !s.status.success()).unwrap_or(true) {
        r.note = format!("FAILED: verify said {report}");
    }
    r
}

/// The bytes verification hashes, entry by entry, in pages.
fn write_chain_bytes(url: &str, file: &std::path::Path) -> u64 {
    use reserve::db::schema::{depots, ledger_entries as le, stockpiles};
    use reserve::ledger::chain::StockpileIdentity;
    use reserve::ledger::repo::EntryRow;
    use std::io::Write;
    let mut conn = open(url);
    let ids: BTreeMap<i64, (String, String, String, String)> = stockpiles::table
        .inner_join(depots::table)
        .select((
            stockpiles::id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
        .load::<(i64, String, String, String, String)>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|(id, d, e, f, g)| (id, (d, e, f, g)))
        .collect();
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).unwrap());
    let (mut after, mut bytes) = (0i64, 0u64);
    loop {
        let page: Vec<EntryRow> = le::table
            .filter(le::sequence.gt(after))
            .order(le::sequence)
            .limit(10_000)
            .select(EntryRow::as_select())
            .load(&mut conn)
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.sequence;
        for e in &page {
            let (d, el, f, g) = &ids[&e.stockpile_id];
            let identity = StockpileIdentity {
                depot: d,
                element: el,
                form: f,
                grade: g,
            };
            let canonical = e.chained(identity).canonical();
            out.write_all(e.prev_hash.as_bytes()).unwrap();
            out.write_all(&canonical).unwrap();
            bytes += (e.prev_hash.len() + canonical.len()) as u64;
        }
    }
    out.flush().unwrap();
    bytes
}

// ---------------------------------------------------------------- SQLite

async fn sqlite_run(o: &Opts) -> Vec<Row> {
    let (admin, operator, viewer) = tokens();
    let db = helpers::TestDb::new(helpers::Backend::Sqlite);
    let url = db.url().to_string();
    let server = Server::start(&url).await;
    setup(&server.base, &admin, &operator).await;
    top_up(&server.base, &operator, 1000).await;
    let small_reads = reads(&server.base, &viewer, o, 1).await;
    let l8 = load(
        &server.base,
        &operator,
        o.clients,
        o.seconds,
        Rc::new(|c, i| posting(c, i, false)),
    )
    .await;
    // The limit runs on a copy of the database file, as on PostgreSQL.
    let limit = sqlite_limit(&url, o.seconds);
    let mut r = with_limit(
        load_row(
            "8 single postings, 85 stockpiles",
            "sqlite",
            &l8,
            "postings/s",
        ),
        "same statements, Rust loop",
        limit.as_ref().ok().copied(),
        ">= 0.50",
        0.50,
    );
    if let Err(e) = &limit {
        r.note = format!("FAILED: {e}");
    }
    let limit = limit.ok();
    let mut rows = vec![r];
    // 10 on SQLite: the same load with group commit, one fsync per group.
    rows.push(
        group_commit_row(
            o,
            "sqlite",
            &url,
            &operator,
            ("same statements, Rust loop", limit),
        )
        .await,
    );
    rows.extend(large_ledger(o, &server, &url, &viewer, small_reads).await);
    server.stop();
    rows
}

/// The posting statements of `benches/limit/posting.sqlite.sql` in a tight
/// loop on one connection with the service's pragmas, acquisitions and
/// releases alternating over the 85 stockpiles, on a copy of the database.
fn sqlite_limit(url: &str, seconds: f64) -> Result<f64, String> {
    use diesel::sql_types::{BigInt, Text};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copy = dir.path().join("limit.db");
    {
        // A consistent copy, WAL included.
        let mut src = reserve::db::open(&reserve::db::DatabaseUrl::parse(url).unwrap())
            .map_err(|e| e.to_string())?;
        diesel::sql_query(format!("VACUUM INTO '{}'", copy.display()))
            .execute(&mut src)
            .map_err(|e| e.to_string())?;
    }
    let copy_url = format!("sqlite://{}", copy.display());
    let mut conn = reserve::db::open(&reserve::db::DatabaseUrl::parse(&copy_url).unwrap())
        .map_err(|e| e.to_string())?;
    let sp = stockpile_ids(&mut conn).map_err(|e| e.to_string())?;
    let reserve::db::DbConn::Sqlite(conn) = &mut conn else {
        return Err("not sqlite".into());
    };
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/limit/posting.sqlite.sql"),
    )
    .map_err(|e| e.to_string())?;
    let (acq, rel) = script::parse(&text);
    let render = |v: &[script::Statement]| -> Vec<(String, Vec<String>)> {
        v.iter()
            .map(|s| (s.render(script::Placeholder::Question), s.vars.clone()))
            .collect()
    };
    let (acq, rel) = (render(&acq), render(&rel));
    let now = chrono::Utc::now().naive_utc();
    let day_start = now.date().and_hms_opt(0, 0, 0).unwrap();
    let fmt_ts = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let body = "x".repeat(700);
    let mut vars: BTreeMap<String, Value> = [
        ("subject", json!("bench-operator")),
        ("one", json!(1)),
        ("form", json!("oxide")),
        ("grade", json!("99.5")),
        ("active", json!("active")),
        ("kind_in", json!("acquisition")),
        ("kind_out", json!("release")),
        ("kind_release", json!("release")),
        ("kind_transfer_out", json!("transfer_out")),
        ("kind_loan_out", json!("loan_out")),
        ("quantity_in", json!(1000)),
        ("quantity_out", json!(-1000)),
        ("withdrawn", json!(1000)),
        (
            "fiscal_year",
            json!(now.format("%Y").to_string().parse::<i64>().unwrap() + 1),
        ),
        ("now", json!(fmt_ts(now))),
        ("actor", json!("bench-operator")),
        ("hash", json!("ab".repeat(32))),
        ("status", json!(201)),
        ("response_body", json!(body)),
        // As diesel writes a timestamp at midnight: no fraction.
        (
            "day_start",
            json!(day_start.format("%Y-%m-%d %H:%M:%S").to_string()),
        ),
        (
            "day_end",
            json!(fmt_ts(day_start + chrono::Duration::days(1))),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    #[derive(QueryableByName)]
    struct Head {
        #[diesel(sql_type = BigInt)]
        last_sequence: i64,
    }
    #[derive(QueryableByName)]
    struct Stock {
        #[diesel(sql_type = BigInt)]
        on_hand_g: i64,
        #[diesel(sql_type = Text)]
        head_hash: String,
        #[diesel(sql_type = BigInt)]
        entry_count: i64,
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut n: u64 = 0;
    let run = uuid::Uuid::new_v4().simple().to_string();
    while Instant::now() < deadline {
        let (sid, did, code, element) = &sp[(n as usize * 31) % sp.len()];
        vars.insert("stockpile_id".into(), json!(sid));
        vars.insert("depot_id".into(), json!(did));
        vars.insert("depot_code".into(), json!(code));
        vars.insert("element".into(), json!(element));
        vars.insert("key".into(), json!(format!("{run}-{n}")));
        // Unique, like a SHA-256, and of its size.
        vars.insert("entry_hash".into(), json!(format!("{run}{n:032x}")));
        let statements = if n.is_multiple_of(2) { &acq } else { &rel };
        for (sql, names) in statements {
            let mut q = diesel::sql_query(sql.as_str()).into_boxed::<diesel::sqlite::Sqlite>();
            for name in names {
                q = match vars.get(name) {
                    Some(Value::Number(v)) => q.bind::<BigInt, _>(v.as_i64().unwrap()),
                    Some(Value::String(s)) => q.bind::<Text, _>(s.clone()),
                    _ => return Err(format!("no value for :{name}")),
                };
            }
            if sql.starts_with("UPDATE `stockpiles` SET `on_hand_g`") {
                let s: Stock = q.get_result(conn).map_err(|e| format!("{sql}: {e}"))?;
                vars.insert("s_on_hand_g".into(), json!(s.on_hand_g));
                vars.insert("s_head_hash".into(), json!(s.head_hash));
                vars.insert("s_entry_count".into(), json!(s.entry_count));
            } else if sql.starts_with("UPDATE `ledger_head`") {
                let h: Head = q.get_result(conn).map_err(|e| format!("{sql}: {e}"))?;
                vars.insert("h_last_sequence".into(), json!(h.last_sequence));
            } else if sql.starts_with("SELECT") || sql.contains("RETURNING") {
                // Read the rows, as the code does; their values are not used.
                q.execute(conn).map_err(|e| format!("{sql}: {e}"))?;
            } else {
                q.execute(conn).map_err(|e| format!("{sql}: {e}"))?;
            }
        }
        n += 1;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
