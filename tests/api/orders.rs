//! Release orders end to end: proposal, second-person approval with
//! reservations, execution through the ledger, exchanges and their returns,
//! sales with sealed bids and awards.

use diesel::connection::SimpleConnection;
use reserve::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{movement, spawn_app, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    the_three_depot_allocation_matches_the_hand_computed_plan,
    the_proposer_cannot_approve_its_own_order,
    racing_approvals_never_over_reserve,
    a_cancelled_order_frees_exactly_its_reservation,
    execution_is_bounded_by_allocation_and_daily_rate,
    an_exchange_owes_its_premium_and_is_overdue_after_its_due_date,
    the_reserve_floor_stops_a_limited_drawdown_but_not_an_emergency,
    a_sale_awards_by_price_then_time_and_reproducibly,
    bids_are_sealed_and_close_on_time,
    a_refused_transition_names_the_order_status,
);

fn token(app: &TestApp, sub: &str, role: Role) -> String {
    app.keys
        .mint(sub, &[role], None, chrono::Duration::hours(1))
        .unwrap()
}

/// A depot holding `kg` of Nd oxide 99.5, received three days ago (so that
/// executions may be dated in the past days).
async fn stock(app: &TestApp, depot: &str, capacity: &str, rate: &str, kg: &str) {
    app.create_depot(depot, capacity, rate).await;
    let mut body = movement(depot, "Nd", kg);
    body["occurred_at"] = json!((chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339());
    app.post_new("/api/v1/acquisitions", &app.operator, &body)
        .await
        .expect(201);
}

fn order(kind: &str, kg: &str) -> Value {
    let mut o = json!({"kind": kind, "element": "Nd", "form": "oxide", "grade": "99.5",
        "quantity_kg": kg, "authority": "EPCA §161(h)", "reason": "supply disruption"});
    match kind {
        "emergency_drawdown" => {
            o["method"] = json!("direct");
            o["counterparty"] = json!("MagnetCo");
            o["emergency_finding"] = json!("Finding 2027-01");
        }
        "limited_drawdown" => {
            o["method"] = json!("direct");
            o["counterparty"] = json!("MagnetCo");
        }
        "exchange" => {
            o["counterparty"] = json!("MagnetCo");
            o["premium_percent"] = json!("5");
            o["return_due"] = json!("2099-06-30");
            o["late_premium_percent_per_day"] = json!("0.1");
        }
        _ => {}
    }
    o
}

async fn propose(app: &TestApp, body: &Value) -> Value {
    app.post_new("/api/v1/release-orders", &app.operator, body)
        .await
        .expect(201)
        .body
}

async fn act(
    app: &TestApp,
    token: &str,
    id: &Value,
    action: &str,
    body: Value,
) -> crate::helpers::Reply {
    app.post_new(
        &format!("/api/v1/release-orders/{id}/{action}"),
        token,
        &body,
    )
    .await
}

async fn available(app: &TestApp, depot: &str) -> (String, String) {
    let r = app
        .get(
            &format!("/api/v1/stockpiles?depot={depot}&element=Nd"),
            &app.viewer,
        )
        .await
        .expect(200);
    let s = &r.body["items"][0];
    (
        s["reserved_kg"].as_str().unwrap().to_string(),
        s["available_kg"].as_str().unwrap().to_string(),
    )
}

fn day(offset: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(offset)).to_string()
}

