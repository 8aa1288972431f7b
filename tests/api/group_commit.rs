//! Group commit (`ledger::group`): concurrent postings share one transaction,
//! each in its own savepoint, and every one is answered as it would be alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::future::join_all;
use reserve::error::ApiError;
use reserve::ledger::group::Request;
use reserve::ledger::model::EntryKind;
use reserve::ledger::post::Known;
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
            work: Box::new(move |_: &mut reserve::db::DbConn, _: Option<&mut Known>| {
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

/// A posting as the posting route hands it to the group (through
/// `ledger::post::post_in`, given what the group read ahead), so a test can
/// fix the members' order: `join_all` submits them in the order given.
fn posting(app: &TestApp, key: &str, kind: EntryKind, body: serde_json::Value) -> Request {
    let body: reserve::ledger::dto::MovementRequest =
        serde_json::from_value(body).expect("a movement body");
    let legs = body
        .into_legs(kind, reserve::db::types::now())
        .expect("valid legs");
    let settings = app.state.settings.ledger.clone();
    let key = key.to_string();
    Request {
        subject: "otto-operator".into(),
        key: key.clone(),
        request_hash: format!("hash-{key}"),
        stockpiles: legs.iter().map(|l| l.key.clone()).collect(),
        work: Box::new(move |c, known| {
            let posting = reserve::ledger::post::Posting {
                actor: "otto-operator",
                idempotency_key: &key,
                legs,
                order: None,
            };
            let records = reserve::ledger::post::post_in(c, &settings, posting, known)?;
            Ok(json!({ "sequences": records.iter().map(|r| r.entry.sequence).collect::<Vec<_>>() }))
        }),
        claim: None,
    }
}

fn conflict(answer: &Result<reserve::idempotency::StoredResponse, ApiError>) -> (&str, String) {
    match answer {
        Err(ApiError::Conflict { code, context, .. }) => (
            code,
            context["available_kg"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn sequences(app: &TestApp) -> Vec<i64> {
    let ledger = app
        .get("/api/v1/ledger?order=asc&limit=100", &app.auditor)
        .await
        .expect(200);
    ledger.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect()
}

/// Members of one group on one stockpile see each other's effects, as
/// requests in a row would: the second release of 6 kg of 10 is refused
/// for the 4 kg the first left, a back-dated acquisition and undated ones
/// land in the stockpile's history, and later members count with them.
async fn members_on_one_stockpile_see_the_earlier_members(backend: Backend) {
    let app = app_grouping(backend).await;
    app.create_depot("GC2", "1000", "1000").await;
    app.acquire("GC2", "Nd", "10").await.expect(201);
    let group = app.state.group_commit.clone().expect("group commit on");
    let mut dated = movement("GC2", "Nd", "2");
    dated["occurred_at"] = json!(reserve::db::types::rfc3339(
        reserve::db::types::now() - chrono::Duration::hours(1)
    ));
    let (groups_before, members_before) = groups(&app);
    let answers = join_all([
        group.submit(
            posting(&app, "a", EntryKind::Release, movement("GC2", "Nd", "6")),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "b", EntryKind::Release, movement("GC2", "Nd", "6")),
            group.on_the_way(),
        ),
        group.submit(
            posting(
                &app,
                "c",
                EntryKind::Acquisition,
                movement("GC2", "Nd", "3"),
            ),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "d", EntryKind::Acquisition, dated),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "e", EntryKind::Release, movement("GC2", "Nd", "8")),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "f", EntryKind::Release, movement("GC2", "Nd", "2")),
            group.on_the_way(),
        ),
    ])
    .await;
    let (groups_after, members_after) = groups(&app);
    assert_eq!(
        (groups_after - groups_before, members_after - members_before),
        (1, 6),
        "one group of six"
    );
    let committed: Vec<serde_json::Value> = [0, 2, 3, 4]
        .iter()
        .map(|i| {
            let a = answers[*i].as_ref().expect("commits");
            serde_json::from_str(&a.body).unwrap()
        })
        .collect();
    let seqs: Vec<i64> = committed
        .iter()
        .map(|v| v["sequences"][0].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4, 5], "refused members took no sequence");
    assert_eq!(
        conflict(&answers[1]),
        ("insufficient-stock", "4.000".to_string())
    );
    assert_eq!(
        conflict(&answers[5]),
        ("insufficient-stock", "1.000".to_string())
    );
    assert_eq!(app.on_hand("GC2", "Nd").await.as_deref(), Some("1.000"));
    assert_eq!(sequences(&app).await, (1..=5).collect::<Vec<_>>());
    // Chains, running balances and `ledger_balances` (the back-dated entry
    // among them) all check out.
    assert_eq!(app.verify().await["ok"], true, "{}", app.verify().await);
    // The refused keys stored nothing: they run again, now with stock.
    app.acquire("GC2", "Nd", "10").await.expect(201);
    let again = group
        .submit(
            posting(&app, "b", EntryKind::Release, movement("GC2", "Nd", "6")),
            group.on_the_way(),
        )
        .await
        .expect("b runs again");
    assert!(!again.replayed);
    assert_eq!(app.on_hand("GC2", "Nd").await.as_deref(), Some("5.000"));
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

/// A member dated in a closed period is refused `period-closed` in a group
/// whose other members commit, with sequences gapless around it.
async fn a_member_refused_for_the_period_lock_rolls_back_alone(backend: Backend) {
    let app = app_grouping(backend).await;
    app.create_depot("GC3", "1000", "1000").await;
    app.acquire("GC3", "Dy", "10").await.expect(201);
    let lock = json!({"locked_before": "2026-07-01T00:00:00Z", "reason": "audit"});
    app.post_new("/api/v1/period-locks", &app.admin, &lock)
        .await
        .expect(201);
    let group = app.state.group_commit.clone().expect("group commit on");
    let mut early = movement("GC3", "Dy", "1");
    early["occurred_at"] = json!("2026-06-30T23:59:59Z");
    let mut open = movement("GC3", "Dy", "1");
    open["occurred_at"] = json!("2026-07-01T00:00:00Z");
    let (groups_before, members_before) = groups(&app);
    let answers = join_all([
        group.submit(
            posting(
                &app,
                "p1",
                EntryKind::Acquisition,
                movement("GC3", "Dy", "1"),
            ),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "p2", EntryKind::Acquisition, early),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "p3", EntryKind::Acquisition, open),
            group.on_the_way(),
        ),
        group.submit(
            posting(&app, "p4", EntryKind::Release, movement("GC3", "Dy", "2")),
            group.on_the_way(),
        ),
    ])
    .await;
    let (groups_after, members_after) = groups(&app);
    assert_eq!(
        (groups_after - groups_before, members_after - members_before),
        (1, 4),
        "one group of four"
    );
    assert_eq!(conflict(&answers[1]).0, "period-closed");
    for i in [0, 2, 3] {
        assert!(answers[i].is_ok(), "member {i}: {:?}", answers[i]);
    }
    assert_eq!(app.on_hand("GC3", "Dy").await.as_deref(), Some("10.000"));
    assert_eq!(sequences(&app).await, (1..=4).collect::<Vec<_>>());
    assert_eq!(app.verify().await["ok"], true);
    app.stop().await;
}

