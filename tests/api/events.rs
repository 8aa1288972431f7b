//! The event stream: what it carries, resuming without loss or repetition
//! under concurrent writers, filters, depot scope, and its two ways in (the
//! bearer header and single-use tickets).

use std::collections::BTreeSet;
use std::time::Duration;

use diesel::RunQueryDsl;
use reserve::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{movement, spawn_app, Backend, TestApp};
use crate::on_both_backends;
use crate::sse::{self, parse_position, Sse};

on_both_backends!(
    an_acquisition_arrives_with_the_fields_of_the_ledger_entry,
    order_events_sit_between_ledger_entries_in_commit_order,
    a_dropped_stream_resumes_with_nothing_lost_and_nothing_repeated_while_8_writers_post,
    filters_narrow_the_stream_and_a_scoped_token_sees_only_its_depots,
    tickets_open_one_stream_once_and_no_token_is_taken_from_the_query,
    bad_positions_and_filters_are_named,
);

const WAIT: Duration = Duration::from_secs(5);

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

async fn stream(app: &TestApp, query: &str, token: &str) -> Sse {
    sse::open(
        &app.client,
        &app.url(&format!("/api/v1/events{query}")),
        &[bearer(token)],
    )
    .await
}

async fn stock(app: &TestApp, depot: &str) {
    app.create_depot(depot, "100000", "100000").await;
}

async fn an_acquisition_arrives_with_the_fields_of_the_ledger_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "NV-1").await;
    let mut viewer = stream(&app, "", &app.viewer).await;
    let mut auditor = stream(&app, "", &app.auditor).await;
    app.acquire("NV-1", "Dy", "12.345").await.expect(201);

    let e = viewer.next(WAIT).await.expect("the entry's event");
    assert_eq!(e.event, "ledger.entry");
    let listed = app
        .get("/api/v1/ledger?limit=1", &app.viewer)
        .await
        .expect(200)
        .body["items"][0]
        .clone();
    assert_eq!(e.data, listed, "the same fields as the ledger resource");
    assert_eq!(
        e.id,
        listed["sequence"].to_string(),
        "ledger events use the sequence"
    );
    assert_eq!(e.data["depot"], "NV-1");
    assert_eq!(e.data["element"], "Dy");
    assert_eq!(e.data["quantity_kg"], "12.345");
    assert_eq!(
        e.data["actor"],
        Value::Null,
        "viewers do not see who posted"
    );

    let a = auditor.next(WAIT).await.expect("the auditor's copy");
    assert_eq!(a.id, e.id);
    assert_eq!(a.data["actor"], "otto-operator", "auditors do");
    assert!(viewer.next(Duration::from_millis(300)).await.is_none());
    app.stop().await;
}

fn order(kg: &str) -> Value {
    json!({"kind": "emergency_drawdown", "element": "Dy", "form": "oxide", "grade": "99.5",
        "quantity_kg": kg, "authority": "EPCA §161(h)", "reason": "supply disruption",
        "method": "direct", "counterparty": "MagnetCo", "emergency_finding": "Finding 2027-01"})
}

async fn order_events_sit_between_ledger_entries_in_commit_order(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "NV-1").await;
    app.acquire("NV-1", "Dy", "500").await.expect(201);
    let mut s = stream(&app, "", &app.viewer).await;
    let proposed = app
        .post_new("/api/v1/release-orders", &app.operator, &order("10"))
        .await
        .expect(201)
        .body;
    let id = proposed["id"].as_i64().unwrap();
    let approver = app
        .keys
        .mint(
            "ann-approver",
            &[Role::Approver],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    app.post_new(
        &format!("/api/v1/release-orders/{id}/approve"),
        &approver,
        &json!({}),
    )
    .await
    .expect(200);
    app.acquire("NV-1", "Dy", "1").await.expect(201);

    let got = s.take(3, WAIT).await;
    let kinds: Vec<&str> = got.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["order.proposed", "order.approved", "ledger.entry"]);
    let (seq, _) = parse_position(&got[2].id);
    assert_eq!(
        got[0].id,
        format!("{}.1", seq - 1),
        "after the entry before it"
    );
    assert_eq!(got[1].id, format!("{}.2", seq - 1));
    assert_eq!(got[1].data["order_id"], id);
    assert_eq!(got[1].data["from"], "proposed");
    assert_eq!(got[1].data["to"], "approved");
    assert_eq!(got[1].data["actor"], "ann-approver");
    assert_eq!(got[1].data["element"], "Dy");
    app.stop().await;
}

