//! Races between replicas, with the interleaving forced rather than hoped for:
//! a separate database session holds a row lock, two `reserve serve`
//! processes on one database each get a request that queues on it in a known
//! order, then the lock is let go.
//!
//! On PostgreSQL the row lock queue is first come, first served, so each test
//! asserts one exact outcome. SQLite admits one writer per database file; the
//! same scenarios run with a held `BEGIN IMMEDIATE`, whose waiters retry in no
//! set order, so there the tests assert what must hold in either order.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::{get_json, Cluster};
use crate::helpers::{postgres_skipped, test_settings, Backend, TestDb, SECRET};

/// How long the outside session holds its lock.
const HOLD: Duration = Duration::from_millis(2000);
/// On SQLite, the pause between the two requests.
const GAP: Duration = Duration::from_millis(300);

struct Race {
    cluster: Cluster,
    backend: Backend,
    db_url: String,
    client: awc::Client,
    admin: String,
    operator: String,
    approvers: [String; 2],
    bidder: String,
}

/// What a request answered, and when.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    replayed: bool,
    at: Instant,
}

impl Race {
    async fn start(backend: Backend) -> Race {
        let db = TestDb::new(backend);
        let db_url = db.url().to_string();
        // Without scheduled work: at start each replica runs the slots due
        // (the hourly checkpoint takes `ledger_head`), and a job waiting on a
        // held lock passed for the first request, so the second was sent
        // too early (a period lock overtook a backdated posting, 409).
        // tests/reliability/scheduler.rs and audit.rs cover the jobs.
        let cluster = Cluster::start_with(db, 2, &[("RESERVE_JOBS__ENABLED", "false")]).await;
        let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth)
            .expect("keys");
        let hour = chrono::Duration::hours(1);
        Race {
            cluster,
            backend,
            db_url,
            client: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
            admin: keys
                .mint("race-admin", &[Role::Admin, Role::Auditor], None, hour)
                .expect("token"),
            approvers: [
                keys.mint("ann", &[Role::Approver, Role::Auditor], None, hour)
                    .expect("token"),
                keys.mint("bob", &[Role::Approver], None, hour)
                    .expect("token"),
            ],
            bidder: keys
                .mint("AAA", &[Role::Bidder], None, hour)
                .expect("token"),
            operator: keys
                .mint("race-operator", &[Role::Operator], None, hour)
                .expect("token"),
        }
    }

    fn base(&self, replica: usize) -> String {
        self.cluster.replicas[replica].base()
    }

    async fn send(
        &self,
        replica: usize,
        method: &str,
        path: &str,
        token: &str,
        key: Option<&str>,
        body: Value,
    ) -> Answer {
        let url = format!("{}{path}", self.base(replica));
        let mut req = match method {
            "PATCH" => self.client.patch(url).insert_header(("If-Match", "*")),
            _ => self.client.post(url),
        }
        .insert_header(("Authorization", format!("Bearer {token}")));
        let key = key
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        req = req.insert_header(("Idempotency-Key", key));
        let mut res = req.send_json(&body).await.expect("request");
        let replayed = res.headers().contains_key("idempotent-replayed");
        let bytes = res.body().limit(16 << 20).await.expect("body");
        Answer {
            status: res.status().as_u16(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            replayed,
            at: Instant::now(),
        }
    }

    async fn create_depot(&self, code: &str, capacity: &str, drawdown: &str) {
        let a = self
            .send(
                0,
                "POST",
                "/api/v1/depots",
                &self.admin,
                None,
                json!({"code": code, "name": code, "region": "US", "capacity_kg": capacity,
                       "max_drawdown_kg_per_day": drawdown}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }

    async fn acquire(&self, depot: &str, kg: &str) {
        let a = self
            .send(
                0,
                "POST",
                "/api/v1/acquisitions",
                &self.operator,
                None,
                movement(depot, kg),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }

    /// Creates the Nd stockpile at `depot` and empties it again, so that a
    /// posting's first lock is the depot row's UPDATE (a new stockpile row
    /// would first wait on the depot through its foreign key, in another lock
    /// mode, and the queue order would no longer be the arrival order).
    async fn empty_stockpile(&self, depot: &str) {
        self.acquire(depot, "1").await;
        let a = self
            .send(
                0,
                "POST",
                "/api/v1/releases",
                &self.operator,
                None,
                movement(depot, "1"),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }

    async fn verify(&self) -> Value {
        get_json(
            &self.client,
            &self.base(1),
            &self.admin,
            "/api/v1/ledger/verify",
        )
        .await
    }

    /// Waits until the first request is queued on a lock: on PostgreSQL until
    /// a session of this database waits on one (giving up after 10 s, by when
    /// the held lock is long gone and the first request ran first); on SQLite,
    /// whose waiters cannot be seen, a fixed pause.
    async fn first_is_queued(&self) {
        if self.backend == Backend::Sqlite {
            actix_rt::time::sleep(GAP).await;
            return;
        }
        let url = self.db_url.clone();
        let waiting = move || -> i64 {
            use diesel::RunQueryDsl;
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut c = diesel::PgConnection::establish(&url).expect("watcher");
            // Waiters on the held lock only: blocked by the session `hold`
            // opened (its batch starts "BEGIN; "; diesel sends BEGIN alone).
            // Counting every lock wait let a replica's background job,
            // waiting on the other replica's, pass for the first request.
            diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity w \
                 WHERE w.datname = current_database() AND w.wait_event_type = 'Lock' \
                   AND EXISTS (SELECT 1 FROM pg_stat_activity h \
                               WHERE h.pid = ANY (pg_blocking_pids(w.pid)) \
                                 AND h.query LIKE 'BEGIN; %')",
            )
            .get_result::<Count>(&mut c)
            .expect("pg_stat_activity")
            .n
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            let w = waiting.clone();
            if actix_web::rt::task::spawn_blocking(w)
                .await
                .expect("watcher")
                >= 1
            {
                return;
            }
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        // Never queued: the lock was let go first, so the first request ran
        // first anyway; the arrival order still holds.
    }

    /// Holds the lock `lock_sql` takes (PostgreSQL: a `SELECT … FOR UPDATE`;
    /// SQLite: the database's write lock) from a separate session for `HOLD`,
    /// then commits. Returns once the lock is held; the receiver yields the
    /// instant just before it was let go.
    fn hold(&self, pg_lock_sql: &str) -> mpsc::Receiver<Instant> {
        let url = self.db_url.clone();
        let sql = match self.backend {
            Backend::Postgres => format!("BEGIN; {pg_lock_sql}"),
            Backend::Sqlite => "BEGIN IMMEDIATE".to_string(),
        };
        let backend = self.backend;
        let (locked_tx, locked_rx) = mpsc::channel();
        let (released_tx, released_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut conn: Box<dyn FnMut(&str)> = match backend {
                Backend::Postgres => {
                    let mut c = diesel::PgConnection::establish(&url).expect("lock session");
                    Box::new(move |q: &str| c.batch_execute(q).expect("lock session sql"))
                }
                Backend::Sqlite => {
                    let path = url
                        .strip_prefix("sqlite://")
                        .expect("sqlite url")
                        .to_string();
                    let mut c = diesel::SqliteConnection::establish(&path).expect("lock session");
                    c.batch_execute("PRAGMA busy_timeout = 15000")
                        .expect("pragma");
                    Box::new(move |q: &str| c.batch_execute(q).expect("lock session sql"))
                }
            };
            conn(&sql);
            locked_tx.send(()).expect("signal");
            std::thread::sleep(HOLD);
            // Taken before COMMIT is sent: once the server lets the lock go, a
            // queued request's answer can reach the test before this thread is
            // scheduled again, so an instant taken after COMMIT returns could
            // be later than the answer it is compared with.
            let releasing = Instant::now();
            conn("COMMIT");
            let _ = released_tx.send(releasing);
        });
        locked_rx.recv().expect("lock taken");
        released_rx
    }
}

fn movement(depot: &str, kg: &str) -> Value {
    json!({"depot": depot, "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": kg})
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_rt::test]
            async fn postgres() {
                if !$crate::helpers::postgres_skipped() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
            #[actix_rt::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
        }
    )*};
}

