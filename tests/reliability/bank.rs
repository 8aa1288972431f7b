//! The bank test: random acquisitions, releases and transfers from many
//! clients for a fixed time, optionally while replicas are SIGKILLed and
//! restarted; afterwards material is conserved exactly, nothing is negative or
//! over capacity, every chain verifies and every acknowledged write is in the
//! ledger exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rand::{rngs::StdRng, Rng, SeedableRng};
use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::{get_json, Cluster};
use crate::helpers::{grams, postgres_skipped, test_settings, Backend, TestDb, SECRET};

const DEPOTS: [(&str, &str); 3] = [("BA1", "5000"), ("BB2", "5000"), ("BC3", "2000")];
const ELEMENTS: [&str; 3] = ["Nd", "Dy", "Tb"];
const CLIENTS: usize = 8;
/// Clients that run release orders through their whole lifecycle meanwhile.
const ORDER_CLIENTS: usize = 2;

#[actix_rt::test]
async fn bank_sqlite() {
    bank(Backend::Sqlite, 1, 0).await;
}

#[actix_rt::test]
async fn bank_postgres() {
    if !postgres_skipped() {
        bank(Backend::Postgres, 1, 0).await;
    }
}

#[actix_rt::test]
async fn bank_postgres_three_replicas() {
    if !postgres_skipped() {
        bank(Backend::Postgres, 3, 0).await;
    }
}

#[actix_rt::test]
async fn crash_sqlite() {
    bank(Backend::Sqlite, 1, 3).await;
}

#[actix_rt::test]
async fn crash_postgres() {
    if !postgres_skipped() {
        bank(Backend::Postgres, 1, 3).await;
    }
}