/// Every event after `start` as the database holds it: ledger sequences and
/// order transitions, counted independently of the stream.
async fn expected_positions(app: &TestApp, start: (i64, i64)) -> BTreeSet<String> {
    let mut want = BTreeSet::new();
    let mut conn = app.state.pool.get().unwrap();
    let seqs: Vec<i64> = diesel::sql_query(format!(
        "SELECT sequence AS n FROM ledger_entries WHERE sequence > {}",
        start.0
    ))
    .load::<N>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|r| r.n)
    .collect();
    for s in seqs {
        want.insert(s.to_string());
    }
    let others: Vec<P> = diesel::sql_query("SELECT after_sequence AS a, sub AS b FROM events")
        .load::<P>(&mut conn)
        .unwrap();
    for p in others {
        if (p.a, p.b) > start {
            want.insert(format!("{}.{}", p.a, p.b));
        }
    }
    want
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct P {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    a: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    b: i64,
}

async fn a_dropped_stream_resumes_with_nothing_lost_and_nothing_repeated_while_8_writers_post(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    for d in ["W0", "W1", "W2", "W3"] {
        stock(&app, d).await;
    }
    app.acquire("W0", "Dy", "1000").await.expect(201);
    let mut s = stream(&app, "", &app.viewer).await;
    let start = parse_position(s.opened_at.as_deref().expect("the stream names its start"));

    // Eight writers: six post acquisitions, two propose and cancel orders,
    // so positioned events interleave with ledger entries.
    const EACH: usize = 12;
    let mut writers = Vec::new();
    for w in 0..8usize {
        let base = app.base.clone();
        let operator = app.operator.clone();
        writers.push(actix_rt::spawn(async move {
            let client = awc::Client::default();
            for i in 0..EACH {
                let key = uuid::Uuid::new_v4().to_string();
                if w < 6 {
                    let r = client
                        .post(format!("{base}/api/v1/acquisitions"))
                        .insert_header(("Authorization", format!("Bearer {operator}")))
                        .insert_header(("Idempotency-Key", key))
                        .send_json(&movement(
                            &format!("W{}", w % 4),
                            "Dy",
                            &format!("{}.5", i + 1),
                        ))
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                } else {
                    let mut r = client
                        .post(format!("{base}/api/v1/release-orders"))
                        .insert_header(("Authorization", format!("Bearer {operator}")))
                        .insert_header(("Idempotency-Key", key))
                        .send_json(&order("0.001"))
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 201);
                    let o: Value = r.json().await.unwrap();
                    let r = client
                        .post(format!("{base}/api/v1/release-orders/{}/cancel", o["id"]))
                        .insert_header(("Authorization", format!("Bearer {operator}")))
                        .insert_header(("Idempotency-Key", uuid::Uuid::new_v4().to_string()))
                        .send_json(&json!({"note": "test"}))
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                }
            }
        }));
    }

    // Read a while, drop the connection, resume from the last id seen; twice.
    let mut seen: Vec<String> = Vec::new();
    for round in 0..3 {
        let batch = s.take(25, WAIT).await;
        assert!(!batch.is_empty() || round == 2, "events kept coming");
        seen.extend(batch.into_iter().map(|e| e.id));
        drop(s);
        let last = seen.last().cloned().unwrap_or_else(|| "0".into());
        s = sse::open(
            &app.client,
            &app.url("/api/v1/events"),
            &[bearer(&app.viewer), ("Last-Event-ID", last)],
        )
        .await;
    }
    for w in writers {
        w.await.unwrap();
    }
    while let Some(e) = s.next(Duration::from_secs(2)).await {
        seen.push(e.id);
    }

    let positions: Vec<(i64, i64)> = seen.iter().map(|id| parse_position(id)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions strictly increase across the resumptions: {seen:?}"
    );
    let got: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(got.len(), seen.len(), "nothing repeated");
    let want = expected_positions(&app, start).await;
    let ledger = want.iter().filter(|p| !p.contains('.')).count();
    let others = want.len() - ledger;
    assert_eq!(ledger, 6 * EACH, "every acquisition is in the ledger");
    assert_eq!(
        others,
        2 * EACH * 2,
        "a proposal and a cancellation per order"
    );
    assert_eq!(got, want, "nothing lost");
    app.stop().await;
}

