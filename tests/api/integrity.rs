//! What the outside checks of the foundation broke: edits behind the service's
//! back that verification must name, inputs that made the checked value differ
//! from the stored one, sums past `i64`, and the idempotency replay window.

use diesel::connection::SimpleConnection;
use serde_json::{json, Value};

use crate::helpers::{movement, spawn_app, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    relabelling_a_stockpile_is_caught_and_named,
    moving_a_stockpile_to_another_depot_is_caught,
    a_closed_depot_holding_stock_is_caught,
    outflows_over_the_limit_in_force_are_caught,
    an_entry_posted_after_a_period_lock_but_dated_before_it_is_caught,
    a_leap_second_is_refused_with_the_field_named,
    summary_totals_past_i64_stay_exact,
    undated_postings_occur_when_they_are_recorded,
    a_release_of_a_grade_never_held_says_so,
    expired_idempotency_records_are_purged,
    an_outside_tool_recomputes_every_hash_from_the_export,
    ledger_balances_rows_edited_deleted_or_added_are_caught,
);

/// A raw connection to the app's database, as an attacker with file or
/// superuser access would have.
fn raw(app: &TestApp) -> reserve::db::DbConn {
    reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap()
}

/// `reserve verify`'s report: the CLI process must name the same first
/// problem as the API.
fn cli_verify(app: &TestApp) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reserve"))
        .args(["--database-url", app.db.url(), "verify"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reserve");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    })
}

fn problem(v: &Value) -> String {
    v["first_problem"]["problem"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

async fn stockpile_id(app: &TestApp, depot: &str, element: &str) -> i64 {
    let r = app
        .get(
            &format!("/api/v1/stockpiles?depot={depot}&element={element}"),
            &app.viewer,
        )
        .await
        .expect(200);
    r.body["items"][0]["id"].as_i64().unwrap()
}

async fn relabelling_a_stockpile_is_caught_and_named(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Nd", "10").await.expect(201);
    app.acquire("NV1", "Dy", "5").await.expect(201);
    let nd = stockpile_id(&app, "NV1", "Nd").await;
    assert_eq!(app.verify_both_ways().await["ok"], true);
    let mut conn = raw(&app);
    // No trigger guards the stockpile row: each edit needs nothing dropped.
    for (edit, undo) in [
        ("element = 'Lu'", "element = 'Nd'"),
        ("grade = '99.9'", "grade = '99.5'"),
        ("form = 'metal'", "form = 'oxide'"),
    ] {
        conn.batch_execute(&format!("UPDATE stockpiles SET {edit} WHERE id = {nd}"))
            .unwrap();
        let v = app.verify_both_ways().await;
        assert_eq!(v["ok"], false, "{edit}: {v}");
        assert_eq!(v["first_problem"]["stockpile_id"], nd, "{edit}: {v}");
        assert_eq!(
            v["first_problem"]["sequence"], 1,
            "the first entry of it: {v}"
        );
        assert!(problem(&v).contains("identity"), "{edit}: {v}");
        conn.batch_execute(&format!("UPDATE stockpiles SET {undo} WHERE id = {nd}"))
            .unwrap();
        assert_eq!(app.verify_both_ways().await["ok"], true, "undone: {edit}");
    }
    app.stop().await;
}

async fn moving_a_stockpile_to_another_depot_is_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.create_depot("TX2", "1000", "1000").await;
    app.acquire("NV1", "Tb", "10").await.expect(201);
    let tb = stockpile_id(&app, "NV1", "Tb").await;
    let mut conn = raw(&app);
    // Move the stockpile and fix both depots' totals so the sums still agree.
    conn.batch_execute(&format!(
        "UPDATE depots SET on_hand_g = 0 WHERE code = 'NV1';
         UPDATE depots SET on_hand_g = 10000 WHERE code = 'TX2';
         UPDATE stockpiles SET depot_id = (SELECT id FROM depots WHERE code = 'TX2') WHERE id = {tb};"
    ))
    .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["stockpile_id"], tb, "{v}");
    assert!(
        problem(&v).contains("at TX2"),
        "names where it now claims to be: {v}"
    );
    app.stop().await;
}

async fn a_closed_depot_holding_stock_is_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    let depot = app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Nd", "10").await.expect(201);
    raw(&app)
        .batch_execute("UPDATE depots SET status = 'closed' WHERE code = 'NV1'")
        .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["depot_id"], depot["id"], "{v}");
    assert!(problem(&v).contains("closed"), "{v}");
    app.stop().await;
}

