//! Database access: one connection type over SQLite and PostgreSQL, the pool, the
//! embedded migrations, and the write transaction every ledger posting runs in.

pub mod copy;
pub mod schema;
pub mod types;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// A connection to whichever backend the configured URL names.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Runs `body` with `c` bound to the backend's own connection, written once
/// for both: for what diesel's `MultiConnection` cannot express (multi-row
/// inserts, boxed `sql_query` with a variable number of binds, backend-typed
/// results), where each arm would otherwise repeat the other word for word.
#[macro_export]
macro_rules! per_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConn::Postgres($c) => $body,
            $crate::db::DbConn::Sqlite($c) => $body,
        }
    };
}

/// A multi-row INSERT of `rows` (a slice) into `table`, sent as one statement
/// on either backend: diesel's `MultiConnection` cannot batch-insert, so this
/// dispatches to the backend's own connection. On SQLite the rows must not
/// use the DEFAULT keyword (derive `Insertable` with
/// `treat_none_as_default_value = false`), or diesel sends one statement a row.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        use diesel::RunQueryDsl as _;
        $crate::per_backend!($conn, |c| diesel::insert_into($table)
            .values($rows)
            .execute(c))
    }};
}

/// `WITH v(id, sub) AS (VALUES (…), …)`, placeholders numbered from `first`
/// on PostgreSQL (`$n`) or plain on SQLite (`?`): the list of `rows` rows of
/// `columns` values each that a multi-row UPDATE … FROM v takes.
pub(crate) fn values_cte(
    name: &str,
    columns: &[&str],
    rows: usize,
    postgres: bool,
    first: usize,
) -> String {
    let mut n = first;
    let mut placeholder = || {
        let p = if postgres {
            format!("${n}")
        } else {
            "?".to_string()
        };
        n += 1;
        p
    };
    let tuples: Vec<String> = (0..rows)
        .map(|_| {
            let row: Vec<String> = columns.iter().map(|_| placeholder()).collect();
            format!("({})", row.join(", "))
        })
        .collect();
    format!(
        "WITH {name}({}) AS (VALUES {})",
        columns.join(", "),
        tuples.join(", ")
    )
}

pub type Pool = r2d2::Pool<DbConnManager>;
pub type PooledConn = r2d2::PooledConnection<DbConnManager>;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Which backend a database URL names, parsed once from its scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `postgres://` or `postgresql://`, passed to libpq unchanged.
    Postgres(String),
    /// `sqlite://PATH` (relative or absolute) or `sqlite::memory:`.
    Sqlite(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(url.to_string()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "sqlite:// URL needs a file path, e.g. sqlite://data/reserve.db".into(),
                );
            }
            Ok(Self::Sqlite(path.to_string()))
        } else if url == "sqlite::memory:" {
            Ok(Self::Sqlite(":memory:".to_string()))
        } else {
            Err(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                redact(url)
            ))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// The URL with any password removed, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Opens connections for the pool; SQLite connections get the pragmas that make
/// concurrent writers safe and commits durable.
#[derive(Debug, Clone)]
pub struct DbConnManager {
    url: DatabaseUrl,
}

impl DbConnManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

pub fn establish(url: &DatabaseUrl) -> Result<DbConn, r2d2::Error> {
    match url {
        DatabaseUrl::Postgres(u) => PgConnection::establish(u)
            .map(DbConn::Postgres)
            .map_err(r2d2::Error::ConnectionError),
        DatabaseUrl::Sqlite(path) => {
            let mut conn =
                SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
            // busy_timeout first, so that even switching to WAL waits for a lock
            // instead of failing; WAL lets readers run beside the single writer;
            // FULL makes every acknowledged commit survive power loss.
            conn.batch_execute(
                "PRAGMA busy_timeout = 15000; PRAGMA journal_mode = WAL; \
                 PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
            )
            .map_err(r2d2::Error::QueryError)?;
            Ok(DbConn::Sqlite(conn))
        }
    }
}

/// Opens one connection outside the pool (migrations, CLI commands), creating
/// a SQLite file's directory when missing; errors name the database without
/// its password.
pub fn open(url: &DatabaseUrl) -> anyhow::Result<DbConn> {
    let shown = match url {
        DatabaseUrl::Sqlite(path) => {
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)?;
            }
            format!("sqlite://{path}")
        }
        DatabaseUrl::Postgres(u) => redact(u),
    };
    establish(url).map_err(|e| anyhow::anyhow!("cannot open {shown}: {e}"))
}

