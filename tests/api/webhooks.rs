//! Webhooks against a receiver on loopback: signed deliveries, retries with
//! backoff until the receiver answers, filters by event type, the delivery
//! log, redelivery, timeouts, and the admin endpoints' rules.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, Backend, TestApp};
use crate::on_both_backends;
use crate::webhook_receiver::{signature_valid, Receiver};

on_both_backends!(
    a_receiver_failing_three_times_gets_the_event_on_the_fourth_with_a_valid_signature,
    event_types_filter_and_new_webhooks_get_no_history,
    the_log_shows_every_attempt_and_a_delivery_can_be_sent_again,
    slow_receivers_time_out_and_disabling_cancels_what_waits,
    only_admins_manage_webhooks_and_bad_input_is_named,
);

/// An app whose worker polls fast and retries after 100, 200, 400 ms…
async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.webhooks.enabled = true;
        s.webhooks.poll_ms = 50;
        s.webhooks.retry_base_ms = 100;
        s.webhooks.retry_cap_ms = 400;
        s.webhooks.timeout_ms = 500;
    })
    .await
}

async fn register(app: &TestApp, url: &str, types: &[&str]) -> Value {
    app.post_new(
        "/api/v1/webhooks",
        &app.admin,
        &json!({"url": url, "event_types": types, "description": "test receiver"}),
    )
    .await
    .expect(201)
    .body
}