/// Outflows are judged by the limit in force when the day's last one was
/// posted; a version stamped before them that the postings never saw (as a
/// leap second stored on the next day once produced) is caught.
async fn outflows_over_the_limit_in_force_are_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    let depot = app.create_depot("NV1", "1000", "100").await;
    app.acquire("NV1", "Nd", "100").await.expect(201);
    app.release("NV1", "Nd", "60").await.expect(201);
    assert_eq!(app.verify_both_ways().await["ok"], true);
    // Lowering the limit through the API afterwards is no violation: the
    // release was within the limit in force when it was posted.
    app.client
        .patch(app.url("/api/v1/depots/NV1"))
        .insert_header(("Authorization", format!("Bearer {}", app.admin)))
        .insert_header(("If-Match", "*"))
        .send_json(&json!({"max_drawdown_kg_per_day": "10"}))
        .await
        .unwrap();
    assert_eq!(
        app.verify_both_ways().await["ok"],
        true,
        "{}",
        app.verify().await
    );
    // A forged history saying 10 kg/day held since before the release is.
    let id = depot["id"].as_i64().unwrap();
    raw(&app)
        .batch_execute(&format!(
            "INSERT INTO depot_history (depot_id, version, status, capacity_g, max_drawdown_g_per_day, changed_at, changed_by)
             VALUES ({id}, 0, 'active', 1000000, 10000, '2000-01-01 00:00:00', 'forger')"
        ))
        .unwrap();
    raw(&app)
        .batch_execute(&match backend {
            Backend::Postgres => format!(
                "ALTER TABLE depot_history DISABLE TRIGGER depot_history_no_update;
                 DELETE FROM depot_history WHERE depot_id = {id} AND version > 0"
            ),
            Backend::Sqlite => format!(
                "DROP TRIGGER depot_history_no_delete;
                 DELETE FROM depot_history WHERE depot_id = {id} AND version > 0"
            ),
        })
        .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["depot_id"], id, "{v}");
    assert!(problem(&v).contains("drawdown limit"), "{v}");
    app.stop().await;
}

async fn an_entry_posted_after_a_period_lock_but_dated_before_it_is_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Nd", "1").await.expect(201);
    let mut early = movement("NV1", "Nd", "5");
    early["occurred_at"] = json!((chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339());
    app.post_new("/api/v1/acquisitions", &app.operator, &early)
        .await
        .expect(201);
    let lock_at = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    app.post_new(
        "/api/v1/period-locks",
        &app.admin,
        &json!({"locked_before": lock_at, "reason": "month end"}),
    )
    .await
    .expect(201);
    assert_eq!(
        app.verify_both_ways().await["ok"],
        true,
        "entry 2 predates the lock"
    );
    // Rewrite history so the lock was set after entry 1 only: entry 2, dated
    // before the lock, was then posted into a closed period.
    raw(&app)
        .batch_execute("UPDATE period_locks SET after_sequence = 1")
        .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["sequence"], 2, "{v}");
    assert!(problem(&v).contains("closed"), "{v}");
    app.stop().await;
}

async fn a_leap_second_is_refused_with_the_field_named(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "10").await;
    app.acquire("NV1", "Nd", "100").await.expect(201);
    let mut body = movement("NV1", "Nd", "10");
    body["occurred_at"] = json!("2026-11-28T23:59:60.1Z");
    let r = app
        .post_new("/api/v1/releases", &app.operator, &body)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["occurred_at"]);
    assert!(r.text.contains("leap second"), "{}", r.text);
    app.stop().await;
}

