//! Test harness: a real `reserve` server on a loopback port over its own
//! database, and a small client for it.

#![allow(dead_code)]

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use awc::http::header::HeaderMap;
use awc::http::StatusCode;
use diesel::{Connection, PgConnection, RunQueryDsl};
use reserve::auth::{Role, TokenKeys};
use reserve::config::Settings;
use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";

/// The audit signing key's seed in tests: 32 bytes of 7, base64.
pub const AUDIT_SEED: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a scenario `async fn name(backend: Backend)` once per backend, as
/// `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_rt::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[actix_rt::test]
            async fn postgres() {
                if $crate::helpers::postgres_skipped() {
                    return;
                }
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}

/// PostgreSQL tests run unless `RESERVE_TEST_SQLITE_ONLY=1` says otherwise; an
/// unreachable server then fails them loudly rather than skipping them.
pub fn postgres_skipped() -> bool {
    let skipped = std::env::var("RESERVE_TEST_SQLITE_ONLY").is_ok_and(|v| v == "1");
    if skipped {
        eprintln!("RESERVE_TEST_SQLITE_ONLY=1: PostgreSQL variant not run");
    }
    skipped
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped after it.
pub enum TestDb {
    Sqlite {
        _dir: tempfile::TempDir,
        url: String,
    },
    Postgres {
        admin_url: String,
        name: String,
        url: String,
    },
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("reserve.db").display());
                TestDb::Sqlite { _dir: dir, url }
            }
            Backend::Postgres => TestDb::new_postgres_at(&postgres_admin_url()),
        }
    }

    /// A fresh database on the PostgreSQL server behind `admin_url`.
    pub fn new_postgres_at(admin_url: &str) -> TestDb {
        let admin_url = admin_url.to_string();
        {
            {
                let mut conn = PgConnection::establish(&admin_url).unwrap_or_else(|e| {
                    panic!(
                        "cannot reach PostgreSQL at {admin_url}: {e}. Start it, point TEST_DATABASE_URL at one, \
                         or set RESERVE_TEST_SQLITE_ONLY=1 to run the SQLite half only"
                    )
                });
                let name = format!("reserve_test_{}", uuid::Uuid::new_v4().simple());
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDb::Postgres {
                    admin_url,
                    name,
                    url: url.to_string(),
                }
            }
        }
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url, .. } => url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres {
            admin_url, name, ..
        } = self
        {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub backend: Backend,
    pub keys: TokenKeys,
    pub admin: String,
    pub operator: String,
    pub viewer: String,
    pub auditor: String,
    pub client: awc::Client,
    pub state: actix_web::web::Data<reserve::AppState>,
    handle: ServerHandle,
    // Last: the database outlives the server.
    pub db: TestDb,
}

pub fn test_settings(url: &str) -> Settings {
    let mut settings = Settings::load(None, &[]).expect("default settings");
    settings.database.url = url.to_string();
    settings.database.pool_size = 16;
    settings.server.workers = 2;
    settings.auth.jwt_secret = SECRET.into();
    // Scheduled work would run at unpredictable moments of a test; the tests
    // of the scheduler turn it on themselves.
    settings.jobs.enabled = false;
    settings.audit.signing_key = AUDIT_SEED.into();
    // Scheduled checkpoints and reports only where a test asks for them.
    settings.audit.daily_report_cron = String::new();
    settings.audit.month_end_report_cron = String::new();
    settings.audit.checkpoint_cron = String::new();
    if let Some(us) = test_group_commit_window_us() {
        settings.group_commit.window_us = us;
    }
    // Webhook delivery only where a test registers receivers.
    settings.webhooks.enabled = false;
    settings
}

