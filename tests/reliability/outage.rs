//! PostgreSQL goes away under load and comes back: requests fail fast with 503
//! and Retry-After, `/readyz` says not ready, nothing is half-written, and the
//! service recovers by itself.
//!
//! The database runs in a private PostgreSQL cluster this test creates (the
//! shared server must keep serving the other tests), as the `postgres` user
//! when the test runs as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reserve::auth::{Role, TokenKeys};
use serde_json::{json, Value};

use crate::cluster::{get_json, Cluster};
use crate::helpers::{grams, postgres_skipped, test_settings, TestDb, SECRET};

fn pg_bin(tool: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let version = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("no PostgreSQL installation under {}: {e}", root.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL version");
    root.join(version).join("bin").join(tool)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool as the owner of the private cluster.
fn pg(tool: &str, args: &[&str]) -> std::process::Output {
    let bin = pg_bin(tool);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
}

struct PrivateCluster {
    dir: PathBuf,
    port: u16,
}

impl PrivateCluster {
    fn create() -> PrivateCluster {
        let dir =
            std::env::temp_dir().join(format!("reserve-outage-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            assert!(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success());
        }
        let data = dir.join("data");
        let out = pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PrivateCluster { dir, port };
        c.start();
        c
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("pg.log");
        let out = self.ctl(&["-l", log.to_str().unwrap(), "-o", &opts, "-w", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `immediate`: the server dies without a checkpoint, like a crash.
    fn stop(&self) {
        let out = self.ctl(&["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl -D <this cluster> ARGS…`
    fn ctl(&self, args: &[&str]) -> std::process::Output {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        pg("pg_ctl", &all)
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.ctl(&["-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_rt::test]
async fn database_outage_fails_fast_and_recovers() {
    if postgres_skipped() {
        return;
    }
    let pg_cluster = PrivateCluster::create();
    let db = TestDb::new_postgres_at(&pg_cluster.admin_url());
    let cluster = Cluster::start(db, 1).await;
    let base = cluster.replicas[0].base();
    let keys = TokenKeys::hs256(SECRET.as_bytes(), &test_settings("sqlite://unused").auth).unwrap();
    let admin = keys
        .mint(
            "outage-admin",
            &[Role::Admin, Role::Auditor],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    let operator = keys
        .mint(
            "outage-operator",
            &[Role::Operator],
            None,
            chrono::Duration::hours(1),
        )
        .unwrap();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let post = |path: &str, token: &str, key: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .insert_header(("Idempotency-Key", key.to_string()))
            .send_json(&body)
    };
    let mut r = post("/api/v1/depots", &admin, "depot", json!({"code": "OUT1", "name": "Outage", "region": "test", "capacity_kg": "100000", "max_drawdown_kg_per_day": "100000"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.body().await);

    // Writes before, during and after the outage; each retried with its key until acknowledged.
    let mut acknowledged = 0i64;
    let mut unavailable = 0;
    let mut slowest_503 = Duration::ZERO;
    let mut saw_not_ready = false;
    let body = json!({"depot": "OUT1", "element": "Nd", "form": "oxide", "grade": "99.5", "quantity_kg": "1.000"});
    let started = Instant::now();
    // The database is down from 3 s to 8 s into the run.
    let (mut stopped, mut restarted) = (false, false);
    let follow_schedule = |stopped: &mut bool, restarted: &mut bool| {
        let t = started.elapsed();
        if !*stopped && t > Duration::from_secs(3) {
            pg_cluster.stop();
            *stopped = true;
        }
        if *stopped && !*restarted && t > Duration::from_secs(8) {
            pg_cluster.start();
            *restarted = true;
        }
    };
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(14) || !restarted {
        follow_schedule(&mut stopped, &mut restarted);
        n += 1;
        let key = format!("w-{n}");
        loop {
            let sent = Instant::now();
            let res = post("/api/v1/acquisitions", &operator, &key, body.clone()).await;
            let took = sent.elapsed();
            match res {
                Ok(res) if res.status().as_u16() == 201 => {
                    acknowledged += 1;
                    break;
                }
                Ok(mut res) if res.status().as_u16() == 503 => {
                    assert!(
                        res.headers().get("retry-after").is_some(),
                        "503 carries Retry-After"
                    );
                    let problem: Value = res.json().await.unwrap();
                    assert_eq!(problem["status"], 503);
                    unavailable += 1;
                    slowest_503 = slowest_503.max(took);
                    if !saw_not_ready {
                        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
                        saw_not_ready = ready.status().as_u16() == 503;
                    }
                    // Retrying through the outage: keep the schedule moving.
                    follow_schedule(&mut stopped, &mut restarted);
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(mut res) => panic!("unexpected {}: {:?}", res.status(), res.body().await),
                Err(e) => panic!("the service itself must stay up: {e}"),
            }
        }
    }
    assert!(unavailable > 0, "the outage was noticed");
    assert!(
        saw_not_ready,
        "/readyz reported not ready during the outage"
    );
    assert!(
        slowest_503 < Duration::from_secs(4),
        "503s come fast (slowest {slowest_503:?})"
    );
    // Recovered by itself: ready again, and the books balance.
    let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let v = get_json(&client, &base, &admin, "/api/v1/ledger/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(
        v["last_sequence"], acknowledged,
        "every acknowledged write, and only those, is in the ledger"
    );
    let s = get_json(&client, &base, &admin, "/api/v1/summary").await;
    assert_eq!(
        grams(s["totals"]["on_hand_kg"].as_str().unwrap()),
        acknowledged * 1000
    );
    println!("outage: writes={n} acknowledged={acknowledged} unavailable={unavailable} slowest_503_ms={} lost=0", slowest_503.as_millis());
    drop(cluster);
}
