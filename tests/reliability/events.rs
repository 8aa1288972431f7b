//! The event stream across replicas: two real `reserve serve` processes on one
//! PostgreSQL. A write on one reaches the other's stream within 2 s (LISTEN/
//! NOTIFY wakes it); and a stream dropped on one replica and resumed with
//! `Last-Event-ID` on the other, while 8 writers post through both, misses
//! nothing and repeats nothing.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::{get_json, Cluster};
use crate::helpers::{movement, postgres_skipped, test_settings, Backend, TestDb, SECRET};
use crate::sse::{self, parse_position};

fn tokens() -> (String, String, String) {
    let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth).unwrap();
    let hour = chrono::Duration::hours(1);
    (
        keys.mint("ev-admin", &[Role::Admin], None, hour).unwrap(),
        keys.mint("ev-operator", &[Role::Operator], None, hour)
            .unwrap(),
        keys.mint("ev-auditor", &[Role::Auditor], None, hour)
            .unwrap(),
    )
}

async fn post(client: &awc::Client, url: String, token: &str, body: &Value) -> u16 {
    client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Idempotency-Key", uuid::Uuid::new_v4().to_string()))
        .send_json(body)
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn setup(cluster: &Cluster, admin: &str) {
    let client = awc::Client::default();
    for d in ["EV-A", "EV-B"] {
        let status = post(
            &client,
            format!("{}/api/v1/depots", cluster.replicas[0].base()),
            admin,
            &json!({"code": d, "name": d, "region": "US", "capacity_kg": "1000000",
                    "max_drawdown_kg_per_day": "1000000"}),
        )
        .await;
        assert_eq!(status, 201);
    }
}

#[actix_rt::test]
async fn a_write_on_one_replica_reaches_the_other_replicas_stream_within_two_seconds() {
    if postgres_skipped() {
        return;
    }
    let cluster = Cluster::start(TestDb::new(Backend::Postgres), 2).await;
    let (admin, operator, auditor) = tokens();
    setup(&cluster, &admin).await;
    let client = awc::Client::default();
    let bearer = ("Authorization", format!("Bearer {auditor}"));
    // Only entries: the replicas' own start-up work (an audit report, say)
    // announces events too.
    let mut on_a = sse::open(
        &client,
        &format!(
            "{}/api/v1/events?type=ledger.entry",
            cluster.replicas[0].base()
        ),
        std::slice::from_ref(&bearer),
    )
    .await;
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let sent = Instant::now();
        let status = post(
            &client,
            format!("{}/api/v1/acquisitions", cluster.replicas[1].base()),
            &operator,
            &movement("EV-B", "Dy", &format!("{}.25", i + 1)),
        )
        .await;
        assert_eq!(status, 201);
        let e = on_a
            .next(Duration::from_secs(2))
            .await
            .unwrap_or_else(|| panic!("write {i} on replica 1 did not reach replica 0 in 2 s"));
        worst = worst.max(sent.elapsed());
        assert_eq!(e.event, "ledger.entry");
        assert_eq!(e.data["quantity_kg"], format!("{}.250", i + 1));
        assert_eq!(e.data["actor"], "ev-operator");
        // Spaced out, so each write waits on a notification, not a poll that
        // happened to be due.
        actix_rt::time::sleep(Duration::from_millis(1300)).await;
    }
    eprintln!("slowest cross-replica delivery: {worst:?}");
    assert!(worst < Duration::from_secs(2), "{worst:?}");
}

#[actix_rt::test]
async fn a_stream_resumed_on_another_replica_misses_nothing_while_8_writers_post() {
    if postgres_skipped() {
        return;
    }
    let cluster = Cluster::start(TestDb::new(Backend::Postgres), 2).await;
    let (admin, operator, auditor) = tokens();
    setup(&cluster, &admin).await;
    let client = awc::Client::default();
    let bearer = ("Authorization", format!("Bearer {auditor}"));
    let url = |i: usize| format!("{}/api/v1/events", cluster.replicas[i].base());
    let mut s = sse::open(&client, &url(0), std::slice::from_ref(&bearer)).await;
    let start = parse_position(s.opened_at.as_deref().unwrap());

    const EACH: usize = 15;
    let mut writers = Vec::new();
    for w in 0..8usize {
        let base = cluster.replicas[w % 2].base();
        let operator = operator.clone();
        writers.push(actix_rt::spawn(async move {
            let client = awc::Client::default();
            for i in 0..EACH {
                let depot = if w % 2 == 0 { "EV-A" } else { "EV-B" };
                let body = movement(depot, "Nd", &format!("{}.{w}", i + 1));
                let status = post(
                    &client,
                    format!("{base}/api/v1/acquisitions"),
                    &operator,
                    &body,
                )
                .await;
                assert_eq!(status, 201);
            }
        }));
    }
    let mut seen: Vec<String> = Vec::new();
    for round in 0..4 {
        seen.extend(
            s.take(20, Duration::from_secs(5))
                .await
                .into_iter()
                .map(|e| e.id),
        );
        drop(s);
        let last = seen
            .last()
            .cloned()
            .unwrap_or_else(|| format!("{}", start.0));
        // Alternate replicas on every resumption.
        s = sse::open(
            &client,
            &url((round + 1) % 2),
            &[bearer.clone(), ("Last-Event-ID", last)],
        )
        .await;
    }
    for w in writers {
        w.await.unwrap();
    }
    while let Some(e) = s.next(Duration::from_secs(3)).await {
        seen.push(e.id);
    }
    let positions: Vec<(i64, i64)> = seen.iter().map(|id| parse_position(id)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "nothing repeated");
    // The replicas' start-up work may announce other events; the entries
    // are what the writers made.
    let got: BTreeSet<i64> = positions.iter().filter(|p| p.1 == 0).map(|p| p.0).collect();
    let ledger = get_json(
        &client,
        &cluster.replicas[1].base(),
        &auditor,
        "/api/v1/ledger?limit=1000&order=asc",
    )
    .await;
    let want: BTreeSet<i64> = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .filter(|s| *s > start.0)
        .collect();
    assert_eq!(want.len(), 8 * EACH);
    assert_eq!(got, want, "nothing lost");
}
