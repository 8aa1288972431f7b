//! Group commit (`ledger::group`): concurrent postings share one transaction,
//! each in its own savepoint, and every one is answered as it would be alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use reserve::error::ApiError;
use reserve::ledger::group::Request;
use serde_json::json;

use crate::helpers::{movement, spawn_app_with, Backend, TestApp};
use crate::on_both_backends;

/// A window long enough that requests sent together always meet in one
/// group, even on a loaded machine.
async fn app_grouping(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        s.group_commit.window_us = 200_000;
        s.group_commit.max_members = 64;
    })
    .await
}

fn groups(app: &TestApp) -> (u64, u64) {
    let m = &app.state.metrics;
    (m.group_commit_groups.get(), m.group_commit_members.get())
}

async fn postings_sent_together_commit_as_one_group_and_a_refused_one_rolls_back_alone(
    backend: Backend,
) {
    let app = app_grouping(backend).await;
    app.create_depot("GC1", "100", "1000").await;
    app.acquire("GC1", "Nd", "10").await.expect(201);
    app.acquire("GC1", "Dy", "5").await.expect(201);
    let (groups_before, members_before) = groups(&app);

    // Counted as one more posting on its way, so the group does not close
    // before the window while the nine requests are still arriving.
    let group = app.state.group_commit.clone().expect("group commit on");
    let coming = group.on_the_way();
    let mut requests = Vec::new();
    for _ in 0..6 {
        requests.push(("/api/v1/acquisitions", movement("GC1", "Nd", "1"), 201));
    }
    // Refused for stock, for capacity; and one that succeeds beside them.
    requests.push(("/api/v1/releases", movement("GC1", "Nd", "500"), 409));
    requests.push(("/api/v1/acquisitions", movement("GC1", "Nd", "90"), 409));
    requests.push(("/api/v1/releases", movement("GC1", "Dy", "2"), 201));
    let replies = join_all(
        requests
            .iter()
            .map(|(path, body, _)| app.post_new(path, &app.operator, body)),
    )
    .await;
    drop(coming);
    for ((path, _, status), reply) in requests.iter().zip(replies) {
        let reply = reply.expect(*status);
        if *status == 409 {
            let kind = reply.body["type"].as_str().unwrap().to_string();
            if *path == "/api/v1/releases" {
                assert!(kind.ends_with("insufficient-stock"), "{}", reply.text);
                assert_eq!(reply.body["requested_kg"], "500.000");
            } else {
                assert!(kind.ends_with("over-capacity"), "{}", reply.text);
                assert_eq!(reply.body["requested_kg"], "90.000");
            }
        }
    }

    let (groups_after, members_after) = groups(&app);
    assert_eq!(
        members_after - members_before,
        9,
        "every posting ran in a group"
    );
    assert!(
        groups_after - groups_before < 9,
        "postings sent together share groups: {} groups for 9 postings",
        groups_after - groups_before
    );
    assert_eq!(app.on_hand("GC1", "Nd").await.as_deref(), Some("16.000"));
    assert_eq!(app.on_hand("GC1", "Dy").await.as_deref(), Some("3.000"));
    // Sequences stay gapless: refused members gave theirs back.
    let ledger = app
        .get("/api/v1/ledger?order=asc&limit=100", &app.auditor)
        .await
        .expect(200);
    let sequences: Vec<i64> = ledger.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=9).collect::<Vec<_>>());
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

/// Requests with one key inside one group behave as if sent one after the
/// other: the second replays the first, a different body is refused, and a
/// refused member stores nothing, while the group's others commit.
async fn one_key_twice_in_a_group_behaves_like_two_requests_in_a_row(backend: Backend) {
    let app = app_grouping(backend).await;
    let group = app.state.group_commit.clone().expect("group commit on");
    let runs = Arc::new(AtomicUsize::new(0));
    let request = |key: &str, hash: &str, refuse: bool| {
        let runs = runs.clone();
        Request {
            subject: "otto-operator".into(),
            key: key.into(),
            request_hash: hash.into(),
            stockpiles: Vec::new(),
            work: Box::new(move |_: &mut reserve::db::DbConn| {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                if refuse {
                    return Err(ApiError::conflict(
                        "insufficient-stock",
                        "refused",
                        serde_json::Value::Null,
                    ));
                }
                Ok(json!({ "run": n }))
            }),
            claim: None,
        }
    };
    let (groups_before, members_before) = groups(&app);
    let answers = join_all([
        group.submit(request("k1", "h1", false), group.on_the_way()),
        group.submit(request("k1", "h1", false), group.on_the_way()),
        group.submit(request("k1", "h2", false), group.on_the_way()),
        group.submit(request("k2", "h1", true), group.on_the_way()),
        group.submit(request("k3", "h1", false), group.on_the_way()),
    ])
    .await;
    let (groups_after, members_after) = groups(&app);
    assert_eq!(
        (groups_after - groups_before, members_after - members_before),
        (1, 5),
        "one group of five"
    );
    let [first, second, other_body, refused, other_key]: [_; 5] = answers.try_into().unwrap();
    let first = first.expect("first runs");
    assert_eq!((first.status, first.replayed), (201, false));
    let second = second.expect("second replays");
    assert_eq!((second.status, second.replayed), (201, true));
    assert_eq!(second.body, first.body);
    assert!(matches!(other_body, Err(ApiError::IdempotencyKeyReused)));
    assert!(matches!(refused, Err(ApiError::Conflict { .. })));
    let other_key = other_key.expect("another key commits beside them");
    assert!(!other_key.replayed);
    assert_eq!(runs.load(Ordering::SeqCst), 3, "k1 once, k2 (refused), k3");

    // The refusal stored nothing: the same key runs again; k1 and k3 stand.
    let again = group
        .submit(request("k2", "h1", false), group.on_the_way())
        .await
        .expect("k2 runs");
    assert!(!again.replayed);
    let k1 = group
        .submit(request("k1", "h1", false), group.on_the_way())
        .await
        .unwrap();
    assert_eq!((k1.replayed, k1.body), (true, first.body));
    app.stop().await;
}

on_both_backends!(
    postings_sent_together_commit_as_one_group_and_a_refused_one_rolls_back_alone,
    one_key_twice_in_a_group_behaves_like_two_requests_in_a_row,
);
