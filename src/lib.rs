//! `reserve`: inventory and ledger service for a strategic reserve of rare-earth
//! elements. `main.rs` is a thin CLI over this library; tests build the same app.

pub mod audit;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod demo;
pub mod depots;
pub mod docs;
pub mod elements;
pub mod error;
pub mod events;
pub mod flows;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod orders;
pub mod periods;
pub mod policy;
pub mod routes;
pub mod rules;
pub mod stockpiles;
pub mod summary;
pub mod webhooks;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{dev::Server, error::InternalError, middleware, web, App, HttpRequest, HttpServer};

use crate::auth::TokenKeys;
use crate::config::Settings;
use crate::db::{DbConn, Pool};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::idempotency::InFlight;

/// Everything a request handler needs, shared by all workers.
pub struct AppState {
    pub pool: Pool,
    pub keys: TokenKeys,
    pub settings: Settings,
    pub in_flight: InFlight,
    /// `"sqlite"` or `"postgres"`.
    pub backend: &'static str,
    /// SQLite's writers queue here and write on its one connection
    /// (`db::WriteGate`): with SQLite's own busy-wait back-off instead,
    /// unlucky writers saw p99 latencies of 240–330 ms and 1.5–2.5 s maxima
    /// under 16 clients (27–31 ms and under 160 ms with the gate; `cargo bench
    /// --bench ingest`). `None` on PostgreSQL, whose row locks queue writers.
    pub write_gate: Option<std::sync::Arc<db::WriteGate>>,
    /// Whether a ledger verification of this app holds the one extra
    /// connection verifications may open (`ledger::routes::verify`).
    pub verify_second_reader: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Writes the audit trail's rows, several write attempts a commit.
    pub trail: audit::trail::TrailWriter,
    /// Counts failed authentications, to answer guessers with 429.
    pub throttle: http::throttle::FailureThrottle,
    pub outage: Outage,
    /// Signs checkpoints and audit reports (`audit.signing_key`); `None` when
    /// none is configured, and then both answer 503.
    pub audit_key: Option<audit::signing::AuditKey>,
    /// Fans new events out to this process's event streams.
    pub events: events::Hub,
    /// This app's Prometheus metrics (`GET /metrics`).
    pub metrics: std::sync::Arc<metrics::Metrics>,
    /// Group commit of postings (`ledger::group`); `None` when
    /// `group_commit.window_us` is 0 and each posting commits alone.
    pub group_commit: Option<ledger::group::GroupCommit>,
}

impl AppState {
    /// Runs one database use case on the blocking pool with a pooled connection.
    /// The connection never crosses an `.await`.
    pub async fn db<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConn) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.blocking(None, f).await
    }

    /// Runs `f`, which writes, on the blocking pool: on SQLite with the
    /// write gate's connection, in turn (see `write_gate`).
    pub async fn writing<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConn) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.blocking(self.write_gate.clone(), f).await
    }

    async fn blocking<T, F>(
        &self,
        gate: Option<std::sync::Arc<db::WriteGate>>,
        f: F,
    ) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConn) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        // While the database is known to be unreachable, answer 503 at once
        // instead of making every request wait out the pool's timeout.
        if self.outage.is_open() {
            return Err(ApiError::Unavailable(
                "the database is unavailable; retry shortly".into(),
            ));
        }
        let pool = self.pool.clone();
        let outage = self.outage.clone();
        let metrics = self.metrics.clone();
        web::block(move || {
            let waiting = metrics::Waiting::start(&metrics.pool_waiting);
            let mut conn = db::checkout(&pool, gate.as_deref()).inspect_err(|_| outage.trip())?;
            drop(waiting);
            let result = f(&mut conn);
            // Entries whose transactions committed during `f` (see
            // `metrics::postings`), counted whether or not `f` then failed.
            metrics.add_postings(metrics::postings::take_committed());
            result
        })
        .await?
    }

    /// Runs `f` in a write transaction, queued behind this process's other
    /// SQLite writers (see `write_gate`).
    pub async fn write<T, F>(&self, f: F) -> ApiResult<T>
    where
        F: FnOnce(&mut DbConn) -> ApiResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.writing(move |conn| db::write_transaction(conn, f))
            .await
    }

    /// Runs an idempotent write (see `idempotency::run`) for `subject`'s `key`.
    pub async fn idempotent<T, F>(
        &self,
        subject: String,
        key: String,
        request_hash: String,
        status: impl idempotency::StatusFor<T> + Send + 'static,
        write: F,
    ) -> ApiResult<idempotency::StoredResponse>
    where
        F: FnOnce(&mut DbConn) -> ApiResult<T> + Send + 'static,
        T: serde::Serialize + Send + 'static,
    {
        let in_flight = self.in_flight.clone();
        let replayed = self
            .writing(move |conn| {
                idempotency::run(
                    conn,
                    &in_flight,
                    &subject,
                    &key,
                    &request_hash,
                    status,
                    write,
                )
            })
            .await?;
        if replayed.replayed {
            self.metrics.idempotent_replays.inc();
        }
        Ok(replayed)
    }
}