impl ManageConnection for DbConnManager {
    type Connection = DbConn;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConn, r2d2::Error> {
        establish(&self.url)
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), r2d2::Error> {
        conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// Builds the pool. Connections are opened lazily so the service can start (and
/// answer `/readyz` with "not ready") while the database is still down.
pub fn pool(url: &DatabaseUrl, size: u32, connect_timeout: Duration) -> Pool {
    r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(0))
        .connection_timeout(connect_timeout)
        .test_on_check_out(true)
        .build_unchecked(DbConnManager::new(url.clone()))
}

/// SQLite admits one writer at a time. The gate queues this process's writers
/// in turn (instead of SQLite's busy-wait back-off, whose sleeps gave unlucky
/// writers p99 latencies of 240–330 ms under 16 clients) and lends each the
/// one connection it keeps for writing. One connection keeps its page cache
/// and prepared statements warm: SQLite drops a connection's page cache
/// whenever another connection has written since its last transaction, so
/// writers taking turns on pooled connections each started cold.
pub struct WriteGate {
    url: DatabaseUrl,
    conn: std::sync::Mutex<Option<DbConn>>,
}

impl WriteGate {
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            conn: std::sync::Mutex::new(None),
        }
    }

    /// Waits for the turn, then opens the connection if it is not open yet
    /// or broke. A writer that panicked may have left a transaction open on
    /// it, so after a panic the connection is dropped and opened afresh.
    fn turn(&self) -> Result<std::sync::MutexGuard<'_, Option<DbConn>>, r2d2::Error> {
        let mut slot = self.conn.lock().unwrap_or_else(|poisoned| {
            self.conn.clear_poison();
            let mut slot = poisoned.into_inner();
            *slot = None;
            slot
        });
        if slot.as_mut().is_some_and(|c| c.is_broken()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(establish(&self.url)?);
        }
        Ok(slot)
    }
}

/// A connection checked out for one use: the write gate's, held in turn
/// until dropped (`WriteGate::turn` opened it), or a pooled one.
pub enum Checkout<'a> {
    Gate(std::sync::MutexGuard<'a, Option<DbConn>>),
    Pooled(PooledConn),
}

/// A connection for one use: with `gate` (SQLite writers) the gate's,
/// queued behind this process's other writers; otherwise a pooled one (all
/// readers, and PostgreSQL writers, whose row locks queue them).
pub fn checkout<'a>(pool: &Pool, gate: Option<&'a WriteGate>) -> Result<Checkout<'a>, Unreachable> {
    match gate {
        Some(g) => g
            .turn()
            .map(Checkout::Gate)
            .map_err(|e| Unreachable(e.to_string())),
        None => pool
            .get()
            .map(Checkout::Pooled)
            .map_err(|e| Unreachable(e.to_string())),
    }
}

/// No connection could be had: the pool timed out, or the gate's connection
/// could not be opened.
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::ops::Deref for Checkout<'_> {
    type Target = DbConn;
    fn deref(&self) -> &DbConn {
        match self {
            Checkout::Gate(t) => t.as_ref().expect("the turn opened the connection"),
            Checkout::Pooled(c) => c,
        }
    }
}

impl std::ops::DerefMut for Checkout<'_> {
    fn deref_mut(&mut self) -> &mut DbConn {
        match self {
            Checkout::Gate(t) => t.as_mut().expect("the turn opened the connection"),
            Checkout::Pooled(c) => c,
        }
    }
}

/// Session advisory-lock key that serialises migrations across replicas
/// starting at once on one PostgreSQL database ("reserve-migrations").
const MIGRATION_LOCK: i64 = 0x7265_7365_7276_6d67;

/// Applies every pending migration of the connection's backend. On PostgreSQL
/// the replicas that start together queue on an advisory lock, so one applies
/// the migrations and the others find nothing pending; without it they race
/// and one fails on a duplicate catalog entry. SQLite's own write lock
/// serialises migrations already.
pub fn run_migrations(conn: &mut DbConn) -> anyhow::Result<Vec<String>> {
    let applied = match conn {
        DbConn::Postgres(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let applied = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|versions| versions.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
            return applied;
        }
        DbConn::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?,
    };
    Ok(applied.iter().map(|v| v.to_string()).collect())
}

/// Serialises writers of one key until the surrounding transaction ends. On
/// PostgreSQL a transaction-scoped advisory lock; on SQLite nothing, since
/// `BEGIN IMMEDIATE` already admits one writer at a time.
pub fn lock_key_for_transaction(conn: &mut DbConn, key: i64) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Postgres(c) => {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(key)
                .execute(c)?;
            Ok(())
        }
        DbConn::Sqlite(_) => Ok(()),
    }
}

