//! `GET /metrics`: parsed with a real Prometheus text-format parser (the
//! official Python client's, installed by scripts/metrics-parser.sh), each
//! family present, values that move by exactly what the test did, histograms
//! well formed, and the settings that move or hide the endpoint.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, Backend, TestApp};
use crate::on_both_backends;

/// One sample as the parser read it.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape: family name → (type, samples).
#[derive(Debug)]
pub struct Scrape {
    pub families: BTreeMap<String, (String, Vec<Sample>)>,
}

impl Scrape {
    /// The value of the sample `name` with exactly `labels`, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.families
            .values()
            .flat_map(|(_, s)| s)
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    pub fn samples(&self, name: &str) -> Vec<&Sample> {
        self.families
            .values()
            .flat_map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    }
}

const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation,
                "samples": [{"name": s.name, "labels": s.labels, "value": repr(float(s.value))}
                            for s in f.samples]})
print(json.dumps(out))
"#;

fn parser_python() -> String {
    std::env::var("RESERVE_METRICS_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/metrics-venv/bin/python"
        )
        .to_string()
    })
}

/// Parses `text` with prometheus_client's parser; panics on anything it refuses.
pub fn parse(text: &str) -> Scrape {
    let python = parser_python();
    let mut child = Command::new(&python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e}; run `bash scripts/metrics-parser.sh` first")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape: {}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser output");
    let mut families = BTreeMap::new();
    for f in parsed {
        let samples = f["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Sample {
                name: s["name"].as_str().unwrap().to_string(),
                labels: serde_json::from_value(s["labels"].clone()).unwrap(),
                value: s["value"].as_str().unwrap().parse().unwrap(),
            })
            .collect();
        families.insert(
            f["name"].as_str().unwrap().to_string(),
            (f["type"].as_str().unwrap().to_string(), samples),
        );
    }
    Scrape { families }
}

/// Checks what the parser lets pass: every family has one HELP and one TYPE
/// line before its samples, and every histogram's buckets are cumulative,
/// end in `+Inf` and agree with `_count`.
fn check_structure(text: &str) {
    let mut declared: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            let e = declared.entry(name.to_string()).or_default();
            assert!(!e.0, "two HELP lines for {name}");
            e.0 = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            let e = declared.entry(name.to_string()).or_default();
            assert!(e.0 && !e.1, "TYPE of {name} not right after its HELP");
            e.1 = true;
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains_key(*f)))
                .unwrap_or(name);
            assert!(
                declared.get(family) == Some(&(true, true)),
                "sample {line:?} before (or without) its family's HELP and TYPE"
            );
        }
    }
    let scrape = parse(text);
    for (name, (kind, samples)) in &scrape.families {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts: BTreeMap<String, f64> = BTreeMap::new();
        for s in samples {
            let mut key = s.labels.clone();
            let le = key.remove("le");
            let key = format!("{key:?}");
            if s.name.ends_with("_bucket") {
                let le: f64 = le.expect("a bucket has le").parse().unwrap();
                series.entry(key).or_default().push((le, s.value));
            } else if s.name.ends_with("_count") {
                counts.insert(key, s.value);
            }
        }
        assert!(!series.is_empty(), "{name} has no buckets");
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{name}{key}: buckets are not cumulative: {buckets:?}"
            );
            let (le, inf) = *buckets.last().unwrap();
            assert!(le.is_infinite(), "{name}{key}: no +Inf bucket");
            assert_eq!(
                Some(inf),
                counts.get(&key).copied(),
                "{name}{key}: +Inf != _count"
            );
        }
    }
}