async fn deliveries(app: &TestApp, webhook: i64) -> Vec<Value> {
    app.get(
        &format!("/api/v1/webhooks/{webhook}/deliveries"),
        &app.admin,
    )
    .await
    .expect(200)
    .body["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the webhook's newest delivery has `status`.
async fn delivery_settles(app: &TestApp, webhook: i64, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = deliveries(app, webhook).await;
        if let Some(d) = all.first().filter(|d| d["status"] == status) {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {status} delivery within 30 s: {all:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_receiver_failing_three_times_gets_the_event_on_the_fourth_with_a_valid_signature(
    backend: Backend,
) {
    let app = app(backend).await;
    let rx = Receiver::start().await;
    app.create_depot("NV-1", "100000", "100000").await;
    let hook = register(&app, &rx.url("/flaky"), &["ledger.entry"]).await;
    let secret = hook["secret"].as_str().expect("the secret, shown once");
    assert!(secret.starts_with("whsec_"));
    let id = hook["id"].as_i64().unwrap();
    app.acquire("NV-1", "Dy", "12.5").await.expect(201);

    let got = rx.wait_for("/flaky", 4).await;
    let fourth = &got[3];
    assert!(
        signature_valid(secret, fourth),
        "the 4th carries a valid signature: {fourth:?}"
    );
    assert!(
        got.iter()
            .all(|r| r.id == fourth.id && r.body == fourth.body),
        "every attempt is the same message (same webhook-id and body)"
    );
    assert!(got.iter().all(|r| signature_valid(secret, r)));
    let sent_at: i64 = fourth.timestamp.parse().expect("a unix timestamp");
    assert!(
        (chrono::Utc::now().timestamp() - sent_at).abs() < 60,
        "signed when sent"
    );
    let body: Value = serde_json::from_str(&fourth.body).unwrap();
    assert_eq!(body["type"], "ledger.entry");
    assert_eq!(body["data"]["depot"], "NV-1");
    assert_eq!(body["data"]["element"], "Dy");
    assert_eq!(body["data"]["quantity_kg"], "12.500");
    assert_eq!(
        body["data"]["actor"],
        Value::Null,
        "no poster names leave the reserve"
    );
    assert!(body["id"].as_str().is_some_and(|p| !p.is_empty()));

    let d = delivery_settles(&app, id, "delivered").await;
    assert_eq!(d["id"], fourth.id.as_str());
    assert_eq!(d["attempts"], 4);
    let log = d["attempt_log"].as_array().unwrap();
    let codes: Vec<i64> = log
        .iter()
        .map(|a| a["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [500, 500, 500, 204]);
    assert!(log[0]["error"].as_str().unwrap().contains("nope, not yet"));
    assert_eq!(log[3]["error"], Value::Null);
    // Backoff: each retry waited at least half its nominal delay.
    let started: Vec<chrono::DateTime<chrono::Utc>> = log
        .iter()
        .map(|a| a["started_at"].as_str().unwrap().parse().unwrap())
        .collect();
    for (i, nominal) in [100, 200, 400].iter().enumerate() {
        let gap = (started[i + 1] - started[i]).num_milliseconds();
        assert!(gap >= nominal / 2, "retry {} came after {gap} ms", i + 1);
    }
    assert!(
        rx.at("/flaky").len() == 4,
        "nothing is sent after the delivery succeeded"
    );
    let secret_listed = app.get(&format!("/api/v1/webhooks/{id}"), &app.admin).await;
    assert!(
        secret_listed.body.get("secret").is_none(),
        "the secret is shown once"
    );
    rx.stop().await;
    app.stop().await;
}

async fn event_types_filter_and_new_webhooks_get_no_history(backend: Backend) {
    let app = app(backend).await;
    let rx = Receiver::start().await;
    app.create_depot("NV-1", "100000", "100000").await;
    app.acquire("NV-1", "Nd", "1").await.expect(201);
    // Registered after that entry: it never gets it.
    register(&app, &rx.url("/ledger"), &["ledger.entry"]).await;
    register(&app, &rx.url("/orders"), &["order.*"]).await;
    register(&app, &rx.url("/all"), &["*"]).await;
    app.acquire("NV-1", "Nd", "2").await.expect(201);
    app.post_new(
        "/api/v1/release-orders",
        &app.operator,
        &json!({"kind": "emergency_drawdown", "element": "Nd", "form": "oxide", "grade": "99.5",
                "quantity_kg": "1", "authority": "EPCA §161(h)", "reason": "supply disruption",
                "method": "direct", "counterparty": "MagnetCo", "emergency_finding": "Finding 2027-01"}),
    )
    .await
    .expect(201);
    rx.wait_for("/orders", 1).await;
    let ledger = rx.wait_for("/ledger", 1).await;
    let all = rx.wait_for("/all", 1).await;
    // Let anything that should not come have its chance to.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    let ledger_now = rx.at("/ledger");
    assert_eq!(
        ledger_now.len(),
        1,
        "one entry since registration: {ledger_now:?}"
    );
    let body: Value = serde_json::from_str(&ledger[0].body).unwrap();
    assert_eq!(body["data"]["quantity_kg"], "2.000");
    let orders = rx.at("/orders");
    assert!(
        orders.iter().all(|r| {
            let b: Value = serde_json::from_str(&r.body).unwrap();
            b["type"].as_str().unwrap().starts_with("order.")
        }),
        "only order events: {orders:?}"
    );
    let types: Vec<String> = rx
        .at("/all")
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        types.contains(&"ledger.entry".to_string()),
        "{types:?} / {all:?}"
    );
    assert_eq!(
        types.len(),
        1 + orders.len(),
        "`*` gets the entry and every order event, once each"
    );
    rx.stop().await;
    app.stop().await;
}

async fn the_log_shows_every_attempt_and_a_delivery_can_be_sent_again(backend: Backend) {
    let app = app(backend).await;
    let rx = Receiver::start().await;
    app.create_depot("NV-1", "100000", "100000").await;
    let hook = register(&app, &rx.url("/ok"), &["ledger.entry"]).await;
    let id = hook["id"].as_i64().unwrap();
    app.acquire("NV-1", "Tb", "3").await.expect(201);
    rx.wait_for("/ok", 1).await;
    let d = delivery_settles(&app, id, "delivered").await;
    let delivery = d["id"].as_str().unwrap().to_string();
    let one = app
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries/{delivery}"),
            &app.admin,
        )
        .await
        .expect(200);
    assert_eq!(one.body["attempts"], 1);

    let path = format!("/api/v1/webhooks/{id}/deliveries/{delivery}/redeliver");
    app.post(&path, &app.admin, None, &json!({}))
        .await
        .expect(422);
    let again = app
        .post(&path, &app.admin, Some("redeliver-1"), &json!({}))
        .await
        .expect(202);
    assert_eq!(again.body["status"], "pending");
    assert!(again.body["redelivered_at"].is_string());
    let got = rx.wait_for("/ok", 2).await;
    assert_eq!(
        got[1].id, got[0].id,
        "the same webhook-id, for deduplication"
    );
    let settled = delivery_settles(&app, id, "delivered").await;
    assert_eq!(settled["attempts"], 2);
    let log = settled["attempt_log"].as_array().unwrap();
    assert_eq!(log[0]["redelivery"], false);
    assert_eq!(log[1]["redelivery"], true);
    // The same key again is the same request: no third send.
    app.post(&path, &app.admin, Some("redeliver-1"), &json!({}))
        .await
        .expect(202);
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.at("/ok").len(), 2);

    let pending = app
        .get(
            &format!("/api/v1/webhooks/{id}/deliveries?status=pending"),
            &app.admin,
        )
        .await
        .expect(200);
    assert_eq!(pending.body["items"], json!([]));
    app.get(
        &format!("/api/v1/webhooks/{id}/deliveries/msg_nope"),
        &app.admin,
    )
    .await
    .expect(404);
    rx.stop().await;
    app.stop().await;
}

async fn slow_receivers_time_out_and_disabling_cancels_what_waits(backend: Backend) {
    let app = app(backend).await;
    let rx = Receiver::start().await;
    app.create_depot("NV-1", "100000", "100000").await;
    let slow = register(&app, &rx.url("/slow"), &["ledger.entry"]).await;
    let down = register(&app, &rx.url("/down"), &["ledger.entry"]).await;
    let (slow_id, down_id) = (slow["id"].as_i64().unwrap(), down["id"].as_i64().unwrap());
    app.acquire("NV-1", "Ho", "4").await.expect(201);
    rx.wait_for("/down", 2).await;
    rx.wait_for("/slow", 1).await;
    // The slow receiver's first attempt ends at the 500 ms timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let timed_out = loop {
        let d = deliveries(&app, slow_id).await;
        if let Some(a) = d[0]["attempt_log"]
            .as_array()
            .and_then(|l| l.first().cloned())
        {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt logged: {d:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(timed_out["status_code"], Value::Null);
    assert!(
        timed_out["error"].as_str().unwrap().contains("500 ms"),
        "{timed_out}"
    );
    assert!(timed_out["duration_ms"].as_i64().unwrap() < 2_000);

    // An https receiver is reached over TLS: this one speaks plain HTTP, so
    // the handshake fails, and says so (not "SSL is not supported").
    let tls = register(
        &app,
        &rx.url("/tls").replace("http://", "https://"),
        &["ledger.entry"],
    )
    .await;
    app.acquire("NV-1", "Ho", "1").await.expect(201);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let tls_attempt = loop {
        let d = deliveries(&app, tls["id"].as_i64().unwrap()).await;
        if let Some(a) = d
            .first()
            .and_then(|d| d["attempt_log"].as_array())
            .and_then(|l| l.first().cloned())
        {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no TLS attempt logged: {d:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };
    let why = tls_attempt["error"].as_str().unwrap();
    assert!(!why.to_lowercase().contains("not supported"), "{why}");
    assert_eq!(tls_attempt["status_code"], Value::Null, "{why}");

    // Disabling the failing webhook cancels its waiting delivery.
    let current = app
        .get(&format!("/api/v1/webhooks/{down_id}"), &app.admin)
        .await
        .expect(200);
    let etag = current.header("etag").unwrap();
    app.patch(
        &format!("/api/v1/webhooks/{down_id}"),
        &app.admin,
        Some(&etag),
        &json!({"enabled": false}),
    )
    .await
    .expect(200);
    let d = delivery_settles(&app, down_id, "cancelled").await;
    assert_eq!(d["next_attempt_at"], Value::Null);
    let sent = rx.at("/down").len();
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    assert!(
        rx.at("/down").len() <= sent + 1,
        "no retries after disabling"
    );
    let path = format!(
        "/api/v1/webhooks/{down_id}/deliveries/{}/redeliver",
        d["id"].as_str().unwrap()
    );
    let refused = app
        .post_new(&path, &app.admin, &json!({}))
        .await
        .expect(409);
    assert!(refused.text.contains("disabled"));
    rx.stop().await;
    app.stop().await;
}

async fn only_admins_manage_webhooks_and_bad_input_is_named(backend: Backend) {
    let app = app(backend).await;
    let body = json!({"url": "https://hooks.example.org/reserve", "event_types": ["order.*"]});
    app.post_new("/api/v1/webhooks", &app.operator, &body)
        .await
        .expect(403);
    app.get("/api/v1/webhooks", &app.viewer).await.expect(403);
    app.get("/api/v1/webhooks", &app.auditor).await.expect(403);

    let bad = app
        .post_new(
            "/api/v1/webhooks",
            &app.admin,
            &json!({"url": "ftp://user:pw@example.org/", "event_types": ["ledger.entrys"]}),
        )
        .await
        .expect(422);
    let mut fields = bad.error_fields();
    fields.sort();
    assert_eq!(fields, ["event_types", "url"]);
    app.post_new(
        "/api/v1/webhooks",
        &app.admin,
        &json!({"url": "https://e.org/", "event_types": []}),
    )
    .await
    .expect(422);
    app.post_new(
        "/api/v1/webhooks",
        &app.admin,
        &json!({"url": "https://e.org/", "event_types": ["*"], "secret": "mine"}),
    )
    .await
    .expect(422);
    app.post("/api/v1/webhooks", &app.admin, None, &body)
        .await
        .expect(422);

    let created = app
        .post("/api/v1/webhooks", &app.admin, Some("wh-1"), &body)
        .await
        .expect(201);
    let replay = app
        .post("/api/v1/webhooks", &app.admin, Some("wh-1"), &body)
        .await
        .expect(201);
    assert_eq!(
        replay.body["id"], created.body["id"],
        "a retried create is the same webhook"
    );
    let all = app
        .get("/api/v1/webhooks?limit=100", &app.admin)
        .await
        .expect(200);
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        1,
        "the replayed create registered no second webhook"
    );
    let id = created.body["id"].as_i64().unwrap();
    let path = format!("/api/v1/webhooks/{id}");
    let got = app.get(&path, &app.admin).await.expect(200);
    let etag = got.header("etag").unwrap();
    assert_eq!(etag, format!("\"webhook-{id}-v1\""));
    assert_eq!(got.body["event_types"], json!(["order.*"]));

    app.patch(&path, &app.admin, None, &json!({"enabled": false}))
        .await
        .expect(428);
    app.patch(
        &path,
        &app.admin,
        Some("\"webhook-1-v9\""),
        &json!({"enabled": false}),
    )
    .await
    .expect(412);
    app.patch(&path, &app.admin, Some(&etag), &json!({}))
        .await
        .expect(400);
    app.patch(&path, &app.admin, Some(&etag), &json!({"url": "nope"}))
        .await
        .expect(422);
    let changed = app
        .patch(
            &path,
            &app.admin,
            Some(&etag),
            &json!({"event_types": ["ledger.entry", "count.flagged"], "description": "ops"}),
        )
        .await
        .expect(200);
    assert_eq!(changed.body["version"], 2);
    assert_eq!(changed.body["description"], "ops");
    assert_eq!(
        changed.header("etag").unwrap(),
        format!("\"webhook-{id}-v2\"")
    );
    app.patch(&path, &app.admin, Some(&etag), &json!({"enabled": false}))
        .await
        .expect(412);

    let listed = app
        .get("/api/v1/webhooks?limit=1", &app.admin)
        .await
        .expect(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert!(listed.body["items"][0].get("secret").is_none());
    app.get("/api/v1/webhooks/1/deliveries?status=lost", &app.admin)
        .await
        .expect(422);

    app.delete(&path, &app.admin, Some(&etag)).await.expect(412);
    app.delete(&path, &app.admin, Some("*")).await.expect(204);
    app.get(&path, &app.admin).await.expect(404);
    app.get(&format!("{path}/deliveries"), &app.admin)
        .await
        .expect(404);
    app.get("/api/v1/webhooks/abc", &app.admin)
        .await
        .expect(404);
    app.stop().await;
}