on_both!(
    close_queued_behind_a_batch_is_refused,
    batch_queued_behind_a_close_is_refused,
    drawdown_limit_lowered_while_a_release_waits_applies_to_it,
    one_key_raced_on_two_replicas_answers_the_same,
    a_period_lock_and_a_backdated_posting_never_both_win,
    two_approvals_that_together_exceed_the_stock_one_wins,
    a_bid_queued_behind_the_closing_time_is_refused,
);

/// A 1000-leg batch is in flight on replica 0 when a close arrives on replica
/// 1. The close must not succeed while the batch leaves stock behind.
async fn close_queued_behind_a_batch_is_refused(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RC1", "100000", "100").await;
    race.empty_stockpile("RC1").await;
    let entries: Vec<Value> = (0..1000)
        .map(|_| json!({"kind": "acquisition", "depot": "RC1", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "1"}))
        .collect();
    let released = race.hold("SELECT 1 FROM depots WHERE code = 'RC1' FOR UPDATE");
    let (batch, close) = futures_util::future::join(
        race.send(
            0,
            "POST",
            "/api/v1/ledger/batch",
            &race.operator,
            None,
            json!({ "entries": entries }),
        ),
        async {
            race.first_is_queued().await;
            race.send(
                1,
                "POST",
                "/api/v1/depots/RC1/close",
                &race.admin,
                None,
                json!(null),
            )
            .await
        },
    )
    .await;
    let released = released.recv().expect("released");
    assert!(close.at > released, "the close waited for the lock");
    let depot = get_json(
        &race.client,
        &race.base(1),
        &race.admin,
        "/api/v1/depots/RC1",
    )
    .await;
    match backend {
        Backend::Postgres => {
            assert_eq!(batch.status, 201, "{:?}", batch.body);
            assert_eq!(close.status, 409, "{:?}", close.body);
            assert!(close.body["type"]
                .as_str()
                .unwrap()
                .ends_with("depot-not-empty"));
        }
        Backend::Sqlite => assert!(
            (batch.status == 201) != (close.status == 200),
            "exactly one wins: batch {} close {}",
            batch.status,
            close.status
        ),
    }
    if close.status == 200 {
        assert_eq!(depot["on_hand_kg"], "0.000");
    } else {
        assert_eq!(depot["status"], "active");
        assert_eq!(depot["on_hand_kg"], "1000.000");
    }
    assert_eq!(race.verify().await["ok"], true);
}