/// Remembers a failed attempt to reach the database for a short while.
#[derive(Debug, Clone, Default)]
pub struct Outage(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl Outage {
    /// How long requests fail fast after the pool could not reach the database.
    const HOLD: Duration = Duration::from_millis(500);

    pub fn trip(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    }

    pub fn is_open(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < Self::HOLD)
    }
}

/// Query-string and path extraction failures as problem documents.
fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let problem = query_problem(&err);
    InternalError::from_response(err, actix_web::ResponseError::error_response(&problem)).into()
}

/// A query string that does not fit its parameters, as a 422 naming the field.
pub fn query_problem(err: &actix_web::error::QueryPayloadError) -> ApiError {
    let message = err.to_string();
    let message = message
        .strip_prefix("Query deserialize error: ")
        .unwrap_or(&message)
        .to_string();
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .unwrap_or("query")
        .to_string();
    ApiError::Validation(vec![FieldError::new(field, message)])
}

fn path_error(err: actix_web::error::PathError, _req: &HttpRequest) -> actix_web::Error {
    let response =
        actix_web::ResponseError::error_response(&ApiError::NotFound("no such resource".into()));
    InternalError::from_response(err, response).into()
}

/// Registers state, extractor error handlers and every route: the whole app,
/// used by `serve` and by the tests alike.
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(state)
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::PathConfig::default().error_handler(path_error));
        routes::configure(cfg);
    }
}

async fn not_found() -> actix_web::HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound("no such route".into()))
}

/// Starts the HTTP server on `listener`.
pub fn run(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let workers = match state.settings.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let timeout = Duration::from_secs(state.settings.server.client_request_timeout_secs);
    let maintenance = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .configure(configure(state.clone()))
            .default_service(web::to(not_found))
            .wrap(middleware::from_fn(http::throttle::middleware))
            .wrap(middleware::from_fn(audit::trail::middleware))
            .wrap(middleware::from_fn(http::request_id::middleware))
            .wrap(middleware::from_fn(metrics::http::middleware))
    })
    .workers(workers)
    .client_request_timeout(timeout)
    .client_disconnect_timeout(Duration::from_secs(5))
    .max_connection_rate(256)
    .listen(listener)?
    .run();
    if maintenance.settings.jobs.enabled {
        let poll = Duration::from_secs(maintenance.settings.jobs.poll_secs);
        jobs::spawn(
            maintenance.clone(),
            scheduled_jobs(&maintenance.settings),
            poll,
        );
    }
    match db::DatabaseUrl::parse(&maintenance.settings.database.url) {
        Ok(url) => maintenance.events.start(url),
        Err(e) => tracing::error!(error = %e, "no event hub: the database URL is invalid"),
    }
    webhooks::worker::spawn(maintenance.clone());
    actix_web::rt::spawn(purge_idempotency_records(maintenance));
    Ok(server)
}

