//! Element policy (ETag/If-Match, every version kept, `as_of`), annual
//! ceilings and the reserve floor, as every posting path obeys them.

use chrono::{Duration, Utc};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{movement, spawn_app, Backend, Reply, TestApp};
use crate::on_both_backends;

on_both_backends!(
    policy_round_trip_keeps_every_version,
    a_ceiling_refuses_the_gram_over_even_through_a_batch,
    the_reserve_floor_holds_across_depots,
    concurrent_acquisitions_never_pass_a_ceiling,
    racing_policy_writers_with_one_etag_one_wins,
);

/// PUT with a bearer token and, when given, an `If-Match`.
async fn put(
    app: &TestApp,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: &Value,
) -> Reply {
    app.put(path, token, if_match, body).await
}

/// The fiscal year today falls in, with the default start month (October).
fn this_fiscal_year() -> i32 {
    reserve::orders::model::fiscal_year(Utc::now().date_naive(), 10)
}

fn policy(floor: Option<&str>) -> Value {
    json!({"reserve_floor_kg": floor, "consumption_kg_per_year": null,
           "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
           "test_sale_max_kg": null})
}

async fn policy_round_trip_keeps_every_version(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v1/elements/Nd/policy";
    let v1 = app
        .get("/api/v1/elements/nd/policy", &app.viewer)
        .await
        .expect(200);
    assert_eq!(v1.body["element"], "Nd");
    assert_eq!(v1.body["version"], 1);
    assert_eq!(
        v1.body["reserve_floor_kg"],
        Value::Null,
        "seeded without limits"
    );
    assert_eq!(v1.body["updated_by"], "migration");
    let etag1 = v1.header("etag").expect("ETag on GET");
    assert_eq!(etag1, "\"policy-Nd-v1\"");

    let body = json!({"reserve_floor_kg": "1000", "consumption_kg_per_year": "365000.5",
                      "limited_drawdown_max_kg": "250", "limited_drawdown_max_days": 60,
                      "test_sale_max_kg": null});
    put(&app, path, &app.viewer, Some(&etag1), &body)
        .await
        .expect(403);
    put(&app, path, &app.admin, None, &body).await.expect(428);
    let v2 = put(&app, path, &app.admin, Some(&etag1), &body)
        .await
        .expect(200);
    assert_eq!(v2.body["reserve_floor_kg"], "1000.000");
    assert_eq!(v2.body["consumption_kg_per_year"], "365000.500");
    assert_eq!(v2.body["limited_drawdown_max_kg"], "250.000");
    assert_eq!(v2.body["limited_drawdown_max_days"], 60);
    assert_eq!(v2.body["test_sale_max_kg"], Value::Null);
    assert_eq!(v2.body["version"], 2);
    assert_eq!(v2.body["updated_by"], "ada-admin");
    let etag2 = v2.header("etag").expect("ETag on PUT");
    assert_eq!(etag2, "\"policy-Nd-v2\"");

    // A stale ETag, or another element's, loses cleanly.
    let r = put(&app, path, &app.admin, Some(&etag1), &policy(Some("1")))
        .await
        .expect(412);
    assert!(
        r.body["detail"].as_str().unwrap().contains("version 2"),
        "{}",
        r.text
    );
    put(
        &app,
        path,
        &app.admin,
        Some("\"policy-Dy-v2\""),
        &policy(Some("1")),
    )
    .await
    .expect(412);
    put(
        &app,
        path,
        &app.admin,
        Some("\"depot-1-v2\""),
        &policy(Some("1")),
    )
    .await
    .expect(412);

    // A full replacement: unknown, missing and bad fields are named.
    let mut unknown = body.clone();
    unknown["reserve_floor"] = json!("5");
    let r = put(&app, path, &app.admin, Some(&etag2), &unknown)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["reserve_floor"]);
    let mut missing = body.clone();
    missing.as_object_mut().unwrap().remove("test_sale_max_kg");
    let r = put(&app, path, &app.admin, Some(&etag2), &missing)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["test_sale_max_kg"]);
    let mut bad = body.clone();
    bad["limited_drawdown_max_days"] = json!(0);
    bad["reserve_floor_kg"] = json!("1.0001");
    let r = put(&app, path, &app.admin, Some(&etag2), &bad)
        .await
        .expect(422);
    assert_eq!(
        r.error_fields(),
        vec!["reserve_floor_kg", "limited_drawdown_max_days"]
    );
    put(
        &app,
        "/api/v1/elements/Fe/policy",
        &app.admin,
        Some("*"),
        &body,
    )
    .await
    .expect(404);

    // `*` replaces whatever is current.
    let v3 = put(&app, path, &app.admin, Some("*"), &policy(Some("2000")))
        .await
        .expect(200);
    assert_eq!(v3.body["version"], 3);
    assert_eq!(v3.body["limited_drawdown_max_days"], Value::Null);
    assert_eq!(v3.header("etag").unwrap(), "\"policy-Nd-v3\"");

    // Every version is kept: `as_of` finds the one that held at an instant.
    let at = |t: &Value| format!("{path}?as_of={}", t.as_str().unwrap());
    let got = app
        .get(&at(&v2.body["updated_at"]), &app.viewer)
        .await
        .expect(200);
    assert_eq!(got.body["version"], 2);
    assert_eq!(got.body["reserve_floor_kg"], "1000.000");
    assert_eq!(got.body["limited_drawdown_max_days"], 60);
    assert_eq!(got.body["updated_by"], "ada-admin");
    assert_eq!(got.body["updated_at"], v2.body["updated_at"]);
    let just_before_v3 =
        chrono::DateTime::parse_from_rfc3339(v3.body["updated_at"].as_str().unwrap()).unwrap()
            - Duration::microseconds(1);
    let got = app
        .get(
            &format!(
                "{path}?as_of={}",
                just_before_v3.format("%Y-%m-%dT%H:%M:%S%.6fZ")
            ),
            &app.viewer,
        )
        .await
        .expect(200);
    assert_eq!(got.body["version"], 2);
    let got = app
        .get(&at(&v3.body["updated_at"]), &app.viewer)
        .await
        .expect(200);
    assert_eq!(got.body["version"], 3);
    assert_eq!(got.body["reserve_floor_kg"], "2000.000");
    let got = app
        .get(&format!("{path}?as_of=2026-01-01T00:00:00Z"), &app.viewer)
        .await
        .expect(200);
    assert_eq!(got.body["version"], 1);
    assert_eq!(got.body["reserve_floor_kg"], Value::Null);
    assert_eq!(got.header("etag").unwrap(), "\"policy-Nd-v1\"");
    app.get(&format!("{path}?as_of=2025-12-31T23:59:59Z"), &app.viewer)
        .await
        .expect(404);
    let r = app
        .get(&format!("{path}?as_of=yesterday"), &app.viewer)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["as_of"]);
    let now = app.get(path, &app.viewer).await.expect(200);
    assert_eq!(now.body["version"], 3);
    assert_eq!(now.header("etag").unwrap(), "\"policy-Nd-v3\"");
    // Other elements are untouched.
    let dy = app
        .get("/api/v1/elements/Dy/policy", &app.viewer)
        .await
        .expect(200);
    assert_eq!(dy.body["version"], 1);
    app.get("/api/v1/elements/Fe/policy", &app.viewer)
        .await
        .expect(404);
    app.stop().await;
}

