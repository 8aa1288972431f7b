//! Release rules: the fixed arithmetic redone by hand, firing through the
//! orders code, consecutive breaches, cooldown, origin filters, the data
//! horizon, and the rules' own CRUD with ETag/If-Match and history.

use chrono::{Duration, NaiveDate, Utc};
use diesel::RunQueryDsl;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;
use reserve::auth::Role;

on_both_backends!(
    a_forty_percent_drop_fires_a_25_percent_rule_once_and_not_a_50_percent_rule,
    proposals_respect_cap_coverage_and_floors_by_hand,
    consecutive_breaches_cooldown_and_open_orders,
    an_origin_filtered_rule_ignores_other_origins,
    a_data_horizon_a_month_old_is_not_a_drop,
    rules_keep_every_change_behind_if_match,
    a_simulation_fires_rules_on_the_day_and_writes_nothing,
    ingesting_period_by_period_fires_once_and_a_resend_fires_nothing,
    a_scheduled_round_writes_its_rules_together_and_a_failing_rule_alone,
);

/// Flows written straight to the table: (element, origin, start, end, kg).
pub fn insert_flows(app: &TestApp, rows: &[(&str, &str, NaiveDate, NaiveDate, i64)]) {
    use diesel::ExpressionMethods;
    use reserve::db::schema::import_flows as f;
    let mut conn = app.state.pool.get().expect("connection");
    for (i, (element, origin, start, end, kg)) in rows.iter().enumerate() {
        let values = (
            f::element.eq(*element),
            f::form.eq("oxide"),
            f::origin_country.eq(*origin),
            f::hs_code.eq("284690"),
            f::period_start.eq(*start),
            f::period_end.eq(*end),
            f::quantity_g.eq(kg * 1000),
            f::source.eq("test"),
            f::external_id.eq(format!("{element}-{origin}-{start}-{i}")),
            f::content_hash.eq("x"),
            f::recorded_at.eq(Utc::now().naive_utc()),
            f::recorded_by.eq("test"),
        );
        diesel::insert_into(f::table)
            .values(values)
            .execute(&mut *conn)
            .expect("insert flow");
    }
}

fn yesterday() -> NaiveDate {
    Utc::now().date_naive() - Duration::days(1)
}

/// Thirteen 30-day periods ending `end`: twelve of `kg`, then `last_kg`.
pub fn thirteen_periods(
    element: &'static str,
    origin: &'static str,
    end: NaiveDate,
    kg: i64,
    last_kg: i64,
) -> Vec<(&'static str, &'static str, NaiveDate, NaiveDate, i64)> {
    let start = end - Duration::days(13 * 30 - 1);
    (0..13)
        .map(|i| {
            let s = start + Duration::days(30 * i);
            let q = if i == 12 { last_kg } else { kg };
            (element, origin, s, s + Duration::days(29), q)
        })
        .collect()
}

/// A depot holding `kg` of `element` metal 99.9, and the element's policy
/// consuming `consumption_kg_per_year`.
async fn stock_up(app: &TestApp, depot: &str, element: &str, kg: &str, consumption: &str) {
    app.create_depot(depot, "10000000", "10000").await;
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &json!({"depot": depot, "element": element, "form": "metal", "grade": "99.9", "quantity_kg": kg}),
    )
    .await
    .expect(201);
    app.put(
        &format!("/api/v1/elements/{element}/policy"),
        &app.admin,
        Some("*"),
        &json!({"reserve_floor_kg": null, "consumption_kg_per_year": consumption,
                "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
                "test_sale_max_kg": null}),
    )
    .await
    .expect(200);
}

/// A limited-drawdown sale rule on `element`, 30-day window over a 360-day
/// baseline, with `overrides` applied.
fn rule(element: &str, overrides: Value) -> Value {
    let mut r = json!({
        "element": element,
        "window_days": 30,
        "baseline_days": 360,
        "drop_threshold_percent": "25",
        "consecutive_breaches": 1,
        "cooldown_days": 30,
        "coverage_fraction": "0.5",
        "cap_kg": "100000",
        "order_kind": "limited_drawdown",
        "method": "sale",
        "enabled": true
    });
    for (k, v) in overrides.as_object().expect("object") {
        r[k] = v.clone();
    }
    r
}