/// True when every embedded migration has been applied.
pub fn migrations_complete(conn: &mut DbConn) -> anyhow::Result<bool> {
    let pending = match conn {
        DbConn::Postgres(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|p| p.len()),
        DbConn::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|p| p.len()),
    }
    .map_err(|e| anyhow::anyhow!("cannot read migration state: {e}"))?;
    Ok(pending == 0)
}

/// Whether `conn` is inside a transaction already (diesel's own count of
/// the connection's open transactions and savepoints).
fn in_transaction(conn: &mut DbConn) -> Result<bool, diesel::result::Error> {
    let depth = crate::per_backend!(conn, |c| {
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?
    });
    Ok(depth.is_some())
}

/// Runs `f` in a transaction that may write. On SQLite it is `BEGIN IMMEDIATE`, so
/// the write lock is taken before the first read and a transaction never fails
/// half-way because another writer committed first; on PostgreSQL it is an
/// ordinary READ COMMITTED transaction whose conditional updates take row locks.
pub fn write_transaction<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    // Ledger entries staged inside count once this commits (metrics::postings).
    let scope = crate::metrics::postings::Scope::begin();
    // Events staged by `f` get their positions last, while `ledger_head` is
    // held to commit (see `events::repo`). A nested call is a savepoint of the
    // outer transaction, which seals them when it ends.
    let outermost = !in_transaction(conn)?;
    if outermost {
        crate::events::repo::begin_transaction();
    }
    let f = |c: &mut DbConn| -> Result<T, E> {
        let value = f(c)?;
        if outermost {
            crate::events::repo::seal_staged(c)?;
        }
        Ok(value)
    };
    let result = write_transaction_inner(conn, outermost, f);
    scope.finish(result.is_ok());
    result
}

fn write_transaction_inner<T, E, F>(conn: &mut DbConn, outermost: bool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        // Nested: a savepoint of the open transaction (group commit runs
        // each posting of a group in one; `ledger::group`).
        _ if !outermost => conn.transaction(f),
        DbConn::Postgres(_) => conn.transaction(f),
        DbConn::Sqlite(_) => {
            if let DbConn::Sqlite(c) = conn {
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
            }
            let result = f(conn);
            let DbConn::Sqlite(c) = conn else {
                unreachable!("the connection cannot change backend inside a transaction")
            };
            match result {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(c)?;
                    Ok(value)
                }
                Err(e) => {
                    AnsiTransactionManager::rollback_transaction(c)?;
                    Err(e)
                }
            }
        }
    }
}

/// Runs `f` in a read-only transaction that sees one snapshot throughout
/// (REPEATABLE READ on PostgreSQL; any SQLite read transaction already does).
pub fn read_transaction<T, E, F>(conn: &mut DbConn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    conn.transaction(|c| {
        if let DbConn::Postgres(_) = c {
            c.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")?;
        }
        f(c)
    })
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel::sql_types::Integer;

    use super::*;

    #[test]
    fn values_cte_numbers_postgres_placeholders_and_not_sqlites() {
        assert_eq!(
            values_cte("v", &["id", "sub"], 2, true, 1),
            "WITH v(id, sub) AS (VALUES ($1, $2), ($3, $4))"
        );
        assert_eq!(
            values_cte("s", &["a", "b", "c"], 1, true, 5),
            "WITH s(a, b, c) AS (VALUES ($5, $6, $7))"
        );
        assert_eq!(
            values_cte("v", &["id", "sub"], 2, false, 1),
            "WITH v(id, sub) AS (VALUES (?, ?), (?, ?))"
        );
    }

    #[derive(QueryableByName)]
    struct Used {
        #[diesel(sql_type = Integer)]
        used: i32,
    }

    /// The bundled SQLite must be built with the flags `.cargo/config.toml`
    /// gives it: the query planner stability guarantee, or every statement
    /// with a bound LIMIT is re-prepared at each execution; multi-thread
    /// mode and no memory counters, or every call takes a mutex.
    #[test]
    fn bundled_sqlite_is_built_with_the_configured_flags() {
        let mut conn = establish(&DatabaseUrl::Sqlite(":memory:".into())).expect("open");
        let DbConn::Sqlite(c) = &mut conn else {
            unreachable!()
        };
        for option in ["ENABLE_QPSG", "THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
            let used: Used = diesel::sql_query("SELECT sqlite_compileoption_used(?) AS used")
                .bind::<diesel::sql_types::Text, _>(option)
                .get_result(c)
                .expect("compile options");
            assert_eq!(used.used, 1, "SQLite was built without SQLITE_{option}");
        }
    }
}