fn seconds() -> u64 {
    std::env::var("RESERVE_BANK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

/// One write as a client sees it.
struct Write {
    path: String,
    body: Value,
    key: String,
    /// Element and signed grams for the conservation sum (0 for transfers).
    element: usize,
    delta_g: i64,
}

#[derive(Default)]
struct Tally {
    requests: u64,
    retries: u64,
    refused: u64,
    /// movement_id → number of entries the acknowledged response carried.
    acknowledged: BTreeMap<String, usize>,
    /// Net acknowledged grams per element.
    net_g: [i64; 3],
    /// Release orders approved, and executions of them acknowledged.
    orders_approved: u64,
    orders_executed: u64,
}

fn random_write(rng: &mut StdRng) -> Write {
    let element = rng.gen_range(0..ELEMENTS.len());
    let g: i64 = rng.gen_range(1..100_000);
    let kg = format!("{}.{:03}", g / 1000, g % 1000);
    let depot = DEPOTS[rng.gen_range(0..DEPOTS.len())].0;
    let roll: f64 = rng.gen();
    let stock = |depot: &str| json!({"depot": depot, "element": ELEMENTS[element], "form": "oxide", "grade": "99.5", "quantity_kg": kg});
    let key = uuid::Uuid::new_v4().to_string();
    if roll < 0.4 {
        Write {
            path: "/api/v1/acquisitions".into(),
            body: stock(depot),
            key,
            element,
            delta_g: g,
        }
    } else if roll < 0.7 {
        Write {
            path: "/api/v1/releases".into(),
            body: stock(depot),
            key,
            element,
            delta_g: -g,
        }
    } else {
        let from = rng.gen_range(0..DEPOTS.len());
        let to = (from + rng.gen_range(1..DEPOTS.len())) % DEPOTS.len();
        let body = json!({"from_depot": DEPOTS[from].0, "to_depot": DEPOTS[to].0, "element": ELEMENTS[element],
                          "form": "oxide", "grade": "99.5", "quantity_kg": kg});
        Write {
            path: "/api/v1/transfers".into(),
            body,
            key,
            element,
            delta_g: 0,
        }
    }
}

enum Outcome {
    Acknowledged(Value),
    Refused,
}

/// Sends `w` until it gets a definitive answer, retrying with the same key
/// (on any replica) after timeouts, dropped connections, 503 and in-flight 409.
async fn send(
    cluster_ports: &[u16],
    token: &str,
    w: &Write,
    rng: &mut StdRng,
    tally: &mut Tally,
    give_up: Instant,
) -> Outcome {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(5))
        .finish();
    let mut attempt = 0u32;
    loop {
        tally.requests += 1;
        let port = cluster_ports[rng.gen_range(0..cluster_ports.len())];
        let sent = client
            .post(format!("http://127.0.0.1:{port}{}", w.path))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Idempotency-Key", w.key.clone()))
            .send_json(&w.body)
            .await;
        // Every answer that is not definitive (and a failed send) falls
        // through to a retry.
        if let Ok(mut res) = sent {
            let status = res.status().as_u16();
            let body: Value = res.json().limit(1 << 20).await.unwrap_or(Value::Null);
            match (status, body["code"].as_str()) {
                (200 | 201, _) => return Outcome::Acknowledged(body),
                (409, Some("insufficient-stock" | "over-capacity" | "order-state")) => {
                    return Outcome::Refused
                }
                (409, Some("idempotency-key-in-flight")) | (503, _) => {}
                // A body lost with a dying server.
                (_, _) if body.is_null() && status >= 500 => {}
                _ => panic!(
                    "unexpected answer {status} to {} {}: {body}",
                    w.path, w.body
                ),
            }
        }
        assert!(
            Instant::now() < give_up,
            "no definitive answer for {} {} after {attempt} retries",
            w.path,
            w.body
        );
        attempt += 1;
        tally.retries += 1;
        actix_rt::time::sleep(Duration::from_millis(20 * u64::from(attempt.min(10)))).await;
    }
}

/// Release orders in the mix: propose an emergency drawdown, have a second
/// person approve it (which reserves stock), then execute part or all of it
/// at its first depot, and cancel what is left (which voids the rest of the
/// reservation). Executions are ledger writes like any other.
async fn order_loop(
    ports: Vec<u16>,
    operator: String,
    approver: String,
    seed: u64,
    until: Instant,
) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let give_up = until + Duration::from_secs(120);
    let path = |id: &Value, action: &str| format!("/api/v1/release-orders/{id}/{action}");
    while Instant::now() < until {
        let element = rng.gen_range(0..ELEMENTS.len());
        let g: i64 = rng.gen_range(1..50_000);
        let kg = |g: i64| format!("{}.{:03}", g / 1000, g % 1000);
        let mut w = Write {
            path: "/api/v1/release-orders".into(),
            body: json!({"kind": "emergency_drawdown", "element": ELEMENTS[element], "form": "oxide",
                         "grade": "99.5", "quantity_kg": kg(g), "authority": "bank test",
                         "reason": "load", "method": "direct", "counterparty": "X",
                         "emergency_finding": "F-1"}),
            key: uuid::Uuid::new_v4().to_string(),
            element,
            delta_g: 0,
        };
        let Outcome::Acknowledged(order) =
            send(&ports, &operator, &w, &mut rng, &mut tally, give_up).await
        else {
            tally.refused += 1;
            continue;
        };
        let id = order["id"].clone();
        w.path = path(&id, "approve");
        w.body = json!({});
        w.key = uuid::Uuid::new_v4().to_string();
        let approved = send(&ports, &approver, &w, &mut rng, &mut tally, give_up).await;
        if let Outcome::Acknowledged(approved) = approved {
            tally.orders_approved += 1;
            let first = &approved["allocation"][0];
            let allocated = grams(first["quantity_kg"].as_str().unwrap());
            let take = if rng.gen_bool(0.5) {
                allocated
            } else {
                rng.gen_range(1..=allocated)
            };
            w.path = path(&id, "execute");
            w.body = json!({"depot": first["depot"], "quantity_kg": kg(take)});
            w.key = uuid::Uuid::new_v4().to_string();
            match send(&ports, &operator, &w, &mut rng, &mut tally, give_up).await {
                Outcome::Acknowledged(entry) => {
                    let movement = entry["movement_id"].as_str().unwrap().to_string();
                    assert!(tally.acknowledged.insert(movement, 1).is_none());
                    tally.net_g[element] -= take;
                    tally.orders_executed += 1;
                }
                Outcome::Refused => panic!("an approved order's reserved stock was not there"),
            }
        } else {
            tally.refused += 1;
        }
        // Whatever is left of the order is cancelled; a completed order
        // refuses (409 order-state), which is as good.
        w.path = path(&id, "cancel");
        w.body = json!({});
        w.key = uuid::Uuid::new_v4().to_string();
        let _ = send(&ports, &approver, &w, &mut rng, &mut tally, give_up).await;
    }
    tally
}