/// Posts a loan out, then its return, straight through `ledger::post`: no
/// endpoint posts loans yet, and the point is what `post` itself enforces.
fn post_loan_round_trip(app: &TestApp, depot: &str, element: &str, grams: i64) {
    use reserve::db::types::{Grade, Grams};
    use reserve::depots::model::DepotCode;
    use reserve::elements::model::{ElementSymbol, Form};
    use reserve::ledger::model::{EntryDetails, EntryKind, Leg, StockpileKey};
    use reserve::ledger::post::{post, Posting};
    let leg = |kind: EntryKind, quantity: i64| Leg {
        key: StockpileKey {
            depot: DepotCode::parse(depot).unwrap(),
            element: ElementSymbol::parse(element).unwrap(),
            form: Form::Oxide,
            grade: Grade::parse("99.5").unwrap(),
        },
        kind,
        quantity: Grams(quantity),
        occurred_at: Utc::now(),
        occurred_at_given: false,
        details: EntryDetails::default(),
        field_prefix: String::new(),
    };
    let mut conn = app.state.pool.get().expect("connection");
    for (key, kind, quantity) in [
        ("loan-out", EntryKind::LoanOut, -grams),
        ("loan-back", EntryKind::LoanReturn, grams),
    ] {
        reserve::db::write_transaction(&mut conn, |c| {
            post(
                c,
                &app.state.settings.ledger,
                Posting {
                    actor: "test",
                    idempotency_key: key,
                    legs: vec![leg(kind, quantity)],
                    order: None,
                },
            )
        })
        .unwrap_or_else(|e| panic!("{key} is not held to a ceiling: {e:?}"));
    }
}