/// Every scheduled job, built from settings already validated.
pub fn scheduled_jobs(settings: &Settings) -> Vec<jobs::Job> {
    let mut jobs = Vec::new();
    match jobs::Schedule::parse(&settings.rules.evaluation_schedule) {
        Ok(schedule) => jobs.push(jobs::Job {
            name: "rules.evaluate",
            schedule,
            // Evaluating five missed slots over the same data would count
            // five breaches where there was one.
            catch_up: jobs::CatchUp::Latest,
            work: std::sync::Arc::new(rules::repo::evaluate_scheduled),
        }),
        Err(e) => {
            tracing::error!(error = %e, "rules.evaluation_schedule is invalid; rules are not scheduled")
        }
    }
    jobs.push(jobs::Job {
        name: "orders.overdue",
        // Hourly, so an exchange is announced within the hour it falls due;
        // each is announced once, whatever the slot.
        schedule: jobs::Schedule::parse("0 5 * * * *").expect("a valid fixed schedule"),
        catch_up: jobs::CatchUp::Latest,
        work: std::sync::Arc::new(orders::repo::announce_overdue),
    });
    jobs.extend(audit::jobs::scheduled(settings));
    jobs
}

/// Purges idempotency records past their retention, at start and hourly. Every
/// replica may run it: the DELETE is idempotent, and it is cheap on the
/// `created_at` index.
async fn purge_idempotency_records(state: web::Data<AppState>) {
    let retention =
        chrono::Duration::days(i64::from(state.settings.ledger.idempotency_retention_days));
    let mut every_hour = actix_web::rt::time::interval(Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match state
            .db(move |c| idempotency::purge_expired(c, retention))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency records purged"),
            Err(e) => tracing::warn!(error = %e, "purging idempotency records failed"),
        }
    }
}

/// Opens the pool, applies migrations and builds the shared state.
pub fn build_state(settings: Settings, keys: TokenKeys) -> anyhow::Result<web::Data<AppState>> {
    let url = db::DatabaseUrl::parse(&settings.database.url).map_err(anyhow::Error::msg)?;
    // Migrations first, on a dedicated connection, so a database that cannot
    // be reached at start-up is reported plainly.
    let mut conn = db::open(&url)?;
    let applied = db::run_migrations(&mut conn)?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    drop(conn);
    let audit_key = match settings.audit.signing_key.trim() {
        "" => None,
        spec => Some(audit::signing::AuditKey::parse(spec)?),
    };
    let pool = db::pool(
        &url,
        settings.database.pool_size,
        Duration::from_secs(settings.database.connect_timeout_secs),
    );
    let write_gate = matches!(url, db::DatabaseUrl::Sqlite(_))
        .then(|| std::sync::Arc::new(db::WriteGate::new(url.clone())));
    let outage = Outage::default();
    let metrics: std::sync::Arc<metrics::Metrics> = Default::default();
    let group_commit = ledger::group::GroupCommit::start(
        &settings.group_commit,
        ledger::group::Committer {
            pool: pool.clone(),
            outage: outage.clone(),
            metrics: metrics.clone(),
            write_gate: write_gate.clone(),
            postgres: matches!(url, db::DatabaseUrl::Postgres(_)),
            read_ahead: settings.group_commit.read_ahead,
        },
    );
    let trail = audit::trail::TrailWriter::start(pool.clone(), write_gate.clone(), outage.clone())?;
    Ok(web::Data::new(AppState {
        pool,
        keys,
        backend: url.backend(),
        write_gate,
        verify_second_reader: Default::default(),
        trail,
        throttle: http::throttle::FailureThrottle::new(settings.auth.max_failures_per_minute),
        outage,
        audit_key,
        events: events::Hub::new(),
        settings,
        in_flight: InFlight::default(),
        metrics,
        group_commit,
    }))
}
