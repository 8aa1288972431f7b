//! Scheduled rule evaluation runs once per slot across replicas: two real
//! `reserve serve` processes on one database, both running the scheduler
//! every second against a schedule of every second slot, produce exactly one
//! evaluation per rule per slot. And a slot missed while no replica ran runs
//! at the next start.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Timelike, Utc};
use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::{get_json, Cluster};
use crate::helpers::{postgres_skipped, spawn_app_with, test_settings, Backend, TestDb, SECRET};

fn rule(element: &str) -> Value {
    json!({
        "element": element, "window_days": 30, "baseline_days": 365,
        "drop_threshold_percent": "25", "consecutive_breaches": 3, "cooldown_days": 30,
        "coverage_fraction": "0.5", "cap_kg": "1000", "order_kind": "limited_drawdown",
        "method": "sale", "enabled": true
    })
}

async fn two_replicas_evaluate_each_rule_once_per_slot(backend: Backend) {
    let cluster = Cluster::start_with(
        TestDb::new(backend),
        2,
        &[
            ("RESERVE_RULES__EVALUATION_SCHEDULE", "*/2 * * * * *"),
            ("RESERVE_JOBS__POLL_SECS", "1"),
        ],
    )
    .await;
    let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth).unwrap();
    let admin = keys
        .mint(
            "sched-admin",
            &[Role::Admin],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    let client = awc::Client::default();
    let base = cluster.replicas[0].base();
    let mut ids = Vec::new();
    for element in ["Dy", "Tb"] {
        let mut r = client
            .post(format!("{base}/api/v1/release-rules"))
            .insert_header(("Authorization", format!("Bearer {admin}")))
            .insert_header(("Idempotency-Key", uuid::Uuid::new_v4().to_string()))
            .send_json(&rule(element))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let body: Value = r.json().await.unwrap();
        ids.push(body["id"].as_i64().unwrap());
    }
    actix_rt::time::sleep(Duration::from_secs(9)).await;
    for id in ids {
        // Read from the other replica: both see the same table.
        let page = get_json(
            &client,
            &cluster.replicas[1].base(),
            &admin,
            &format!("/api/v1/release-rules/{id}/evaluations?limit=1000"),
        )
        .await;
        let mut per_slot: BTreeMap<String, usize> = BTreeMap::new();
        for e in page["items"].as_array().unwrap() {
            assert_eq!(e["trigger"], "schedule");
            assert_eq!(e["triggered_by"], "scheduler");
            *per_slot
                .entry(e["slot"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert!(
            per_slot.len() >= 2,
            "rule {id}: expected several slots in 9 s, got {per_slot:?}"
        );
        for (slot, n) in &per_slot {
            assert_eq!(*n, 1, "rule {id} evaluated {n} times in slot {slot}");
            let second = chrono::DateTime::parse_from_rfc3339(slot).unwrap().second();
            assert_eq!(second % 2, 0, "slots fall on even seconds: {slot}");
        }
    }
}

async fn a_slot_missed_while_no_replica_ran_runs_at_start(backend: Backend) {
    // Today's 00:00 UTC slot has passed and no replica ran it: the first pass
    // at start does.
    let app = spawn_app_with(backend, |s| {
        s.jobs.enabled = true;
        s.jobs.poll_secs = 1;
        s.rules.evaluation_schedule = "0 0 0 * * *".into();
    })
    .await;
    app.post_new("/api/v1/release-rules", &app.admin, &rule("Ho"))
        .await
        .expect(201);
    // The first pass may have run before the rule existed; a restart would
    // not run the slot again (it is claimed), so look at the claim instead.
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let mut claimed = Vec::new();
    for _ in 0..50 {
        let mut conn = app.state.pool.get().unwrap();
        claimed = reserve::jobs::repo::recent(&mut conn, "rules.evaluate", 10).unwrap();
        if !claimed.is_empty() {
            break;
        }
        drop(conn);
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].slot, midnight.naive_utc());
    assert!(claimed[0].outcome.starts_with("evaluated"), "{claimed:?}");
    // No second run of the same slot, however many passes follow.
    actix_rt::time::sleep(Duration::from_millis(2500)).await;
    let mut conn = app.state.pool.get().unwrap();
    let again = reserve::jobs::repo::recent(&mut conn, "rules.evaluate", 10).unwrap();
    assert_eq!(again.len(), 1);
}

mod two_replicas {
    #[actix_rt::test]
    async fn sqlite() {
        super::two_replicas_evaluate_each_rule_once_per_slot(crate::helpers::Backend::Sqlite).await
    }
    #[actix_rt::test]
    async fn postgres() {
        if super::postgres_skipped() {
            return;
        }
        super::two_replicas_evaluate_each_rule_once_per_slot(crate::helpers::Backend::Postgres)
            .await
    }
}

mod missed_slot {
    #[actix_rt::test]
    async fn sqlite() {
        super::a_slot_missed_while_no_replica_ran_runs_at_start(crate::helpers::Backend::Sqlite)
            .await
    }
    #[actix_rt::test]
    async fn postgres() {
        if super::postgres_skipped() {
            return;
        }
        super::a_slot_missed_while_no_replica_ran_runs_at_start(crate::helpers::Backend::Postgres)
            .await
    }
}