async fn status_without_token(app: &TestApp, url: &str) -> u16 {
    app.client
        .get(url)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

async fn scrape_text(app: &TestApp, url: &str) -> String {
    let mut res = app.client.get(url).send().await.expect("scrape");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap().to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    String::from_utf8(res.body().await.unwrap().to_vec()).unwrap()
}

/// Scrapes the app's main listener, without a token.
pub async fn scrape(app: &TestApp) -> Scrape {
    let text = scrape_text(app, &app.url("/metrics")).await;
    check_structure(&text);
    parse(&text)
}

const FAMILIES: [(&str, &str); 18] = [
    ("reserve_http_requests", "counter"),
    ("reserve_http_request_duration_seconds", "histogram"),
    ("reserve_ledger_entries", "counter"),
    ("reserve_idempotent_replays", "counter"),
    ("reserve_group_commit_groups", "counter"),
    ("reserve_group_commit_members", "counter"),
    ("reserve_auth_failures", "counter"),
    ("reserve_throttled_requests", "counter"),
    ("reserve_db_pool_max_connections", "gauge"),
    ("reserve_db_pool_connections", "gauge"),
    ("reserve_db_pool_idle_connections", "gauge"),
    ("reserve_db_pool_in_use_connections", "gauge"),
    ("reserve_db_pool_waiting", "gauge"),
    ("reserve_event_stream_clients", "gauge"),
    ("reserve_webhook_deliveries", "counter"),
    ("reserve_metrics_database_up", "gauge"),
    ("reserve_element_on_hand_kg", "gauge"),
    ("reserve_element_days_of_cover", "gauge"),
];

async fn metrics_count_what_happened(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000000", "100000").await;
    let before = scrape(&app).await;
    for (name, kind) in FAMILIES {
        let found = before.families.get(name);
        assert_eq!(
            found.map(|(k, _)| k.as_str()),
            Some(kind),
            "family {name} missing or of the wrong type; families: {:?}",
            before.families.keys().collect::<Vec<_>>()
        );
    }
    let entries = |s: &Scrape, kind: &str| {
        s.value("reserve_ledger_entries_total", &[("kind", kind)])
            .unwrap_or_else(|| panic!("no ledger entry counter for {kind}"))
    };
    assert_eq!(entries(&before, "acquisition"), 0.0);

    // Two acquisitions, a release, one replay of the first acquisition, a
    // refused release (insufficient stock: an attempt, not an entry).
    let body = crate::helpers::movement("NV1", "Nd", "100.000");
    app.post("/api/v1/acquisitions", &app.operator, Some("acq-1"), &body)
        .await
        .expect(201);
    app.acquire("NV1", "Nd", "50.500").await.expect(201);
    let replay = app
        .post("/api/v1/acquisitions", &app.operator, Some("acq-1"), &body)
        .await
        .expect(201);
    assert_eq!(
        replay.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    app.release("NV1", "Nd", "20.000").await.expect(201);
    app.release("NV1", "Nd", "999999.000").await.expect(409);
    // A transfer is two entries, one of each kind.
    app.create_depot("TX2", "1000000", "100000").await;
    app.post_new(
        "/api/v1/transfers",
        &app.operator,
        &json!({"from_depot": "NV1", "to_depot": "TX2", "element": "Nd", "form": "oxide",
                "grade": "99.5", "quantity_kg": "10.000"}),
    )
    .await
    .expect(201);
    // Refusals: no token (401), a viewer creating a depot (403).
    assert_eq!(
        status_without_token(&app, &app.url("/api/v1/depots")).await,
        401
    );
    app.post_new(
        "/api/v1/depots",
        &app.viewer,
        &json!({"code": "XX9", "name": "X", "region": "R", "capacity_kg": "1",
                "max_drawdown_kg_per_day": "1"}),
    )
    .await
    .expect(403);
    // A raw path with a parameter, and one no route matches.
    app.get("/api/v1/depots/NV1", &app.viewer).await.expect(200);
    app.get("/api/v1/depots/TX2", &app.viewer).await.expect(200);
    app.get("/no/such/route-xyz", &app.viewer).await.expect(404);
    // Days of cover needs a consumption figure.
    let etag = app
        .get("/api/v1/elements/Nd/policy", &app.admin)
        .await
        .expect(200)
        .header("etag")
        .unwrap();
    app.put(
        "/api/v1/elements/Nd/policy",
        &app.admin,
        Some(&etag),
        &json!({"reserve_floor_kg": null, "consumption_kg_per_year": "365",
                "limited_drawdown_max_kg": null, "limited_drawdown_max_days": null,
                "test_sale_max_kg": null}),
    )
    .await
    .expect(200);

    let after = scrape(&app).await;
    let moved = |kind: &str| entries(&after, kind) - entries(&before, kind);
    assert_eq!(moved("acquisition"), 2.0, "two acquisitions committed");
    assert_eq!(moved("release"), 1.0, "the refused release is not an entry");
    assert_eq!(moved("transfer_out"), 1.0);
    assert_eq!(moved("transfer_in"), 1.0);
    assert_eq!(moved("adjustment"), 0.0);
    let counter = |s: &Scrape, name: &str, labels: &[(&str, &str)]| {
        s.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };
    assert_eq!(
        counter(&after, "reserve_idempotent_replays_total", &[])
            - counter(&before, "reserve_idempotent_replays_total", &[]),
        1.0
    );
    let auth =
        |s: &Scrape, status: &str| counter(s, "reserve_auth_failures_total", &[("status", status)]);
    assert_eq!(auth(&after, "401") - auth(&before, "401"), 1.0);
    assert_eq!(auth(&after, "403") - auth(&before, "403"), 1.0);

    // Requests by route pattern, never by raw path.
    let requests = |route: &str, method: &str, status: &str| {
        after
            .value(
                "reserve_http_requests_total",
                &[("route", route), ("method", method), ("status", status)],
            )
            .unwrap_or(0.0)
    };
    assert_eq!(requests("/api/v1/acquisitions", "POST", "201"), 3.0);
    assert_eq!(requests("/api/v1/releases", "POST", "409"), 1.0);
    assert_eq!(requests("/api/v1/depots/{code}", "GET", "200"), 2.0);
    assert_eq!(requests("/api/v1/depots", "GET", "401"), 1.0);
    assert_eq!(requests("unmatched", "GET", "404"), 1.0);
    assert_eq!(requests("/metrics", "GET", "200"), 1.0, "the first scrape");
    for s in after.samples("reserve_http_requests_total") {
        let route = &s.labels["route"];
        assert!(
            !route.contains("NV1") && !route.contains("xyz"),
            "a raw path leaked into a label: {route}"
        );
    }
    let count = after
        .value(
            "reserve_http_request_duration_seconds_count",
            &[("route", "/api/v1/acquisitions"), ("method", "POST")],
        )
        .unwrap();
    assert_eq!(count, 3.0);

    // Per element, as GET /api/v1/cover computes them.
    let on_hand = |e: &str| {
        after
            .value("reserve_element_on_hand_kg", &[("element", e)])
            .unwrap_or_else(|| panic!("no on-hand gauge for {e}"))
    };
    assert_eq!(on_hand("Nd"), 130.5);
    assert_eq!(on_hand("Dy"), 0.0);
    assert_eq!(after.samples("reserve_element_on_hand_kg").len(), 17);
    let cover = app.get("/api/v1/cover", &app.viewer).await.expect(200);
    let nd = cover.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["element"] == "Nd")
        .unwrap()
        .clone();
    let expected: f64 = nd["days_of_cover"].as_str().unwrap().parse().unwrap();
    assert!(expected > 0.0);
    assert_eq!(
        after.value("reserve_element_days_of_cover", &[("element", "Nd")]),
        Some(expected)
    );
    assert_eq!(
        after.value("reserve_element_days_of_cover", &[("element", "Dy")]),
        None,
        "no consumption figure, no days of cover"
    );
    assert_eq!(after.value("reserve_metrics_database_up", &[]), Some(1.0));
    let max = after.value("reserve_db_pool_max_connections", &[]).unwrap();
    assert_eq!(max, 16.0, "test_settings' pool size");
    let open = after.value("reserve_db_pool_connections", &[]).unwrap();
    let idle = after
        .value("reserve_db_pool_idle_connections", &[])
        .unwrap();
    let in_use = after
        .value("reserve_db_pool_in_use_connections", &[])
        .unwrap();
    assert_eq!(open, idle + in_use);
    assert!(open >= 1.0 && open <= max);
    assert_eq!(after.value("reserve_db_pool_waiting", &[]), Some(0.0));
    app.stop().await;
}

async fn metrics_settings_hide_or_move_the_endpoint(backend: Backend) {
    let off = spawn_app_with(backend, |s| s.metrics.enabled = false).await;
    assert_eq!(
        status_without_token(&off, &off.url("/metrics")).await,
        404,
        "metrics.enabled = false"
    );
    off.stop().await;

    let moved = spawn_app_with(backend, |s| s.metrics.bind = "127.0.0.1:0".into()).await;
    assert_eq!(
        status_without_token(&moved, &moved.url("/metrics")).await,
        404,
        "with a listener of its own, not on the main one"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = reserve::metrics::routes::run(listener, moved.state.clone()).unwrap();
    let handle = server.handle();
    actix_rt::spawn(server);
    moved.get("/api/v1/depots", &moved.viewer).await.expect(200);
    let text = scrape_text(&moved, &format!("http://127.0.0.1:{port}/metrics")).await;
    check_structure(&text);
    let s = parse(&text);
    assert_eq!(
        s.value(
            "reserve_http_requests_total",
            &[
                ("route", "/api/v1/depots"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        Some(1.0),
        "the dedicated listener serves the app's own metrics"
    );
    assert_eq!(
        status_without_token(&moved, &format!("http://127.0.0.1:{port}/api/v1/depots")).await,
        404,
        "the metrics listener serves nothing else"
    );
    handle.stop(true).await;
    moved.stop().await;
}

async fn metrics_count_throttled_requests(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.auth.max_failures_per_minute = 2).await;
    for expected in [401, 401, 429, 429] {
        let res = app
            .client
            .get(app.url("/api/v1/depots"))
            .insert_header(("Authorization", "Bearer not-a-token"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), expected);
    }
    // The scrape itself is never throttled.
    let s = scrape(&app).await;
    assert_eq!(
        s.value("reserve_throttled_requests_total", &[("by", "address")]),
        Some(2.0)
    );
    assert_eq!(
        s.value("reserve_auth_failures_total", &[("status", "401")]),
        Some(2.0)
    );
    app.stop().await;
}

on_both_backends!(
    metrics_count_what_happened,
    metrics_settings_hide_or_move_the_endpoint,
    metrics_count_throttled_requests,
);

#[test]
fn the_parser_refuses_a_broken_scrape() {
    // The check must be able to fail: a label value with a raw quote.
    let python = parser_python();
    let out = Command::new(&python)
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"# TYPE x counter\nx{a=\"b\"c\"} 1\n")?;
            c.wait_with_output()
        })
        .expect("parser runs");
    assert!(!out.status.success(), "a malformed label must be refused");
}