async fn summary_totals_past_i64_stay_exact(backend: Backend) {
    let app = spawn_app(backend).await;
    // 10,000 depots of 999,999,999,999.999 kg: 9.99e18 g in all, past i64.
    let capacity_g: i64 = 999_999_999_999_999;
    let rows = 10_000i64;
    let mut conn = raw(&app);
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO depots (code, name, region, status, capacity_g, max_drawdown_g_per_day, on_hand_g, version, created_at, updated_at)
             SELECT 'X' || g, 'big', 'US', 'active', {capacity_g}, 0, 0, 1, now(), now() FROM generate_series(1, {rows}) g"
        ),
        Backend::Sqlite => format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {rows})
             INSERT INTO depots (code, name, region, status, capacity_g, max_drawdown_g_per_day, on_hand_g, version, created_at, updated_at)
             SELECT 'X' || n, 'big', 'US', 'active', {capacity_g}, 0, 0, 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM g"
        ),
    };
    conn.batch_execute(&sql).unwrap();
    let r = app.get("/api/v1/summary", &app.viewer).await.expect(200);
    let total = capacity_g as i128 * rows as i128;
    let expected = format!("{}.{:03}", total / 1000, total % 1000);
    assert_eq!(r.body["totals"]["capacity_kg"], expected.as_str());
    assert_eq!(r.body["totals"]["utilisation_pct"], "0.00");
    app.stop().await;
}

async fn undated_postings_occur_when_they_are_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for _ in 0..5 {
        app.acquire("NV1", "Nd", "1").await.expect(201);
    }
    let r = app
        .get("/api/v1/ledger?order=asc", &app.auditor)
        .await
        .expect(200);
    for e in r.body["items"].as_array().unwrap() {
        assert_eq!(e["occurred_at"], e["recorded_at"], "one instant: {e}");
    }
    app.stop().await;
}

async fn a_release_of_a_grade_never_held_says_so(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Nd", "10").await.expect(201);
    let mut body = movement("NV1", "Nd", "1");
    body["grade"] = json!("99.9");
    let r = app
        .post_new("/api/v1/releases", &app.operator, &body)
        .await
        .expect(409);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("no stockpile of Nd oxide grade 99.9 at NV1"),
        "{}",
        r.text
    );
    app.stop().await;
}

async fn expired_idempotency_records_are_purged(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let body = movement("NV1", "Nd", "1");
    app.post(
        "/api/v1/acquisitions",
        &app.operator,
        Some("old-key"),
        &body,
    )
    .await
    .expect(201);
    app.post(
        "/api/v1/acquisitions",
        &app.operator,
        Some("new-key"),
        &body,
    )
    .await
    .expect(201);
    let mut conn = raw(&app);
    conn.batch_execute(
        "UPDATE idempotency_records SET created_at = '2000-01-01 00:00:00' WHERE idempotency_key = 'old-key'",
    )
    .unwrap();
    let purged =
        reserve::idempotency::purge_expired(&mut conn, chrono::Duration::days(30)).unwrap();
    assert_eq!(purged, 1);
    // Within the window the key replays; past it, the same key posts anew.
    let again = app
        .post(
            "/api/v1/acquisitions",
            &app.operator,
            Some("new-key"),
            &body,
        )
        .await
        .expect(201);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    let anew = app
        .post(
            "/api/v1/acquisitions",
            &app.operator,
            Some("old-key"),
            &body,
        )
        .await
        .expect(201);
    assert_eq!(anew.header("idempotent-replayed"), None);
    assert_eq!(app.on_hand("NV1", "Nd").await.as_deref(), Some("3.000"));
    app.stop().await;
}