/// By hand: 1,000 kg from A (600 kg, 100 kg/day), B (300 kg, 200 kg/day) and
/// C (500 kg, 50 kg/day). Four days ship at most 400 + 300 + 200 = 900 kg,
/// five days 500 + 300 + 250 = 1,050 kg: the order completes on day 5. The
/// fastest depots fill first: B 300 kg (2 days), A 500 kg (5 days), C the
/// last 200 kg (4 days).
async fn the_three_depot_allocation_matches_the_hand_computed_plan(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "1000", "100", "600").await;
    stock(&app, "B1", "1000", "200", "300").await;
    stock(&app, "C1", "1000", "50", "500").await;
    let o = propose(&app, &order("emergency_drawdown", "1000")).await;
    assert_eq!(o["status"], "proposed");
    let plan: Vec<(String, String, String)> = o["allocation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["depot"].as_str().unwrap().into(),
                a["quantity_kg"].as_str().unwrap().into(),
                a["deliver_by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        plan,
        vec![
            ("A1".into(), "500.000".into(), day(4)),
            ("B1".into(), "300.000".into(), day(1)),
            ("C1".into(), "200.000".into(), day(3)),
        ]
    );
    assert_eq!(o["expected_completion"], day(4));
    assert_eq!(o["history"][0]["to"], "proposed");
    app.stop().await;
}

async fn the_proposer_cannot_approve_its_own_order(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "1000", "100", "500").await;
    let o = propose(&app, &order("limited_drawdown", "100")).await;
    // The operator who proposed also holds the approver role in this token.
    let both = app
        .keys
        .mint(
            "otto-operator",
            &[Role::Operator, Role::Approver],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    let r = act(&app, &both, &o["id"], "approve", json!({}))
        .await
        .expect(403);
    assert!(
        r.body["type"].as_str().unwrap().ends_with("same-subject"),
        "{}",
        r.text
    );
    let r = act(
        &app,
        &token(&app, "ann", Role::Approver),
        &o["id"],
        "approve",
        json!({"note": "ok"}),
    )
    .await
    .expect(200);
    assert_eq!(r.body["status"], "approved");
    assert_eq!(r.body["approved_by"], "ann");
    assert_eq!(r.body["reserved_kg"], "100.000");
    assert_eq!(
        available(&app, "A1").await,
        ("100.000".into(), "400.000".into())
    );
    app.stop().await;
}

async fn racing_approvals_never_over_reserve(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "1000", "1000", "500").await;
    let approver_a = token(&app, "ann", Role::Approver);
    let approver_b = token(&app, "bob", Role::Approver);
    for _ in 0..5 {
        let o1 = propose(&app, &order("emergency_drawdown", "300")).await;
        let o2 = propose(&app, &order("emergency_drawdown", "300")).await;
        let (r1, r2) = futures_util::future::join(
            act(&app, &approver_a, &o1["id"], "approve", json!({})),
            act(&app, &approver_b, &o2["id"], "approve", json!({})),
        )
        .await;
        let won = [r1.status.as_u16(), r2.status.as_u16()];
        assert_eq!(
            won.iter().filter(|s| **s == 200).count(),
            1,
            "{won:?} {} {}",
            r1.text,
            r2.text
        );
        assert!(won.contains(&409), "{won:?}");
        assert_eq!(
            available(&app, "A1").await,
            ("300.000".into(), "200.000".into())
        );
        // Free the winner's reservation for the next round.
        let winner = if r1.status.as_u16() == 200 { &o1 } else { &o2 };
        act(&app, &approver_a, &winner["id"], "cancel", json!({}))
            .await
            .expect(200);
    }
    app.stop().await;
}