/// The other order: the close is queued first, so the batch finds the depot
/// closed and writes nothing.
async fn batch_queued_behind_a_close_is_refused(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RC2", "100000", "100").await;
    race.empty_stockpile("RC2").await;
    let entries: Vec<Value> = (0..100)
        .map(|_| json!({"kind": "acquisition", "depot": "RC2", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "1"}))
        .collect();
    let released = race.hold("SELECT 1 FROM depots WHERE code = 'RC2' FOR UPDATE");
    let (close, batch) = futures_util::future::join(
        race.send(
            0,
            "POST",
            "/api/v1/depots/RC2/close",
            &race.admin,
            None,
            json!(null),
        ),
        async {
            race.first_is_queued().await;
            race.send(
                1,
                "POST",
                "/api/v1/ledger/batch",
                &race.operator,
                None,
                json!({ "entries": entries }),
            )
            .await
        },
    )
    .await;
    released.recv().expect("released");
    if backend == Backend::Postgres {
        assert_eq!(close.status, 200, "{:?}", close.body);
        assert_eq!(batch.status, 409, "{:?}", batch.body);
        assert!(batch.body["type"]
            .as_str()
            .unwrap()
            .ends_with("depot-not-active"));
    } else {
        assert!((batch.status == 201) != (close.status == 200));
    }
    let depot = get_json(
        &race.client,
        &race.base(1),
        &race.admin,
        "/api/v1/depots/RC2",
    )
    .await;
    if close.status == 200 {
        assert_eq!(depot["status"], "closed");
        assert_eq!(depot["on_hand_kg"], "0.000");
    }
    assert_eq!(race.verify().await["ok"], true);
}

/// A PATCH lowering the daily drawdown limit to 10 kg is queued before an
/// 80 kg release: the release must be judged by the new limit.
async fn drawdown_limit_lowered_while_a_release_waits_applies_to_it(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RD1", "1000", "100").await;
    race.acquire("RD1", "500").await;
    let released = race.hold("SELECT 1 FROM depots WHERE code = 'RD1' FOR UPDATE");
    let (patch, release) = futures_util::future::join(
        race.send(
            1,
            "PATCH",
            "/api/v1/depots/RD1",
            &race.admin,
            None,
            json!({"max_drawdown_kg_per_day": "10"}),
        ),
        async {
            race.first_is_queued().await;
            race.send(
                0,
                "POST",
                "/api/v1/releases",
                &race.operator,
                None,
                movement("RD1", "80"),
            )
            .await
        },
    )
    .await;
    released.recv().expect("released");
    assert_eq!(patch.status, 200, "{:?}", patch.body);
    if backend == Backend::Postgres || release.status != 201 {
        assert_eq!(release.status, 409, "{:?}", release.body);
        assert!(release.body["type"]
            .as_str()
            .unwrap()
            .ends_with("drawdown-rate-exceeded"));
        assert_eq!(release.body["max_drawdown_kg_per_day"], "10.000");
    }
    // Whichever order SQLite chose, the ledger must agree with the limits in
    // force when each outflow was posted.
    assert_eq!(race.verify().await["ok"], true);
}

