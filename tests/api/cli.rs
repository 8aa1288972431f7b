//! The quick start as a newcomer runs it: `serve --demo` with no secret
//! configured, then `reserve token`, then a restart. Real processes of the
//! `reserve` binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(demo_tokens_survive_restarts_and_reserve_token_uses_the_demo_secret);

/// `reserve` in `dir`, with nothing configured but the database.
fn reserve(dir: &Path, db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reserve"));
    cmd.current_dir(dir)
        .env_remove("RESERVE_JWT_SECRET")
        .env_remove("RESERVE_AUTH__JWT_SECRET")
        .env_remove("RESERVE_BIND")
        .env("RESERVE_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn");
    cmd
}

fn token(dir: &Path, db_url: &str, args: &[&str]) -> Output {
    reserve(dir, db_url)
        .args(["token", "--sub", "alice", "--role", "viewer"])
        .args(args)
        .output()
        .expect("run reserve token")
}

struct Demo {
    child: Child,
    tokens: Vec<String>,
    base: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve --demo` and waits for its three tokens and its readiness.
async fn start_demo(dir: &Path, db_url: &str) -> Demo {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = reserve(dir, db_url)
        .args(["serve", "--demo", "--workers", "1"])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start serve --demo");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut demo = Demo {
        child,
        tokens: Vec::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while demo.tokens.len() < 3 {
        assert!(Instant::now() < deadline, "serve --demo printed no tokens");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some((_, t)) = line.split_once("_TOKEN=") {
                demo.tokens.push(t.to_string());
            }
        }
        assert!(
            demo.child.try_wait().unwrap().is_none(),
            "serve --demo exited"
        );
    }
    let client = awc::Client::default();
    loop {
        assert!(Instant::now() < deadline, "serve --demo never became ready");
        if let Ok(r) = client.get(format!("{}/readyz", demo.base)).send().await {
            if r.status().is_success() {
                break;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    demo
}

async fn status_with(demo: &Demo, token: &str) -> u16 {
    awc::Client::default()
        .get(format!("{}/api/v1/summary", demo.base))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn demo_tokens_survive_restarts_and_reserve_token_uses_the_demo_secret(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db, url) = match backend {
        Backend::Sqlite => (None, "sqlite://data/reserve.db".to_string()),
        Backend::Postgres => {
            let db = TestDb::new(backend);
            let url = db.url().to_string();
            (Some(db), url)
        }
    };
    let secret_file = dir.path().join(match backend {
        Backend::Sqlite => "data/reserve.demo-secret",
        Backend::Postgres => "data/reserve-postgres.demo-secret",
    });

    // Before any demo ran, the error says what to do, and the advice works.
    let out = token(dir.path(), &url, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RESERVE_JWT_SECRET") && err.contains("serve --demo"),
        "{err}"
    );

    let demo = start_demo(dir.path(), &url).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret_file)
            .expect("the demo keeps its secret")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner may read the secret");
    }
    let out = token(dir.path(), &url, &[]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo secret"),
        "it says where the secret came from: {err}"
    );
    let alice = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(status_with(&demo, &alice).await, 200);
    let admin = demo.tokens[0].clone();
    assert_eq!(status_with(&demo, &admin).await, 200);
    drop(demo);

    // After a restart, the tokens printed and minted before still work.
    let demo = start_demo(dir.path(), &url).await;
    assert_eq!(status_with(&demo, &admin).await, 200);
    assert_eq!(status_with(&demo, &alice).await, 200);
    drop(demo);

    // `--ttl` respects the maximum token lifetime.
    let out = token(dir.path(), &url, &["--ttl", "60d"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at most 30 days"), "{err}");
    drop(db);
}