async fn create_rule(app: &TestApp, body: Value) -> i64 {
    app.post_new("/api/v1/release-rules", &app.admin, &body)
        .await
        .expect(201)
        .body["id"]
        .as_i64()
        .expect("id")
}

async fn evaluate(app: &TestApp, id: i64) -> Value {
    app.post_new(
        &format!("/api/v1/release-rules/{id}/evaluate"),
        &app.operator,
        &Value::Null,
    )
    .await
    .expect(200)
    .body
}

fn approver(app: &TestApp) -> String {
    app.keys
        .mint("apa-approver", &[Role::Approver], None, Duration::hours(1))
        .expect("token")
}

async fn a_forty_percent_drop_fires_a_25_percent_rule_once_and_not_a_50_percent_rule(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Dy", "100000", "36500").await;
    let r25 = create_rule(&app, rule("Dy", json!({}))).await;
    let r50 = create_rule(&app, rule("Dy", json!({"drop_threshold_percent": "50"}))).await;
    insert_flows(
        &app,
        &thirteen_periods("Dy", "CN", yesterday(), 30_000, 18_000),
    );

    // By hand: the baseline is twelve periods of 30,000 kg over 360 days,
    // 1,000 kg/day; the window 18,000 kg over 30 days, 600 kg/day; the drop
    // (1,000 − 600) ÷ 1,000 = 40%. The shortfall over the window is 400 kg/day
    // × 30 days = 12,000 kg, half of which is 6,000 kg.
    let e = evaluate(&app, r25).await;
    assert_eq!(e["decision"], "fired", "{e}");
    assert_eq!(e["reason"], "fired");
    assert_eq!(e["window_kg_per_day"], "600.000");
    assert_eq!(e["baseline_kg_per_day"], "1000.000");
    assert_eq!(e["drop_percent"], "40.00");
    assert_eq!(e["breach"], true);
    assert_eq!(e["data_horizon"], yesterday().to_string());
    assert_eq!(e["window_end"], yesterday().to_string());
    assert_eq!(e["proposed_kg"], "6000.000");
    assert_eq!(e["sizing"]["bound_by"], "coverage");
    let order_id = e["order_id"].as_i64().expect("order id");

    let quiet = evaluate(&app, r50).await;
    assert_eq!(quiet["decision"], "not_fired");
    assert_eq!(quiet["reason"], "below_threshold");
    assert_eq!(quiet["drop_percent"], "40.00");
    assert!(quiet["order_id"].is_null());

    // The order waits for a human: proposed by the rule, for a second person.
    let order = app
        .get(&format!("/api/v1/release-orders/{order_id}"), &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(order["status"], "proposed");
    assert_eq!(order["proposed_by"], format!("rule:{r25}"));
    assert_eq!(order["rule_id"], r25);
    assert_eq!(order["quantity_kg"], "6000.000");
    assert_eq!(order["kind"], "limited_drawdown");
    assert_eq!(order["allocation"][0]["depot"], "NV1");
    assert!(order["reason"]
        .as_str()
        .unwrap()
        .contains("a drop of 40.00%"));

    // Evaluated again, the rule does not fire a second time.
    let again = evaluate(&app, r25).await;
    assert_eq!(again["decision"], "not_fired");
    assert_eq!(again["reason"], "cooldown");
    let orders = app
        .get(
            &format!("/api/v1/release-orders?rule_id={r25}"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(orders["items"].as_array().unwrap().len(), 1);
    let none = app
        .get(
            &format!("/api/v1/release-orders?rule_id={r50}"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    assert!(none["items"].as_array().unwrap().is_empty());

    // Every evaluation is kept, newest first, and a second person approves.
    let evals = app
        .get(
            &format!("/api/v1/release-rules/{r25}/evaluations"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    let items = evals["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["reason"], "cooldown");
    assert_eq!(items[1]["order_id"], order_id);
    let approved = app
        .post_new(
            &format!("/api/v1/release-orders/{order_id}/approve"),
            &approver(&app),
            &json!({}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(approved["status"], "approved");
    let csv = app
        .get(
            &format!("/api/v1/release-rules/{r25}/evaluations?format=csv"),
            &app.viewer,
        )
        .await
        .expect(200);
    assert!(csv.text.starts_with("id,at,trigger,"), "{}", csv.text);
    assert_eq!(csv.text.lines().count(), 3);
}

async fn proposals_respect_cap_coverage_and_floors_by_hand(backend: Backend) {
    let app = spawn_app(backend).await;
    // 100,000 kg of Tb metal; consumption 365,000 kg a year = 1,000 kg a day.
    stock_up(&app, "NV1", "Tb", "100000", "365000").await;
    insert_flows(
        &app,
        &thirteen_periods("Tb", "CN", yesterday(), 30_000, 18_000),
    );
    // Coverage alone: half of the 12,000 kg shortfall.
    let cases = [
        (json!({}), "fired", "6000.000", "coverage"),
        // The cap binds below the coverage.
        (json!({"cap_kg": "2500"}), "fired", "2500.000", "cap"),
        // 100,000 kg held − a 96,000 kg floor = 4,000 kg.
        (json!({"floor_kg": "96000"}), "fired", "4000.000", "floor"),
        // 100,000 kg of element − 97 days × 1,000 kg/day = 3,000 kg.
        (
            json!({"floor_days_of_cover": "97"}),
            "fired",
            "3000.000",
            "days_floor",
        ),
        // A floor at the whole holding leaves nothing.
        (json!({"floor_kg": "100000"}), "not_fired", "0.000", "floor"),
    ];
    for (overrides, decision, kg, bound_by) in cases {
        let id = create_rule(&app, rule("Tb", overrides.clone())).await;
        let e = evaluate(&app, id).await;
        assert_eq!(e["decision"], decision, "{overrides}: {e}");
        assert_eq!(e["sizing"]["proposed_kg"], kg, "{overrides}: {e}");
        assert_eq!(e["sizing"]["bound_by"], bound_by, "{overrides}: {e}");
        assert_eq!(e["sizing"]["shortfall_kg"], "12000.000");
        if decision == "fired" {
            let order = app
                .get(
                    &format!("/api/v1/release-orders/{}", e["order_id"]),
                    &app.viewer,
                )
                .await
                .expect(200)
                .body;
            assert_eq!(order["quantity_kg"], kg);
        } else {
            assert_eq!(e["reason"], "floor_leaves_nothing");
            assert!(e["proposed_kg"].is_null());
        }
    }
}

async fn consecutive_breaches_cooldown_and_open_orders(backend: Backend) {
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Ho", "100000", "36500").await;
    insert_flows(
        &app,
        &thirteen_periods("Ho", "CN", yesterday(), 30_000, 18_000),
    );
    let approver = approver(&app);

    // Two breaches in a row are needed.
    let twice = create_rule(&app, rule("Ho", json!({"consecutive_breaches": 2}))).await;
    let first = evaluate(&app, twice).await;
    assert_eq!(first["reason"], "not_enough_consecutive_breaches");
    assert_eq!(first["consecutive"], 1);
    let second = evaluate(&app, twice).await;
    assert_eq!(second["reason"], "fired");
    assert_eq!(second["consecutive"], 2);

    // Once it fired, the cooldown holds even after its order is rejected.
    let order = second["order_id"].as_i64().unwrap();
    app.post_new(
        &format!("/api/v1/release-orders/{order}/reject"),
        &approver,
        &json!({"note": "not yet"}),
    )
    .await
    .expect(200);
    let cooling = evaluate(&app, twice).await;
    assert_eq!(cooling["reason"], "cooldown");
    let rule_now = app
        .get(&format!("/api/v1/release-rules/{twice}"), &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(rule_now["state"]["armed"], false);
    assert!(rule_now["state"]["last_fired_at"].is_string());

    // Without a cooldown it fires again once its order is closed, and never
    // while its order is open.
    let eager = create_rule(&app, rule("Ho", json!({"cooldown_days": 0}))).await;
    let fired = evaluate(&app, eager).await;
    assert_eq!(fired["reason"], "fired");
    let open = evaluate(&app, eager).await;
    assert_eq!(open["reason"], "open_order_exists");
    app.post_new(
        &format!("/api/v1/release-orders/{}/reject", fired["order_id"]),
        &approver,
        &json!({}),
    )
    .await
    .expect(200);
    let refired = evaluate(&app, eager).await;
    assert_eq!(refired["reason"], "fired", "{refired}");
    assert_ne!(refired["order_id"], fired["order_id"]);

    // A disabled rule stores why it did nothing and counts nothing.
    let off = create_rule(&app, rule("Ho", json!({"enabled": false}))).await;
    let e = evaluate(&app, off).await;
    assert_eq!(e["reason"], "disabled");
    assert_eq!(e["consecutive"], 0);
}

async fn an_origin_filtered_rule_ignores_other_origins(backend: Backend) {
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Er", "100000", "36500").await;
    let mut flows = thirteen_periods("Er", "CN", yesterday(), 20_000, 12_000);
    flows.extend(thirteen_periods("Er", "US", yesterday(), 10_000, 10_000));
    insert_flows(&app, &flows);
    let cn = create_rule(&app, rule("Er", json!({"origin_countries": ["CN"]}))).await;
    let us = create_rule(&app, rule("Er", json!({"origin_countries": ["US"]}))).await;
    let all = create_rule(&app, rule("Er", json!({}))).await;
    // China: 20,000 → 12,000 kg a period, a 40% drop.
    let e = evaluate(&app, cn).await;
    assert_eq!(
        (e["drop_percent"].as_str(), e["reason"].as_str()),
        (Some("40.00"), Some("fired"))
    );
    assert!(e["detail"].as_str().unwrap().contains("from CN"));
    // The United States: steady.
    let e = evaluate(&app, us).await;
    assert_eq!(
        (e["drop_percent"].as_str(), e["reason"].as_str()),
        (Some("0.00"), Some("below_threshold"))
    );
    // Together: 30,000 → 22,000 kg, (1,000 − 733.333) ÷ 1,000 = 26.67%.
    let e = evaluate(&app, all).await;
    assert_eq!(e["drop_percent"], "26.67");
    assert_eq!(e["window_kg_per_day"], "733.333");
    assert_eq!(e["reason"], "fired");
}

async fn a_data_horizon_a_month_old_is_not_a_drop(backend: Backend) {
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Lu", "100000", "36500").await;
    // Steady imports whose statistics stop 40 days ago: the window ends at
    // the horizon, not today, so the missing month is not a drop.
    let horizon = Utc::now().date_naive() - Duration::days(40);
    insert_flows(&app, &thirteen_periods("Lu", "CN", horizon, 30_000, 30_000));
    let id = create_rule(&app, rule("Lu", json!({}))).await;
    let e = evaluate(&app, id).await;
    assert_eq!(e["data_horizon"], horizon.to_string());
    assert_eq!(e["window_end"], horizon.to_string());
    assert_eq!(e["drop_percent"], "0.00");
    assert_eq!(e["reason"], "below_threshold");

    // An element with no flows at all has no data.
    let none = create_rule(&app, rule("Yb", json!({}))).await;
    let e = evaluate(&app, none).await;
    assert_eq!(e["reason"], "no_data");
    assert!(e["data_horizon"].is_null());
}

async fn rules_keep_every_change_behind_if_match(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = rule("Nd", json!({"origin_countries": ["MM", "CN", "CN"]}));
    app.post_new("/api/v1/release-rules", &app.operator, &body)
        .await
        .expect(403);
    let created = app
        .post_new("/api/v1/release-rules", &app.admin, &body)
        .await
        .expect(201)
        .body;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["origin_countries"], json!(["CN", "MM"]));
    assert_eq!(created["state"]["armed"], true);
    let path = format!("/api/v1/release-rules/{id}");
    let got = app.get(&path, &app.viewer).await.expect(200);
    let etag = got.header("etag").expect("etag");
    assert_eq!(etag, format!("\"rule-{id}-v1\""));

    let changed = rule("Nd", json!({"drop_threshold_percent": "30"}));
    app.put(&path, &app.admin, None, &changed).await.expect(428);
    app.put(&path, &app.admin, Some("\"rule-1-v99\""), &changed)
        .await
        .expect(412);
    let v2 = app
        .put(&path, &app.admin, Some(&etag), &changed)
        .await
        .expect(200);
    assert_eq!(v2.body["drop_threshold_percent"], "30");
    assert_eq!(v2.header("etag").unwrap(), format!("\"rule-{id}-v2\""));
    // The old ETag no longer matches.
    app.put(&path, &app.admin, Some(&etag), &changed)
        .await
        .expect(412);

    // Invalid fields are each named, the order kind's needs included.
    let bad = rule(
        "Nd",
        json!({"drop_threshold_percent": "0", "coverage_fraction": "1.5", "window_days": 0,
               "order_kind": "emergency_drawdown", "origin_countries": ["XX"], "grade": "99.5"}),
    );
    let r = app
        .post_new("/api/v1/release-rules", &app.admin, &bad)
        .await
        .expect(422);
    let fields = r.error_fields();
    for f in [
        "drop_threshold_percent",
        "coverage_fraction",
        "window_days",
        "emergency_finding",
        "origin_countries[0]",
        "grade",
    ] {
        assert!(
            fields.contains(&f.to_string()),
            "{f} missing from {fields:?}"
        );
    }
    let sale = rule("Nd", json!({"order_kind": "mandated_sale"}));
    let r = app
        .post_new("/api/v1/release-rules", &app.admin, &sale)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["order_kind"]);
    let exchange = rule(
        "Nd",
        json!({"order_kind": "exchange", "method": null, "counterparty": "Acme Magnetics",
               "premium_percent": "5"}),
    );
    let r = app
        .post_new("/api/v1/release-rules", &app.admin, &exchange)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["return_after_days"]);
    // Found by fuzzing: a return date millions of days away overflowed the
    // calendar while the sample order was built, and the request died.
    let far = rule(
        "Nd",
        json!({"order_kind": "exchange", "method": null, "counterparty": "Acme Magnetics",
               "premium_percent": "5", "return_after_days": -96486079}),
    );
    let r = app
        .post_new("/api/v1/release-rules", &app.admin, &far)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["return_after_days"]);

    // Deleted: gone from reads and lists, its history kept.
    app.delete(&path, &app.admin, None).await.expect(428);
    app.delete(&path, &app.admin, Some(&format!("\"rule-{id}-v2\"")))
        .await
        .expect(204);
    app.get(&path, &app.viewer).await.expect(404);
    let list = app
        .get("/api/v1/release-rules", &app.viewer)
        .await
        .expect(200)
        .body;
    assert!(list["items"].as_array().unwrap().is_empty());
    let history = app
        .get(&format!("{path}/history"), &app.auditor)
        .await
        .expect(200)
        .body;
    let changes = history["items"].as_array().unwrap();
    let kinds: Vec<&str> = changes
        .iter()
        .map(|c| c["change"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "updated", "deleted"]);
    assert!(changes[0]["before"].is_null());
    assert_eq!(changes[1]["before"]["drop_threshold_percent"], "25");
    assert_eq!(changes[1]["after"]["drop_threshold_percent"], "30");
    assert_eq!(changes[1]["actor"], "ada-admin");
    assert!(changes[2]["after"].is_null());
}

/// Rows in every table, to show that something wrote nothing.
fn row_counts(app: &TestApp) -> Vec<(String, i64)> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let tables = [
        "depots",
        "stockpiles",
        "ledger_entries",
        "ledger_head",
        "idempotency_records",
        "period_locks",
        "depot_history",
        "element_policies",
        "element_policy_history",
        "ceilings",
        "buyers",
        "release_orders",
        "order_allocations",
        "order_transitions",
        "bids",
        "awards",
        "import_flows",
        "job_claims",
        "release_rules",
        "release_rule_history",
        "rule_evaluations",
    ];
    let mut conn = app.state.pool.get().expect("connection");
    tables
        .iter()
        .map(|t| {
            let c: Count =
                diesel::sql_query(format!("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM {t}"))
                    .get_result(&mut *conn)
                    .expect("count");
            (t.to_string(), c.n)
        })
        .collect()
}

async fn a_simulation_fires_rules_on_the_day_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    // 100,000 kg of Dy; 36,500 kg a year consumed: 1,000 days of cover.
    stock_up(&app, "NV1", "Dy", "100000", "36500").await;
    // A steady 1,000 kg a day from CN up to yesterday.
    insert_flows(
        &app,
        &thirteen_periods("Dy", "CN", yesterday(), 30_000, 30_000),
    );
    let id = create_rule(
        &app,
        rule(
            "Dy",
            json!({"baseline_days": 365, "coverage_fraction": "1", "floor_kg": "90000"}),
        ),
    )
    .await;
    let before = row_counts(&app);
    let start = Utc::now().date_naive() + Duration::days(30);
    let body = json!({"shocks": [{"element": "Dy", "origin_country": "CN", "drop_percent": "80",
                                  "start": start.to_string(), "months": 6}],
                      "horizon_days": 730});
    let sim = app
        .post("/api/v1/simulations", &app.viewer, None, &body)
        .await
        .expect(200)
        .body;
    assert_eq!(row_counts(&app), before, "a simulation writes nothing");
    let dy = &sim["elements"][0];
    assert_eq!(dy["element"], "Dy");
    let days = dy["days"].as_array().unwrap();
    assert_eq!(days.len(), 730);
    assert_eq!(days[0]["imports_kg"], "1000.000");
    assert_eq!(days[0]["holding_kg"], "100000.000");
    assert_eq!(days[0]["days_of_cover"], "1000.0");
    // By hand, as in the unit test: the window's drop reaches 25% on the
    // shock's 10th day, when the shortfall is (1,000 − 733.333) × 30 = 8,000 kg.
    let firing = &dy["firings"][0];
    assert_eq!(firing["rule_id"], id);
    assert_eq!(firing["date"], (start + Duration::days(9)).to_string());
    assert_eq!(firing["proposed_kg"], "8000.000");
    // Drawn down, never below the rule's floor.
    assert_eq!(days.last().unwrap()["holding_kg"], "90000.000");
    assert!(dy["below_floor_on"].is_null());
    // The rule itself is untouched.
    let r = app
        .get(&format!("/api/v1/release-rules/{id}"), &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(r["state"]["evaluations"], 0);

    let bad = json!({"shocks": [{"element": "Xx", "drop_percent": "180", "start": "2027-13-01", "months": 0}]});
    let r = app
        .post("/api/v1/simulations", &app.viewer, None, &bad)
        .await
        .expect(422);
    let mut fields = r.error_fields();
    fields.sort();
    assert_eq!(
        fields,
        [
            "shocks[0].drop_percent",
            "shocks[0].element",
            "shocks[0].months",
            "shocks[0].start"
        ]
    );
}

/// Flows as an upload's JSON rows.
fn upload_rows(rows: &[(&str, &str, NaiveDate, NaiveDate, i64)]) -> Value {
    Value::Array(
        rows.iter()
            .map(|(element, origin, start, end, kg)| {
                json!({"element": element, "form": "oxide", "origin_country": origin,
                       "hs_code": "2846.90", "period_start": start.to_string(),
                       "period_end": end.to_string(), "quantity_kg": kg.to_string(),
                       "source": "USITC", "external_id": format!("{element}-{origin}-{start}")})
            })
            .collect(),
    )
}

async fn ingesting_period_by_period_fires_once_and_a_resend_fires_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Dy", "100000", "36500").await;
    let r25 = create_rule(&app, rule("Dy", json!({}))).await;
    let r50 = create_rule(&app, rule("Dy", json!({"drop_threshold_percent": "50"}))).await;
    let periods = thirteen_periods("Dy", "CN", yesterday(), 30_000, 18_000);
    // Thirteen monthly uploads, as the statistics arrive: each evaluates both
    // rules in the upload's transaction. Only the last, 40% down, fires, and
    // only the 25% rule.
    let mut fired = Vec::new();
    for (i, period) in periods.iter().enumerate() {
        let r = app
            .post_new(
                "/api/v1/import-flows",
                &app.operator,
                &upload_rows(&[*period]),
            )
            .await
            .expect(201);
        let evals = r.body["rule_evaluations"].as_array().unwrap();
        assert_eq!(evals.len(), 2, "upload {i}: {}", r.body);
        for e in evals {
            if e["decision"] == "fired" {
                fired.push((i, e["rule_id"].as_i64().unwrap(), e["order_id"].clone()));
            }
        }
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].0, fired[0].1), (12, r25));
    // The same file again: nothing inserted, nothing evaluated, nothing fired.
    let again = app
        .post_new(
            "/api/v1/import-flows",
            &app.operator,
            &upload_rows(&periods),
        )
        .await
        .expect(200);
    assert_eq!(again.body["inserted"], 0);
    assert!(again.body["rule_evaluations"]
        .as_array()
        .unwrap()
        .is_empty());
    for (id, expected) in [(r25, 1), (r50, 0)] {
        let orders = app
            .get(&format!("/api/v1/release-orders?rule_id={id}"), &app.viewer)
            .await
            .expect(200)
            .body;
        assert_eq!(
            orders["items"].as_array().unwrap().len(),
            expected,
            "rule {id}"
        );
    }
    let evals = app
        .get(
            &format!("/api/v1/release-rules/{r25}/evaluations"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    let items = evals["items"].as_array().unwrap();
    assert_eq!(items.len(), 13);
    assert!(items
        .iter()
        .all(|e| e["trigger"] == "ingest" && e["triggered_by"] == "otto-operator"));
    assert_eq!(items[0]["order_id"], fired[0].2);
}

/// The scheduled job, as its claim runs it: one write transaction.
fn run_schedule(app: &TestApp) -> String {
    let mut conn = app.state.pool.get().expect("connection");
    reserve::db::write_transaction(&mut conn, |c| {
        reserve::rules::repo::evaluate_scheduled(c, Utc::now())
    })
    .expect("scheduled evaluation")
}

/// The positioned events of `kinds`, in stream order: (kind, subject, data).
fn streamed(app: &TestApp, kinds: &[&str]) -> Vec<(String, Option<String>, Value)> {
    use diesel::{ExpressionMethods, QueryDsl};
    use reserve::db::schema::events as ev;
    let mut conn = app.state.pool.get().expect("connection");
    let rows: Vec<(String, Option<String>, String)> = ev::table
        .filter(ev::kind.eq_any(kinds))
        .filter(ev::after_sequence.is_not_null())
        .order((ev::after_sequence.asc(), ev::sub.asc()))
        .select((ev::kind, ev::subject, ev::data))
        .load(&mut *conn)
        .expect("events");
    rows.into_iter()
        .map(|(k, s, d)| (k, s, serde_json::from_str(&d).expect("json")))
        .collect()
}

/// A scheduled round writes all its rules' outcomes together; when that
/// fails, each rule is written on its own, so a rule whose writes fail
/// fails alone and the others are stored as they would be without it.
async fn a_scheduled_round_writes_its_rules_together_and_a_failing_rule_alone(backend: Backend) {
    use diesel::connection::SimpleConnection;
    let app = spawn_app(backend).await;
    stock_up(&app, "NV1", "Dy", "100000", "36500").await;
    let fires = create_rule(&app, rule("Dy", json!({}))).await;
    let quiet = create_rule(&app, rule("Dy", json!({"drop_threshold_percent": "50"}))).await;
    let broken = create_rule(&app, rule("Dy", json!({}))).await;
    insert_flows(
        &app,
        &thirteen_periods("Dy", "CN", yesterday(), 30_000, 18_000),
    );
    // The database refuses `broken`'s evaluation row.
    let refuse = match backend {
        Backend::Postgres => format!(
            "CREATE FUNCTION refuse_evaluation() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.rule_id = {broken} THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$; \
             CREATE TRIGGER refuse_evaluation BEFORE INSERT ON rule_evaluations \
             FOR EACH ROW EXECUTE FUNCTION refuse_evaluation();"
        ),
        Backend::Sqlite => format!(
            "CREATE TRIGGER refuse_evaluation BEFORE INSERT ON rule_evaluations \
             WHEN NEW.rule_id = {broken} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;"
        ),
    };
    app.state
        .pool
        .get()
        .expect("connection")
        .batch_execute(&refuse)
        .expect("trigger");

    assert_eq!(run_schedule(&app), "evaluated 3 rules: 1 fired, 1 failed");
    let evaluations = |id: i64| {
        let app = &app;
        async move {
            app.get(
                &format!("/api/v1/release-rules/{id}/evaluations?order=asc"),
                &app.viewer,
            )
            .await
            .expect(200)
            .body["items"]
                .as_array()
                .expect("items")
                .clone()
        }
    };
    let first = evaluations(fires).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["decision"], "fired", "{}", first[0]);
    assert_eq!(first[0]["trigger"], "schedule");
    let first_order = first[0]["order_id"].as_i64().expect("order id");
    assert_eq!(evaluations(quiet).await[0]["reason"], "below_threshold");
    // Nothing of the failed rule is kept: no evaluation, no order, no state.
    assert!(evaluations(broken).await.is_empty());
    let broken_view = app
        .get(&format!("/api/v1/release-rules/{broken}"), &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(broken_view["state"]["evaluations"], 0);
    assert!(broken_view["state"]["last_fired_at"].is_null());
    let orders = app
        .get(
            &format!("/api/v1/release-orders?rule_id={broken}"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    assert!(orders["items"].as_array().unwrap().is_empty());

    // Without the refusal, and with one more rule ready, the next round
    // writes together; the events come as one firing after another: the
    // order proposed, then the rule fired, naming both.
    let also = create_rule(&app, rule("Dy", json!({}))).await;
    let drop = match backend {
        Backend::Postgres => "DROP TRIGGER refuse_evaluation ON rule_evaluations",
        Backend::Sqlite => "DROP TRIGGER refuse_evaluation",
    };
    app.state
        .pool
        .get()
        .expect("connection")
        .batch_execute(drop)
        .expect("drop trigger");
    assert_eq!(run_schedule(&app), "evaluated 4 rules: 2 fired, 0 failed");
    let second = evaluations(fires).await;
    assert_eq!(second[1]["reason"], "cooldown", "{}", second[1]);
    let mut expected = vec![(first_order, fires, first[0]["id"].as_i64().unwrap())];
    for id in [broken, also] {
        let e = evaluations(id).await;
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["decision"], "fired", "{}", e[0]);
        let order_id = e[0]["order_id"].as_i64().expect("order id");
        let order = app
            .get(&format!("/api/v1/release-orders/{order_id}"), &app.viewer)
            .await
            .expect(200)
            .body;
        assert_eq!(order["rule_id"], id);
        assert_eq!(order["proposed_by"], format!("rule:{id}"));
        assert_eq!(order["status"], "proposed");
        assert_eq!(order["allocation"][0]["depot"], "NV1");
        assert!(e[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("fired: proposed release order {order_id} ")));
        expected.push((order_id, id, e[0]["id"].as_i64().unwrap()));
    }
    let events = streamed(&app, &["order.proposed", "rule.fired"]);
    let mut want = Vec::new();
    for (order_id, rule_id, evaluation_id) in expected {
        want.push((
            "order.proposed".to_string(),
            Some(format!("order:{order_id}")),
            order_id,
            None,
        ));
        want.push((
            "rule.fired".to_string(),
            Some(format!("rule:{rule_id}")),
            order_id,
            Some(evaluation_id),
        ));
    }
    let got: Vec<_> = events
        .iter()
        .map(|(kind, subject, data)| {
            (
                kind.clone(),
                subject.clone(),
                data["order_id"].as_i64().unwrap_or_default(),
                data["evaluation_id"].as_i64(),
            )
        })
        .collect();
    assert_eq!(got, want);
}
