//! Ledger writes: invariants 1–7 of DESIGN.md, on both backends.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::{grams, movement, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(
    concurrent_releases_never_overdraw,
    concurrent_acquisitions_never_exceed_capacity,
    transfer_lands_both_entries_or_neither,
    idempotent_retry_replays_and_writes_nothing,
    reused_key_with_other_body_is_refused,
    sub_gram_precision_is_refused,
    batch_is_all_or_nothing,
    a_batch_over_many_stockpiles_checks_each,
    balance_as_of_follows_occurred_at,
    backdated_outflow_cannot_spend_later_stock,
    period_lock_closes_the_books,
    drawdown_rate_is_enforced,
    suspended_depot_takes_no_movements,
    ledger_cursor_never_skips_under_concurrent_writes,
    verification_finds_the_first_tampered_entry,
);

async fn concurrent_releases_never_overdraw(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    app.acquire("NV1", "Nd", "100.000").await.expect(201);
    // 32 writers each try to release 5 kg from 100 kg: at most 20 can succeed.
    let attempts = (0..32).map(|i| {
        let app = &app;
        async move { (i, app.release("NV1", "Nd", "5").await) }
    });
    let results = join_all(attempts).await;
    let mut acknowledged = 0i64;
    for (_, r) in &results {
        match r.status.as_u16() {
            201 => acknowledged += 5_000,
            409 => assert_eq!(r.body["code"], "insufficient-stock", "{}", r.text),
            other => panic!("unexpected status {other}: {}", r.text),
        }
    }
    assert_eq!(
        acknowledged, 100_000,
        "exactly the stock on hand was released"
    );
    let on_hand = app.on_hand("NV1", "Nd").await.unwrap();
    assert_eq!(grams(&on_hand), 100_000 - acknowledged);
    // Every balance_after is the running sum in sequence order, never negative.
    let v = app.verify().await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["entries_checked"], 21);
    app.stop().await;
}

async fn concurrent_acquisitions_never_exceed_capacity(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "50", "100").await;
    let results = join_all((0..16).map(|i| {
        let app = &app;
        let element = if i % 2 == 0 { "Nd" } else { "Dy" };
        async move { app.acquire("NV1", element, "7").await }
    }))
    .await;
    let ok = results.iter().filter(|r| r.status.as_u16() == 201).count();
    for r in results.iter().filter(|r| r.status.as_u16() != 201) {
        assert_eq!(r.status.as_u16(), 409, "{}", r.text);
        assert_eq!(r.body["code"], "over-capacity");
        assert_eq!(r.body["capacity_kg"], "50.000");
    }
    assert_eq!(ok, 7, "7 × 7 kg fit in 50 kg, the 8th does not");
    let depot = app.get("/api/v1/depots/NV1", &app.viewer).await.expect(200);
    assert_eq!(depot.body["on_hand_kg"], "49.000");
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn transfer_lands_both_entries_or_neither(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.create_depot("TX2", "20", "1000").await;
    app.acquire("NV1", "Nd", "100").await.expect(201);

    let t = |kg: &str| json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": kg});
    let ok = app
        .post_new("/api/v1/transfers", &app.operator, &t("15"))
        .await
        .expect(201);
    let entries = ok.body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "transfer_out");
    assert_eq!(entries[0]["quantity_kg"], "-15.000");
    assert_eq!(entries[1]["kind"], "transfer_in");
    assert_eq!(entries[1]["quantity_kg"], "15.000");
    assert_eq!(entries[0]["movement_id"], entries[1]["movement_id"]);
    assert_eq!(
        entries[1]["sequence"].as_i64().unwrap(),
        entries[0]["sequence"].as_i64().unwrap() + 1
    );

    // Over the destination's capacity: the source must not lose anything.
    let before = app.ledger_count().await;
    let r = app
        .post_new("/api/v1/transfers", &app.operator, &t("10"))
        .await
        .expect(409);
    assert_eq!(r.body["code"], "over-capacity");
    // More than the source holds.
    let r = app
        .post_new("/api/v1/transfers", &app.operator, &t("500"))
        .await
        .expect(409);
    assert_eq!(r.body["code"], "insufficient-stock");
    assert_eq!(r.body["available_kg"], "85.000");
    assert_eq!(
        app.ledger_count().await,
        before,
        "no half transfer was written"
    );
    assert_eq!(app.on_hand("NV1", "Nd").await.unwrap(), "85.000");
    assert_eq!(app.on_hand("TX2", "Nd").await.unwrap(), "15.000");
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn idempotent_retry_replays_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let body = movement("NV1", "Nd", "12.5");
    let first = app
        .post(
            "/api/v1/acquisitions",
            &app.operator,
            Some("retry-1"),
            &body,
        )
        .await
        .expect(201);
    assert!(first.header("idempotent-replayed").is_none());
    // Retries, sequential and concurrent: all answer the first response.
    let retries = join_all((0..8).map(|_| {
        app.post(
            "/api/v1/acquisitions",
            &app.operator,
            Some("retry-1"),
            &body,
        )
    }))
    .await;
    for r in retries {
        // A retry racing the first request's completion may see 409 in flight;
        // here the first has completed, so every retry is a replay.
        let r = r.expect(201);
        assert_eq!(r.header("idempotent-replayed").as_deref(), Some("true"));
        assert_eq!(
            r.body, first.body,
            "the replay is the first response, byte for byte"
        );
    }
    assert_eq!(app.ledger_count().await, 1);
    assert_eq!(app.on_hand("NV1", "Nd").await.unwrap(), "12.500");
    // Keys belong to their subject: another operator's identical key is a new request.
    let other = app
        .keys
        .mint(
            "olga-operator",
            &[reserve::auth::Role::Operator],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    app.post("/api/v1/acquisitions", &other, Some("retry-1"), &body)
        .await
        .expect(201);
    assert_eq!(app.on_hand("NV1", "Nd").await.unwrap(), "25.000");
    // A write without a key is refused.
    let r = app
        .post("/api/v1/acquisitions", &app.operator, None, &body)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["Idempotency-Key"]);
    app.stop().await;
}