/// Two replicas get the same Idempotency-Key and body for a release that can
/// succeed only once. Both must answer the first one's 201, never a 409.
async fn one_key_raced_on_two_replicas_answers_the_same(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RI1", "1000", "1000").await;
    race.acquire("RI1", "100").await;
    let key = uuid::Uuid::new_v4().to_string();
    let released = race.hold(
        "SELECT 1 FROM stockpiles WHERE element = 'Nd' AND depot_id = (SELECT id FROM depots WHERE code = 'RI1') FOR UPDATE",
    );
    let (first, second) = futures_util::future::join(
        race.send(
            0,
            "POST",
            "/api/v1/releases",
            &race.operator,
            Some(&key),
            movement("RI1", "100"),
        ),
        async {
            race.first_is_queued().await;
            race.send(
                1,
                "POST",
                "/api/v1/releases",
                &race.operator,
                Some(&key),
                movement("RI1", "100"),
            )
            .await
        },
    )
    .await;
    released.recv().expect("released");
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert_eq!(second.status, 201, "{:?}", second.body);
    assert_eq!(first.body, second.body, "both answers describe one entry");
    assert!(first.replayed != second.replayed, "exactly one is a replay");
    // And a later retry replays the same.
    let again = race
        .send(
            1,
            "POST",
            "/api/v1/releases",
            &race.operator,
            Some(&key),
            movement("RI1", "100"),
        )
        .await;
    assert_eq!((again.status, again.replayed), (201, true));
    assert_eq!(again.body, first.body);
    let ledger = get_json(
        &race.client,
        &race.base(0),
        &race.admin,
        "/api/v1/ledger?kind=release",
    )
    .await;
    assert_eq!(ledger["items"].as_array().unwrap().len(), 1);
    assert_eq!(race.verify().await["ok"], true);
}

/// A backdated acquisition is waiting for `ledger_head` (the last lock a
/// posting takes) when a period lock that would forbid it arrives. Either the
/// posting commits before the lock exists, or it is refused; never both.
async fn a_period_lock_and_a_backdated_posting_never_both_win(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RP1", "1000", "1000").await;
    let now = chrono::Utc::now();
    let occurred = (now - chrono::Duration::hours(2)).to_rfc3339();
    let lock_at = (now - chrono::Duration::hours(1)).to_rfc3339();
    let mut body = movement("RP1", "5");
    body["occurred_at"] = json!(occurred);
    let released = race.hold("SELECT 1 FROM ledger_head FOR UPDATE");
    let (posting, lock) = futures_util::future::join(
        race.send(
            0,
            "POST",
            "/api/v1/acquisitions",
            &race.operator,
            None,
            body,
        ),
        async {
            race.first_is_queued().await;
            race.send(
                1,
                "POST",
                "/api/v1/period-locks",
                &race.admin,
                None,
                json!({"locked_before": lock_at, "reason": "race test"}),
            )
            .await
        },
    )
    .await;
    let released = released.recv().expect("released");
    assert_eq!(lock.status, 201, "{:?}", lock.body);
    assert!(
        lock.at > released,
        "setting a period lock waits for postings in flight"
    );
    if backend == Backend::Postgres {
        assert_eq!(posting.status, 201, "queued first, it commits first");
    }
    // Whatever the order, no entry posted after the lock occurs before it.
    assert_eq!(race.verify().await["ok"], true, "{}", race.verify().await);
    // A second backdated posting now is refused.
    let mut late = movement("RP1", "5");
    late["occurred_at"] = json!(occurred);
    let refused = race
        .send(
            0,
            "POST",
            "/api/v1/acquisitions",
            &race.operator,
            None,
            late,
        )
        .await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
}

/// Several replicas started at once on a fresh, unmigrated PostgreSQL
/// database: they queue on the migration lock and all come up.
#[actix_rt::test]
async fn replicas_starting_together_migrate_once() {
    if postgres_skipped() {
        return;
    }
    for _ in 0..3 {
        let cluster = Cluster::start_unmigrated(TestDb::new(Backend::Postgres), 3).await;
        for i in 0..3 {
            cluster.wait_ready(i).await;
        }
    }
}

fn drawdown(kg: &str) -> Value {
    json!({"kind": "emergency_drawdown", "element": "Nd", "form": "oxide", "grade": "99.5",
           "quantity_kg": kg, "authority": "race", "reason": "race", "method": "sale",
           "emergency_finding": "F-1"})
}

