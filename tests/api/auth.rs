//! Who may do what (invariant 9).

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reserve::auth::Role;
use serde_json::json;

use crate::helpers::{movement, spawn_app, Backend, SECRET};
use crate::on_both_backends;

on_both_backends!(
    scope_and_roles_bound_writes,
    bad_tokens_are_refused,
    guessing_is_throttled,
    rotated_out_keys_are_refused,
    first_auth_mistakes_are_named,
    readiness_hides_driver_errors
);

fn claims(exp_offset: i64, nbf_offset: i64) -> serde_json::Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": "mallory", "roles": ["operator"], "exp": now + exp_offset, "iat": now, "nbf": now + nbf_offset,
           "iss": "reserve", "aud": "reserve-api"})
}

fn sign(claims: &serde_json::Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

async fn scope_and_roles_bound_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NVA", "1000", "1000").await;
    app.create_depot("TXB", "1000", "1000").await;
    let hour = chrono::Duration::hours(1);
    let scoped = app
        .keys
        .mint("sam", &[Role::Operator], Some(vec!["NVA".into()]), hour)
        .unwrap();
    app.post_new(
        "/api/v1/acquisitions",
        &scoped,
        &movement("NVA", "Nd", "10"),
    )
    .await
    .expect(201);
    let r = app
        .post_new(
            "/api/v1/acquisitions",
            &scoped,
            &movement("TXB", "Nd", "10"),
        )
        .await
        .expect(403);
    assert!(r.body["detail"].as_str().unwrap().contains("TXB"));
    // Lower case does not escape the scope: codes are normalised before the check.
    app.post_new(
        "/api/v1/acquisitions",
        &scoped,
        &movement("txb", "Nd", "10"),
    )
    .await
    .expect(403);
    // A transfer needs both ends in scope.
    let t = json!({"from_depot": "NVA", "to_depot": "TXB", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "1"});
    app.post_new("/api/v1/transfers", &scoped, &t)
        .await
        .expect(403);
    // Viewers read but never write, whatever the body.
    app.get("/api/v1/stockpiles", &app.viewer).await.expect(200);
    app.post_new(
        "/api/v1/acquisitions",
        &app.viewer,
        &movement("NVA", "Nd", "1"),
    )
    .await
    .expect(403);
    app.post_new(
        "/api/v1/acquisitions",
        &app.viewer,
        &json!({"garbage": true}),
    )
    .await
    .expect(403);
    app.post_new("/api/v1/depots", &app.operator, &json!({}))
        .await
        .expect(403);
    // Only auditors and admins see who posted and may verify.
    let as_viewer = app.get("/api/v1/ledger", &app.viewer).await.expect(200);
    assert!(as_viewer.body["items"][0]["actor"].is_null());
    let as_auditor = app.get("/api/v1/ledger", &app.auditor).await.expect(200);
    assert_eq!(as_auditor.body["items"][0]["actor"], "sam");
    app.get("/api/v1/ledger/verify", &app.viewer)
        .await
        .expect(403);
    // Nothing was written by the refused requests.
    assert_eq!(app.ledger_count().await, 1);
    app.stop().await;
}