async fn reused_key_with_other_body_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.post(
        "/api/v1/acquisitions",
        &app.operator,
        Some("k-1"),
        &movement("NV1", "Nd", "1"),
    )
    .await
    .expect(201);
    let r = app
        .post(
            "/api/v1/acquisitions",
            &app.operator,
            Some("k-1"),
            &movement("NV1", "Nd", "2"),
        )
        .await
        .expect(422);
    assert_eq!(r.body["code"], "idempotency-key-reused");
    // The same key on another endpoint is another request too.
    app.post(
        "/api/v1/releases",
        &app.operator,
        Some("k-1"),
        &movement("NV1", "Nd", "1"),
    )
    .await
    .expect(422);
    assert_eq!(app.on_hand("NV1", "Nd").await.unwrap(), "1.000");
    app.stop().await;
}

async fn sub_gram_precision_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for bad in ["0.0001", "1e3", "NaN", "-5", "-0", "1.2.3", "", " 1"] {
        let r = app.acquire("NV1", "Nd", bad).await.expect(422);
        assert_eq!(r.error_fields(), vec!["quantity_kg"], "{bad:?}: {}", r.text);
    }
    let r = app.acquire("NV1", "Nd", "0.0001").await;
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("does not round"));
    // A JSON number is refused too: quantities are decimal strings, never floats.
    let mut body = movement("NV1", "Nd", "1");
    body["quantity_kg"] = json!(1.5);
    let r = app
        .post_new("/api/v1/acquisitions", &app.operator, &body)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["quantity_kg"]);
    // Exactly one gram is fine, and kept exactly.
    let r = app.acquire("NV1", "Nd", "0.001").await.expect(201);
    assert_eq!(r.body["quantity_kg"], "0.001");
    assert_eq!(app.ledger_count().await, 1);
    app.stop().await;
}

async fn batch_is_all_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.create_depot("TX2", "1000", "1000").await;
    let item = |kind: &str, depot: &str, kg: &str| json!({"kind": kind, "depot": depot, "element": "Dy", "form": "oxide", "grade": "99.5", "quantity_kg": kg});
    let good = json!({"entries": [
        item("acquisition", "NV1", "50"),
        {"kind": "transfer", "from_depot": "NV1", "to_depot": "TX2", "element": "Dy", "form": "oxide", "grade": "99.5", "quantity_kg": "20"},
        item("release", "TX2", "5"),
    ]});
    let r = app
        .post_new("/api/v1/ledger/batch", &app.operator, &good)
        .await
        .expect(201);
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 4);
    // The last item fails: nothing of the batch may remain.
    let bad = json!({"entries": [item("acquisition", "NV1", "10"), item("release", "TX2", "999")]});
    let r = app
        .post_new("/api/v1/ledger/batch", &app.operator, &bad)
        .await
        .expect(409);
    assert_eq!(r.body["code"], "insufficient-stock");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("entries[1]."),
        "{}",
        r.text
    );
    assert_eq!(app.ledger_count().await, 4);
    assert_eq!(app.on_hand("NV1", "Dy").await.unwrap(), "30.000");
    // Validation names the item.
    let r = app
        .post_new(
            "/api/v1/ledger/batch",
            &app.operator,
            &json!({"entries": [item("acquisition", "NV1", "1"), item("teleport", "NV1", "1")]}),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["entries[1].kind"]);
    app.stop().await;
}

