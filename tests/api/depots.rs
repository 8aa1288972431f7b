//! Depots: creation, optimistic concurrency, status.

use serde_json::json;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(
    depot_updates_need_a_current_etag,
    depot_creation_validates_and_refuses_duplicates
);

async fn depot_updates_need_a_current_etag(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "100").await;
    let got = app.get("/api/v1/depots/nv1", &app.viewer).await.expect(200);
    let etag = got.header("etag").expect("ETag on GET");
    let patch = |etag: Option<String>, body: serde_json::Value| {
        let mut req = app
            .client
            .patch(app.url("/api/v1/depots/NV1"))
            .insert_header(("Authorization", format!("Bearer {}", app.admin)));
        if let Some(e) = etag {
            req = req.insert_header(("If-Match", e));
        }
        async move {
            let mut res = req.send_json(&body).await.unwrap();
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, headers, body)
        }
    };
    let (status, _, _) = patch(None, json!({"name": "Renamed"})).await;
    assert_eq!(status, 428, "If-Match is required");
    let (status, headers, body) = patch(
        Some(etag.clone()),
        json!({"name": "Nevada One", "capacity_kg": "2000"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["capacity_kg"], "2000.000");
    let new_etag = headers.get("etag").unwrap().to_str().unwrap().to_string();
    assert_ne!(new_etag, etag);
    // The old ETag is stale now: a lost update is refused.
    let (status, _, body) = patch(Some(etag), json!({"name": "Stale"})).await;
    assert_eq!(status, 412, "{body}");
    // An ETag of another depot does not fit this one.
    app.create_depot("TX2", "1000", "100").await;
    let other = app
        .get("/api/v1/depots/TX2", &app.viewer)
        .await
        .expect(200)
        .header("etag")
        .unwrap();
    let (status, _, _) = patch(Some(other), json!({"name": "Confused"})).await;
    assert_eq!(status, 412);
    // Capacity below what is held is refused with the numbers.
    app.acquire("NV1", "Nd", "500").await.expect(201);
    let (status, _, body) = patch(Some(new_etag.clone()), json!({"capacity_kg": "100"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["on_hand_kg"], "500.000");
    let (status, _, body) = patch(Some(new_etag), json!({"capacity": "100"})).await;
    assert_eq!(status, 422, "unknown fields are refused: {body}");
    app.stop().await;
}

async fn depot_creation_validates_and_refuses_duplicates(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app
        .post_new("/api/v1/depots", &app.admin, &json!({"code": "НV1", "name": "", "region": "x", "capacity_kg": "-1", "max_drawdown_kg_per_day": "1e5"}))
        .await
        .expect(422);
    let mut fields = r.error_fields();
    fields.sort();
    assert_eq!(
        fields,
        vec!["capacity_kg", "code", "max_drawdown_kg_per_day", "name"]
    );
    let created = app.create_depot("NV1", "1000", "100").await;
    assert_eq!(created["status"], "active");
    assert_eq!(created["free_capacity_kg"], "1000.000");
    let r = app
        .post_new("/api/v1/depots", &app.admin, &json!({"code": "nv1", "name": "Dup", "region": "x", "capacity_kg": "1", "max_drawdown_kg_per_day": "1"}))
        .await
        .expect(409);
    assert_eq!(r.body["code"], "depot-exists");
    let list = app.get("/api/v1/depots", &app.viewer).await.expect(200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    app.get("/api/v1/depots/ZZ9", &app.viewer).await.expect(404);
    app.stop().await;
}