async fn a_cancelled_order_frees_exactly_its_reservation(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "1000", "1000", "500.5").await;
    let approver = token(&app, "ann", Role::Approver);
    let keep = propose(&app, &order("emergency_drawdown", "100.001")).await;
    act(&app, &approver, &keep["id"], "approve", json!({}))
        .await
        .expect(200);
    let o = propose(&app, &order("emergency_drawdown", "200.25")).await;
    act(&app, &approver, &o["id"], "approve", json!({}))
        .await
        .expect(200);
    assert_eq!(
        available(&app, "A1").await,
        ("300.251".into(), "200.249".into())
    );
    // Partly executed, then cancelled: only what is left is freed.
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "0.25"}),
    )
    .await
    .expect(201);
    let r = act(
        &app,
        &app.operator,
        &o["id"],
        "cancel",
        json!({"note": "shortage over"}),
    )
    .await
    .expect(200);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["reserved_kg"], "0.000");
    assert_eq!(
        r.body["history"].as_array().unwrap().last().unwrap()["note"],
        "shortage over"
    );
    assert_eq!(
        available(&app, "A1").await,
        ("100.001".into(), "400.249".into())
    );
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn execution_is_bounded_by_allocation_and_daily_rate(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "10000", "100", "1000").await;
    stock(&app, "B1", "10000", "100", "1000").await;
    let approver = token(&app, "ann", Role::Approver);
    let o = propose(&app, &order("limited_drawdown", "300")).await;
    let o = act(&app, &approver, &o["id"], "approve", json!({}))
        .await
        .expect(200)
        .body;
    let a1 = o["allocation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["depot"] == "A1")
        .unwrap()
        .clone();
    assert_eq!(a1["quantity_kg"], "200.000");
    // More than the depot's share, and a depot outside the plan, are refused.
    let r = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "200.001"}),
    )
    .await
    .expect(409);
    assert!(
        r.body["type"]
            .as_str()
            .unwrap()
            .ends_with("over-allocation"),
        "{}",
        r.text
    );
    app.create_depot("C1", "1000", "1000").await;
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "C1", "quantity_kg": "1"}),
    )
    .await
    .expect(409);
    // The day's rate: 100 kg today at A1.
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "100"}),
    )
    .await
    .expect(201);
    let r = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "1"}),
    )
    .await
    .expect(409);
    assert!(
        r.body["type"]
            .as_str()
            .unwrap()
            .ends_with("drawdown-rate-exceeded"),
        "{}",
        r.text
    );
    // Another day's share: dated yesterday, within that day's rate.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let e = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "100", "occurred_at": yesterday}),
    )
    .await
    .expect(201);
    assert_eq!(e.body["order_id"], o["id"]);
    assert_eq!(e.body["kind"], "release");
    let b = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "B1", "quantity_kg": "100"}),
    )
    .await
    .expect(201);
    assert_eq!(b.body["counterparty"], "MagnetCo");
    let done = app
        .get(&format!("/api/v1/release-orders/{}", o["id"]), &app.viewer)
        .await
        .expect(200);
    assert_eq!(done.body["status"], "completed");
    assert_eq!(done.body["released_kg"], "300.000");
    assert_eq!(done.body["reserved_kg"], "0.000");
    assert_eq!(
        available(&app, "A1").await,
        ("0.000".into(), "800.000".into())
    );
    // A completed order takes no more executions.
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "B1", "quantity_kg": "1"}),
    )
    .await
    .expect(409);
    app.stop().await;
}

