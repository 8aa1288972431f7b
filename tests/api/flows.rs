//! Import flows (upload as CSV or JSON, idempotent per source and external
//! id, refused whole on any bad row) and days of cover.

use std::time::Instant;

use actix_web::web::Bytes;
use chrono::{Duration, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Backend, Reply, TestApp};
use crate::on_both_backends;

on_both_backends!(
    flows_json_and_csv_ingest_and_resend_unchanged,
    flows_changed_content_conflicts_and_writes_nothing,
    flows_one_bad_row_refuses_the_whole_file,
    flows_every_bad_row_is_listed,
    flows_repeats_within_a_file,
    flows_oversize_is_413,
    flows_roles_and_media_types,
    flows_idempotency_key_replays,
    flows_list_filters_and_pages,
    flows_fifty_thousand_rows,
    flows_cover_by_hand,
);

const HEADER: &str =
    "element,form,origin_country,hs_code,period_start,period_end,quantity_kg,source,external_id";

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// POSTs `body` as `content_type`, with an optional Idempotency-Key.
async fn upload(
    app: &TestApp,
    token: &str,
    content_type: &str,
    key: Option<&str>,
    body: impl Into<Bytes>,
) -> Reply {
    let mut req = app
        .client
        .post(app.url("/api/v1/import-flows"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Content-Type", content_type.to_string()));
    if let Some(k) = key {
        req = req.insert_header(("Idempotency-Key", k.to_string()));
    }
    let mut res = req.send_body(body.into()).await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.body().limit(16 << 20).await.expect("body");
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).to_string(),
    }
}

async fn csv(app: &TestApp, rows: &[String]) -> Reply {
    let body = format!("{HEADER}\n{}\n", rows.join("\n"));
    upload(app, &app.operator, "text/csv", None, body).await
}

/// One CSV row of `kg` Nd oxide from `origin` in January 2026.
fn row(id: &str, origin: &str, kg: &str) -> String {
    format!("Nd,oxide,{origin},2846.90,2026-01-01,2026-01-31,{kg},USITC-DataWeb,{id}")
}

async fn count(app: &TestApp, query: &str) -> usize {
    let r = app
        .get(
            &format!("/api/v1/import-flows?limit=1000{query}"),
            &app.viewer,
        )
        .await
        .expect(200);
    r.body["items"].as_array().unwrap().len()
}

async fn flows_json_and_csv_ingest_and_resend_unchanged(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!([
        {"element": "dy", "form": "Oxide", "origin_country": "CN", "hs_code": "2846908000",
         "period_start": "2026-01-01", "period_end": "2026-01-31", "quantity_kg": "1250.5",
         "source": "USITC-DataWeb", "external_id": "DY-CN-2026-01"},
        {"element": "Tb", "form": "metal", "origin_country": "MM", "hs_code": "2805.30",
         "period_start": "2026-02-01", "period_end": "2026-02-28", "quantity_kg": "7",
         "source": "USITC-DataWeb", "external_id": "TB-MM-2026-02"}
    ]);
    let r = app
        .post("/api/v1/import-flows", &app.operator, None, &body)
        .await
        .expect(201);
    assert_eq!(r.body["inserted"], 2);
    assert_eq!(r.body["unchanged"], 0);
    assert_eq!(r.body["elements_changed"], json!(["Tb", "Dy"]));
    let again = app
        .post("/api/v1/import-flows", &app.operator, None, &body)
        .await
        .expect(200);
    assert_eq!(
        (
            again.body["inserted"].clone(),
            again.body["unchanged"].clone()
        ),
        (json!(0), json!(2))
    );
    assert_eq!(again.body["elements_changed"], json!([]));
    assert_eq!(count(&app, "").await, 2);

    // Stored in normal form.
    let list = app
        .get("/api/v1/import-flows?element=Dy", &app.viewer)
        .await
        .expect(200);
    let dy = &list.body["items"][0];
    assert_eq!(dy["element"], "Dy");
    assert_eq!(dy["form"], "oxide");
    assert_eq!(dy["hs_code"], "2846.90.8000");
    assert_eq!(dy["quantity_kg"], "1250.500");
    assert_eq!(dy["content_hash"].as_str().unwrap().len(), 64);
    assert_eq!(
        dy["recorded_by"],
        Value::Null,
        "viewers do not see who uploaded"
    );

    // CSV: three rows, then the same file again.
    let rows = [
        row("a", "CN", "100"),
        row("b", "MY", "2.5"),
        row("c", "AU", "0.001"),
    ];
    let r = csv(&app, &rows).await.expect(201);
    assert_eq!(r.body["inserted"], 3);
    let r = csv(&app, &rows).await.expect(200);
    assert_eq!(
        (r.body["inserted"].clone(), r.body["unchanged"].clone()),
        (json!(0), json!(3))
    );
    // The same rows spelled differently are the same rows.
    let respelled =
        ["ND,OXIDE,CN,284690,2026-01-01,2026-01-31,100.000, USITC-DataWeb ,a".to_string()];
    let r = csv(&app, &respelled).await.expect(200);
    assert_eq!(r.body["unchanged"], 1);
    assert_eq!(count(&app, "").await, 5);
    app.stop().await;
}

