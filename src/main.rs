//! The `reserve` command: serve the API, migrate, mint tokens, verify the ledger,
//! seed demo data.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use reserve::auth::{parse_ttl, Role, TokenKeys};
use reserve::config::Settings;
use reserve::db;

#[derive(Parser)]
#[command(
    name = "reserve",
    version,
    about = "Strategic reserve of rare-earth elements: inventory and ledger service"
)]
struct Cli {
    /// Configuration file layered over config/default.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (beats RESERVE_DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (applies pending migrations first).
    Serve {
        /// HOST:PORT to listen on (beats RESERVE_BIND).
        #[arg(long)]
        bind: Option<String>,
        /// Seed demo data into an empty database and print tokens. Without a
        /// configured secret it generates one and keeps it beside the database
        /// (data/reserve.demo-secret), where `reserve token` finds it.
        #[arg(long)]
        demo: bool,
        /// Worker threads (0: one per CPU).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Seed the demo data set into an empty database; with --entries, append
    /// that many valid entries (chained and balanced, as the posting path
    /// writes them) at a depot LOAD instead, with a progress bar.
    SeedDemo {
        /// Entries to append at depot LOAD (e.g. 1000000 for the performance
        /// suite's large ledger); `reserve verify` passes afterwards.
        #[arg(long)]
        entries: Option<usize>,
    },
    /// Print a signed token. Without a configured secret it uses the one
    /// `serve --demo` keeps beside the database (data/reserve.demo-secret).
    Token {
        /// Subject: who the token speaks for.
        #[arg(long)]
        sub: String,
        /// Role (repeatable): viewer, operator, approver, auditor, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Limit the token to these depots (repeatable); default: every depot.
        #[arg(long = "depot")]
        depots: Vec<String>,
        /// Lifetime, e.g. 30m, 8h, 7d; at most auth.max_token_lifetime_days.
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// Recompute hash chains and balances from the ledger, check them against
    /// the latest signed checkpoint, and report the first problem. Reads the
    /// ledger in pages (constant memory); shows a progress bar on a terminal.
    Verify {
        /// Also print the time taken, entries per second and peak RSS.
        #[arg(long)]
        stats: bool,
    },
    /// Audit reports: produce one, or check a downloaded one offline.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Post N valid entries through the real posting path at a depot LOAD, in
    /// postings of 5,000 (for measuring `verify` at scale).
    LoadLedger {
        #[arg(long)]
        entries: usize,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Build, sign and store a report for (FROM, TO]; print it as served.
    Run {
        /// Period start, RFC 3339 (e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        from: String,
        /// Period end, RFC 3339; not in the future.
        #[arg(long)]
        to: String,
    },
    /// Check a downloaded JSON report offline: its Ed25519 signature and its
    /// reconciliation; with --ledger, its chain head against a ledger export.
    Verify {
        /// The report as served by GET /api/v1/audit-reports/{id}.
        file: PathBuf,
        /// The reserve's public key (base64, from GET
        /// /api/v1/audit-reports/public-key). Without it the key the file
        /// names is used, which proves integrity but not origin.
        #[arg(long)]
        public_key: Option<String>,
        /// An auditor's ledger export (GET /api/v1/ledger?format=csv&order=asc,
        /// every page, one header line).
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let mut settings = match Settings::load(cli.config.as_deref(), &env) {
        Ok(s) => s,
        Err(e) => return fail(format!("{e:#}")),
    };
    if let Some(url) = &cli.database_url {
        settings.database.url = url.clone();
    }
    if let Some(f) = &cli.log_format {
        settings.server.log_format = f.clone();
    }
    if let Command::Serve { bind, workers, .. } = &cli.command {
        if let Some(b) = bind {
            settings.server.bind = b.clone();
        }
        if let Some(w) = workers {
            settings.server.workers = *w;
        }
    }
    if let Err(e) = settings.validate() {
        return fail(format!("{e:#}"));
    }
    init_logging(&settings.server.log_format);
    let result = match cli.command {
        Command::Serve { demo, .. } => serve(settings, demo),
        Command::Migrate => migrate(&settings),
        Command::SeedDemo { entries: None } => seed(&settings).map(|_| ()),
        Command::SeedDemo {
            entries: Some(entries),
        } => load_ledger(&settings, entries),
        Command::Token {
            sub,
            roles,
            depots,
            ttl,
        } => token(&settings, &sub, &roles, depots, &ttl),
        Command::Verify { stats } => verify(&settings, stats),
        Command::LoadLedger { entries } => load_ledger(&settings, entries),
        Command::Audit { command } => audit(&settings, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

fn fail(message: String) -> ExitCode {
    eprintln!("reserve: {message}");
    ExitCode::FAILURE
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn keys(settings: &Settings) -> anyhow::Result<TokenKeys> {
    anyhow::ensure!(
        !settings.auth.jwt_secret.is_empty(),
        "no JWT secret configured: set RESERVE_JWT_SECRET (at least 32 bytes), or run `serve --demo`"
    );
    TokenKeys::hs256(settings.auth.jwt_secret.as_bytes(), &settings.auth)
}

/// Where the demo keeps its secret for the configured database.
fn demo_secret_path(settings: &Settings) -> anyhow::Result<PathBuf> {
    let url = db::DatabaseUrl::parse(&settings.database.url).map_err(anyhow::Error::msg)?;
    Ok(reserve::demo::secret_path(&url))
}

fn serve(mut settings: Settings, demo: bool) -> anyhow::Result<()> {
    if settings.auth.jwt_secret.is_empty() && demo {
        let path = demo_secret_path(&settings)?;
        let (secret, created) = reserve::demo::load_or_create_secret(&path)?;
        settings.auth.jwt_secret = secret;
        if created {
            eprintln!(
                "demo: generated a signing secret and kept it in {} (mode 0600): tokens survive \
                 restarts, and `reserve token` mints tokens this server accepts",
                path.display()
            );
        } else {
            eprintln!(
                "demo: signing with the secret kept in {} by an earlier run",
                path.display()
            );
        }
    }
    let keys = keys(&settings)?;
    if demo {
        // The walk-through backdates entries and sets its own period lock; a
        // month-end report closing the books at start-up would refuse them.
        settings.audit.lock_period_on_month_end = false;
    }
    if settings.audit.signing_key.trim().is_empty() && demo {
        let url = db::DatabaseUrl::parse(&settings.database.url).map_err(anyhow::Error::msg)?;
        let path = reserve::demo::audit_key_path(&url);
        let (seed, created) = reserve::demo::load_or_create_secret(&path)?;
        settings.audit.signing_key = seed;
        if created {
            eprintln!(
                "demo: generated an audit signing key and kept it in {} (mode 0600)",
                path.display()
            );
        }
    }
    anyhow::ensure!(
        !settings.audit.signing_key.trim().is_empty() || !settings.audit.reports_enabled,
        "no audit signing key configured: set RESERVE_AUDIT__SIGNING_KEY (a base64 32-byte \
         Ed25519 seed, or a file holding one), run `serve --demo`, or turn reports off \
         (RESERVE_AUDIT__REPORTS_ENABLED=false)"
    );
    let bind = settings.server.bind.clone();
    let state = reserve::build_state(settings, keys.clone())?;
    if demo {
        let pool = state.pool.clone();
        let mut conn = pool.get()?;
        match reserve::demo::seed(&mut conn)? {
            Some(report) => eprintln!("demo: seeded {report}"),
            None => eprintln!("demo: the database already holds depots; nothing seeded"),
        }
        let ttl = chrono::Duration::hours(12);
        let admin = keys.mint("demo-admin", &[Role::Admin, Role::Auditor], None, ttl)?;
        let operator = keys.mint("demo-operator", &[Role::Operator], None, ttl)?;
        let viewer = keys.mint("demo-viewer", &[Role::Viewer], None, ttl)?;
        let approver = keys.mint("demo-approver", &[Role::Approver], None, ttl)?;
        println!("ADMIN_TOKEN={admin}");
        println!("OPERATOR_TOKEN={operator}");
        println!("VIEWER_TOKEN={viewer}");
        println!("APPROVER_TOKEN={approver}");
    }
    let listener =
        TcpListener::bind(&bind).map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, database = state.backend, "listening");
    let metrics_bind = state.settings.metrics.bind.trim().to_string();
    let metrics_listener = if state.settings.metrics.enabled && !metrics_bind.is_empty() {
        let l = TcpListener::bind(&metrics_bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {metrics_bind} (metrics.bind): {e}"))?;
        tracing::info!(address = %l.local_addr()?, "serving /metrics");
        Some(l)
    } else {
        None
    };
    actix_web::rt::System::new().block_on(async move {
        if let Some(l) = metrics_listener {
            actix_web::rt::spawn(reserve::metrics::routes::run(l, state.clone())?);
        }
        reserve::run(listener, state)?.await
    })?;
    Ok(())
}

fn open(settings: &Settings) -> anyhow::Result<db::DbConn> {
    db::open(&db::DatabaseUrl::parse(&settings.database.url).map_err(anyhow::Error::msg)?)
}

fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let mut conn = open(settings)?;
    let applied = db::run_migrations(&mut conn)?;
    println!("{} migration(s) applied", applied.len());
    Ok(())
}

fn seed(settings: &Settings) -> anyhow::Result<()> {
    let mut conn = open(settings)?;
    db::run_migrations(&mut conn)?;
    match reserve::demo::seed(&mut conn)? {
        Some(report) => println!("seeded {report}"),
        None => println!("the database already holds depots; nothing seeded"),
    }
    Ok(())
}

fn token(
    settings: &Settings,
    sub: &str,
    roles: &[String],
    depots: Vec<String>,
    ttl: &str,
) -> anyhow::Result<()> {
    let keys = if settings.auth.jwt_secret.is_empty() {
        let path = demo_secret_path(settings)?;
        let secret = reserve::demo::read_secret(&path)?.ok_or_else(|| {
            anyhow::anyhow!(
                "no JWT secret configured and no demo secret at {path}: set RESERVE_JWT_SECRET \
                 to the secret your server uses (at least 32 bytes), or run `reserve serve --demo` \
                 once with the same database first: it keeps its secret in {path}, and \
                 `reserve token` then uses it",
                path = path.display()
            )
        })?;
        eprintln!(
            "reserve: no JWT secret configured; signing with the demo secret in {}",
            path.display()
        );
        TokenKeys::hs256(secret.as_bytes(), &settings.auth)?
    } else {
        keys(settings)?
    };
    let roles = roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown role {r:?}: use viewer, operator, approver, auditor or admin"
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let depots = depots
        .iter()
        .map(|d| {
            reserve::depots::model::DepotCode::parse(d)
                .map(|c| c.into_string())
                .map_err(|e| anyhow::anyhow!("depot {d:?} {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ttl = parse_ttl(ttl).map_err(anyhow::Error::msg)?;
    let scope = if depots.is_empty() {
        None
    } else {
        Some(depots)
    };
    println!("{}", keys.mint(sub, &roles, scope, ttl)?);
    Ok(())
}

/// A progress bar on stderr when it is a terminal; none when piped.
fn progress_bar(len: u64, what: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)"
    )) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Peak resident set size of this process, in KiB (Linux; `None` elsewhere).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn verify(settings: &Settings, stats: bool) -> anyhow::Result<()> {
    let mut conn = open(settings)?;
    let trusted_key = match settings.audit.signing_key.trim() {
        "" => None,
        spec => Some(reserve::audit::signing::AuditKey::parse(spec)?.public_base64()),
    };
    let started = std::time::Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut progress = |checked: i64, posted: i64| {
        let b = bar.get_or_insert_with(|| {
            progress_bar(posted.max(0) as u64, "verifying")
                .unwrap_or_else(indicatif::ProgressBar::hidden)
        });
        b.set_position(checked.max(0) as u64);
    };
    let report = reserve::ledger::verify::verify_with(
        &mut conn,
        reserve::ledger::verify::VerifyOptions {
            trusted_key,
            progress: Some(&mut progress),
            second_reader: Some(
                db::DatabaseUrl::parse(&settings.database.url).map_err(anyhow::Error::msg)?,
            ),
            select_pages: false,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let db::DbConn::Sqlite(_) = &conn {
        // Fold the write-ahead log into the database file, so that readers
        // after a bulk load do not search a WAL of the whole load.
        use diesel::connection::SimpleConnection;
        conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut out = serde_json::to_value(&report)?;
    if let Some(map) = out.as_object_mut().filter(|_| stats) {
        map.insert("seconds".into(), serde_json::json!(format!("{seconds:.3}")));
        map.insert(
            "entries_per_second".into(),
            serde_json::json!((report.entries_checked as f64 / seconds.max(1e-9)) as u64),
        );
        map.insert("peak_rss_kib".into(), serde_json::json!(peak_rss_kib()));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    anyhow::ensure!(report.ok, "the ledger did not verify");
    Ok(())
}

fn load_ledger(settings: &Settings, entries: usize) -> anyhow::Result<()> {
    let mut conn = open(settings)?;
    db::run_migrations(&mut conn)?;
    let bar = progress_bar(entries as u64, "posting");
    let started = std::time::Instant::now();
    let posted = reserve::demo::load_entries(&mut conn, entries, &mut |n| {
        if let Some(b) = &bar {
            b.set_position(n as u64);
        }
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    use diesel::connection::SimpleConnection;
    // A bulk load ends as an administrator ends one. PostgreSQL: VACUUM
    // ANALYZE, so the planner knows the new sizes, index-only scans of
    // `ledger_balances` (as-of balances) skip the heap, and autovacuum does
    // not start the same work under the first reads. SQLite: the WAL folded
    // into the file, so readers do not search a WAL of the whole load.
    match &mut conn {
        db::DbConn::Postgres(c) => c.batch_execute("VACUUM (ANALYZE)")?,
        db::DbConn::Sqlite(c) => c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")?,
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!(
        "posted {posted} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn audit(settings: &Settings, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Run { from, to } => {
            let key = reserve::audit::signing::AuditKey::parse(settings.audit.signing_key.trim())
                .map_err(|e| anyhow::anyhow!("an audit report must be signed: {e}"))?;
            let parse = |name: &str, v: &str| {
                reserve::db::types::parse_rfc3339(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
            };
            let period = reserve::audit::reports::Period {
                start: parse("from", &from)?,
                end: parse("to", &to)?,
            };
            anyhow::ensure!(period.start < period.end, "--to must be after --from");
            anyhow::ensure!(
                period.end <= reserve::db::types::now(),
                "--to lies in the future: a report is issued once, for a period that is over"
            );
            let mut conn = open(settings)?;
            db::run_migrations(&mut conn)?;
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            );
            let document = db::write_transaction(&mut conn, |c| {
                let meta = reserve::audit::reports::issue(
                    c,
                    settings,
                    &key,
                    period,
                    "on-demand",
                    &actor,
                    false,
                )?;
                reserve::audit::reports::get(c, meta.id)?.document()
            })
            .map_err(|e: reserve::error::ApiError| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&document)?);
            Ok(())
        }
        AuditCommand::Verify {
            file,
            public_key,
            ledger,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            let mut checks = reserve::audit::offline::verify_document(&doc, public_key.as_deref());
            if let Some(path) = ledger {
                let export = std::fs::read_to_string(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                checks.extend(reserve::audit::offline::verify_against_export(
                    &doc["report"],
                    &export,
                ));
            }
            for c in &checks {
                println!(
                    "{} {}: {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                );
            }
            anyhow::ensure!(checks.iter().all(|c| c.ok), "the report did not verify");
            Ok(())
        }
    }
}