async fn an_exchange_owes_its_premium_and_is_overdue_after_its_due_date(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "10000", "1000", "1000").await;
    let approver = token(&app, "ann", Role::Approver);
    let o = propose(&app, &order("exchange", "100")).await;
    assert_eq!(o["method"], "loan");
    act(&app, &approver, &o["id"], "approve", json!({}))
        .await
        .expect(200);
    let e = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "100"}),
    )
    .await
    .expect(201);
    assert_eq!(e.body["kind"], "loan_out");
    let path = format!("/api/v1/release-orders/{}", o["id"]);
    let got = app.get(&path, &app.viewer).await.expect(200).body;
    assert_eq!(got["status"], "completed");
    assert_eq!(got["owed_kg"], "105.000");
    assert_eq!(got["overdue"], false);
    // Move the due date: due today is not yet overdue; due yesterday is, and
    // one day of 0.1% late premium has accrued.
    let mut conn =
        reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap();
    conn.batch_execute(&format!(
        "UPDATE release_orders SET return_due = '{}' WHERE id = {}",
        day(0),
        o["id"]
    ))
    .unwrap();
    let got = app.get(&path, &app.viewer).await.expect(200).body;
    assert_eq!(
        (got["overdue"].clone(), got["owed_kg"].clone()),
        (json!(false), json!("105.000"))
    );
    let overdue = app
        .get("/api/v1/release-orders?overdue=true", &app.viewer)
        .await
        .expect(200);
    assert_eq!(overdue.body["items"].as_array().unwrap().len(), 0);
    conn.batch_execute(&format!(
        "UPDATE release_orders SET return_due = '{}' WHERE id = {}",
        day(-1),
        o["id"]
    ))
    .unwrap();
    let got = app.get(&path, &app.viewer).await.expect(200).body;
    assert_eq!(got["overdue"], true);
    assert_eq!(got["owed_kg"], "105.100");
    conn.batch_execute(&format!(
        "UPDATE release_orders SET return_due = '{}' WHERE id = {}",
        day(-10),
        o["id"]
    ))
    .unwrap();
    let overdue = app
        .get("/api/v1/release-orders?overdue=true", &app.viewer)
        .await
        .expect(200);
    assert_eq!(overdue.body["items"][0]["owed_kg"], "106.000");
    // Returns: more than owed is refused; the rest closes the exchange.
    act(
        &app,
        &app.operator,
        &o["id"],
        "returns",
        json!({"depot": "A1", "quantity_kg": "106.001"}),
    )
    .await
    .expect(409);
    let r = act(
        &app,
        &app.operator,
        &o["id"],
        "returns",
        json!({"depot": "A1", "quantity_kg": "100"}),
    )
    .await
    .expect(201);
    assert_eq!(r.body["kind"], "loan_return");
    act(
        &app,
        &app.operator,
        &o["id"],
        "returns",
        json!({"depot": "A1", "quantity_kg": "6"}),
    )
    .await
    .expect(201);
    let got = app.get(&path, &app.viewer).await.expect(200).body;
    assert_eq!(got["status"], "returned");
    assert_eq!(got["overdue"], false);
    assert_eq!(app.on_hand("A1", "Nd").await.as_deref(), Some("1006.000"));
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

async fn the_reserve_floor_stops_a_limited_drawdown_but_not_an_emergency(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "10000", "1000", "1000").await;
    let mut conn =
        reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap();
    conn.batch_execute("UPDATE element_policies SET reserve_floor_g = 800000 WHERE element = 'Nd'")
        .unwrap();
    let r = app
        .post_new(
            "/api/v1/release-orders",
            &app.operator,
            &order("limited_drawdown", "200.001"),
        )
        .await
        .expect(409);
    assert!(
        r.body["type"]
            .as_str()
            .unwrap()
            .ends_with("below-reserve-floor"),
        "{}",
        r.text
    );
    // A plain release is held to the floor too, from any endpoint.
    let r = app.release("A1", "Nd", "200.001").await.expect(409);
    assert!(
        r.body["type"]
            .as_str()
            .unwrap()
            .ends_with("below-reserve-floor"),
        "{}",
        r.text
    );
    // The emergency drawdown of the same size goes through, to the end.
    let approver = token(&app, "ann", Role::Approver);
    let o = propose(&app, &order("emergency_drawdown", "200.001")).await;
    act(&app, &approver, &o["id"], "approve", json!({}))
        .await
        .expect(200);
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "200.001"}),
    )
    .await
    .expect(201);
    assert_eq!(app.on_hand("A1", "Nd").await.as_deref(), Some("799.999"));
    app.stop().await;
}

async fn sale_setup(app: &TestApp) -> (Value, String) {
    stock(app, "A1", "10000", "10000", "1000").await;
    for (code, country) in [("AAA", "JP"), ("BBB", "DE"), ("CCC", "KR")] {
        app.post_new(
            "/api/v1/buyers",
            &app.admin,
            &json!({"code": code, "name": code, "country": country}),
        )
        .await
        .expect(201);
    }
    let approver = token(app, "ann", Role::Approver);
    let o = propose(app, &order("test_sale", "1000")).await;
    assert_eq!(o["method"], "sale");
    act(app, &approver, &o["id"], "approve", json!({}))
        .await
        .expect(200);
    (o, approver)
}