async fn client_loop(ports: Vec<u16>, token: String, seed: u64, until: Instant) -> Tally {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let give_up = until + Duration::from_secs(120);
    while Instant::now() < until {
        let w = random_write(&mut rng);
        match send(&ports, &token, &w, &mut rng, &mut tally, give_up).await {
            Outcome::Acknowledged(body) => {
                let (movement, entries) = match body["entries"].as_array() {
                    Some(e) => (body["movement_id"].as_str().unwrap().to_string(), e.len()),
                    None => (body["movement_id"].as_str().unwrap().to_string(), 1),
                };
                assert!(
                    tally.acknowledged.insert(movement, entries).is_none(),
                    "a movement acknowledged twice"
                );
                tally.net_g[w.element] += w.delta_g;
            }
            Outcome::Refused => tally.refused += 1,
        }
    }
    tally
}

async fn bank(backend: Backend, replicas: usize, kills: usize) {
    let db = TestDb::new(backend);
    let mut cluster = Cluster::start(db, replicas).await;
    let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth).unwrap();
    let hour = chrono::Duration::hours(2);
    let admin = keys
        .mint("bank-admin", &[Role::Admin, Role::Auditor], None, hour)
        .unwrap();
    let operator = keys
        .mint("bank-operator", &[Role::Operator], None, hour)
        .unwrap();
    let approver = keys
        .mint("bank-approver", &[Role::Approver], None, hour)
        .unwrap();
    let ports: Vec<u16> = cluster.replicas.iter().map(|r| r.port).collect();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    let base = cluster.replicas[0].base();

    // Opening balances: depots and 300 kg of each element at each depot.
    let mut initial_g = [0i64; 3];
    for (code, capacity) in DEPOTS {
        let r = client
            .post(format!("{base}/api/v1/depots"))
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .insert_header(("Idempotency-Key", format!("depot-{code}")))
            .send_json(&json!({"code": code, "name": code, "region": "test", "capacity_kg": capacity, "max_drawdown_kg_per_day": "999999999"}))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        for (e, element) in ELEMENTS.iter().enumerate() {
            let r = client
                .post(format!("{base}/api/v1/acquisitions"))
                .insert_header(("Authorization", format!("Bearer {operator}")))
                .insert_header(("Idempotency-Key", format!("open-{code}-{element}")))
                .send_json(&json!({"depot": code, "element": element, "form": "oxide", "grade": "99.5", "quantity_kg": "300"}))
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
            initial_g[e] += 300_000;
        }
    }

    let duration = Duration::from_secs(seconds());
    let started = Instant::now();
    let until = started + duration;
    let clients = join_all(
        (0..CLIENTS)
            .map(|c| {
                Box::pin(client_loop(
                    ports.clone(),
                    operator.clone(),
                    c as u64 * 7919 + replicas as u64,
                    until,
                )) as std::pin::Pin<Box<dyn std::future::Future<Output = Tally>>>
            })
            .chain((0..ORDER_CLIENTS).map(|c| {
                Box::pin(order_loop(
                    ports.clone(),
                    operator.clone(),
                    approver.clone(),
                    c as u64 * 104_729 + replicas as u64,
                    until,
                )) as std::pin::Pin<Box<dyn std::future::Future<Output = Tally>>>
            })),
    );
    let killer = async {
        let mut done = 0;
        for k in 0..kills {
            actix_rt::time::sleep_until(
                (started + duration * (k as u32 + 1) / (kills as u32 + 1)).into(),
            )
            .await;
            cluster.replicas[0].restart();
            cluster.wait_ready(0).await;
            done += 1;
        }
        done
    };
    let (tallies, kills_done) = futures_util::future::join(clients, killer).await;

    let mut total = Tally::default();
    for t in tallies {
        total.requests += t.requests;
        total.retries += t.retries;
        total.refused += t.refused;
        total.orders_approved += t.orders_approved;
        total.orders_executed += t.orders_executed;
        for e in 0..3 {
            total.net_g[e] += t.net_g[e];
        }
        for (m, n) in t.acknowledged {
            assert!(
                total.acknowledged.insert(m, n).is_none(),
                "two clients were acknowledged the same movement"
            );
        }
    }

    // 1. The chains, balances and sequence verify.
    let get = |path: String| {
        let (client, admin, base) = (&client, &admin, &base);
        async move { get_json(client, base, admin, &path).await }
    };
    let v = get("/api/v1/ledger/verify".into()).await;
    assert_eq!(v["ok"], true, "{v}");

    // 2. Every acknowledged write is in the ledger exactly once, and nothing else is.
    let mut in_ledger: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor = String::new();
    let mut entries = 0usize;
    loop {
        let page = get(format!(
            "/api/v1/ledger?order=asc&limit=1000&cursor={cursor}"
        ))
        .await;
        let items = page["items"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        for e in items {
            *in_ledger
                .entry(e["movement_id"].as_str().unwrap().to_string())
                .or_default() += 1;
            entries += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let opening = DEPOTS.len() * ELEMENTS.len();
    let acknowledged: BTreeSet<&String> = total.acknowledged.keys().collect();
    let lost: Vec<_> = total
        .acknowledged
        .iter()
        .filter(|(m, n)| in_ledger.get(*m) != Some(n))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged writes missing or duplicated: {lost:?}"
    );
    let ghosts = in_ledger
        .keys()
        .filter(|m| !acknowledged.contains(m))
        .count();
    assert_eq!(
        ghosts, opening,
        "only the opening acquisitions are unacknowledged by the load clients"
    );

    // 3. Conservation per element, from the maintained balances.
    let summary = get("/api/v1/summary".into()).await;
    for (e, element) in ELEMENTS.iter().enumerate() {
        let s = summary["elements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["element"] == *element)
            .unwrap();
        assert_eq!(
            grams(s["on_hand_kg"].as_str().unwrap()),
            initial_g[e] + total.net_g[e],
            "{element} is not conserved"
        );
    }
    // 4. Nothing negative, nothing over capacity.
    for d in summary["depots"].as_array().unwrap() {
        assert!(
            grams(d["on_hand_kg"].as_str().unwrap()) <= grams(d["capacity_kg"].as_str().unwrap()),
            "{d}"
        );
    }
    let stock = get("/api/v1/stockpiles?limit=1000".into()).await;
    for s in stock["items"].as_array().unwrap() {
        assert!(
            grams(s["on_hand_kg"].as_str().unwrap()) >= 0
                && grams(s["available_kg"].as_str().unwrap()) >= 0,
            "{s}"
        );
    }
    // 5. Reservations: what stockpiles hold reserved is exactly what open
    //    orders hold, and no order is left half-way.
    let mut orders_reserved = 0i64;
    let mut cursor = String::new();
    loop {
        let page = get(format!("/api/v1/release-orders?limit=200&cursor={cursor}")).await;
        for o in page["items"].as_array().unwrap() {
            orders_reserved += grams(o["reserved_kg"].as_str().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let stockpiles_reserved: i64 = stock["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| grams(s["reserved_kg"].as_str().unwrap()))
        .sum();
    assert_eq!(stockpiles_reserved, orders_reserved, "reservations drifted");
    assert!(total.orders_executed > 0, "orders ran in the mix");
    assert_eq!(kills_done, kills);
    println!(
        "bank: backend={backend:?} replicas={replicas} seconds={} clients={CLIENTS} requests={} retries={} acknowledged={} refused={} orders_approved={} orders_executed={} kills={kills_done} entries_checked={entries} lost=0 duplicated=0",
        duration.as_secs(),
        total.requests,
        total.retries,
        total.acknowledged.len(),
        total.refused,
        total.orders_approved,
        total.orders_executed,
    );
    drop(cluster);
}