async fn flows_changed_content_conflicts_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    csv(&app, &[row("a", "CN", "100")]).await.expect(201);
    // A new row first, then the stored one with another quantity and origin.
    let r = csv(&app, &[row("new", "CN", "5"), row("a", "MY", "101")])
        .await
        .expect(409);
    assert_eq!(r.body["code"], "flow-conflict");
    assert_eq!(r.body["conflicts_total"], 1);
    let c = &r.body["conflicts"][0];
    assert_eq!(c["row"], 1);
    assert_eq!(c["field"], "rows[1]");
    assert_eq!(c["external_id"], "a");
    assert_eq!(c["fields"], json!(["origin_country", "quantity_kg"]));
    assert!(
        r.body["detail"].as_str().unwrap().contains("rows[1]"),
        "{}",
        r.text
    );
    assert_eq!(
        count(&app, "").await,
        1,
        "the new row was not written either"
    );
    let r = app
        .get("/api/v1/import-flows", &app.viewer)
        .await
        .expect(200);
    assert_eq!(r.body["items"][0]["quantity_kg"], "100.000");
    app.stop().await;
}

async fn flows_one_bad_row_refuses_the_whole_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut rows: Vec<String> = (0..20).map(|i| row(&format!("r{i}"), "CN", "10")).collect();
    rows[12] = row("r12", "XX", "10");
    let r = csv(&app, &rows).await.expect(422);
    assert_eq!(r.error_fields(), vec!["rows[12].origin_country"]);
    let message = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("CSV line 14"), "{message}");
    assert_eq!(count(&app, "").await, 0, "nothing of the file was written");
    app.stop().await;
}