/// Statements sent on committer threads (`group-commit`), by the URL of the
/// connection that sent them: diesel's default instrumentation, which every
/// connection established after `count_group_statements` carries.
static STATEMENTS: std::sync::Mutex<std::collections::BTreeMap<String, usize>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

struct GroupStatements(String);

impl diesel::connection::Instrumentation for GroupStatements {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::connection::InstrumentationEvent as E;
        match event {
            E::StartEstablishConnection { url, .. } => self.0 = url.to_string(),
            E::StartQuery { .. } if std::thread::current().name() == Some("group-commit") => {
                *STATEMENTS
                    .lock()
                    .unwrap()
                    .entry(self.0.clone())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

fn count_group_statements() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        diesel::connection::set_default_instrumentation(|| {
            Some(Box::new(GroupStatements(String::new())))
        })
        .expect("instrumentation");
    });
}

fn group_statements(app: &TestApp) -> usize {
    let url = app.db.url().to_string();
    STATEMENTS
        .lock()
        .unwrap()
        .iter()
        .filter(|(u, _)| **u == url)
        .map(|(_, n)| n)
        .sum()
}

/// Statements a group member sends on PostgreSQL: with `read_ahead` (the
/// default) only its savepoint and writes, the group's reads and locks
/// shared; without, every member its own ~17 (docs/performance.md quotes
/// the printed counts). SQLite's group path reads as alone: it runs the
/// same postings, uncounted.
async fn a_group_member_sends_its_savepoint_and_writes(backend: Backend) {
    count_group_statements();
    let mut per_member = Vec::new();
    for read_ahead in [true, false] {
        let app = spawn_app_with(backend, |s| {
            s.group_commit.window_us = 200_000;
            s.group_commit.max_members = 64;
            s.group_commit.read_ahead = read_ahead;
        })
        .await;
        app.create_depot("GC4", "10000", "10000").await;
        let elements = ["Nd", "Dy", "Pr", "Tb", "La", "Ce", "Sm", "Gd"];
        for e in elements {
            app.acquire("GC4", e, "100").await.expect(201);
        }
        let group = app.state.group_commit.clone().expect("group commit on");
        let (groups_before, members_before) = groups(&app);
        let statements_before = group_statements(&app);
        let coming = group.on_the_way();
        let mut requests = Vec::new();
        for e in elements {
            requests.push(("/api/v1/acquisitions", movement("GC4", e, "1")));
            requests.push(("/api/v1/releases", movement("GC4", e, "1")));
        }
        let replies = join_all(
            requests
                .iter()
                .map(|(path, body)| app.post_new(path, &app.operator, body)),
        )
        .await;
        drop(coming);
        for reply in replies {
            reply.expect(201);
        }
        let (groups_after, members_after) = groups(&app);
        let members = members_after - members_before;
        assert_eq!(members, 16);
        let sent = group_statements(&app) - statements_before;
        let per = sent as f64 / members as f64;
        if backend == Backend::Postgres {
            eprintln!(
            "{backend:?} read_ahead={read_ahead}: {sent} statements for {members} postings in {} groups: {per:.2} a posting",
            groups_after - groups_before
        );
        }
        per_member.push(per);
        assert_eq!(app.verify().await["ok"], true);
        app.stop().await;
    }
    if backend == Backend::Postgres {
        // 9.4 in one group of 16; each extra group a loaded machine splits
        // them into adds about 0.75 (its BEGIN, locks, reads and COMMIT).
        assert!(
            per_member[0] <= 11.5,
            "with read-ahead a member sends its savepoint and writes: {per_member:?}"
        );
        assert!(per_member[1] >= 16.0, "{per_member:?}");
    }
}

on_both_backends!(
    a_group_member_sends_its_savepoint_and_writes,
    postings_sent_together_commit_as_one_group_and_a_refused_one_rolls_back_alone,
    one_key_twice_in_a_group_behaves_like_two_requests_in_a_row,
    members_on_one_stockpile_see_the_earlier_members,
    a_member_refused_for_the_period_lock_rolls_back_alone,
);