async fn filters_narrow_the_stream_and_a_scoped_token_sees_only_its_depots(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "NV-1").await;
    stock(&app, "TX-2").await;
    app.acquire("NV-1", "Dy", "100").await.expect(201);
    let scoped = app
        .keys
        .mint(
            "nv-viewer",
            &[Role::Viewer],
            Some(vec!["NV-1".into()]),
            chrono::Duration::hours(1),
        )
        .unwrap();
    let mut only_tx = stream(&app, "?depot=TX-2", &app.viewer).await;
    let mut only_tb = stream(&app, "?element=Tb", &app.viewer).await;
    let mut only_orders = stream(&app, "?type=order.*", &app.viewer).await;
    let mut scope = stream(&app, "", &scoped).await;

    app.acquire("TX-2", "Dy", "1").await.expect(201);
    app.acquire("NV-1", "Tb", "2").await.expect(201);
    app.post_new("/api/v1/release-orders", &app.operator, &order("1"))
        .await
        .expect(201);

    let tx = only_tx.take(5, Duration::from_secs(2)).await;
    assert_eq!(tx.len(), 1, "{tx:?}");
    assert_eq!(tx[0].data["depot"], "TX-2");
    let tb = only_tb.take(5, Duration::from_secs(2)).await;
    assert_eq!(tb.len(), 1, "{tb:?}");
    assert_eq!(tb[0].data["element"], "Tb");
    let orders = only_orders.take(5, Duration::from_secs(2)).await;
    assert_eq!(
        orders.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["order.proposed"]
    );
    let mine = scope.take(5, Duration::from_secs(2)).await;
    assert_eq!(
        mine.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["ledger.entry", "order.proposed"],
        "NV-1's entry and the depot-less order event, never TX-2's entry"
    );
    assert_eq!(mine[0].data["depot"], "NV-1");
    app.stop().await;
}