async fn a_ceiling_refuses_the_gram_over_even_through_a_batch(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    app.create_depot("TX2", "100000", "100000").await;
    let fy = this_fiscal_year();
    let path = format!("/api/v1/ceilings/Nd/{fy}");
    app.get(&path, &app.viewer).await.expect(404);
    let limits = json!({"acquire_max_kg": "1000", "dispose_max_kg": "100"});
    put(&app, &path, &app.operator, None, &limits)
        .await
        .expect(403);
    let r = put(
        &app,
        &format!("/api/v1/ceilings/Nd/{fy}"),
        &app.admin,
        None,
        &json!({"acquire_max_kg": "1000"}),
    )
    .await
    .expect(422);
    assert_eq!(r.error_fields(), vec!["dispose_max_kg"]);
    put(&app, "/api/v1/ceilings/Nd/1899", &app.admin, None, &limits)
        .await
        .expect(422);
    put(&app, "/api/v1/ceilings/Fe/2027", &app.admin, None, &limits)
        .await
        .expect(404);
    let c = put(&app, &path, &app.admin, None, &limits)
        .await
        .expect(200);
    assert_eq!(c.body["element"], "Nd");
    assert_eq!(c.body["fiscal_year"], fy);
    assert_eq!(c.body["acquire_max_kg"], "1000.000");
    assert_eq!(c.body["acquired_kg"], "0.000");
    assert_eq!(c.body["acquire_headroom_kg"], "1000.000");
    assert_eq!(c.body["fiscal_year_start"], format!("{}-10-01", fy - 1));
    assert_eq!(c.body["fiscal_year_end"], format!("{fy}-09-30"));
    assert_eq!(c.body["updated_by"], "ada-admin");

    app.acquire("NV1", "Nd", "600").await.expect(201);
    let item = |depot: &str, kg: &str| {
        let mut m = movement(depot, "Nd", kg);
        m["kind"] = json!("acquisition");
        m
    };
    let entries_before = app.ledger_count().await;
    let r = app
        .post_new(
            "/api/v1/ledger/batch",
            &app.operator,
            &json!({"entries": [item("NV1", "300"), item("TX2", "100.001")]}),
        )
        .await
        .expect(409);
    assert_eq!(r.body["code"], "ceiling-exceeded");
    assert_eq!(r.body["headroom_kg"], "400.000");
    assert_eq!(r.body["requested_kg"], "400.001");
    assert_eq!(
        app.ledger_count().await,
        entries_before,
        "nothing of the batch"
    );
    app.post_new(
        "/api/v1/ledger/batch",
        &app.operator,
        &json!({"entries": [item("NV1", "300"), item("TX2", "100")]}),
    )
    .await
    .expect(201);
    let r = app.acquire("TX2", "Nd", "0.001").await.expect(409);
    assert_eq!(r.body["code"], "ceiling-exceeded");
    assert_eq!(r.body["headroom_kg"], "0.000");
    // Other elements have no ceiling.
    app.acquire("NV1", "Dy", "5000").await.expect(201);

    // An acquisition dated in the previous fiscal year counts there, not here.
    let (first_day, _) = reserve::orders::model::fiscal_year_bounds(fy, 10).unwrap();
    let mut last_year = movement("NV1", "Nd", "50");
    last_year["occurred_at"] = json!(format!("{}T12:00:00Z", first_day - Duration::days(1)));
    app.post_new("/api/v1/acquisitions", &app.operator, &last_year)
        .await
        .expect(201);

    // The disposal ceiling refuses releases.
    app.release("NV1", "Nd", "100").await.expect(201);
    let r = app.release("NV1", "Nd", "0.001").await.expect(409);
    assert_eq!(r.body["code"], "ceiling-exceeded");
    assert_eq!(r.body["ceiling"], "dispose");
    assert_eq!(r.body["headroom_kg"], "0.000");

    // Transfers and loans are neither acquisitions nor disposals.
    app.post_new(
        "/api/v1/transfers",
        &app.operator,
        &json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Nd", "form": "oxide",
                "grade": "99.5", "quantity_kg": "10"}),
    )
    .await
    .expect(201);
    post_loan_round_trip(&app, "NV1", "Nd", 5_000);

    let c = app.get(&path, &app.viewer).await.expect(200);
    assert_eq!(c.body["acquired_kg"], "1000.000");
    assert_eq!(c.body["acquire_headroom_kg"], "0.000");
    assert_eq!(c.body["disposed_kg"], "100.000");
    assert_eq!(c.body["dispose_headroom_kg"], "0.000");

    // Raising a ceiling lets exactly that much more through.
    let c = put(
        &app,
        &path,
        &app.admin,
        None,
        &json!({"acquire_max_kg": "1000.001", "dispose_max_kg": "100"}),
    )
    .await
    .expect(200);
    assert_eq!(c.body["acquire_headroom_kg"], "0.001");
    app.acquire("TX2", "Nd", "0.001").await.expect(201);
    app.acquire("TX2", "Nd", "0.001").await.expect(409);

    // The list: newest fiscal year first, filtered by element and year.
    put(
        &app,
        &format!("/api/v1/ceilings/Dy/{}", fy + 1),
        &app.admin,
        None,
        &limits,
    )
    .await
    .expect(200);
    let list = app.get("/api/v1/ceilings", &app.viewer).await.expect(200);
    let keys: Vec<(String, i64)> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["element"].as_str().unwrap().to_string(),
                c["fiscal_year"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![("Dy".into(), fy as i64 + 1), ("Nd".into(), fy as i64)]
    );
    let page = app
        .get("/api/v1/ceilings?limit=1", &app.viewer)
        .await
        .expect(200);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let next = app
        .get(
            &format!("/api/v1/ceilings?limit=1&cursor={cursor}"),
            &app.viewer,
        )
        .await
        .expect(200);
    assert_eq!(next.body["items"][0]["element"], "Nd");
    assert_eq!(next.body["next_cursor"], Value::Null);
    let only = app
        .get(
            &format!("/api/v1/ceilings?element=nd&fiscal_year={fy}"),
            &app.viewer,
        )
        .await
        .expect(200);
    assert_eq!(only.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(only.body["items"][0]["acquired_kg"], "1000.001");
    let r = app
        .get("/api/v1/ceilings?element=Fe&fiscal_year=27", &app.viewer)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["element", "fiscal_year"]);
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn the_reserve_floor_holds_across_depots(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    app.create_depot("TX2", "100000", "100000").await;
    app.acquire("NV1", "Tb", "600").await.expect(201);
    app.acquire("TX2", "Tb", "400").await.expect(201);
    let path = "/api/v1/elements/Tb/policy";
    put(&app, path, &app.admin, Some("*"), &policy(Some("700")))
        .await
        .expect(200);
    // NV1 holds 600 kg, but the reserve as a whole may only lose 300.
    let r = app.release("NV1", "Tb", "300.001").await.expect(409);
    assert_eq!(r.body["code"], "below-reserve-floor");
    assert_eq!(r.body["reserve_floor_kg"], "700.000");
    assert_eq!(r.body["holding_after_kg"], "699.999");
    app.release("TX2", "Tb", "300").await.expect(201);
    let r = app.release("NV1", "Tb", "0.001").await.expect(409);
    assert_eq!(r.body["code"], "below-reserve-floor");
    // Moving stock between depots leaves the holding as it is.
    app.post_new(
        "/api/v1/transfers",
        &app.operator,
        &json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Tb", "form": "oxide",
                "grade": "99.5", "quantity_kg": "100"}),
    )
    .await
    .expect(201);
    // A batch that brings stock in before taking it out stays at the floor.
    let item = |kind: &str, kg: &str| {
        let mut m = movement("NV1", "Tb", kg);
        m["kind"] = json!(kind);
        m
    };
    app.post_new(
        "/api/v1/ledger/batch",
        &app.operator,
        &json!({"entries": [item("acquisition", "50"), item("release", "50")]}),
    )
    .await
    .expect(201);
    let r = app
        .post_new(
            "/api/v1/ledger/batch",
            &app.operator,
            &json!({"entries": [item("acquisition", "50"), item("release", "50.001")]}),
        )
        .await
        .expect(409);
    assert_eq!(r.body["code"], "below-reserve-floor");
    // Other elements have no floor; and without one, Tb may go lower too.
    app.acquire("NV1", "Nd", "10").await.expect(201);
    app.release("NV1", "Nd", "10").await.expect(201);
    put(&app, path, &app.admin, Some("*"), &policy(None))
        .await
        .expect(200);
    app.release("NV1", "Tb", "0.001").await.expect(201);
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

