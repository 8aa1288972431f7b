//! Real `reserve serve` processes over one database, started, killed and
//! restarted by the tests.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestDb, AUDIT_SEED, SECRET};

pub struct Replica {
    pub port: u16,
    child: Option<Child>,
    db_url: String,
    log: std::path::PathBuf,
    /// Settings given to this replica as environment variables.
    env: Vec<(String, String)>,
}

impl Replica {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_reserve"))
            .args([
                "serve",
                "--bind",
                &format!("127.0.0.1:{}", self.port),
                "--workers",
                "2",
            ])
            .env("RESERVE_DATABASE_URL", &self.db_url)
            .env("RESERVE_JWT_SECRET", SECRET)
            .env("RESERVE_AUDIT__SIGNING_KEY", AUDIT_SEED)
            .env("RESERVE_DATABASE__POOL_SIZE", "8")
            .env("RUST_LOG", "warn")
            // The configured default unless RESERVE_TEST_GROUP_COMMIT says.
            .envs(
                crate::helpers::test_group_commit_window_us()
                    .map(|us| ("RESERVE_GROUP_COMMIT__WINDOW_US", us.to_string())),
            )
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start reserve serve");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown hook runs, in-flight requests die mid-way.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Cluster {
    pub replicas: Vec<Replica>,
    _dir: tempfile::TempDir,
    // Dropped last: the database outlives the processes using it.
    _db: TestDb,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl Cluster {
    pub async fn start(db: TestDb, replicas: usize) -> Cluster {
        // Migrate once, so the tests of other things do not depend on the
        // replicas' own migration lock.
        let url = reserve::db::DatabaseUrl::parse(db.url()).expect("url");
        reserve::db::run_migrations(&mut reserve::db::open(&url).expect("open")).expect("migrate");
        Self::start_unmigrated(db, replicas).await
    }

    /// Starts every replica at once on `db` as it is: on a fresh database they
    /// race to apply the migrations.
    pub async fn start_unmigrated(db: TestDb, replicas: usize) -> Cluster {
        Self::start_with_env(db, replicas, &[]).await
    }

    /// Starts migrated replicas with extra settings (`RESERVE_SECTION__KEY`).
    pub async fn start_with(db: TestDb, replicas: usize, env: &[(&str, &str)]) -> Cluster {
        let url = reserve::db::DatabaseUrl::parse(db.url()).expect("url");
        reserve::db::run_migrations(&mut reserve::db::open(&url).expect("open")).expect("migrate");
        Self::start_with_env(db, replicas, env).await
    }

    /// Starts `replicas` on `db` as it is, each with `env` set.
    pub async fn start_with_env(db: TestDb, replicas: usize, env: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cluster = Cluster {
            replicas: (0..replicas)
                .map(|i| Replica {
                    port: free_port(),
                    child: None,
                    db_url: db.url().to_string(),
                    log: dir.path().join(format!("replica-{i}.log")),
                    env: env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                })
                .collect(),
            _dir: dir,
            _db: db,
        };
        for r in &mut cluster.replicas {
            r.spawn();
        }
        for i in 0..replicas {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    pub async fn wait_ready(&self, i: usize) {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(2))
            .finish();
        let started = Instant::now();
        let url = format!("{}/readyz", self.replicas[i].base());
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(&self.replicas[i].log).unwrap_or_default();
        panic!("replica {i} did not become ready; its log:\n{log}");
    }
}

/// GETs `path` from `base` with a bearer token; asserts 200 and returns the body.
pub async fn get_json(
    client: &awc::Client,
    base: &str,
    token: &str,
    path: &str,
) -> serde_json::Value {
    let mut r = client
        .get(format!("{base}{path}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.json().limit(64 << 20).await.unwrap()
}