/// `docs/chain.md`, implemented again from the document alone over what the
/// API exports: every hash must come out the same.
async fn an_outside_tool_recomputes_every_hash_from_the_export(backend: Backend) {
    use sha2::{Digest, Sha256};
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.create_depot("TX2", "1000", "1000").await;
    let mut priced = movement("NV1", "Nd", "10.5");
    priced["unit_price"] = json!("81.25");
    priced["currency"] = json!("USD");
    priced["origin_country"] = json!("AU");
    priced["note"] = json!("first lot");
    app.post_new("/api/v1/acquisitions", &app.operator, &priced)
        .await
        .expect(201);
    app.release("NV1", "Nd", "0.5").await.expect(201);
    app.post_new(
        "/api/v1/transfers",
        &app.operator,
        &json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "2"}),
    )
    .await
    .expect(201);
    let r = app
        .get("/api/v1/ledger?order=asc", &app.auditor)
        .await
        .expect(200);
    let entries = r.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    fn put(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(b);
            }
            None => out.extend(u32::MAX.to_be_bytes()),
        }
    }
    let micros = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
            .unwrap()
            .timestamp_micros()
            .to_be_bytes()
    };
    let grams = |v: &Value| crate::helpers::grams(v.as_str().unwrap()).to_be_bytes();
    let text = |v: &Value| v.as_str().map(|s| s.as_bytes().to_vec());
    let mut prev: std::collections::BTreeMap<i64, String> = Default::default();
    for e in entries {
        let mut out = Vec::new();
        put(&mut out, Some(b"reserve-ledger-entry-v2"));
        put(
            &mut out,
            Some(&e["sequence"].as_i64().unwrap().to_be_bytes()),
        );
        put(
            &mut out,
            Some(&e["stockpile_id"].as_i64().unwrap().to_be_bytes()),
        );
        for f in ["depot", "element", "form", "grade", "kind"] {
            put(&mut out, text(&e[f]).as_deref());
        }
        put(&mut out, Some(&grams(&e["quantity_kg"])));
        put(&mut out, Some(&grams(&e["balance_after_kg"])));
        put(&mut out, Some(&micros(&e["occurred_at"])));
        put(&mut out, Some(&micros(&e["recorded_at"])));
        put(&mut out, text(&e["actor"]).as_deref());
        for f in ["reference", "counterparty", "origin_country"] {
            put(&mut out, text(&e[f]).as_deref());
        }
        let price = e["unit_price"].as_str().map(|p| {
            let (i, f) = p.split_once('.').unwrap_or((p, ""));
            (i.parse::<i64>().unwrap() * 1_000_000 + format!("{f:0<6}").parse::<i64>().unwrap())
                .to_be_bytes()
        });
        put(&mut out, price.as_ref().map(|p| p.as_slice()));
        for f in ["currency", "note", "idempotency_key", "movement_id"] {
            put(&mut out, text(&e[f]).as_deref());
        }
        let order = e["order_id"].as_i64().map(i64::to_be_bytes);
        put(&mut out, order.as_ref().map(|o| o.as_slice()));
        let stockpile = e["stockpile_id"].as_i64().unwrap();
        let prev_hash = prev
            .get(&stockpile)
            .cloned()
            .unwrap_or_else(|| "0".repeat(64));
        assert_eq!(e["prev_hash"], prev_hash.as_str());
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(&out);
        let hash = hex::encode(h.finalize());
        assert_eq!(e["hash"], hash.as_str(), "entry {}", e["sequence"]);
        prev.insert(stockpile, hash);
    }
    app.stop().await;
}