/// Twenty 100 kg acquisitions race for a 1,000 kg ceiling, each at its own
/// depot so that no stockpile or depot lock orders them: only the element's
/// row lock, under which each posting checks the ceiling, lets exactly ten
/// through.
async fn concurrent_acquisitions_never_pass_a_ceiling(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..20 {
        app.create_depot(&format!("D{i}"), "100000", "100000").await;
    }
    let fy = this_fiscal_year();
    let path = format!("/api/v1/ceilings/Sm/{fy}");
    put(
        &app,
        &path,
        &app.admin,
        None,
        &json!({"acquire_max_kg": "1000", "dispose_max_kg": "0"}),
    )
    .await
    .expect(200);
    let results = join_all((0..20).map(|i| {
        let app = &app;
        async move {
            let key = format!("race-{i}");
            loop {
                let r = app
                    .post(
                        "/api/v1/acquisitions",
                        &app.operator,
                        Some(&key),
                        &movement(&format!("D{i}"), "Sm", "100"),
                    )
                    .await;
                // Busy: retry the same request under the same key.
                if r.status.as_u16() != 503 {
                    return r;
                }
                actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }))
    .await;
    let mut accepted = 0;
    for r in results {
        match r.status.as_u16() {
            201 => accepted += 1,
            409 => assert_eq!(r.body["code"], "ceiling-exceeded", "{}", r.text),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!(accepted, 10);
    let c = app.get(&path, &app.viewer).await.expect(200);
    assert_eq!(c.body["acquired_kg"], "1000.000");
    assert_eq!(c.body["acquire_headroom_kg"], "0.000");
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

/// Eight admins replace the policy from the same ETag at once: the
/// conditional UPDATE on `version` lets exactly one win; the others get 412
/// and nothing of theirs is kept.
async fn racing_policy_writers_with_one_etag_one_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let path = "/api/v1/elements/Eu/policy";
    let etag = app
        .get(path, &app.viewer)
        .await
        .expect(200)
        .header("etag")
        .unwrap();
    let results = join_all((1..=8).map(|i| {
        let (app, etag) = (&app, etag.clone());
        async move {
            loop {
                let r = put(
                    app,
                    path,
                    &app.admin,
                    Some(&etag),
                    &policy(Some(&i.to_string())),
                )
                .await;
                if r.status.as_u16() != 503 {
                    return r;
                }
                actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }))
    .await;
    let winners: Vec<&Reply> = results
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(results
        .iter()
        .all(|r| r.status.as_u16() == 200 || r.status.as_u16() == 412));
    let now = app.get(path, &app.viewer).await.expect(200);
    assert_eq!(now.body["version"], 2);
    assert_eq!(
        now.body["reserve_floor_kg"],
        winners[0].body["reserve_floor_kg"]
    );
    // Only the winner's version is in the history: version 3 never existed.
    let later = app
        .get(&format!("{path}?as_of=9999-01-01T00:00:00Z"), &app.viewer)
        .await
        .expect(200);
    assert_eq!(later.body["version"], 2);
    assert_eq!(
        later.body["reserve_floor_kg"],
        winners[0].body["reserve_floor_kg"]
    );
    app.stop().await;
}