async fn tickets_open_one_stream_once_and_no_token_is_taken_from_the_query(backend: Backend) {
    let app = spawn_app(backend).await;
    stock(&app, "NV-1").await;
    let r = app
        .post("/api/v1/events/tickets", &app.viewer, None, &json!({}))
        .await
        .expect(201);
    let ticket = r.body["ticket"].as_str().unwrap().to_string();
    assert!(ticket.len() >= 40, "{ticket}");
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["expires_at"].as_str().unwrap()).unwrap();
    let left = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!((50..=60).contains(&left), "valid for 60 s, {left} left");

    let url = app.url(&format!("/api/v1/events?ticket={ticket}"));
    let mut s = sse::open(&app.client, &url, &[]).await;
    app.acquire("NV-1", "Dy", "3").await.expect(201);
    assert_eq!(s.next(WAIT).await.expect("an event").event, "ledger.entry");

    // Single use, even while the first stream is open.
    let (status, body) = sse::try_open(&app.client, &url, &[]).await.err().unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("ticket"), "{body}");
    for bad in ["nonsense", ""] {
        let url = app.url(&format!("/api/v1/events?ticket={bad}"));
        let (status, _) = sse::try_open(&app.client, &url, &[]).await.err().unwrap();
        assert_eq!(status, 401);
    }

    // An expired ticket is refused.
    let r = app
        .post("/api/v1/events/tickets", &app.viewer, None, &json!({}))
        .await
        .expect(201);
    let stale = r.body["ticket"].as_str().unwrap().to_string();
    diesel::sql_query("UPDATE event_tickets SET expires_at = created_at WHERE used_at IS NULL")
        .execute(&mut app.state.pool.get().unwrap())
        .unwrap();
    let url = app.url(&format!("/api/v1/events?ticket={stale}"));
    assert_eq!(
        sse::try_open(&app.client, &url, &[]).await.err().unwrap().0,
        401
    );

    // Tokens never travel in URLs, here or elsewhere.
    for name in ["access_token", "token", "jwt"] {
        let url = app.url(&format!("/api/v1/events?{name}={}", app.viewer));
        let (status, body) = sse::try_open(&app.client, &url, &[]).await.err().unwrap();
        assert_eq!(status, 401, "{name}: {body}");
        assert!(body.contains("query string"), "{body}");
    }
    let r = app
        .client
        .get(app.url(&format!("/api/v1/depots?access_token={}", app.viewer)))
        .send()
        .await
        .unwrap();
    assert_ne!(
        r.status().as_u16(),
        200,
        "no query-string credential elsewhere either"
    );

    // Header and ticket at once is ambiguous; no credential at all is 401; a
    // bidder-only token may not read the stream nor mint a ticket for it.
    let r = app
        .post("/api/v1/events/tickets", &app.viewer, None, &json!({}))
        .await
        .expect(201);
    let url = app.url(&format!(
        "/api/v1/events?ticket={}",
        r.body["ticket"].as_str().unwrap()
    ));
    let (status, _) = sse::try_open(&app.client, &url, &[bearer(&app.viewer)])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 422);
    let (status, _) = sse::try_open(&app.client, &app.url("/api/v1/events"), &[])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let bidder = app
        .keys
        .mint(
            "MAGNA-JP",
            &[Role::Bidder],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    app.post("/api/v1/events/tickets", &bidder, None, &json!({}))
        .await
        .expect(403);
    let (status, _) = sse::try_open(&app.client, &app.url("/api/v1/events"), &[bearer(&bidder)])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);
    // An Idempotency-Key is optional here, but never malformed.
    let r = app
        .client
        .post(app.url("/api/v1/events/tickets"))
        .insert_header(bearer(&app.viewer))
        .insert_header(("Idempotency-Key", "two words"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    app.stop().await;
}

async fn bad_positions_and_filters_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    for (query, headers, field) in [
        ("?after=12.0", vec![], "after"),
        ("?after=-3", vec![], "after"),
        (
            "",
            vec![("Last-Event-ID", "x".to_string())],
            "Last-Event-ID",
        ),
        // Not visible ASCII: named, not mistaken for an empty header.
        (
            "",
            vec![("Last-Event-ID", "7.\u{c4}".to_string())],
            "Last-Event-ID",
        ),
        ("?type=ledger.entries", vec![], "type"),
        ("?element=Xx", vec![], "element"),
        ("?colour=red", vec![], "colour"),
    ] {
        let mut req = app
            .client
            .get(app.url(&format!("/api/v1/events{query}")))
            .insert_header(bearer(&app.viewer));
        for (k, v) in headers {
            req = req.insert_header((k, v));
        }
        let mut r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 422, "{query}");
        let body: Value = r.json().await.unwrap();
        let fields: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(fields, [field], "{query}: {body}");
    }
    // Resuming from a position beyond the end is fine: it waits for it.
    let s = stream(&app, "?after=999999.3", &app.viewer).await;
    assert_eq!(s.opened_at.as_deref(), Some("999999.3"));
    app.stop().await;
}
