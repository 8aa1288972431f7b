//! The error messages a newcomer meets first say what to do.

use serde_json::json;

use crate::helpers::{movement, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(first_mistakes_are_explained);

async fn first_mistakes_are_explained(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let message = |r: &crate::helpers::Reply, field: &str| -> String {
        r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["field"] == field)
            .unwrap_or_else(|| panic!("no error for {field}: {}", r.text))["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Kilograms as a JSON number.
    for kg in [json!(12.5), json!(12)] {
        let mut body = movement("NV1", "Nd", "1");
        body["quantity_kg"] = kg;
        let r = app
            .post_new("/api/v1/acquisitions", &app.operator, &body)
            .await
            .expect(422);
        assert!(
            message(&r, "quantity_kg").contains("send kilograms as a string such as \"12.500\""),
            "{}",
            r.text
        );
    }
    let r = app
        .post_new(
            "/api/v1/depots",
            &app.admin,
            &json!({"code": "TX2", "name": "x", "region": "y", "capacity_kg": 100,
                    "max_drawdown_kg_per_day": "1"}),
        )
        .await
        .expect(422);
    assert!(message(&r, "capacity_kg").contains("as a string such as \"12.500\""));
    // A sign.
    let r = app
        .post_new(
            "/api/v1/releases",
            &app.operator,
            &movement("NV1", "Nd", "-5"),
        )
        .await
        .expect(422);
    assert!(
        message(&r, "quantity_kg").contains("must not carry a sign"),
        "{}",
        r.text
    );
    // A raw `+` in as_of, decoded as a space.
    let s = app
        .post_new(
            "/api/v1/stockpiles",
            &app.operator,
            &json!({"depot": "NV1", "element": "Nd", "form": "oxide", "grade": "99.5"}),
        )
        .await
        .expect(201);
    let id = s.body["id"].as_i64().unwrap();
    let r = app
        .get(
            &format!("/api/v1/stockpiles/{id}/balance?as_of=2026-11-26T09:30:00+01:00"),
            &app.viewer,
        )
        .await
        .expect(422);
    assert!(message(&r, "as_of").contains("%2B"), "{}", r.text);
    app.get(
        &format!("/api/v1/stockpiles/{id}/balance?as_of=2026-11-26T09:30:00%2B01:00"),
        &app.viewer,
    )
    .await
    .expect(200);
    let r = app
        .get("/api/v1/ledger?from=2026-11-26T09:30:00+01:00", &app.viewer)
        .await
        .expect(422);
    assert!(message(&r, "from").contains("%2B"), "{}", r.text);
    app.stop().await;
}