async fn flows_every_bad_row_is_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let future = (today() + Duration::days(1)).to_string();
    let rows = vec![
        row("ok", "CN", "1"),
        // An HS code outside the rare-earth subheadings.
        "Nd,oxide,CN,2846.20,2026-01-01,2026-01-31,1,S,h".to_string(),
        // Period start after end.
        "Nd,oxide,CN,2846.90,2026-02-01,2026-01-31,1,S,p".to_string(),
        // A fourth decimal of a kilogram.
        "Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,1.0001,S,q".to_string(),
        // Ending tomorrow.
        format!("Nd,oxide,CN,2846.90,2026-01-01,{future},1,S,f"),
        // UK is reserved, not assigned (GB is).
        "Nd,oxide,UK,2846.90,2026-01-01,2026-01-31,1,S,c".to_string(),
        // Not an element; not a form; blank external id.
        "Fe,powder,CN,2846.90,2026-01-01,2026-01-31,1,S,".to_string(),
        // Too few fields.
        "Nd,oxide".to_string(),
    ];
    let r = csv(&app, &rows).await.expect(422);
    assert_eq!(
        r.error_fields(),
        vec![
            "rows[1].hs_code",
            "rows[2].period_start",
            "rows[3].quantity_kg",
            "rows[4].period_end",
            "rows[5].origin_country",
            "rows[6].element",
            "rows[6].form",
            "rows[6].external_id",
            "rows[7]",
        ]
    );
    // The same checks name the same fields in a JSON upload.
    let body = json!([
        {"element": "Nd", "form": "oxide", "origin_country": "CN", "hs_code": "8505.11",
         "period_start": "2026-01-01", "period_end": "2026-01-31", "quantity_kg": 3,
         "source": "S", "external_id": "x", "note": "?"},
        {"element": "Nd", "form": "oxide", "origin_country": "EU", "hs_code": "8505.11",
         "period_start": "2026-01-01", "period_end": future, "quantity_kg": "3",
         "source": "S", "external_id": "y"}
    ]);
    let r = app
        .post("/api/v1/import-flows", &app.operator, None, &body)
        .await
        .expect(422);
    assert_eq!(
        r.error_fields(),
        vec![
            "rows[0].quantity_kg",
            "rows[0].note",
            "rows[1].origin_country",
            "rows[1].period_end"
        ]
    );
    // A header that is not exactly the columns.
    let r = upload(
        &app,
        &app.operator,
        "text/csv",
        None,
        "element,form\nNd,oxide\n",
    )
    .await
    .expect(422);
    assert_eq!(r.error_fields(), vec!["header"]);
    assert_eq!(count(&app, "").await, 0);
    app.stop().await;
}

async fn flows_repeats_within_a_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = csv(
        &app,
        &[
            row("a", "CN", "1"),
            row("b", "CN", "1"),
            row("a", "CN", "1.000"),
        ],
    )
    .await
    .expect(201);
    assert_eq!(r.body["inserted"], 2);
    assert_eq!(r.body["repeated"], 1);
    let r = csv(
        &app,
        &[
            row("x", "CN", "1"),
            row("y", "CN", "1"),
            row("x", "CN", "2"),
        ],
    )
    .await
    .expect(422);
    assert_eq!(r.error_fields(), vec!["rows[2].external_id"]);
    let m = r.body["errors"][0]["message"].as_str().unwrap();
    assert!(m.contains("rows[0]") && m.contains("rows[2]"), "{m}");
    assert_eq!(count(&app, "").await, 2);
    app.stop().await;
}

async fn flows_oversize_is_413(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.import_flows.max_body_bytes = 4096).await;
    let rows: Vec<String> = (0..100).map(|i| row(&format!("r{i}"), "CN", "1")).collect();
    let body = format!("{HEADER}\n{}\n", rows.join("\n"));
    assert!(body.len() > 4096);
    // With a Content-Length, refused before reading.
    upload(&app, &app.operator, "text/csv", None, body.clone())
        .await
        .expect(413);
    // Streamed without one, refused once the limit is passed.
    let chunks: Vec<Result<Bytes, std::io::Error>> = body
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let mut res = app
        .client
        .post(app.url("/api/v1/import-flows"))
        .insert_header(("Authorization", format!("Bearer {}", app.operator)))
        .insert_header(("Content-Type", "text/csv"))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .expect("request");
    assert_eq!(res.status().as_u16(), 413);
    let problem: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "payload-too-large");
    assert_eq!(count(&app, "").await, 0);
    // The ordinary JSON limit does not apply to this route.
    let small: Vec<String> = (0..30).map(|i| row(&format!("r{i}"), "CN", "1")).collect();
    csv(&app, &small).await.expect(201);
    app.stop().await;
}

