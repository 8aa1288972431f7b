//! Hostile or sloppy input: every refusal is a clear problem document and
//! nothing is written.

use serde_json::json;

use crate::helpers::{movement, spawn_app, spawn_app_with, Backend};
use crate::on_both_backends;

on_both_backends!(
    malformed_requests_get_problem_documents,
    csv_exports_neutralise_formulas,
    nul_in_a_text_filter_is_refused
);

/// Found by contract fuzzing: PostgreSQL cannot take a NUL in a text
/// parameter, so `?reference=%00` was a 500 there (and a 200 on SQLite).
async fn nul_in_a_text_filter_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in ["reference=a%00b", "movement_id=%00"] {
        let r = app
            .get(&format!("/api/v1/ledger?{query}"), &app.viewer)
            .await
            .expect(422);
        assert_eq!(r.error_fields().len(), 1, "{query}: {}", r.text);
    }
    app.get("/api/v1/ledger?reference=a%0Ab", &app.viewer)
        .await
        .expect(200);
    app.stop().await;
}

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

/// Transport-level limits: oversized or too many headers get 431, and a client
/// that sends its request head too slowly (slow loris) is cut off.
#[actix_rt::test]
async fn header_limits_and_slow_clients() {
    use std::io::{Read, Write};
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.server.client_request_timeout_secs = 1
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let exchange = move |request: Vec<u8>, pause: Option<std::time::Duration>| {
        let addr = addr.clone();
        // Off the test's own thread, which also drives the server.
        actix_rt::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            // The server may answer and close before the whole request is sent.
            let _ = s.write_all(&request);
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
            let waited = std::time::Instant::now();
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf).unwrap_or(0);
            // The server must answer or hang up well before our 10 s read timeout.
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(8),
                "the server kept the connection open"
            );
            String::from_utf8_lossy(&buf[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
    };
    let huge = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec(),
        vec![b'a'; 200_000],
        b"\r\n\r\n".to_vec(),
    ]
    .concat();
    let answer = exchange(huge, None).await.unwrap();
    assert!(
        answer.contains("431") || answer.is_empty(),
        "huge header got {answer:?}"
    );
    let many: Vec<u8> = [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec(),
        (0..200)
            .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
            .collect(),
        b"\r\n".to_vec(),
    ]
    .concat();
    let answer = exchange(many, None).await.unwrap();
    assert!(answer.contains("431"), "200 headers got {answer:?}");
    // Half a request head, then silence: the server answers 408 or hangs up.
    let slow = exchange(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec(),
        Some(std::time::Duration::from_millis(2500)),
    )
    .await
    .unwrap();
    assert!(
        slow.is_empty() || slow.contains("408"),
        "slow client got {slow:?}"
    );
    app.stop().await;
}
