//! The write limit of the performance suite (`scripts/bench.sh`, issue 11)
//! replays "exactly the SQL statements one posting performs": on PostgreSQL
//! with `pgbench -f benches/limit/posting.pgbench.sql`, on SQLite in a tight
//! loop over `benches/limit/posting.sqlite.sql`. These tests capture the
//! statements the posting path sends (diesel's instrumentation, on the
//! connection `idempotency::run` and `ledger::post::post` run on, exactly as
//! `POST /api/v1/acquisitions` and `/releases` call them) and fail when they
//! differ from the scripts, so the limit cannot silently measure something
//! else than the code.

use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::Connection;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(limit_script_matches_the_posting_path);

/// Records the SQL text (without bind values) of every statement sent.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds:").next().unwrap_or_default();
            self.0.lock().unwrap().push(sql.trim().to_string());
        }
    }
}

/// The statements of one posting kind as the code sends them.
fn capture(url: &str, kind: reserve::ledger::model::EntryKind, n: usize) -> Vec<String> {
    use reserve::ledger::dto::MovementRequest;
    let mut conn = reserve::db::open(&reserve::db::DatabaseUrl::parse(url).unwrap()).unwrap();
    let recorder = Recorder::default();
    conn.set_instrumentation(recorder.clone());
    let body: MovementRequest = serde_json::from_value(crate::helpers::movement("NV1", "Nd", "1"))
        .expect("a movement body");
    let settings = crate::helpers::test_settings(url).ledger;
    let in_flight = reserve::idempotency::InFlight::default();
    let legs = body.into_legs(kind, reserve::db::types::now()).unwrap();
    let key = format!("limit-capture-{n}");
    let stored = reserve::idempotency::run(
        &mut conn,
        &in_flight,
        "limit-capture",
        &key,
        "hash",
        StatusCode::CREATED,
        |c| {
            let posting = reserve::ledger::post::Posting {
                actor: "limit-capture",
                idempotency_key: &key,
                legs,
                order: None,
            };
            reserve::ledger::post::post(c, &settings, posting).map(|r| r.len())
        },
    )
    .expect("the posting succeeds");
    assert_eq!(stored.status, 201, "{}", stored.body);
    let captured = recorder.0.lock().unwrap().clone();
    captured
}

async fn limit_script_matches_the_posting_path(backend: Backend) {
    use reserve::ledger::model::EntryKind;
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    // Steady state, as in the benchmark: the stockpile exists and holds
    // stock, and the depot has shipped today already.
    app.acquire("NV1", "Nd", "50").await.expect(201);
    app.release("NV1", "Nd", "1").await.expect(201);
    let url = app.db.url().to_string();
    let (acquisition, release) = actix_web::rt::task::spawn_blocking(move || {
        (
            capture(&url, EntryKind::Acquisition, 1),
            capture(&url, EntryKind::Release, 2),
        )
    })
    .await
    .unwrap();
    let (file, placeholder) = match backend {
        Backend::Sqlite => ("benches/limit/posting.sqlite.sql", Placeholder::Question),
        Backend::Postgres => ("benches/limit/posting.pgbench.sql", Placeholder::Dollar),
    };
    let script = std::fs::read_to_string(file).expect("the limit script");
    let (script_acq, script_rel) = reserve_limit_script::branches(&script, placeholder);
    let branches = [
        ("acquisition branch (\\if)", script_acq, acquisition),
        ("release branch (\\else)", script_rel, release),
    ];
    for (branch, script, code) in branches {
        assert_eq!(
            script,
            code,
            "{file}: the {branch} no longer matches what the posting path sends; \
             update it to these statements:\n{}",
            code.join(";\n")
        );
    }
}

use reserve_limit_script::Placeholder;

#[path = "../../benches/limit/script.rs"]
mod reserve_limit_script;
