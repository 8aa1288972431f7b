//! Webhooks across replicas: two real `reserve serve` processes on one
//! PostgreSQL, both running the delivery worker, while 8 writers post through
//! both and the receiver fails every third request. Every entry must reach
//! the receiver, signed, and be taken (2xx) exactly once: the fan-out under
//! the cursor lock makes one delivery per event, and the leases keep the two
//! workers off each other's attempts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::helpers::{movement, postgres_skipped, test_settings, Backend, TestDb, SECRET};
use crate::webhook_receiver::{signature_valid, Receiver};

const WRITERS: usize = 8;
const POSTS_PER_WRITER: usize = 15;

async fn post(client: &awc::Client, url: String, token: &str, body: &Value) -> Value {
    let mut r = client
        .post(url)
        .insert_header(("Authorization", format!("Bearer {token}")))
        .insert_header(("Idempotency-Key", uuid::Uuid::new_v4().to_string()))
        .send_json(body)
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().limit(1 << 20).await.unwrap_or(Value::Null);
    assert!((200..300).contains(&status), "{status}: {body}");
    body
}

#[actix_rt::test]
async fn two_replicas_deliver_every_event_exactly_once_while_8_writers_post() {
    if postgres_skipped() {
        return;
    }
    let cluster = Cluster::start_with(
        TestDb::new(Backend::Postgres),
        2,
        &[
            ("RESERVE_WEBHOOKS__POLL_MS", "50"),
            ("RESERVE_WEBHOOKS__RETRY_BASE_MS", "100"),
            ("RESERVE_WEBHOOKS__RETRY_CAP_MS", "400"),
            ("RESERVE_WEBHOOKS__TIMEOUT_MS", "2000"),
        ],
    )
    .await;
    let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth).unwrap();
    let hour = chrono::Duration::hours(1);
    let admin = keys.mint("wh-admin", &[Role::Admin], None, hour).unwrap();
    let operator = keys
        .mint("wh-operator", &[Role::Operator], None, hour)
        .unwrap();
    let rx = Receiver::start().await;
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let bases: Vec<String> = cluster.replicas.iter().map(|r| r.base()).collect();
    post(
        &client,
        format!("{}/api/v1/depots", bases[0]),
        &admin,
        &json!({"code": "WH-1", "name": "WH-1", "region": "US", "capacity_kg": "1000000",
                "max_drawdown_kg_per_day": "1000000"}),
    )
    .await;
    let hook = post(
        &client,
        format!("{}/api/v1/webhooks", bases[1]),
        &admin,
        &json!({"url": rx.url("/sometimes"), "event_types": ["ledger.entry"]}),
    )
    .await;
    let secret = hook["secret"].as_str().unwrap().to_string();

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (client, bases, operator) = (client.clone(), bases.clone(), operator.clone());
        writers.push(actix_rt::spawn(async move {
            let mut sequences = Vec::new();
            for i in 0..POSTS_PER_WRITER {
                let base = &bases[(w + i) % bases.len()];
                let body = post(
                    &client,
                    format!("{base}/api/v1/acquisitions"),
                    &operator,
                    &movement("WH-1", "Nd", "1"),
                )
                .await;
                sequences.push(
                    body["entries"][0]["sequence"].as_i64().unwrap_or_else(|| {
                        body["sequence"].as_i64().expect("the entry's sequence")
                    }),
                );
            }
            sequences
        }));
    }
    let mut posted = BTreeSet::new();
    for w in writers {
        posted.extend(w.await.unwrap());
    }
    assert_eq!(posted.len(), WRITERS * POSTS_PER_WRITER);

    // Wait until every entry was taken (answered 2xx) by the receiver.
    let deadline = Instant::now() + Duration::from_secs(60);
    let taken = loop {
        let got = rx.at("/sometimes");
        // The receiver's n-th request failed when n % 3 == 1.
        let mut taken: BTreeMap<i64, usize> = BTreeMap::new();
        for (n, r) in got.iter().enumerate() {
            if (n + 1) % 3 != 1 {
                let body: Value = serde_json::from_str(&r.body).unwrap();
                let seq: i64 = body["id"].as_str().unwrap().parse().unwrap();
                *taken.entry(seq).or_default() += 1;
            }
        }
        if taken.len() >= posted.len() || Instant::now() > deadline {
            break taken;
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    };
    let got = rx.at("/sometimes");
    let seen: BTreeSet<i64> = taken.keys().copied().collect();
    assert_eq!(seen, posted, "every entry, and nothing else, was taken");
    let twice: Vec<_> = taken.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "taken more than once: {twice:?}");
    assert!(
        got.iter().all(|r| signature_valid(&secret, r)),
        "every request is signed"
    );
    // Every failed request was retried under the same webhook-id.
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &got {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        ids.entry(body["id"].as_str().unwrap().to_string())
            .or_default()
            .insert(r.id.clone());
    }
    assert!(
        ids.values().all(|s| s.len() == 1),
        "one webhook-id per event"
    );
    assert!(
        got.len() > posted.len(),
        "the receiver's failures were retried ({} requests for {} entries)",
        got.len(),
        posted.len()
    );
    rx.stop().await;
}
