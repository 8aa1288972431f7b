//! Hostile or sloppy input: every refusal is a clear problem document and
//! nothing is written.

use serde_json::json;

use crate::helpers::{movement, spawn_app, spawn_app_with, Backend};
use crate::on_both_backends;

on_both_backends!(
    malformed_requests_get_problem_documents,
    csv_exports_neutralise_formulas
);

async fn malformed_requests_get_problem_documents(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.server.max_body_bytes = 4096).await;
    app.create_depot("NV1", "1000", "1000").await;
    let raw = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut req = app
            .client
            .post(app.url("/api/v1/acquisitions"))
            .insert_header(("Authorization", format!("Bearer {}", app.operator)))
            .insert_header(("Idempotency-Key", uuid::Uuid::new_v4().to_string()));
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        async move {
            let mut res = req.send_body(body).await.unwrap();
            let status = res.status().as_u16();
            let ct = res
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, ct, body)
        }
    };
    let valid = serde_json::to_vec(&movement("NV1", "Nd", "1")).unwrap();
    let cases: Vec<(&str, Option<&'static str>, Vec<u8>, u16)> = vec![
        ("no content type", None, valid.clone(), 415),
        (
            "form encoded",
            Some("application/x-www-form-urlencoded"),
            valid.clone(),
            415,
        ),
        (
            "truncated JSON",
            Some("application/json"),
            b"{\"depot\": \"NV1\"".to_vec(),
            400,
        ),
        ("empty body", Some("application/json"), Vec::new(), 400),
        (
            "two documents",
            Some("application/json"),
            [valid.clone(), b" {}".to_vec()].concat(),
            400,
        ),
        (
            "not an object",
            Some("application/json"),
            b"[1,2,3]".to_vec(),
            422,
        ),
        ("too large", Some("application/json"), vec![b' '; 8192], 413),
        (
            "deeply nested",
            Some("application/json"),
            [
                b"{\"note\":".to_vec(),
                vec![b'['; 1000],
                vec![b']'; 1000],
                b"}".to_vec(),
            ]
            .concat(),
            422,
        ),
    ];
    for (name, ct, body, expected) in cases {
        let (status, content_type, problem) = raw(ct, body).await;
        assert_eq!(status, expected, "{name}: {problem}");
        assert_eq!(
            content_type.as_deref(),
            Some("application/problem+json"),
            "{name}"
        );
        assert_eq!(problem["status"], expected, "{name}");
    }
    let mut unknown = movement("NV1", "Nd", "1");
    unknown["quantity"] = json!("1");
    let r = app
        .post_new("/api/v1/acquisitions", &app.operator, &unknown)
        .await
        .expect(422);
    assert!(r.body["detail"].as_str().unwrap().contains("unknown field"));
    let r = app
        .post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &movement("NV1", "Nd", "1")
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "grade")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
        .await
        .expect(422);
    assert!(r.text.contains("grade"), "{}", r.text);
    // Codes with look-alike letters or zero-width characters are refused.
    let r = app
        .post_new(
            "/api/v1/acquisitions",
            &app.operator,
            &movement("NV1", "Νd", "1"),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["element"]);
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &movement("NV1\u{200b}", "Nd", "1"),
    )
    .await
    .expect(422);
    // Bounded strings.
    let mut long = movement("NV1", "Nd", "1");
    long["note"] = json!("x".repeat(2001));
    let r = app
        .post_new("/api/v1/acquisitions", &app.operator, &long)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["note"]);
    // Unknown query parameters, bad cursors and bad limits.
    let r = app
        .get("/api/v1/ledger?colour=red", &app.viewer)
        .await
        .expect(422);
    assert!(r.text.contains("colour"));
    app.get("/api/v1/ledger?cursor=bogus!", &app.viewer)
        .await
        .expect(422);
    app.get("/api/v1/ledger?limit=0", &app.viewer)
        .await
        .expect(422);
    app.get("/api/v1/ledger?kind=theft", &app.viewer)
        .await
        .expect(422);
    app.get("/api/v1/no-such-thing", &app.viewer)
        .await
        .expect(404);
    // The caller's request id is echoed.
    let res = app
        .client
        .get(app.url("/healthz"))
        .insert_header(("X-Request-Id", "trace-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "trace-42");
    assert_eq!(
        app.ledger_count().await,
        0,
        "no refused request wrote anything"
    );
    app.stop().await;
}

async fn csv_exports_neutralise_formulas(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let mut body = movement("NV1", "Nd", "2");
    body["reference"] = json!("=HYPERLINK(\"http://evil\",\"x\")");
    body["note"] = json!("@SUM(A1:A9)");
    app.post_new("/api/v1/acquisitions", &app.operator, &body)
        .await
        .expect(201);
    app.release("NV1", "Nd", "1").await.expect(201);
    let r = app.get("/api/v1/ledger?format=csv", &app.auditor).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(r.text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    assert_eq!(
        &rows[1][col("reference")],
        "'=HYPERLINK(\"http://evil\",\"x\")"
    );
    assert_eq!(&rows[1][col("note")], "'@SUM(A1:A9)");
    assert_eq!(
        &rows[0][col("quantity_kg")],
        "-1.000",
        "negative numbers stay numbers"
    );
    // Accept: text/csv works too, for stockpiles and depots.
    for path in ["/api/v1/stockpiles", "/api/v1/depots"] {
        let res = app
            .client
            .get(app.url(path))
            .insert_header(("Authorization", format!("Bearer {}", app.viewer)))
            .insert_header(("Accept", "text/csv"))
            .send()
            .await
            .unwrap();
        assert!(
            res.headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("text/csv"),
            "{path}"
        );
    }
    app.stop().await;
}