/// Over more than two stockpiles a batch takes their locks in two
/// statements (`lock_all` in `ledger::post`): each stockpile's own stock is
/// still checked, the refused one is named, and the heads and counts of all
/// move together.
async fn a_batch_over_many_stockpiles_checks_each(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for (element, kg) in [("Nd", "10"), ("Dy", "20"), ("Tb", "30"), ("Pr", "40")] {
        app.acquire("NV1", element, kg).await.expect(201);
    }
    let item = |kind: &str, element: &str, kg: &str| json!({"kind": kind, "depot": "NV1", "element": element, "form": "oxide", "grade": "99.5", "quantity_kg": kg});
    // Tb holds 30 kg: its release of 31 is refused, and nothing moves.
    let bad = json!({"entries": [
        item("release", "Nd", "1"),
        item("release", "Dy", "2"),
        item("release", "Tb", "31"),
        item("acquisition", "Pr", "4"),
    ]});
    let r = app
        .post_new("/api/v1/ledger/batch", &app.operator, &bad)
        .await
        .expect(409);
    assert_eq!(r.body["code"], "insufficient-stock", "{}", r.text);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("entries[2]."),
        "{}",
        r.text
    );
    assert_eq!(app.ledger_count().await, 4);
    assert_eq!(app.on_hand("NV1", "Tb").await.unwrap(), "30.000");
    // Two entries on one stockpile, three others: every balance lands.
    let good = json!({"entries": [
        item("release", "Nd", "1"),
        item("release", "Dy", "2"),
        item("release", "Tb", "30"),
        item("acquisition", "Pr", "4"),
        item("release", "Nd", "9"),
    ]});
    app.post_new("/api/v1/ledger/batch", &app.operator, &good)
        .await
        .expect(201);
    for (element, kg) in [
        ("Nd", "0.000"),
        ("Dy", "18.000"),
        ("Tb", "0.000"),
        ("Pr", "44.000"),
    ] {
        assert_eq!(app.on_hand("NV1", element).await.unwrap(), kg, "{element}");
    }
    let report = app.verify_both_ways().await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["entries_checked"], 9, "{report}");
    app.stop().await;
}