async fn flows_roles_and_media_types(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = format!("{HEADER}\n{}\n", row("a", "CN", "1"));
    for token in [&app.viewer, &app.auditor] {
        upload(&app, token, "text/csv", None, body.clone())
            .await
            .expect(403);
    }
    upload(&app, &app.operator, "text/csv", None, body.clone())
        .await
        .expect(201);
    upload(
        &app,
        &app.admin,
        "text/csv; charset=utf-8",
        None,
        body.clone(),
    )
    .await
    .expect(200);
    upload(&app, &app.operator, "text/plain", None, body.clone())
        .await
        .expect(415);
    let r = upload(&app, &app.operator, "application/json", None, "[{")
        .await
        .expect(400);
    assert_eq!(r.body["code"], "bad-request");
    let r = upload(&app, &app.operator, "application/json", None, "{}")
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["body"]);
    // Every role reads.
    for token in [&app.viewer, &app.auditor, &app.operator, &app.admin] {
        app.get("/api/v1/import-flows", token).await.expect(200);
        app.get("/api/v1/cover", token).await.expect(200);
    }
    let r = app
        .get("/api/v1/import-flows", &app.auditor)
        .await
        .expect(200);
    assert_eq!(r.body["items"][0]["recorded_by"], "otto-operator");
    app.stop().await;
}

async fn flows_idempotency_key_replays(backend: Backend) {
    let app = spawn_app(backend).await;
    let body = format!("{HEADER}\n{}\n", row("a", "CN", "1"));
    let first = upload(&app, &app.operator, "text/csv", Some("k-1"), body.clone())
        .await
        .expect(201);
    let replay = upload(&app, &app.operator, "text/csv", Some("k-1"), body.clone())
        .await
        .expect(201);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.body, first.body);
    // Without the key, the resend is simply unchanged.
    let r = upload(&app, &app.operator, "text/csv", None, body.clone())
        .await
        .expect(200);
    assert_eq!(r.body["unchanged"], 1);
    // The key with another body is refused, as on every write.
    let other = format!("{HEADER}\n{}\n", row("b", "CN", "1"));
    let r = upload(&app, &app.operator, "text/csv", Some("k-1"), other)
        .await
        .expect(422);
    assert_eq!(r.body["code"], "idempotency-key-reused");
    let r = upload(&app, &app.operator, "text/csv", Some("bad key"), body)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["Idempotency-Key"]);
    assert_eq!(count(&app, "").await, 1);
    app.stop().await;
}

async fn flows_list_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let rows = [
        "Nd,oxide,CN,2846.90,2026-01-01,2026-01-31,10,A,1".to_string(),
        "Nd,oxide,MY,2846.90,2026-02-01,2026-02-28,20,A,2".to_string(),
        "Dy,oxide,CN,2846.90,2026-03-01,2026-03-31,30,B,3".to_string(),
        "Dy,metal,VN,2805.30,2026-01-15,2026-04-15,40,B,4".to_string(),
    ];
    csv(&app, &rows).await.expect(201);
    assert_eq!(count(&app, "&element=nd").await, 2);
    assert_eq!(count(&app, "&origin=CN").await, 2);
    assert_eq!(count(&app, "&source=B").await, 2);
    // Overlap: February touches row 2 and row 4 (mid-January to mid-April).
    assert_eq!(count(&app, "&from=2026-02-10&to=2026-02-11").await, 2);
    assert_eq!(count(&app, "&from=2026-04-01").await, 1);
    assert_eq!(count(&app, "&to=2026-01-14").await, 1);
    // Newest first, two pages of two.
    let p1 = app
        .get("/api/v1/import-flows?limit=2", &app.viewer)
        .await
        .expect(200);
    let ids: Vec<&str> = p1.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["4", "3"]);
    let cursor = p1.body["next_cursor"].as_str().unwrap().to_string();
    let p2 = app
        .get(
            &format!("/api/v1/import-flows?limit=2&cursor={cursor}"),
            &app.viewer,
        )
        .await
        .expect(200);
    let ids: Vec<&str> = p2.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2", "1"]);
    assert_eq!(p2.body["next_cursor"], Value::Null);
    // CSV.
    let r = app
        .get("/api/v1/import-flows?format=csv&origin=VN", &app.viewer)
        .await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = r.text.lines().collect();
    assert!(
        lines[0].starts_with("id,element,form,origin_country,hs_code"),
        "{}",
        lines[0]
    );
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(",Dy,metal,VN,2805.30,2026-01-15,2026-04-15,40.000,B,4,"));
    // Bad filters are named, all at once.
    let r = app
        .get(
            "/api/v1/import-flows?element=Fe&origin=UK&from=2026-13-01&to=yesterday&limit=0",
            &app.viewer,
        )
        .await
        .expect(422);
    assert_eq!(
        r.error_fields(),
        vec!["element", "origin", "from", "to", "limit"]
    );
    let r = app
        .get(
            "/api/v1/import-flows?from=2026-02-02&to=2026-02-01",
            &app.viewer,
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["from"]);
    let r = app
        .get("/api/v1/import-flows?colour=red", &app.viewer)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["colour"]);
    app.stop().await;
}