/// Group commit is on by default (config/default.toml); `RESERVE_TEST_GROUP_COMMIT=0`
/// runs every app and replica the tests start with it off (each posting
/// commits alone), so the same suites prove both paths; `1` is a 2 ms window
/// and any other number the window in microseconds.
pub fn test_group_commit_window_us() -> Option<u64> {
    match std::env::var("RESERVE_TEST_GROUP_COMMIT").ok()?.as_str() {
        "" => None,
        "0" => Some(0),
        "1" => Some(2_000),
        us => us.parse().ok(),
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new(backend);
    let mut settings = test_settings(db.url());
    adjust(&mut settings);
    let keys = TokenKeys::hs256(settings.auth.jwt_secret.as_bytes(), &settings.auth).expect("keys");
    let state = reserve::build_state(settings, keys.clone()).expect("app state");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = reserve::run(listener, state.clone()).expect("server");
    let handle = server.handle();
    actix_rt::spawn(server);
    let hour = chrono::Duration::hours(1);
    let admin = keys
        .mint("ada-admin", &[Role::Admin], None, hour)
        .expect("token");
    let operator = keys
        .mint("otto-operator", &[Role::Operator], None, hour)
        .expect("token");
    let viewer = keys
        .mint("vera-viewer", &[Role::Viewer], None, hour)
        .expect("token");
    let auditor = keys
        .mint("aud-auditor", &[Role::Auditor], None, hour)
        .expect("token");
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish();
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        backend,
        keys,
        admin,
        operator,
        viewer,
        auditor,
        client,
        state,
        handle,
        db,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `field` of every entry in a problem's `errors`.
    pub fn error_fields(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts the status and that errors are problem documents.
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        if status >= 400 {
            assert_eq!(
                self.header("content-type").as_deref(),
                Some("application/problem+json"),
                "errors are problem documents"
            );
            assert_eq!(self.body["status"].as_u64(), Some(status as u64));
        }
        assert!(
            self.header("x-request-id").is_some(),
            "every response carries X-Request-Id"
        );
        self
    }
}

async fn read(
    mut res: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
            + Unpin,
    >,
) -> Reply {
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        let res = self
            .client
            .get(self.url(path))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
            .await
            .expect("request");
        read(res).await
    }

    /// POSTs JSON with a bearer token and, when given, an Idempotency-Key.
    pub async fn post(&self, path: &str, token: &str, key: Option<&str>, body: &Value) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .insert_header(("Authorization", format!("Bearer {token}")));
        if let Some(k) = key {
            req = req.insert_header(("Idempotency-Key", k.to_string()));
        }
        read(req.send_json(body).await.expect("request")).await
    }

    /// PUTs JSON with a bearer token and, when given, an `If-Match`.
    pub async fn put(
        &self,
        path: &str,
        token: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> Reply {
        self.send_with_if_match(self.client.put(self.url(path)), token, if_match, body)
            .await
    }

    /// PATCHes JSON with a bearer token and, when given, an `If-Match`.
    pub async fn patch(
        &self,
        path: &str,
        token: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> Reply {
        self.send_with_if_match(self.client.patch(self.url(path)), token, if_match, body)
            .await
    }

    async fn send_with_if_match(
        &self,
        req: awc::ClientRequest,
        token: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> Reply {
        let mut req = req.insert_header(("Authorization", format!("Bearer {token}")));
        if let Some(e) = if_match {
            req = req.insert_header(("If-Match", e.to_string()));
        }
        read(req.send_json(body).await.expect("request")).await
    }

    /// DELETE with a bearer token and, when given, an `If-Match`.
    pub async fn delete(&self, path: &str, token: &str, if_match: Option<&str>) -> Reply {
        let mut req = self
            .client
            .delete(self.url(path))
            .insert_header(("Authorization", format!("Bearer {token}")));
        if let Some(e) = if_match {
            req = req.insert_header(("If-Match", e.to_string()));
        }
        read(req.send().await.expect("request")).await
    }

    /// POST with a fresh random Idempotency-Key.
    pub async fn post_new(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.post(path, token, Some(&uuid::Uuid::new_v4().to_string()), body)
            .await
    }

    pub async fn create_depot(&self, code: &str, capacity_kg: &str, drawdown_kg: &str) -> Value {
        self.post_new(
            "/api/v1/depots",
            &self.admin,
            &json!({"code": code, "name": format!("Depot {code}"), "region": "US-West",
                    "capacity_kg": capacity_kg, "max_drawdown_kg_per_day": drawdown_kg}),
        )
        .await
        .expect(201)
        .body
    }

    pub async fn acquire(&self, depot: &str, element: &str, kg: &str) -> Reply {
        self.post_new(
            "/api/v1/acquisitions",
            &self.operator,
            &movement(depot, element, kg),
        )
        .await
    }

    pub async fn release(&self, depot: &str, element: &str, kg: &str) -> Reply {
        self.post_new(
            "/api/v1/releases",
            &self.operator,
            &movement(depot, element, kg),
        )
        .await
    }

    /// On-hand of the stockpile of `element` oxide 99.5 at `depot`, from the list endpoint.
    pub async fn on_hand(&self, depot: &str, element: &str) -> Option<String> {
        let r = self
            .get(
                &format!(
                    "/api/v1/stockpiles?depot={depot}&element={element}&form=oxide&grade=99.5"
                ),
                &self.viewer,
            )
            .await
            .expect(200);
        r.body["items"]
            .as_array()
            .and_then(|a| a.first())
            .map(|s| s["on_hand_kg"].as_str().unwrap().to_string())
    }

    pub async fn ledger_count(&self) -> usize {
        let r = self
            .get("/api/v1/ledger?limit=1000", &self.auditor)
            .await
            .expect(200);
        r.body["items"].as_array().map(|a| a.len()).unwrap_or(0)
    }

    pub async fn verify(&self) -> Value {
        self.get("/api/v1/ledger/verify", &self.auditor)
            .await
            .expect(200)
            .body
    }

    /// The API's report, checked against the library's over the same
    /// database every way it can read: with one connection and with two in
    /// one snapshot, and on PostgreSQL both with binary COPY (what the API
    /// and the CLI use) and with the `SELECT` pages it replaced. All must
    /// give the same report, to the problem's wording. Only where nothing
    /// writes meanwhile.
    pub async fn verify_both_ways(&self) -> Value {
        use reserve::ledger::verify::{verify_with, VerifyOptions};
        let api = self.verify().await;
        let url = reserve::db::DatabaseUrl::parse(self.db.url()).unwrap();
        let trusted_key = self.state.audit_key.as_ref().map(|k| k.public_base64());
        for select_pages in [false, true] {
            for second_reader in [None, Some(url.clone())] {
                let two = second_reader.is_some();
                let mut conn = reserve::db::establish(&url).unwrap();
                let report = verify_with(
                    &mut conn,
                    VerifyOptions {
                        trusted_key: trusted_key.clone(),
                        progress: None,
                        second_reader,
                        select_pages,
                    },
                )
                .unwrap_or_else(|e| panic!("select_pages {select_pages}, two readers {two}: {e}"));
                assert_eq!(
                    serde_json::to_value(&report).unwrap(),
                    api,
                    "select_pages {select_pages}, two readers {two}"
                );
            }
        }
        api
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// An acquisition or release body of Nd-style oxide at grade 99.5.
pub fn movement(depot: &str, element: &str, kg: &str) -> Value {
    json!({"depot": depot, "element": element, "form": "oxide", "grade": "99.5", "quantity_kg": kg})
}

/// Parses a kg string into grams (test-side arithmetic, independent of the app's).
pub fn grams(kg: &str) -> i64 {
    let (int, frac) = kg.split_once('.').unwrap_or((kg, ""));
    let negative = int.starts_with('-');
    let int: i64 = int.trim_start_matches('-').parse().unwrap();
    let frac: i64 = format!("{frac:0<3}")[..3].parse().unwrap();
    let g = int * 1000 + frac;
    if negative {
        -g
    } else {
        g
    }
}
