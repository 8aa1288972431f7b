//! Audit (issue 9): physical counts, the audit trail, signed checkpoints and
//! signed audit reports.

use reserve::auth::Role;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_backends;

on_both_backends!(
    a_count_beyond_tolerance_is_flagged_and_accepted_by_another,
    a_count_compares_with_the_book_as_of_when_it_was_counted,
    counts_refuse_bad_input_and_the_wrong_roles,
    the_audit_trail_holds_refused_writes_and_cannot_be_edited,
    a_signed_checkpoint_proves_heads_and_catches_deleted_newest_entries,
    swapped_rows_are_named,
    a_signed_report_reconciles_and_verifies_offline,
);

fn token(app: &TestApp, sub: &str, roles: &[Role]) -> String {
    app.keys
        .mint(sub, roles, None, chrono::Duration::hours(1))
        .unwrap()
}

fn count_body(kg: &str, at: &str) -> Value {
    json!({"depot": "NV1", "element": "Nd", "form": "oxide", "grade": "99.5",
           "counted_kg": kg, "counted_at": at, "method": "weighbridge"})
}

fn now() -> String {
    reserve::db::types::rfc3339(reserve::db::types::now())
}

async fn a_count_beyond_tolerance_is_flagged_and_accepted_by_another(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    app.acquire("NV1", "Nd", "1000").await.expect(201);
    // Tolerance: the larger of 0.5 % of 1000 kg (5 kg) and 1 kg.
    let c = app
        .post_new("/api/v1/counts", &app.operator, &count_body("990", &now()))
        .await
        .expect(201)
        .body;
    assert_eq!(c["book_kg"], "1000.000");
    assert_eq!(c["variance_kg"], "-10.000");
    assert_eq!(c["variance_percent"], "-1.000");
    assert_eq!(c["tolerance_kg"], "5.000");
    assert_eq!(c["flagged"], true);
    assert_eq!(c["status"], "open");
    let id = c["id"].as_i64().unwrap();
    let summary = app
        .get("/api/v1/summary", &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(summary["open_flagged_counts"]["total"], 1);
    assert_eq!(summary["open_flagged_counts"]["items"][0]["id"], id);

    // The counter may not approve their own variance, even holding the role.
    let counter_approver = token(&app, "otto-operator", &[Role::Operator, Role::Approver]);
    let r = app
        .post_new(
            &format!("/api/v1/counts/{id}/accept"),
            &counter_approver,
            &json!({}),
        )
        .await
        .expect(403);
    assert!(
        r.body["type"].as_str().unwrap().ends_with("same-subject"),
        "{}",
        r.text
    );
    // An operator is no approver.
    app.post_new(
        &format!("/api/v1/counts/{id}/accept"),
        &app.operator,
        &json!({}),
    )
    .await
    .expect(403);
    assert_eq!(app.on_hand("NV1", "Nd").await.as_deref(), Some("1000.000"));

    let approver = token(&app, "apu-approver", &[Role::Approver]);
    let done = app
        .post_new(
            &format!("/api/v1/counts/{id}/accept"),
            &approver,
            &json!({"note": "recounted twice"}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(done["status"], "accepted");
    assert_eq!(done["decided_by"], "apu-approver");
    let seq = done["adjustment_sequence"]
        .as_i64()
        .expect("an adjustment was posted");
    // Book equals count.
    assert_eq!(app.on_hand("NV1", "Nd").await.as_deref(), Some("990.000"));
    let entries = app
        .get("/api/v1/ledger?kind=adjustment", &app.auditor)
        .await
        .expect(200)
        .body;
    assert_eq!(entries["items"][0]["sequence"], seq);
    assert_eq!(entries["items"][0]["quantity_kg"], "-10.000");
    assert_eq!(entries["items"][0]["reference"], format!("count:{id}"));
    assert_eq!(app.verify().await["ok"], true);
    let summary = app
        .get("/api/v1/summary", &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(summary["open_flagged_counts"]["total"], 0);
    // Decided once.
    let again = app
        .post_new(
            &format!("/api/v1/counts/{id}/reject"),
            &approver,
            &json!({}),
        )
        .await
        .expect(409);
    assert!(again.body["type"]
        .as_str()
        .unwrap()
        .ends_with("count-decided"));

    // Within tolerance: not flagged; a rejection leaves the book alone.
    let c = app
        .post_new("/api/v1/counts", &app.auditor, &count_body("989.5", &now()))
        .await
        .expect(201)
        .body;
    assert_eq!(c["flagged"], false);
    let id2 = c["id"].as_i64().unwrap();
    let r = app
        .post_new(
            &format!("/api/v1/counts/{id2}/reject"),
            &approver,
            &json!({}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["adjustment_sequence"], Value::Null);
    assert_eq!(app.on_hand("NV1", "Nd").await.as_deref(), Some("990.000"));

    // Both stay on record, with filters.
    let all = app
        .get("/api/v1/counts", &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        all["items"][0]["counted_by"],
        Value::Null,
        "viewers see no actors"
    );
    let flagged = app
        .get("/api/v1/counts?flagged=true&status=accepted", &app.auditor)
        .await
        .expect(200)
        .body;
    assert_eq!(flagged["items"].as_array().unwrap().len(), 1);
    assert_eq!(flagged["items"][0]["counted_by"], "otto-operator");
    let csv = app
        .get("/api/v1/counts?format=csv", &app.auditor)
        .await
        .expect(200);
    assert!(csv.text.starts_with("id,depot,element"), "{}", csv.text);
    app.get(&format!("/api/v1/counts/{id}"), &app.viewer)
        .await
        .expect(200);
    app.get("/api/v1/counts/999999", &app.viewer)
        .await
        .expect(404);
}

async fn a_count_compares_with_the_book_as_of_when_it_was_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    let t = |h: i64| {
        reserve::db::types::rfc3339(reserve::db::types::now() - chrono::Duration::hours(h))
    };
    let mut first = crate::helpers::movement("NV1", "Nd", "1000");
    first["occurred_at"] = json!(t(3));
    app.post_new("/api/v1/acquisitions", &app.operator, &first)
        .await
        .expect(201);
    app.acquire("NV1", "Nd", "500").await.expect(201);
    // Counted two hours ago: the book then held 1000 kg, not 1500.
    let c = app
        .post_new("/api/v1/counts", &app.operator, &count_body("1000", &t(2)))
        .await
        .expect(201)
        .body;
    assert_eq!(c["book_kg"], "1000.000");
    assert_eq!(c["variance_kg"], "0.000");
    assert_eq!(c["flagged"], false);
    // Found 20 kg short two hours ago: accepted, the adjustment is dated then,
    // so the book as of the count equals the count and today's balance follows.
    let c = app
        .post_new("/api/v1/counts", &app.operator, &count_body("980", &t(2)))
        .await
        .expect(201)
        .body;
    assert_eq!(c["flagged"], true);
    let approver = token(&app, "apu-approver", &[Role::Approver]);
    app.post_new(
        &format!("/api/v1/counts/{}/accept", c["id"]),
        &approver,
        &json!({}),
    )
    .await
    .expect(200);
    assert_eq!(app.on_hand("NV1", "Nd").await.as_deref(), Some("1480.000"));
    let stock = app
        .get("/api/v1/stockpiles?depot=NV1&element=Nd", &app.viewer)
        .await
        .expect(200)
        .body;
    let sid = stock["items"][0]["id"].as_i64().unwrap();
    let at = c["counted_at"].as_str().unwrap().to_string();
    let b = app
        .get(
            &format!(
                "/api/v1/stockpiles/{sid}/balance?as_of={}",
                at.replace('+', "%2B")
            ),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(b["on_hand_kg"], "980.000");
    // A count of material the books never held: book 0, percent null.
    let mut dy = count_body("3", &now());
    dy["element"] = json!("Dy");
    let c = app
        .post_new("/api/v1/counts", &app.auditor, &dy)
        .await
        .expect(201)
        .body;
    assert_eq!(c["book_kg"], "0.000");
    assert_eq!(c["variance_percent"], Value::Null);
    assert_eq!(c["flagged"], true);
    app.post_new(
        &format!("/api/v1/counts/{}/accept", c["id"]),
        &approver,
        &json!({}),
    )
    .await
    .expect(200);
    assert_eq!(app.on_hand("NV1", "Dy").await.as_deref(), Some("3.000"));
    assert_eq!(app.verify().await["ok"], true);
}

async fn counts_refuse_bad_input_and_the_wrong_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    let r = app
        .post_new("/api/v1/counts", &app.operator, &count_body("-1", &now()))
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["counted_kg"]);
    let r = app
        .post_new(
            "/api/v1/counts",
            &app.operator,
            &count_body("1.0001", &now()),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["counted_kg"]);
    let r = app
        .post_new(
            "/api/v1/counts",
            &app.operator,
            &count_body("1", "2999-01-01T00:00:00Z"),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["counted_at"]);
    let mut b = count_body("1", &now());
    b["depot"] = json!("ZZ9");
    let r = app
        .post_new("/api/v1/counts", &app.operator, &b)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["depot"]);
    let mut b = count_body("1", &now());
    b["method"] = json!("  ");
    let r = app
        .post_new("/api/v1/counts", &app.operator, &b)
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["method"]);
    // A viewer is refused before anything else is looked at.
    app.post("/api/v1/counts", &app.viewer, None, &json!({}))
        .await
        .expect(403);
    // An operator scoped to another depot.
    let scoped = app
        .keys
        .mint(
            "tx-operator",
            &[Role::Operator],
            Some(vec!["TX2".into()]),
            chrono::Duration::hours(1),
        )
        .unwrap();
    app.post_new("/api/v1/counts", &scoped, &count_body("1", &now()))
        .await
        .expect(403);
    app.post(
        "/api/v1/counts",
        &app.operator,
        None,
        &count_body("1", &now()),
    )
    .await
    .expect(422);
    app.get("/api/v1/counts?status=lost", &app.viewer)
        .await
        .expect(422);
}

async fn the_audit_trail_holds_refused_writes_and_cannot_be_edited(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    // Accepted (201), refused by role (403), by state (409), by validation (422).
    app.acquire("NV1", "Nd", "10").await.expect(201);
    app.post_new(
        "/api/v1/acquisitions",
        &app.viewer,
        &crate::helpers::movement("NV1", "Nd", "1"),
    )
    .await
    .expect(403);
    let refused = app.release("NV1", "Nd", "11").await.expect(409);
    let request_id = refused.header("x-request-id").unwrap();
    app.post("/api/v1/releases", &app.operator, None, &json!({}))
        .await
        .expect(422);
    // Reads and tokenless attempts are not recorded.
    app.get("/api/v1/ledger", &app.viewer).await.expect(200);
    app.post_new("/api/v1/releases", "not-a-token", &json!({}))
        .await
        .expect(401);

    let page = app
        .get("/api/v1/audit-trail?order=asc", &app.auditor)
        .await
        .expect(200)
        .body;
    let items = page["items"].as_array().unwrap();
    let summary: Vec<(String, String, i64)> = items
        .iter()
        .map(|i| {
            (
                i["subject"].as_str().unwrap().to_string(),
                i["route"].as_str().unwrap().to_string(),
                i["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ada-admin".to_string(), "/api/v1/depots".to_string(), 201),
            ("otto-operator".into(), "/api/v1/acquisitions".into(), 201),
            ("vera-viewer".into(), "/api/v1/acquisitions".into(), 403),
            ("otto-operator".into(), "/api/v1/releases".into(), 409),
            ("otto-operator".into(), "/api/v1/releases".into(), 422),
        ]
    );
    let conflict = &items[3];
    assert_eq!(conflict["request_id"], request_id);
    assert_eq!(conflict["problem_type"], "/problems/insufficient-stock");
    assert_eq!(conflict["outcome"], "refused");
    assert_eq!(conflict["roles"], json!(["operator"]));
    assert_eq!(conflict["method"], "POST");
    assert_eq!(items[2]["problem_type"], "/problems/forbidden");
    assert_eq!(items[0]["problem_type"], Value::Null);
    // Filters and the cursor.
    let refused = app
        .get(
            "/api/v1/audit-trail?outcome=refused&subject=otto-operator",
            &app.auditor,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(refused["items"].as_array().unwrap().len(), 2);
    let first = app
        .get("/api/v1/audit-trail?limit=2", &app.auditor)
        .await
        .expect(200)
        .body;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let next = app
        .get(
            &format!("/api/v1/audit-trail?limit=2&cursor={cursor}"),
            &app.auditor,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(next["items"][0]["status"], 403);
    // Auditors only; the trail's own reads are not writes.
    app.get("/api/v1/audit-trail", &app.admin).await.expect(403);
    app.get("/api/v1/audit-trail?outcome=maybe", &app.auditor)
        .await
        .expect(422);
    // No route edits it, and the table refuses edits from inside too.
    app.post_new("/api/v1/audit-trail", &app.auditor, &json!({}))
        .await
        .expect(405);
    let mut conn =
        reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap();
    use diesel::RunQueryDsl;
    assert!(diesel::sql_query("UPDATE audit_trail SET status = 201")
        .execute(&mut conn)
        .is_err());
    assert!(diesel::sql_query("DELETE FROM audit_trail")
        .execute(&mut conn)
        .is_err());
    // The refused POST to the trail is itself on the trail.
    let last = app
        .get("/api/v1/audit-trail?limit=1", &app.auditor)
        .await
        .expect(200)
        .body;
    assert_eq!(last["items"][0]["status"], 405);
    assert_eq!(last["items"][0]["subject"], "aud-auditor");
}

fn raw(app: &TestApp) -> reserve::db::DbConn {
    reserve::db::establish(&reserve::db::DatabaseUrl::parse(app.db.url()).unwrap()).unwrap()
}

fn drop_ledger_guards(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "DROP TRIGGER ledger_entries_no_update ON ledger_entries;",
        Backend::Sqlite => {
            "DROP TRIGGER ledger_entries_no_update; DROP TRIGGER ledger_entries_no_delete;"
        }
    }
}

/// An outside tool's check of an inclusion proof: RFC 6962 hashing with sha2.
fn fold_proof(proof: &Value) -> String {
    use sha2::{Digest, Sha256};
    let leaf = hex::decode(proof["leaf_hex"].as_str().unwrap()).unwrap();
    let mut acc: Vec<u8> = Sha256::new()
        .chain_update([0u8])
        .chain_update(&leaf)
        .finalize()
        .to_vec();
    assert_eq!(hex::encode(&acc), proof["leaf_hash"].as_str().unwrap());
    for step in proof["path"].as_array().unwrap() {
        let sibling = hex::decode(step["hash"].as_str().unwrap()).unwrap();
        let (l, r) = match step["side"].as_str().unwrap() {
            "left" => (sibling, acc),
            _ => (acc, sibling),
        };
        acc = Sha256::new()
            .chain_update([1u8])
            .chain_update(&l)
            .chain_update(&r)
            .finalize()
            .to_vec();
    }
    hex::encode(acc)
}

fn signature_verifies(public_key: &str, message_hex: &str, signature: &str) -> bool {
    use base64::Engine;
    use ed25519_dalek::Verifier;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = b64.decode(public_key).unwrap().try_into().unwrap();
    let sig: [u8; 64] = b64.decode(signature).unwrap().try_into().unwrap();
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .unwrap()
        .verify(
            &hex::decode(message_hex).unwrap(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .is_ok()
}

async fn a_signed_checkpoint_proves_heads_and_catches_deleted_newest_entries(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    app.acquire("NV1", "Dy", "5").await.expect(201);
    for kg in ["1", "2", "3"] {
        app.acquire("NV1", "Nd", kg).await.expect(201);
    }
    app.post(
        "/api/v1/ledger/checkpoints",
        &app.operator,
        Some("k"),
        &json!({}),
    )
    .await
    .expect(403);
    let cp = app
        .post(
            "/api/v1/ledger/checkpoints",
            &app.auditor,
            Some("cp-1"),
            &json!({}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(cp["id"], 1);
    assert_eq!(cp["last_sequence"], 4);
    assert_eq!(cp["stockpiles"], 2);
    assert_eq!(cp["prev_hash"], "0".repeat(64));
    assert!(signature_verifies(
        cp["public_key"].as_str().unwrap(),
        cp["signed_message_hex"].as_str().unwrap(),
        cp["signature"].as_str().unwrap()
    ));
    // The checkpoint's hash is SHA-256 of the signed message.
    {
        use sha2::{Digest, Sha256};
        let msg = hex::decode(cp["signed_message_hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            hex::encode(Sha256::digest(&msg)),
            cp["hash"].as_str().unwrap()
        );
    }
    let stock = app
        .get("/api/v1/stockpiles?depot=NV1&element=Nd", &app.viewer)
        .await
        .expect(200)
        .body;
    let nd = stock["items"][0]["id"].as_i64().unwrap();
    let proof = app
        .get(
            &format!("/api/v1/ledger/checkpoints/1/proof?stockpile={nd}"),
            &app.viewer,
        )
        .await
        .expect(200)
        .body;
    assert_eq!(proof["head"]["last_sequence"], 4);
    assert_eq!(proof["head"]["balance_kg"], "6.000");
    assert_eq!(fold_proof(&proof), cp["merkle_root"].as_str().unwrap());
    app.get(
        "/api/v1/ledger/checkpoints/1/proof?stockpile=999",
        &app.viewer,
    )
    .await
    .expect(404);
    app.get("/api/v1/ledger/checkpoints/1/proof", &app.viewer)
        .await
        .expect(422);
    // A second checkpoint chains to the first.
    app.acquire("NV1", "Nd", "4").await.expect(201);
    let cp2 = app
        .post(
            "/api/v1/ledger/checkpoints",
            &app.auditor,
            Some("cp-2"),
            &json!({}),
        )
        .await
        .expect(201)
        .body;
    assert_eq!(cp2["prev_hash"], cp["hash"]);
    let list = app
        .get("/api/v1/ledger/checkpoints", &app.viewer)
        .await
        .expect(200)
        .body;
    assert_eq!(list["items"][0]["id"], 2);
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checkpoint"]["id"], 2);

    // The attacker deletes Nd's newest entry (the ledger's newest) and winds
    // back everything that counts it: the chain alone still verifies.
    let newest = app
        .get("/api/v1/ledger?limit=1", &app.auditor)
        .await
        .expect(200)
        .body["items"][0]
        .clone();
    assert_eq!(newest["sequence"], 5);
    let mut conn = raw(&app);
    use diesel::connection::SimpleConnection;
    conn.batch_execute(drop_ledger_guards(backend)).unwrap();
    conn.batch_execute(&format!(
        "DELETE FROM ledger_entries WHERE sequence = 5;
         UPDATE stockpiles SET on_hand_g = on_hand_g - 4000, entry_count = entry_count - 1,
                head_hash = '{prev}' WHERE id = {nd};
         UPDATE depots SET on_hand_g = on_hand_g - 4000 WHERE code = 'NV1';
         UPDATE ledger_head SET last_sequence = 4;",
        prev = newest["prev_hash"].as_str().unwrap()
    ))
    .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["kind"], "behind_checkpoint", "{v}");
    assert_eq!(v["first_problem"]["stockpile_id"], nd, "{v}");
    assert_eq!(v["first_problem"]["sequence"], 5, "{v}");
    // The checkpoints themselves cannot be quietly dropped.
    assert!(conn.batch_execute("DELETE FROM checkpoint_heads").is_err());
    assert!(conn
        .batch_execute("DELETE FROM checkpoints WHERE id = 2")
        .is_err());
}

async fn swapped_rows_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    for kg in ["1", "2", "3"] {
        app.acquire("NV1", "Nd", kg).await.expect(201);
    }
    let mut conn = raw(&app);
    use diesel::connection::SimpleConnection;
    conn.batch_execute(drop_ledger_guards(backend)).unwrap();
    // Entries 2 and 3 trade places (their sequences swap; everything else stays).
    conn.batch_execute(
        "UPDATE ledger_entries SET sequence = -2 WHERE sequence = 2;
         UPDATE ledger_entries SET sequence = 2 WHERE sequence = 3;
         UPDATE ledger_entries SET sequence = 3 WHERE sequence = -2;",
    )
    .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["first_problem"]["sequence"], 2, "{v}");
    assert_eq!(v["first_problem"]["kind"], "hash_mismatch", "{v}");
    // Put back, then edit a balance alone.
    conn.batch_execute(
        "UPDATE ledger_entries SET sequence = -2 WHERE sequence = 2;
         UPDATE ledger_entries SET sequence = 2 WHERE sequence = 3;
         UPDATE ledger_entries SET sequence = 3 WHERE sequence = -2;",
    )
    .unwrap();
    assert_eq!(app.verify_both_ways().await["ok"], true);
    conn.batch_execute("DELETE FROM ledger_entries WHERE sequence = 2")
        .unwrap();
    let v = app.verify_both_ways().await;
    assert_eq!(v["first_problem"]["kind"], "gap", "{v}");
    assert_eq!(v["first_problem"]["sequence"], 3, "{v}");
}

/// `reserve verify` reads the ledger in pages of 5,000: twenty times the
/// entries cost (next to) no more memory. A version that loaded the ledger
/// whole was measured at some 20 MB more at 60,000 entries than at 5,000
/// (this test's earlier sizes); at 100,000 it would be about 35 MB more, an
/// estimate scaled by the entries, not measured. What may grow is bounded
/// (each reading connection's SQLite page cache, 2 MiB by default, and the
/// allocator's arenas): growth of 8.2 MiB was measured once at 60,000
/// entries, so the bound is 12 MiB. (The 1,000,000-entry run is measured by
/// hand; see docs/audit.md.)
#[test]
fn verify_streams_the_ledger_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |db: &str, args: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reserve"))
            .args(["--database-url", db])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run reserve");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut peaks = Vec::new();
    for n in [5_000u64, 100_000] {
        let db = format!("sqlite://{}/ledger-{n}.db", dir.path().display());
        run(&db, &["load-ledger", "--entries", &n.to_string()]);
        let report: Value = serde_json::from_str(&run(&db, &["verify", "--stats"])).unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["entries_checked"], n);
        peaks.push(
            report["peak_rss_kib"]
                .as_u64()
                .expect("Linux reports VmHWM"),
        );
    }
    assert!(
        peaks[1] < peaks[0] + 12 * 1024,
        "peak RSS grew from {} KiB to {} KiB for ten times the entries",
        peaks[0],
        peaks[1]
    );
}

fn reserve_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_reserve"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reserve")
}

async fn a_signed_report_reconciles_and_verifies_offline(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "100000", "100000").await;
    let ago = |m: i64| reserve::db::types::now() - chrono::Duration::minutes(m);
    let dated = |element: &str, kg: &str, minutes: i64| {
        let mut b = crate::helpers::movement("NV1", element, kg);
        b["occurred_at"] = json!(reserve::db::types::rfc3339(ago(minutes)));
        b
    };
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &dated("Nd", "100", 180),
    )
    .await
    .expect(201);
    app.post_new("/api/v1/releases", &app.operator, &dated("Nd", "10", 120))
        .await
        .expect(201);
    app.post_new(
        "/api/v1/acquisitions",
        &app.operator,
        &dated("Tb", "7", 100),
    )
    .await
    .expect(201);
    app.acquire("NV1", "Dy", "5").await.expect(201);
    app.post(
        "/api/v1/ledger/checkpoints",
        &app.auditor,
        Some("cp"),
        &json!({}),
    )
    .await
    .expect(201);
    let (start, end) = (
        reserve::db::types::rfc3339(ago(150)),
        reserve::db::types::rfc3339(ago(60)),
    );
    let period = json!({"period_start": start, "period_end": end});
    app.post_new("/api/v1/audit-reports", &app.operator, &period)
        .await
        .expect(403);
    let r = app
        .post_new(
            "/api/v1/audit-reports",
            &app.auditor,
            &json!({"period_start": start, "period_end": "2999-01-01T00:00:00Z"}),
        )
        .await
        .expect(422);
    assert_eq!(r.error_fields(), vec!["period_end"]);
    let meta = app
        .post_new("/api/v1/audit-reports", &app.auditor, &period)
        .await
        .expect(201)
        .body;
    let id = meta["id"].as_i64().unwrap();
    assert_eq!(meta["reconciles"], true);
    assert_eq!(meta["verified"], true);
    let doc = app
        .get(&format!("/api/v1/audit-reports/{id}"), &app.auditor)
        .await
        .expect(200);
    let report = &doc.body["report"];
    assert_eq!(report["reserve"], "Strategic Rare-Earth Reserve");
    assert_eq!(report["generator"]["name"], "reserve");
    let rows = report["stockpiles"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        2,
        "Nd and Tb; Dy arrived after the period: {report}"
    );
    let nd = rows.iter().find(|r| r["element"] == "Nd").unwrap();
    assert_eq!(nd["opening_kg"], "100.000");
    assert_eq!(nd["releases_kg"], "-10.000");
    assert_eq!(nd["closing_kg"], "90.000");
    assert_eq!(nd["reconciles"], true);
    let tb = rows.iter().find(|r| r["element"] == "Tb").unwrap();
    assert_eq!(
        (tb["opening_kg"].as_str(), tb["acquisitions_kg"].as_str()),
        (Some("0.000"), Some("7.000"))
    );
    // Closing balances are the as-of balances at the period's end.
    for r in rows {
        let b = app
            .get(
                &format!(
                    "/api/v1/stockpiles/{}/balance?as_of={}",
                    r["stockpile_id"],
                    end.replace('+', "%2B")
                ),
                &app.viewer,
            )
            .await
            .expect(200)
            .body;
        assert_eq!(b["on_hand_kg"], r["closing_kg"], "{r}");
    }
    assert_eq!(report["reconciliation"]["ok"], true);
    assert_eq!(report["chain"]["verification"]["ok"], true);
    assert_eq!(report["chain"]["last_sequence"], 4);
    assert_eq!(report["chain"]["latest_checkpoint"]["id"], 1);

    // Offline: the public key alone checks it; one changed digit fails.
    let key = app
        .get("/api/v1/audit-reports/public-key", &app.viewer)
        .await
        .expect(200)
        .body["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.json");
    std::fs::write(&file, &doc.text).unwrap();
    let export = app
        .get(
            "/api/v1/ledger?format=csv&order=asc&limit=10000",
            &app.auditor,
        )
        .await
        .expect(200);
    let ledger = dir.path().join("ledger.csv");
    std::fs::write(&ledger, &export.text).unwrap();
    let f = file.to_str().unwrap();
    let out = reserve_cli(&[
        "audit",
        "verify",
        f,
        "--public-key",
        &key,
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tampered = dir.path().join("tampered.json");
    std::fs::write(&tampered, doc.text.replacen("90.000", "90.001", 1)).unwrap();
    let out = reserve_cli(&[
        "audit",
        "verify",
        tampered.to_str().unwrap(),
        "--public-key",
        &key,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL signature"));
    // The same report under another key does not pass as the reserve's.
    let other = reserve::audit::signing::AuditKey::from_seed([9; 32]).public_base64();
    assert!(
        !reserve_cli(&["audit", "verify", f, "--public-key", &other])
            .status
            .success()
    );

    // CSV by section and a printable page.
    let csv = app
        .get(
            &format!("/api/v1/audit-reports/{id}?format=csv&section=stockpiles"),
            &app.auditor,
        )
        .await
        .expect(200);
    assert!(
        csv.text.starts_with("stockpile_id,depot,element"),
        "{}",
        csv.text
    );
    let all = app
        .get(
            &format!("/api/v1/audit-reports/{id}?format=csv"),
            &app.auditor,
        )
        .await
        .expect(200);
    assert!(all.text.contains("# chain\n"), "{}", all.text);
    let page = app
        .get(
            &format!("/api/v1/audit-reports/{id}?format=html"),
            &app.auditor,
        )
        .await
        .expect(200);
    assert!(page.text.contains("<h1>Strategic Rare-Earth Reserve</h1>"));
    assert!(page.text.contains("Totals per element"));
    app.get(
        &format!("/api/v1/audit-reports/{id}?section=nope"),
        &app.auditor,
    )
    .await
    .expect(422);
    let list = app
        .get("/api/v1/audit-reports", &app.auditor)
        .await
        .expect(200)
        .body;
    assert_eq!(list["items"][0]["id"], id);
    // Stored immutably.
    use diesel::connection::SimpleConnection;
    assert!(raw(&app)
        .batch_execute("UPDATE audit_reports SET body = '{}'")
        .is_err());
}

on_both_backends!(the_fast_loader_leaves_a_ledger_that_verifies);

/// `reserve seed-demo --entries N` (postings of 5,000 legs, multi-row
/// inserts) leaves genuine chains and balances: `reserve verify` passes,
/// twice loaded (a whole and a partial posting each time), and every
/// stockpile's balance now and as of the load's middle agree with its entries.
async fn the_fast_loader_leaves_a_ledger_that_verifies(backend: Backend) {
    use diesel::prelude::*;
    use reserve::db::schema::ledger_entries as le;
    let db = crate::helpers::TestDb::new(backend);
    let url = db.url().to_string();
    let run = |args: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_reserve"))
            .args(["--database-url", &url])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run reserve");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["seed-demo", "--entries", "6200"]);
    run(&["seed-demo", "--entries", "1300"]);
    let report: Value = serde_json::from_str(&run(&["verify", "--stats"])).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["entries_checked"], 7500);
    let mut conn = reserve::db::open(&reserve::db::DatabaseUrl::parse(&url).unwrap()).unwrap();
    let entries: Vec<(i64, i64, chrono::NaiveDateTime, i64)> = le::table
        .select((
            le::sequence,
            le::stockpile_id,
            le::occurred_at,
            le::quantity_g,
        ))
        .order(le::sequence.asc())
        .load(&mut conn)
        .unwrap();
    let middle = entries[entries.len() / 2].2;
    let stockpiles: std::collections::BTreeSet<i64> = entries.iter().map(|e| e.1).collect();
    for s in stockpiles {
        for at in [middle, reserve::db::types::to_db(reserve::db::types::now())] {
            let mine: Vec<_> = entries.iter().filter(|e| e.1 == s && e.2 <= at).collect();
            let expected = (
                mine.iter().map(|e| e.3).sum::<i64>(),
                mine.len() as i64,
                mine.iter().map(|e| e.0).max(),
            );
            assert_eq!(
                reserve::ledger::repo::balance_as_of(&mut conn, s, at).unwrap(),
                expected,
                "stockpile {s} as of {at}"
            );
        }
    }
    // `reserve verify` reads every other page on a second connection, then
    // ledger_balances there: an edited row in the second page is named.
    use diesel::connection::SimpleConnection;
    conn.batch_execute(
        "UPDATE ledger_balances SET balance_g = balance_g + 1 WHERE sequence = 7001",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_reserve"))
        .args(["--database-url", &url, "verify"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reserve");
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["first_problem"]["kind"], "balances_mismatch",
        "{report}"
    );
    assert_eq!(report["first_problem"]["sequence"], 7001, "{report}");
    assert_eq!(report["entries_checked"], 7500, "{report}");
}