async fn flows_fifty_thousand_rows(backend: Backend) {
    let app = spawn_app(backend).await;
    let elements = ["Nd", "Pr", "Dy", "Tb", "Y", "La", "Ce"];
    let origins = ["CN", "MM", "MY", "AU", "US", "VN", "JP", "EE"];
    let mut body = String::with_capacity(50_000 * 80);
    body.push_str(HEADER);
    body.push('\n');
    for i in 0..50_000u32 {
        let month = i % 12 + 1;
        let year = 2020 + (i / 12) % 6;
        let last = NaiveDate::from_ymd_opt(year as i32 + (month / 12) as i32, month % 12 + 1, 1)
            .unwrap()
            .pred_opt()
            .unwrap();
        body.push_str(&format!(
            "{},oxide,{},2846.90.8000,{year}-{month:02}-01,{last},{}.{:03},USITC-DataWeb,R{i:06}\n",
            elements[i as usize % elements.len()],
            origins[i as usize % origins.len()],
            1 + i % 5000,
            i % 1000,
        ));
    }
    let size = body.len();
    let started = Instant::now();
    let r = upload(&app, &app.operator, "text/csv", None, body.clone())
        .await
        .expect(201);
    let first = started.elapsed();
    assert_eq!(r.body["inserted"], 50_000);
    let started = Instant::now();
    let r = upload(&app, &app.operator, "text/csv", None, body)
        .await
        .expect(200);
    let again = started.elapsed();
    assert_eq!(r.body["unchanged"], 50_000);
    let total: i64 = app.state.db(reserve::flows::repo::count).await.unwrap();
    assert_eq!(total, 50_000);
    println!(
        "{backend:?}: 50,000-row CSV ({size} bytes) ingested in {first:.2?}, resent (all unchanged) in {again:.2?}"
    );
    app.stop().await;
}

