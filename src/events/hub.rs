//! One reader of new events per process, fanning them out to every open
//! stream of that process.
//!
//! On PostgreSQL the hub's own connection LISTENs on `reserve_events`, which a
//! trigger notifies whenever a commit adds ledger entries or positions events,
//! on whichever replica; on SQLite it polls. Either way it then reads by
//! position from where it last stopped, so a lost notification delays
//! nothing for longer than the fallback poll and loses nothing. Streams
//! subscribe to the broadcast; one that falls more than [`BUFFER`] events
//! behind is cut off (its client resumes with `Last-Event-ID` and reads the
//! gap from the database), so a slow client is never buffered without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::model::{Event, Filter, Position};
use super::repo;
use crate::db::{self, DatabaseUrl, DbConn};

/// Events a stream may fall behind the hub before it is cut off.
pub const BUFFER: usize = 4096;

/// How often SQLite is polled, and how often PostgreSQL is read when no
/// notification came (in case one was lost, e.g. across a reconnect).
const SQLITE_POLL: Duration = Duration::from_millis(200);
const POSTGRES_FALLBACK: Duration = Duration::from_secs(1);
/// How often the PostgreSQL connection's socket is checked for notifications
/// (a local read; no round trip to the server).
const NOTIFY_CHECK: Duration = Duration::from_millis(25);
/// Rows read per query.
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Arc<Event>>,
    clients: AtomicUsize,
}

impl Hub {
    /// A hub that reads nothing until [`Hub::start`]: tests that need no
    /// stream, and the CLI, never start it.
    pub fn new() -> Hub {
        Hub {
            inner: Arc::new(Inner {
                sender: broadcast::channel(BUFFER).0,
                clients: AtomicUsize::new(0),
            }),
        }
    }

    /// Starts the reader thread. It stops when the hub is dropped.
    pub fn start(&self, url: DatabaseUrl) {
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("events-hub".into())
            .spawn(move || run(weak, url));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the event hub; streams will see no live events");
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.sender.subscribe()
    }

    /// Open streams in this process.
    pub fn clients(&self) -> usize {
        self.inner.clients.load(Ordering::Relaxed)
    }

    /// Counts a stream while the guard lives.
    pub fn client(&self) -> ClientGuard {
        self.inner.clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard(self.inner.clone())
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

pub struct ClientGuard(Arc<Inner>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

fn run(hub: Weak<Inner>, url: DatabaseUrl) {
    let mut last: Option<Position> = None;
    let mut conn: Option<DbConn> = None;
    let mut failures = 0u32;
    loop {
        let Some(inner) = hub.upgrade() else { return };
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match connect(&url) {
                Ok(c) => {
                    failures = 0;
                    conn.insert(c)
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "event hub cannot reach the database; retrying");
                    }
                    drop(inner);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
        };
        match read_new(c, &mut last, &inner.sender) {
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, "event hub lost its connection; reconnecting");
                conn = None;
                continue;
            }
        }
        drop(inner);
        if wait(c).is_err() {
            conn = None;
        }
    }
}

fn connect(url: &DatabaseUrl) -> anyhow::Result<DbConn> {
    use diesel::connection::SimpleConnection;
    let mut c = db::establish(url)?;
    if let DbConn::Postgres(_) = c {
        c.batch_execute("LISTEN reserve_events")?;
    }
    Ok(c)
}

/// Broadcasts every event committed after `last`; the first call only finds
/// where the end is.
fn read_new(
    conn: &mut DbConn,
    last: &mut Option<Position>,
    sender: &broadcast::Sender<Arc<Event>>,
) -> anyhow::Result<()> {
    let Some(from) = *last else {
        *last = Some(repo::end(conn)?);
        return Ok(());
    };
    let mut from = from;
    loop {
        let batch = repo::read_after(conn, from, BATCH, &Filter::default())?;
        let n = batch.len();
        for e in batch {
            from = e.position;
            // No receivers is fine: nobody is listening in this process.
            let _ = sender.send(Arc::new(e));
        }
        *last = Some(from);
        if (n as i64) < BATCH {
            return Ok(());
        }
    }
}

/// Sleeps until a notification arrives (PostgreSQL) or the poll interval
/// passes.
fn wait(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(_) => {
            std::thread::sleep(SQLITE_POLL);
            Ok(())
        }
        DbConn::Postgres(pg) => {
            let until = Instant::now() + POSTGRES_FALLBACK;
            while Instant::now() < until {
                let mut woken = false;
                for n in pg.notifications_iter() {
                    n?;
                    woken = true;
                }
                if woken {
                    return Ok(());
                }
                std::thread::sleep(NOTIFY_CHECK);
            }
            Ok(())
        }
    }
}