/// Two orders of 300 kg each against 500 kg: approved at once on two
/// replicas, the reservations must not both be taken.
async fn two_approvals_that_together_exceed_the_stock_one_wins(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RA1", "1000", "1000").await;
    race.acquire("RA1", "500").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let o = race
            .send(
                0,
                "POST",
                "/api/v1/release-orders",
                &race.operator,
                None,
                drawdown("300"),
            )
            .await;
        assert_eq!(o.status, 201, "{:?}", o.body);
        ids.push(o.body["id"].clone());
    }
    // NO KEY UPDATE, the mode the reservation's UPDATE takes: both approvals
    // then queue at that UPDATE, in arrival order (a FOR UPDATE would stop
    // them earlier, at their allocations' foreign keys, in a mode that lets
    // both through at once).
    let released = race.hold("SELECT 1 FROM stockpiles WHERE element = 'Nd' FOR NO KEY UPDATE");
    let (a, b) = futures_util::future::join(
        race.send(
            0,
            "POST",
            &format!("/api/v1/release-orders/{}/approve", ids[0]),
            &race.approvers[0],
            None,
            json!({}),
        ),
        async {
            race.first_is_queued().await;
            race.send(
                1,
                "POST",
                &format!("/api/v1/release-orders/{}/approve", ids[1]),
                &race.approvers[1],
                None,
                json!({}),
            )
            .await
        },
    )
    .await;
    released.recv().expect("released");
    let statuses = [a.status, b.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{a:?} {b:?}"
    );
    assert!(statuses.contains(&409), "{a:?} {b:?}");
    let stock = get_json(
        &race.client,
        &race.base(1),
        &race.admin,
        "/api/v1/stockpiles?depot=RA1",
    )
    .await;
    assert_eq!(stock["items"][0]["reserved_kg"], "300.000");
    assert_eq!(stock["items"][0]["available_kg"], "200.000");
}

/// A bid sent before the closing time but still queued when it passes is
/// refused; the award queued behind it does not see it.
async fn a_bid_queued_behind_the_closing_time_is_refused(backend: Backend) {
    let race = Race::start(backend).await;
    race.create_depot("RB1", "1000", "1000").await;
    race.acquire("RB1", "500").await;
    let b = race
        .send(
            0,
            "POST",
            "/api/v1/buyers",
            &race.admin,
            None,
            json!({"code": "AAA", "name": "A", "country": "JP"}),
        )
        .await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    let o = race
        .send(
            0,
            "POST",
            "/api/v1/release-orders",
            &race.operator,
            None,
            drawdown("100"),
        )
        .await;
    let id = o.body["id"].clone();
    let a = race
        .send(
            0,
            "POST",
            &format!("/api/v1/release-orders/{id}/approve"),
            &race.approvers[0],
            None,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let closes = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let n = race
        .send(
            1,
            "POST",
            &format!("/api/v1/release-orders/{id}/notice"),
            &race.approvers[0],
            None,
            json!({"closes_at": closes.to_rfc3339(), "currency": "USD"}),
        )
        .await;
    assert_eq!(n.status, 200, "{:?}", n.body);
    let early = race
        .send(
            0,
            "POST",
            &format!("/api/v1/release-orders/{id}/bids"),
            &race.bidder,
            None,
            json!({"quantity_kg": "50", "price_per_kg": "10"}),
        )
        .await;
    assert_eq!(early.status, 201, "{:?}", early.body);
    // The order's row is held past the closing time while a second bid waits.
    let released = race.hold(&format!(
        "SELECT 1 FROM release_orders WHERE id = {id} FOR UPDATE"
    ));
    let late = race
        .send(
            0,
            "POST",
            &format!("/api/v1/release-orders/{id}/bids"),
            &race.bidder,
            None,
            json!({"quantity_kg": "50", "price_per_kg": "99"}),
        )
        .await;
    let released = released.recv().expect("released");
    assert!(late.at > released);
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert!(late.body["type"]
        .as_str()
        .unwrap()
        .ends_with("bidding-closed"));
    let award = race
        .send(
            1,
            "POST",
            &format!("/api/v1/release-orders/{id}/award"),
            &race.approvers[1],
            None,
            json!(null),
        )
        .await;
    assert_eq!(award.status, 200, "{:?}", award.body);
    assert_eq!(award.body["awards"].as_array().unwrap().len(), 1);
    assert_eq!(award.body["awards"][0]["price_per_kg"], "10");
}