async fn bad_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_depot("NV1", "1000", "1000").await;
    let body = movement("NV1", "Nd", "1");
    let expired = sign(&claims(-3600, -7200), SECRET.as_bytes());
    let not_yet = sign(&claims(7200, 3600), SECRET.as_bytes());
    let wrong_key = sign(
        &claims(3600, 0),
        b"another-secret-another-secret-0123456789",
    );
    let mut wrong_aud = claims(3600, 0);
    wrong_aud["aud"] = json!("someone-else");
    let wrong_aud = sign(&wrong_aud, SECRET.as_bytes());
    let mut wrong_iss = claims(3600, 0);
    wrong_iss["iss"] = json!("evil");
    let wrong_iss = sign(&wrong_iss, SECRET.as_bytes());
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(3600, 0).to_string());
    let alg_none = format!("{header}.{payload}.");
    let mut no_roles = claims(3600, 0);
    no_roles.as_object_mut().unwrap().remove("roles");
    let no_roles = sign(&no_roles, SECRET.as_bytes());
    let mut no_sub = claims(3600, 0);
    no_sub.as_object_mut().unwrap().remove("sub");
    let no_sub = sign(&no_sub, SECRET.as_bytes());
    // An RS256 token (say, an HS256 token "signed" with a public key and
    // relabelled): the algorithm is pinned, so it is refused unread.
    let rs_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#);
    let rs256 = format!(
        "{rs_header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode([7u8; 256])
    );
    let hs384 = encode(
        &Header::new(Algorithm::HS384),
        &claims(3600, 0),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    for (name, token) in [
        ("expired", expired),
        ("not yet valid", not_yet),
        ("wrongly signed", wrong_key),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("alg none", alg_none),
        ("RS256", rs256),
        ("other algorithm", hs384),
        ("garbage", "not.a.token".to_string()),
        ("no roles claim", no_roles),
        ("no subject", no_sub),
    ] {
        let r = app.post_new("/api/v1/acquisitions", &token, &body).await;
        assert_eq!(r.status.as_u16(), 401, "{name}: {}", r.text);
        assert!(r.header("www-authenticate").is_some());
        app.get("/api/v1/summary", &token).await.expect(401);
    }
    // Role names are exact: "Operator" or "ADMIN" grant nothing.
    let mut tricky = claims(3600, 0);
    tricky["roles"] = json!(["Operator", "ADMIN", " admin"]);
    let tricky = sign(&tricky, SECRET.as_bytes());
    app.post_new("/api/v1/acquisitions", &tricky, &body)
        .await
        .expect(403);
    // No token at all, or a token in the query string, is not authentication.
    let r = app
        .client
        .get(app.url("/api/v1/summary"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .client
        .get(app.url(&format!("/api/v1/summary?access_token={}", app.viewer)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Health and readiness need no token.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.ledger_count().await, 0);
    app.stop().await;
}

async fn guessing_is_throttled(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| s.auth.max_failures_per_minute = 5).await;
    for _ in 0..5 {
        app.get("/api/v1/summary", "not.a.token").await.expect(401);
    }
    // The address is now refused, even with a good token, for the rest of the minute.
    let r = app.get("/api/v1/summary", &app.viewer).await.expect(429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    app.stop().await;

    // Forbidden attempts count per verified subject.
    let app = crate::helpers::spawn_app_with(backend, |s| s.auth.max_failures_per_minute = 3).await;
    for _ in 0..3 {
        app.post_new(
            "/api/v1/acquisitions",
            &app.viewer,
            &movement("NV1", "Nd", "1"),
        )
        .await
        .expect(403);
    }
    app.get("/api/v1/summary", &app.viewer).await.expect(429);
    app.get("/api/v1/summary", &app.auditor).await.expect(200);
    app.stop().await;
}

async fn rotated_out_keys_are_refused(backend: Backend) {
    // A token minted before a rotation...
    let before = crate::helpers::spawn_app(backend).await;
    let old_token = before.viewer.clone();
    before.stop().await;
    // ...is accepted while its key is still listed as a previous key...
    let during = crate::helpers::spawn_app_with(backend, |s| {
        s.auth.jwt_secret = "a-brand-new-secret-a-brand-new-secret-0001".into();
        s.auth.jwt_kid = "k2".into();
        s.auth.previous_keys = format!("k1={SECRET}");
    })
    .await;
    during.get("/api/v1/summary", &old_token).await.expect(200);
    during.stop().await;
    // ...and refused once it is not.
    let after = crate::helpers::spawn_app_with(backend, |s| {
        s.auth.jwt_secret = "a-brand-new-secret-a-brand-new-secret-0001".into();
        s.auth.jwt_kid = "k2".into();
    })
    .await;
    let r = after.get("/api/v1/summary", &old_token).await.expect(401);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("no longer accepted"));
    after.stop().await;
}

async fn first_auth_mistakes_are_named(backend: Backend) {
    let app = spawn_app(backend).await;
    let detail = |r: crate::helpers::Reply| r.body["detail"].as_str().unwrap().to_string();
    // `Bearer ` with nothing after it: the scheme is right, the token is missing.
    let r = app.get("/api/v1/summary", "").await.expect(401);
    assert!(detail(r).contains("token is empty"));
    let r = app
        .client
        .get(app.url("/api/v1/summary"))
        .insert_header(("Authorization", format!("Basic {}", app.viewer)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The scheme is case-insensitive.
    let r = app
        .client
        .get(app.url("/api/v1/summary"))
        .insert_header(("Authorization", format!("BEARER {}", app.viewer)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // `"depots": null` is not "every depot".
    let mut c = claims(3600, 0);
    c["depots"] = serde_json::Value::Null;
    let r = app
        .post_new(
            "/api/v1/acquisitions",
            &sign(&c, SECRET.as_bytes()),
            &movement("NV1", "Nd", "1"),
        )
        .await
        .expect(401);
    assert!(detail(r).contains("`depots` claim is null"));
    c["depots"] = json!(["NV1"]);
    app.get("/api/v1/summary", &sign(&c, SECRET.as_bytes()))
        .await
        .expect(200);
    // A century-long token is refused, and the limit is named.
    let r = app
        .get(
            "/api/v1/summary",
            &sign(&claims(100 * 365 * 86_400, 0), SECRET.as_bytes()),
        )
        .await
        .expect(401);
    assert!(detail(r).contains("30-day maximum"));
    app.get(
        "/api/v1/summary",
        &sign(&claims(29 * 86_400, 0), SECRET.as_bytes()),
    )
    .await
    .expect(200);
    app.stop().await;
    // The maximum is a setting.
    let app = crate::helpers::spawn_app_with(backend, |s| s.auth.max_token_lifetime_days = 1).await;
    let r = app
        .get(
            "/api/v1/summary",
            &sign(&claims(2 * 86_400, 0), SECRET.as_bytes()),
        )
        .await
        .expect(401);
    assert!(detail(r).contains("1-day maximum"));
    app.stop().await;
}

async fn readiness_hides_driver_errors(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Break the database behind the server's back.
    let secret_text = match &app.db {
        crate::helpers::TestDb::Sqlite { url, .. } => {
            // The migration table becomes a view of a table that does not
            // exist, so reading the migration state fails in the driver.
            use diesel::connection::SimpleConnection;
            use diesel::Connection;
            let mut conn =
                diesel::SqliteConnection::establish(url.trim_start_matches("sqlite://")).unwrap();
            conn.batch_execute(
                "ALTER TABLE __diesel_schema_migrations RENAME TO hidden_migrations; \
                 CREATE VIEW __diesel_schema_migrations AS SELECT * FROM vanished_table_xyz;",
            )
            .unwrap();
            "vanished_table_xyz".to_string()
        }
        crate::helpers::TestDb::Postgres {
            admin_url, name, ..
        } => {
            use diesel::{Connection, RunQueryDsl};
            let mut conn = diesel::PgConnection::establish(admin_url).unwrap();
            diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut conn)
                .unwrap();
            name.clone()
        }
    };
    let mut r = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body = String::from_utf8(r.body().await.unwrap().to_vec()).unwrap();
    assert!(
        !body.contains(&secret_text) && !body.contains("127.0.0.1"),
        "driver error text leaked: {body}"
    );
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "not ready");
    assert!(body["reason"].as_str().unwrap().contains("server log"));
    app.stop().await;
}