/// Days of cover redone by hand. Today is day D (UTC).
async fn flows_cover_by_hand(backend: Backend) {
    let app = spawn_app(backend).await;
    let before = Utc::now() - Duration::seconds(5);
    app.create_depot("NV1", "1000000", "100000").await;
    // 10,000 kg of Dy2O3 at 871,321 ppm Dy.
    app.acquire("NV1", "Dy", "10000").await.expect(201);
    let r = app
        .get("/api/v1/elements/Dy/policy", &app.admin)
        .await
        .expect(200);
    let etag = r.header("etag").unwrap();
    let policy = json!({"reserve_floor_kg": "1000", "consumption_kg_per_year": "36500",
                        "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
                        "test_sale_max_kg": null});
    let mut res = app
        .client
        .put(app.url("/api/v1/elements/Dy/policy"))
        .insert_header(("Authorization", format!("Bearer {}", app.admin)))
        .insert_header(("If-Match", etag))
        .send_json(&policy)
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body().await);

    // The 30-day window is D-29..D; its baseline the 365 days D-394..D-30.
    let d = today();
    let day = |n: i64| (d - Duration::days(n)).to_string();
    let rows = [
        // Baseline: 365 kg a day from CN over exactly its 365 days.
        format!("Dy,oxide,CN,2846.90,{},{},133225,S,base", day(394), day(30)),
        // Window: CN 3,000 kg and MY 1,500 kg over its 30 days.
        format!("Dy,oxide,CN,2846.90,{},{},3000,S,w-cn", day(29), day(0)),
        format!("Dy,metal,MY,2805.30,{},{},1500,S,w-my", day(29), day(0)),
    ];
    csv(&app, &rows).await.expect(201);

    let r = app.get("/api/v1/cover", &app.viewer).await.expect(200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 17);
    let symbols: Vec<&str> = items
        .iter()
        .map(|i| i["element"].as_str().unwrap())
        .collect();
    assert_eq!(symbols[..3], ["Sc", "Y", "La"]);
    assert_eq!(symbols[16], "Lu");
    let dy = items.iter().find(|i| i["element"] == "Dy").unwrap();
    assert_eq!(dy["holding_kg"], "10000.000");
    // 10,000 kg × 0.871321 = 8,713.210 kg of Dy.
    assert_eq!(dy["element_mass_kg"], "8713.210");
    assert_eq!(dy["available_kg"], "10000.000");
    assert_eq!(dy["reserve_floor_kg"], "1000.000");
    // 36,500 kg a year / 365 = 100 kg a day.
    assert_eq!(dy["consumption_kg_per_day"], "100.000");
    // 8,713.210 / 100 = 87.1321 days.
    assert_eq!(dy["days_of_cover"], "87.1");
    // 30 days: 3,000 + 1,500.
    assert_eq!(dy["imports_30d_kg"], "4500.000");
    // 90 days: 4,500 + 60 baseline days × 365 = 26,400.
    assert_eq!(dy["imports_90d_kg"], "26400.000");
    // 365 days: 4,500 + 335 baseline days × 365 = 126,775.
    assert_eq!(dy["imports_365d_kg"], "126775.000");
    // (4,500/30 − 365) / 365 × 100 = (150 − 365) / 365 × 100 = −58.9041…
    assert_eq!(dy["change_30d_percent"], "-58.90");
    // 8,713.210 / (126,775 / 365) = 25.0863… days.
    assert_eq!(dy["days_of_imports"], "25.1");
    // CN: 335 × 365 + 3,000 = 125,275 of 126,775 = 98.8168…%.
    assert_eq!(dy["top_origin"], "CN");
    assert_eq!(dy["top_origin_share_percent"], "98.82");
    assert_eq!(dy["data_horizon"], d.to_string());
    // An element with neither stock, policy nor flows.
    let sc = &items[0];
    assert_eq!(sc["holding_kg"], "0.000");
    assert_eq!(sc["days_of_cover"], Value::Null);
    assert_eq!(sc["imports_365d_kg"], "0.000");
    assert_eq!(sc["change_30d_percent"], Value::Null);
    assert_eq!(sc["days_of_imports"], Value::Null);
    assert_eq!(sc["top_origin"], Value::Null);
    assert_eq!(sc["data_horizon"], Value::Null);

    // Before the acquisition and the policy change: nothing held, the old
    // policy (no consumption), reservations unknown.
    let at = before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = app
        .get(&format!("/api/v1/cover?as_of={at}"), &app.viewer)
        .await
        .expect(200);
    let dy = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["element"] == "Dy")
        .unwrap()
        .clone();
    assert_eq!(dy["holding_kg"], "0.000");
    assert_eq!(dy["available_kg"], Value::Null);
    assert_eq!(dy["consumption_kg_per_day"], Value::Null);
    assert_eq!(dy["days_of_cover"], Value::Null);
    assert_eq!(dy["imports_30d_kg"], "4500.000");
    // Bad or future as_of is named.
    let r = app
        .get("/api/v1/cover?as_of=yesterday", &app.viewer)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["as_of"]);
    let r = app
        .get("/api/v1/cover?as_of=2999-01-01T00:00:00Z", &app.viewer)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["as_of"]);
    app.stop().await;
}