async fn balance_as_of_follows_occurred_at(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let at = |kg: &str, t: &str| {
        let mut b = movement("NV1", "Tb", kg);
        b["occurred_at"] = json!(t);
        b
    };
    let e = app
        .post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &at("10", "2026-01-10T00:00:00Z"),
        )
        .await
        .expect(201);
    let id = e.body["stockpile_id"].as_i64().unwrap();
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &at("5", "2026-02-10T00:00:00Z"),
    )
    .await
    .expect(201);
    app.post_new(
        "/api/v1/releases",
        &app.operator,
        &at("3", "2026-03-10T00:00:00Z"),
    )
    .await
    .expect(201);
    // A late report of a January receipt, recorded now.
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &at("1", "2026-01-20T00:00:00Z"),
    )
    .await
    .expect(201);
    // A batch dated out of order, one leg on an instant already taken: the
    // later leg goes first, the earlier one is back-dated behind it.
    let batch_leg = |kg: &str, t: &str| {
        let mut b = at(kg, t);
        b["kind"] = json!("acquisition");
        b
    };
    app.post_new(
        "/api/v1/ledger/batch",
        &app.operator,
        &json!({"entries": [
            batch_leg("2", "2026-02-20T00:00:00Z"),
            batch_leg("4", "2026-01-10T00:00:00Z"),
        ]}),
    )
    .await
    .expect(201);
    // Sequences: 1 (Jan 10), 2 (Feb 10), 3 (Mar 10), 4 (Jan 20), 5 (Feb 20),
    // 6 (Jan 10, same instant as 1).
    for (as_of, expected, counted, last) in [
        ("2026-01-01T00:00:00Z", "0.000", 0, None),
        ("2026-01-10T00:00:00Z", "14.000", 2, Some(6)),
        ("2026-01-31T00:00:00Z", "15.000", 3, Some(6)),
        ("2026-02-15T00:00:00Z", "20.000", 4, Some(6)),
        ("2026-02-28T00:00:00Z", "22.000", 5, Some(6)),
        ("2026-03-10T00:00:01Z", "19.000", 6, Some(6)),
    ] {
        let r = app
            .get(
                &format!("/api/v1/stockpiles/{id}/balance?as_of={as_of}"),
                &app.viewer,
            )
            .await
            .expect(200);
        assert_eq!(r.body["on_hand_kg"], expected, "as of {as_of}");
        assert_eq!(r.body["entries_counted"], counted, "as of {as_of}");
        assert_eq!(r.body["last_sequence"], json!(last), "as of {as_of}");
    }
    let now = app
        .get(&format!("/api/v1/stockpiles/{id}/balance"), &app.viewer)
        .await
        .expect(200);
    assert_eq!(now.body["on_hand_kg"], "19.000");
    app.get(
        &format!("/api/v1/stockpiles/{id}/balance?as_of=yesterday"),
        &app.viewer,
    )
    .await
    .expect(422);
    app.get("/api/v1/stockpiles/999999/balance", &app.viewer)
        .await
        .expect(404);
    // An entry dated in the future is refused.
    let r = app
        .post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &at("1", "2099-01-01T00:00:00Z"),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["occurred_at"]);
    app.stop().await;
}

async fn backdated_outflow_cannot_spend_later_stock(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let at = |kg: &str, t: &str| {
        let mut b = movement("NV1", "Nd", kg);
        b["occurred_at"] = json!(t);
        b
    };
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &at("10", "2026-06-01T12:00:00Z"),
    )
    .await
    .expect(201);
    let r = app
        .post_new(
            "/api/v1/releases",
            &app.operator,
            &at("5", "2026-06-01T09:00:00Z"),
        )
        .await
        .expect(409);
    assert_eq!(r.body["code"], "backdated-below-zero");
    app.post_new(
        "/api/v1/releases",
        &app.operator,
        &at("5", "2026-06-01T13:00:00Z"),
    )
    .await
    .expect(201);
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn period_lock_closes_the_books(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let lock = json!({"locked_before": "2026-07-01T00:00:00Z", "reason": "FY2026 Q3 audit"});
    app.post_new("/api/v1/period-locks", &app.operator, &lock)
        .await
        .expect(403);
    app.post_new("/api/v1/period-locks", &app.admin, &lock)
        .await
        .expect(201);
    let mut early = movement("NV1", "Nd", "1");
    early["occurred_at"] = json!("2026-06-30T23:59:59Z");
    let r = app
        .post_new("/api/v1/acquisitions", &app.operator, &early)
        .await
        .expect(409);
    assert_eq!(r.body["code"], "period-closed");
    early["occurred_at"] = json!("2026-07-01T00:00:00Z");
    app.post_new("/api/v1/acquisitions", &app.operator, &early)
        .await
        .expect(201);
    // Locks only move forward.
    let back = json!({"locked_before": "2026-01-01T00:00:00Z", "reason": "reopen"});
    app.post_new("/api/v1/period-locks", &app.admin, &back)
        .await
        .expect(409);
    let list = app
        .get("/api/v1/period-locks", &app.viewer)
        .await
        .expect(200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn drawdown_rate_is_enforced(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "30").await;
    app.create_depot("TX2", "1000", "30").await;
    app.acquire("NV1", "Nd", "100").await.expect(201);
    app.release("NV1", "Nd", "20").await.expect(201);
    let t = json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "10.001"});
    let r = app
        .post_new("/api/v1/transfers", &app.operator, &t)
        .await
        .expect(409);
    assert_eq!(r.body["code"], "drawdown-rate-exceeded");
    assert_eq!(r.body["shipped_kg"], "20.000");
    app.release("NV1", "Nd", "10").await.expect(201);
    // Receipts do not count against the drawdown rate.
    app.acquire("NV1", "Nd", "500").await.expect(201);
    app.stop().await;
}