async fn a_sale_awards_by_price_then_time_and_reproducibly(backend: Backend) {
    let app = spawn_app(backend).await;
    let (o, approver) = sale_setup(&app).await;
    let closes = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let n = act(
        &app,
        &approver,
        &o["id"],
        "notice",
        json!({"closes_at": closes, "minimum_price_per_kg": "50", "currency": "USD"}),
    )
    .await
    .expect(200);
    assert_eq!(n.body["status"], "offered");
    // A ties with B on price but bids first; C bids the most; B is cut short.
    for (buyer, kg, price) in [
        ("AAA", "400", "90"),
        ("BBB", "500", "90"),
        ("CCC", "300", "95"),
    ] {
        act(
            &app,
            &token(&app, buyer, Role::Bidder),
            &o["id"],
            "bids",
            json!({"quantity_kg": kg, "price_per_kg": price}),
        )
        .await
        .expect(201);
    }
    let r = act(&app, &approver, &o["id"], "award", json!(null))
        .await
        .expect(409);
    assert!(
        r.body["type"].as_str().unwrap().ends_with("bidding-open"),
        "{}",
        r.text
    );
    actix_rt::time::sleep(std::time::Duration::from_millis(2100)).await;
    let awarded = act(&app, &approver, &o["id"], "award", json!(null))
        .await
        .expect(200)
        .body;
    let got: Vec<(String, String, String)> = awarded["awards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["buyer"].as_str().unwrap().into(),
                a["quantity_kg"].as_str().unwrap().into(),
                a["price_per_kg"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = got.clone();
    sorted.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    assert_eq!(
        sorted,
        vec![
            ("CCC".into(), "300.000".into(), "95".into()),
            ("AAA".into(), "400.000".into(), "90".into()),
            ("BBB".into(), "300.000".into(), "90".into()),
        ]
    );
    // Awarding again from the stored bids gives the stored awards.
    let bids = app
        .get(
            &format!("/api/v1/release-orders/{}/bids", o["id"]),
            &app.auditor,
        )
        .await
        .expect(200);
    let stored: Vec<reserve::orders::model::Bid> = bids.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| reserve::orders::model::Bid {
            id: b["id"].as_i64().unwrap(),
            buyer: b["buyer"].as_str().unwrap().into(),
            quantity_g: crate::helpers::grams(b["quantity_kg"].as_str().unwrap()),
            price_micros: (b["price_per_kg"].as_str().unwrap().parse::<f64>().unwrap() * 1e6)
                as i64,
            placed_at_micros: chrono::DateTime::parse_from_rfc3339(
                b["placed_at"].as_str().unwrap(),
            )
            .unwrap()
            .timestamp_micros(),
        })
        .collect();
    let again: Vec<(String, String)> = reserve::orders::model::award(1_000_000, &stored)
        .into_iter()
        .map(|a| {
            (
                a.buyer,
                format!("{}.{:03}", a.quantity_g / 1000, a.quantity_g % 1000),
            )
        })
        .collect();
    let stored_awards: Vec<(String, String)> = awarded["awards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["buyer"].as_str().unwrap().into(),
                a["quantity_kg"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut again_sorted = again.clone();
    again_sorted.sort();
    let mut stored_sorted = stored_awards.clone();
    stored_sorted.sort();
    assert_eq!(again_sorted, stored_sorted);
    // Deliveries go per award, priced, to the buyer.
    let d = act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "300", "buyer": "CCC"}),
    )
    .await
    .expect(201);
    assert_eq!(
        (
            d.body["counterparty"].clone(),
            d.body["unit_price"].clone(),
            d.body["currency"].clone()
        ),
        (json!("CCC"), json!("95"), json!("USD"))
    );
    act(
        &app,
        &app.operator,
        &o["id"],
        "execute",
        json!({"depot": "A1", "quantity_kg": "300.001", "buyer": "BBB"}),
    )
    .await
    .expect(409);
    app.stop().await;
}

