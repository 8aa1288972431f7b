//! Reference data, stockpiles, the summary.

use serde_json::json;

use crate::helpers::{grams, spawn_app, Backend};
use crate::on_both_backends;

on_both_backends!(
    reference_data_is_seeded,
    stockpiles_list_filters_and_pages,
    summary_matches_the_stockpiles
);

async fn reference_data_is_seeded(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.get("/api/v1/elements", &app.viewer).await.expect(200);
    let items = r.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 17);
    assert_eq!(items[0]["symbol"], "Sc");
    assert_eq!(items[16]["symbol"], "Lu");
    let nd = app
        .get("/api/v1/elements/nd", &app.viewer)
        .await
        .expect(200);
    assert_eq!(nd.body["class"], "light");
    let oxide = nd.body["forms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["form"] == "oxide")
        .unwrap()
        .clone();
    assert_eq!(oxide["formula"], "Nd2O3");
    assert_eq!(oxide["element_mass_factor"], "0.857356");
    assert_eq!(
        app.get("/api/v1/elements/Dy", &app.viewer)
            .await
            .expect(200)
            .body["class"],
        "heavy"
    );
    app.get("/api/v1/elements/Fe", &app.viewer)
        .await
        .expect(404);
    app.stop().await;
}

async fn stockpiles_list_filters_and_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "1000").await;
    app.create_depot("TX2", "100000", "1000").await;
    for (depot, element) in [
        ("NV1", "Nd"),
        ("NV1", "Dy"),
        ("TX2", "Nd"),
        ("TX2", "Tb"),
        ("NV1", "La"),
    ] {
        app.acquire(depot, element, "3").await.expect(201);
    }
    let created = app
        .post_new(
            "/api/v1/stockpiles",
            &app.operator,
            &json!({"depot": "TX2", "element": "Lu", "form": "metal", "grade": "99.99"}),
        )
        .await
        .expect(201);
    assert_eq!(created.body["on_hand_kg"], "0.000");
    // Asking again for the same stockpile finds it: 200, not another 201.
    let again = app
        .post_new(
            "/api/v1/stockpiles",
            &app.operator,
            &json!({"depot": "tx2", "element": "LU", "form": "metal", "grade": "99.990"}),
        )
        .await
        .expect(200);
    assert_eq!(again.body["id"], created.body["id"]);
    let nd = app
        .get("/api/v1/stockpiles?element=Nd", &app.viewer)
        .await
        .expect(200);
    assert_eq!(nd.body["items"].as_array().unwrap().len(), 2);
    let nv1 = app
        .get("/api/v1/stockpiles?depot=NV1&form=oxide", &app.viewer)
        .await
        .expect(200);
    assert_eq!(nv1.body["items"].as_array().unwrap().len(), 3);
    // Pages of two, newest first, every stockpile exactly once.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!("/api/v1/stockpiles?limit=2&cursor={cursor}"),
                &app.viewer,
            )
            .await
            .expect(200);
        ids.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_i64().unwrap()),
        );
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(ids.len(), 6);
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    let one = app
        .get(&format!("/api/v1/stockpiles/{}", ids[0]), &app.viewer)
        .await
        .expect(200);
    assert_eq!(one.body["element"], "Lu");
    app.get("/api/v1/stockpiles/abc", &app.viewer)
        .await
        .expect(404);
    app.stop().await;
}

async fn summary_matches_the_stockpiles(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.create_depot("TX2", "3000", "1000").await;
    app.acquire("NV1", "Nd", "100").await.expect(201);
    app.acquire("TX2", "Nd", "50.5").await.expect(201);
    app.acquire("TX2", "Dy", "0.25").await.expect(201);
    app.release("TX2", "Nd", "0.5").await.expect(201);
    let s = app
        .get("/api/v1/summary", &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(s["last_sequence"], 4);
    assert_eq!(s["totals"]["on_hand_kg"], "150.250");
    assert_eq!(s["totals"]["capacity_kg"], "4000.000");
    assert_eq!(s["totals"]["utilisation_pct"], "3.75");
    let nd = s["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["element"] == "Nd")
        .unwrap();
    assert_eq!(nd["on_hand_kg"], "150.000");
    // Nd2O3 is 85.7356% neodymium.
    assert_eq!(nd["element_mass_kg"], "128.603");
    assert_eq!(nd["by_depot"]["TX2"]["on_hand_kg"], "50.000");
    assert_eq!(
        s["elements"].as_array().unwrap().len(),
        17,
        "every element, held or not"
    );
    let tx2 = s["depots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["depot"] == "TX2")
        .unwrap();
    assert_eq!(grams(tx2["on_hand_kg"].as_str().unwrap()), 50_250);
    assert_eq!(tx2["stockpiles"], 2);
    app.stop().await;
}