async fn suspended_depot_takes_no_movements(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Nd", "10").await.expect(201);
    app.post_new("/api/v1/depots/NV1/suspend", &app.admin, &json!(null))
        .await
        .expect(200);
    let r = app.acquire("NV1", "Nd", "1").await.expect(409);
    assert_eq!(r.body["code"], "depot-not-active");
    app.release("NV1", "Nd", "1").await.expect(409);
    app.post_new("/api/v1/depots/NV1/close", &app.admin, &json!(null))
        .await
        .expect(409);
    app.post_new("/api/v1/depots/NV1/activate", &app.admin, &json!(null))
        .await
        .expect(200);
    app.release("NV1", "Nd", "10").await.expect(201);
    let closed = app
        .post_new("/api/v1/depots/NV1/close", &app.admin, &json!(null))
        .await
        .expect(200);
    assert_eq!(closed.body["status"], "closed");
    app.post_new("/api/v1/depots/NV1/activate", &app.admin, &json!(null))
        .await
        .expect(409);
    app.stop().await;
}

async fn ledger_cursor_never_skips_under_concurrent_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000000", "1000000").await;
    app.create_depot("TX2", "1000000", "1000000").await;
    // Writers and a reader run together; the reader pages oldest-first.
    let writers = join_all((0..60).map(|i| {
        let app = &app;
        async move {
            let depot = if i % 2 == 0 { "NV1" } else { "TX2" };
            app.acquire(depot, "Ce", "1").await.expect(201);
        }
    }));
    // It follows the ledger as a client would: on the last page (`next_cursor`
    // null) it keeps the cursor that fetched that page and asks again, skipping
    // the sequences it already has.
    let reader = async {
        let mut seen: Vec<i64> = Vec::new();
        let mut cursor = String::new();
        for _ in 0..400 {
            let r = app
                .get(
                    &format!("/api/v1/ledger?order=asc&limit=7&cursor={cursor}"),
                    &app.viewer,
                )
                .await
                .expect(200);
            for e in r.body["items"].as_array().unwrap() {
                let sequence = e["sequence"].as_i64().unwrap();
                if seen.last().is_none_or(|&last| sequence > last) {
                    seen.push(sequence);
                }
            }
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None if seen.len() >= 60 => break,
                None => actix_rt::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
        seen
    };
    let (_, seen) = futures_util::future::join(writers, reader).await;
    assert_eq!(
        seen,
        (1..=60).collect::<Vec<i64>>(),
        "every sequence seen once, in order, with no gap"
    );
    app.stop().await;
}

async fn verification_finds_the_first_tampered_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for kg in ["1", "2", "3"] {
        app.acquire("NV1", "Sm", kg).await.expect(201);
    }
    assert_eq!(app.verify_both_ways().await["ok"], true);
    // An attacker with database access disables the append-only guard and edits
    // entry 2. The API offers no way to do this; the chain must expose it.
    let mut conn =
        reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap();
    use diesel::connection::SimpleConnection;
    let edit =
        "UPDATE ledger_entries SET quantity_g = 5000, balance_after_g = 6000 WHERE sequence = 2";
    assert!(
        conn.batch_execute(edit).is_err(),
        "the append-only trigger refuses updates"
    );
    assert!(
        conn.batch_execute("DELETE FROM ledger_entries WHERE sequence = 3")
            .is_err(),
        "and deletes"
    );
    let drop = match backend {
        Backend::Postgres => "DROP TRIGGER ledger_entries_no_update ON ledger_entries",
        Backend::Sqlite => "DROP TRIGGER ledger_entries_no_update",
    };
    conn.batch_execute(drop).unwrap();
    conn.batch_execute(edit).unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_problem"]["sequence"], 2, "{v}");
    assert_eq!(v["verified_through"], 1, "{v}");
    assert_eq!(v["last_sequence"], 3, "{v}");
    // Removing the edited entry instead leaves a hole, found at the next one.
    let drop_delete_guard = match backend {
        Backend::Postgres => None, // the same trigger guarded deletes
        Backend::Sqlite => Some("DROP TRIGGER ledger_entries_no_delete"),
    };
    if let Some(sql) = drop_delete_guard {
        conn.batch_execute(sql).unwrap();
    }
    conn.batch_execute("DELETE FROM ledger_entries WHERE sequence = 2")
        .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_problem"]["sequence"], 3, "{v}");
    assert!(
        v["first_problem"]["problem"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{v}"
    );
    assert_eq!(v["verified_through"], 1, "{v}");
    app.stop().await;
}