async fn bids_are_sealed_and_close_on_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let (o, approver) = sale_setup(&app).await;
    let closes = (chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    act(
        &app,
        &approver,
        &o["id"],
        "notice",
        json!({"closes_at": closes, "minimum_price_per_kg": "50", "currency": "USD"}),
    )
    .await
    .expect(200);
    let a = token(&app, "AAA", Role::Bidder);
    let b = token(&app, "BBB", Role::Bidder);
    let r = act(
        &app,
        &a,
        &o["id"],
        "bids",
        json!({"quantity_kg": "10", "price_per_kg": "49.999999"}),
    )
    .await
    .expect(422);
    assert_eq!(r.error_fields(), vec!["price_per_kg"]);
    act(
        &app,
        &a,
        &o["id"],
        "bids",
        json!({"quantity_kg": "10", "price_per_kg": "60"}),
    )
    .await
    .expect(201);
    act(
        &app,
        &b,
        &o["id"],
        "bids",
        json!({"quantity_kg": "20", "price_per_kg": "70"}),
    )
    .await
    .expect(201);
    let path = format!("/api/v1/release-orders/{}/bids", o["id"]);
    let mine = app.get(&path, &a).await.expect(200);
    let items = mine.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["buyer"], "AAA");
    assert!(
        !mine.text.contains("\"70\""),
        "B's price must not show: {}",
        mine.text
    );
    app.get(&path, &approver).await.expect(403);
    let order_view = app
        .get(&format!("/api/v1/release-orders/{}", o["id"]), &a)
        .await
        .expect(200);
    assert!(!order_view.text.contains("\"70\""), "{}", order_view.text);
    actix_rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = act(
        &app,
        &b,
        &o["id"],
        "bids",
        json!({"quantity_kg": "20", "price_per_kg": "80"}),
    )
    .await
    .expect(409);
    assert!(
        r.body["type"].as_str().unwrap().ends_with("bidding-closed"),
        "{}",
        r.text
    );
    // An unregistered buyer is refused outright.
    act(
        &app,
        &token(&app, "ZZZ", Role::Bidder),
        &o["id"],
        "bids",
        json!({"quantity_kg": "1", "price_per_kg": "99"}),
    )
    .await
    .expect(403);
    app.stop().await;
}

/// 409 `order-state` names the order's status as `order_status` (a context
/// key `status` would be lost under the problem's own HTTP `status`), and a
/// `return_due` must be exactly `YYYY-MM-DD`; `fiscal_year` takes any JSON
/// number that is whole.
async fn a_refused_transition_names_the_order_status(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "A1", "1000", "100", "500").await;
    let o = propose(&app, &order("limited_drawdown", "100")).await;
    let ann = token(&app, "ann", Role::Approver);
    act(&app, &ann, &o["id"], "approve", json!({}))
        .await
        .expect(200);
    let r = act(&app, &ann, &o["id"], "reject", json!({}))
        .await
        .expect(409);
    assert_eq!(r.body["code"], "order-state", "{}", r.text);
    assert_eq!(r.body["status"], 409);
    assert_eq!(r.body["order_status"], "approved");
    assert_eq!(r.body["allowed_from"], json!(["proposed"]));
    for due in ["2099-6-30", "+2099-06-30", "2099-06-31"] {
        let mut body = order("exchange", "10");
        body["return_due"] = json!(due);
        let r = app
            .post_new("/api/v1/release-orders", &app.operator, &body)
            .await
            .expect(422);
        assert_eq!(
            r.body["errors"][0]["field"], "return_due",
            "{due}: {}",
            r.text
        );
    }
    // `fiscal_year` is a JSON Schema integer, which 2027.0 is; 2027.5 is not.
    let mut body = order("mandated_sale", "10");
    body["law"] = json!("Stockpiling Act §5");
    body["fiscal_year"] = json!(2027.0);
    let r = app
        .post_new("/api/v1/release-orders", &app.operator, &body)
        .await
        .expect(201);
    assert_eq!(r.body["fiscal_year"], 2027);
    body["fiscal_year"] = json!(2027.5);
    app.post_new("/api/v1/release-orders", &app.operator, &body)
        .await
        .expect(422);
    app.stop().await;
}