/// `ledger_balances` (what `balance?as_of=` reads) must hold one row per
/// entry with the balance, count and newest sequence as of it. Nd's entries
/// come in date order (checked as the pages stream); Tb has a back-dated
/// entry, whose rows are recomputed with window functions.
async fn ledger_balances_rows_edited_deleted_or_added_are_caught(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for kg in ["1", "2", "3"] {
        app.acquire("NV1", "Nd", kg).await.expect(201);
    }
    app.acquire("NV1", "Tb", "10").await.expect(201);
    let mut late = movement("NV1", "Tb", "5");
    late["occurred_at"] = json!((chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339());
    app.post_new("/api/v1/acquisitions", &app.operator, &late)
        .await
        .expect(201);
    let (nd, tb) = (
        stockpile_id(&app, "NV1", "Nd").await,
        stockpile_id(&app, "NV1", "Tb").await,
    );
    assert_eq!(
        app.verify_both_ways().await["ok"],
        true,
        "untouched, back-dated or not"
    );
    let mut conn = raw(&app);
    let caught = |v: &Value, sequence: i64, stockpile: i64, says: &str| {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["first_problem"]["kind"], "balances_mismatch", "{v}");
        assert_eq!(v["first_problem"]["sequence"], sequence, "{v}");
        assert_eq!(v["first_problem"]["stockpile_id"], stockpile, "{v}");
        assert!(problem(v).contains(says), "{v}");
        let cli = cli_verify(&app);
        assert_eq!(cli["first_problem"], v["first_problem"], "{cli}");
    };
    let edits = [
        // An edited balance, in date order and behind a back-dated entry.
        (
            "UPDATE ledger_balances SET balance_g = balance_g + 1 WHERE sequence = 2",
            "UPDATE ledger_balances SET balance_g = balance_g - 1 WHERE sequence = 2",
            2,
            nd,
            "as of this entry",
        ),
        (
            "UPDATE ledger_balances SET max_sequence = 4 WHERE sequence = 4",
            "UPDATE ledger_balances SET max_sequence = 5 WHERE sequence = 4",
            4,
            tb,
            "newest sequence 4",
        ),
        (
            "UPDATE ledger_balances SET entries = 1 WHERE sequence = 3",
            "UPDATE ledger_balances SET entries = 3 WHERE sequence = 3",
            3,
            nd,
            "1 entries",
        ),
    ];
    for (edit, undo, sequence, stockpile, says) in edits {
        conn.batch_execute(edit).unwrap();
        caught(&app.verify_both_ways().await, sequence, stockpile, says);
        conn.batch_execute(undo).unwrap();
        assert_eq!(app.verify_both_ways().await["ok"], true, "after {undo}");
    }
    // A deleted row, then a stray one.
    conn.batch_execute(
        "CREATE TABLE saved_row AS SELECT * FROM ledger_balances WHERE sequence = 3;
         DELETE FROM ledger_balances WHERE sequence = 3",
    )
    .unwrap();
    caught(&app.verify_both_ways().await, 3, nd, "no row");
    conn.batch_execute("INSERT INTO ledger_balances SELECT * FROM saved_row")
        .unwrap();
    assert_eq!(app.verify_both_ways().await["ok"], true);
    conn.batch_execute(&format!(
        "INSERT INTO ledger_balances (stockpile_id, occurred_at, sequence, balance_g, entries, max_sequence) \
         VALUES ({nd}, '2020-01-01 00:00:00', 99, 0, 0, 0)"
    ))
    .unwrap();
    caught(
        &app.verify_both_ways().await,
        99,
        nd,
        "6 rows for 5 entries",
    );
    conn.batch_execute("DELETE FROM ledger_balances WHERE sequence = 99")
        .unwrap();
    assert_eq!(app.verify_both_ways().await["ok"], true);
    // Edits that keep the row count and the sum of the balances: two rows'
    // balances swapped, then a row moved to another stockpile.
    conn.batch_execute(
        "CREATE TABLE swap AS SELECT sequence, balance_g FROM ledger_balances WHERE sequence IN (1, 2);
         UPDATE ledger_balances SET balance_g = (SELECT s.balance_g FROM swap s
           WHERE s.sequence = 3 - ledger_balances.sequence) WHERE sequence IN (1, 2)",
    )
    .unwrap();
    caught(&app.verify_both_ways().await, 1, nd, "as of this entry");
    conn.batch_execute(
        "UPDATE ledger_balances SET balance_g = (SELECT s.balance_g FROM swap s
           WHERE s.sequence = ledger_balances.sequence) WHERE sequence IN (1, 2)",
    )
    .unwrap();
    assert_eq!(app.verify_both_ways().await["ok"], true);
    conn.batch_execute(&format!(
        "UPDATE ledger_balances SET stockpile_id = {tb} WHERE sequence = 3"
    ))
    .unwrap();
    caught(&app.verify_both_ways().await, 3, nd, "no row");
    conn.batch_execute(&format!(
        "UPDATE ledger_balances SET stockpile_id = {nd} WHERE sequence = 3"
    ))
    .unwrap();
    assert_eq!(app.verify_both_ways().await["ok"], true);
    app.stop().await;
}
