//! Group commit (issue 11, scenario 10): postings that arrive within
//! `group_commit.window_us` of each other share one database transaction, so
//! the ledger pays one commit (one WAL flush) and one hold of `ledger_head`
//! per group rather than per posting. Off when the window is 0. A group
//! closes before its window ends once nothing is queued and no posting is on
//! its way to the queue (`gather`): a lone posting pays no wait, and under
//! load a group takes what is in flight without sleeping out the window.
//!
//! How a group runs, on one committer thread with one pooled connection:
//! 1. Each request's handler has already done what it does without grouping
//!    before its transaction: the idempotency fast path (a stored response is
//!    replayed at once) and the in-process claim of its key.
//! 2. BEGIN (IMMEDIATE on SQLite). On PostgreSQL the group then takes every
//!    lock its members will take, in the global order of `ledger::post`:
//!    the members' idempotency keys (advisory, sorted), their depot rows,
//!    their stockpile rows, their element rows, and `ledger_head` last — each
//!    set by one statement in sorted order, all in one round trip. The group
//!    takes `ledger_head` once; after that no member waits for any lock.
//! 3. Each member runs `idempotency::run_claimed` → `ledger::post` exactly as
//!    it runs alone, inside a savepoint (a nested `write_transaction`). A
//!    member refused for stock, capacity, drawdown, floor, ceiling, period or
//!    idempotency rolls back alone and gets the error it would have had
//!    alone; its idempotency record is written in the savepoint that holds
//!    its entries. A later member with the same key replays the earlier
//!    one's response (or is refused 422 for another body), as a sequential
//!    request would. Sequences stay gapless: a rolled-back member's advance
//!    of `ledger_head` rolls back with it.
//! 4. COMMIT; only then is any member answered, so a crash loses only
//!    unacknowledged requests. If the group fails as a whole (its commit, the
//!    connection, a lock), no member's work is in the ledger and every member
//!    gets 503, to retry with the same Idempotency-Key.
//!
//! Why step 2 (deadlocks). Members run one after another in one transaction.
//! Locking as they go, the group would hold member 1's stockpile and
//! `ledger_head` while member 2 waits for a stockpile that a posting on
//! another replica holds while it waits for `ledger_head`: a cycle, and two
//! groups on two replicas could each hold a row the other's next member
//! wants. Taking the union of the members' locks up front, in the one global
//! order, makes the group one more transaction obeying that order, whichever
//! replica or path (order execution, depot close, a period lock) it meets. A
//! member whose stockpile does not exist yet would create it, taking a lock
//! on the new key that cannot be taken ahead; it runs alone, as an ordinary
//! posting, right after the group. SQLite admits one writer at a time (BEGIN
//! IMMEDIATE), so there the group needs no locks of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tokio::sync::oneshot;

use super::model::StockpileKey;
use super::post::Known;
use crate::config::GroupCommitSettings;
use crate::db::schema::{depots, ledger_head, stockpiles};
use crate::db::{write_transaction, DbConn, Pool};
use crate::error::{ApiError, ApiResult};
use crate::idempotency::{self, InFlightGuard, KeyCheck, StoredResponse};
use crate::metrics::{self, Metrics};

/// What a member writes: `ledger::post` (`post_in`, given what the group
/// read for its members on PostgreSQL) and the response value, run inside
/// its savepoint.
pub type Work =
    Box<dyn FnOnce(&mut DbConn, Option<&mut Known>) -> ApiResult<serde_json::Value> + Send>;

/// One posting request, as handed to the committer.
pub struct Request {
    pub subject: String,
    pub key: String,
    pub request_hash: String,
    /// Every stockpile the posting moves: the rows the group locks for it.
    pub stockpiles: Vec<StockpileKey>,
    pub work: Work,
    /// The in-process claim of the key, held until the member is answered.
    pub claim: Option<InFlightGuard>,
}

impl Request {
    /// Its work as one claimed write (`idempotency::run_claimed`): a
    /// savepoint of the group's transaction, or a transaction of its own
    /// when it runs alone. `check`: what the group did about its key.
    fn run(
        self,
        conn: &mut DbConn,
        check: KeyCheck,
        known: Option<&mut Known>,
    ) -> ApiResult<StoredResponse> {
        let work = self.work;
        idempotency::run_claimed(
            conn,
            check,
            &self.subject,
            &self.key,
            &self.request_hash,
            StatusCode::CREATED,
            |c| work(c, known),
        )
    }
}

struct Queued {
    request: Request,
    arrived: Instant,
    reply: oneshot::Sender<ApiResult<StoredResponse>>,
}

/// The handle requests submit to; the committer thread ends when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Queued>,
    /// Postings on their way to the queue (in `post`, not yet submitted).
    coming: Arc<AtomicUsize>,
}

/// One posting counted in `GroupCommit::coming` until it is queued or
/// answered without a group (a replay, an error).
pub struct OnTheWay(Arc<AtomicUsize>);

impl Drop for OnTheWay {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued")
            .field("key", &self.request.key)
            .finish()
    }
}

/// What the committer needs of the app.
pub struct Committer {
    pub pool: Pool,
    pub outage: crate::Outage,
    pub metrics: Arc<Metrics>,
    /// SQLite's write gate (`AppState::write_gate`), held for a whole group.
    pub write_gate: Option<Arc<crate::db::WriteGate>>,
    pub postgres: bool,
    /// `group_commit.read_ahead` (PostgreSQL): `read_ahead` for the members.
    pub read_ahead: bool,
}

impl GroupCommit {
    /// Starts the committer thread; `None` when the window is 0 (off).
    pub fn start(settings: &GroupCommitSettings, committer: Committer) -> Option<GroupCommit> {
        if settings.window_us == 0 {
            return None;
        }
        let window = Duration::from_micros(settings.window_us);
        let max = settings.max_members.max(1);
        let (queue, incoming) = mpsc::channel();
        let coming = Arc::new(AtomicUsize::new(0));
        let watched = coming.clone();
        let spawned = std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || committer.run(incoming, &watched, window, max));
        match spawned {
            Ok(_) => Some(GroupCommit { queue, coming }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the group committer; postings commit alone");
                None
            }
        }
    }

    /// Counts a posting as on its way to the queue until the guard is
    /// dropped: a group waits for it (within the window) rather than close.
    pub fn on_the_way(&self) -> OnTheWay {
        self.coming.fetch_add(1, Ordering::SeqCst);
        OnTheWay(self.coming.clone())
    }

    /// Queues `request` for the next group and waits for its answer, which
    /// comes after the group's commit. `way` is released only once the
    /// request is in the queue, so the committer never sees neither.
    pub async fn submit(&self, request: Request, way: OnTheWay) -> ApiResult<StoredResponse> {
        let (reply, answer) = oneshot::channel();
        let sent = self.queue.send(Queued {
            request,
            arrived: Instant::now(),
            reply,
        });
        drop(way);
        sent.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> ApiError {
    ApiError::Unavailable(
        "the posting was not committed; retry with the same Idempotency-Key".into(),
    )
}

impl Committer {
    fn run(
        self,
        incoming: mpsc::Receiver<Queued>,
        coming: &AtomicUsize,
        window: Duration,
        max: usize,
    ) {
        while let Ok(first) = incoming.recv() {
            let group = gather(first, &incoming, coming, window, max);
            // A panic (a bug) answers this group 503, as a panicking blocking
            // call would, and leaves the committer serving the next one.
            let run = std::panic::AssertUnwindSafe(|| self.run_group(group));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("a group commit panicked; its members were answered 503");
            }
        }
    }

    fn run_group(&self, group: Vec<Queued>) {
        let mut replies = Vec::with_capacity(group.len());
        let mut requests = Vec::with_capacity(group.len());
        for q in group {
            replies.push(q.reply);
            requests.push(q.request);
        }
        let claims: Vec<Option<InFlightGuard>> =
            requests.iter_mut().map(|r| r.claim.take()).collect();
        let answers = self.answer(requests);
        for (reply, answer) in replies.into_iter().zip(answers) {
            // The client may have gone; its posting stands regardless.
            let _ = reply.send(answer);
        }
        drop(claims);
    }

    /// Runs the group and the members that must run alone; one answer per
    /// request, in order.
    fn answer(&self, requests: Vec<Request>) -> Vec<ApiResult<StoredResponse>> {
        let n = requests.len();
        let mut conn = match crate::db::checkout(&self.pool, self.write_gate.as_deref()) {
            Ok(c) => c,
            Err(_) => {
                self.outage.trip();
                return (0..n)
                    .map(|_| Err(ApiError::Unavailable("the database is unavailable".into())))
                    .collect();
            }
        };
        let mut answers: Vec<Option<ApiResult<StoredResponse>>> = (0..n).map(|_| None).collect();
        let resolved = if self.postgres {
            match resolve(&mut conn, &requests) {
                Ok(r) => Some(r),
                Err(e) => {
                    let e = ApiError::from(e);
                    return (0..n).map(|_| Err(group_failed(&e))).collect();
                }
            }
        } else {
            None
        };
        let mut members = Vec::new();
        let mut alone = Vec::new();
        for (i, r) in requests.into_iter().enumerate() {
            let known = resolved
                .as_ref()
                .is_none_or(|ids| r.stockpiles.iter().all(|k| ids.contains_key(k)));
            if known {
                members.push((i, r));
            } else {
                alone.push((i, r));
            }
        }
        if !members.is_empty() {
            let count = members.len() as u64;
            let locks = resolved.map(|ids| (Locks::of(&members, &ids), ids));
            let mut outcomes = Vec::with_capacity(members.len());
            let indices: Vec<usize> = members.iter().map(|(i, _)| *i).collect();
            let committed = write_transaction(&mut conn, |c| -> ApiResult<()> {
                if let Some((locks, _)) = &locks {
                    locks.take(c)?;
                }
                // SQLite (and PostgreSQL without read-ahead): nothing read
                // ahead, every member runs as it runs alone, in its savepoint.
                let mut ahead = match &locks {
                    Some((_, ids)) if self.read_ahead => Some(read_ahead(c, &members, ids)?),
                    _ => None,
                };
                let start = ahead.as_ref().map_or(0, |(k, _)| k.moving.last_sequence);
                let mut ran = BTreeSet::new();
                for (i, r) in members {
                    let Some((known, recorded)) = &mut ahead else {
                        outcomes.push((i, r.run(c, KeyCheck::LockAndLook, None)));
                        continue;
                    };
                    let pair = (r.subject.clone(), r.key.clone());
                    known.moving.begin();
                    let outcome = if !ran.insert(pair.clone()) {
                        // The key's earlier member may have stored a response
                        // in this transaction: look, as a later request would.
                        r.run(c, KeyCheck::LockAndLook, Some(&mut *known))
                    } else if let Some(found) = recorded.remove(&pair) {
                        idempotency::replay(found, &r.request_hash)
                    } else {
                        r.run(c, KeyCheck::LockedUnrecorded, Some(&mut *known))
                    };
                    // Only a member that wrote and released its savepoint
                    // keeps what it advanced (a refusal rolled its rows back).
                    if !matches!(&outcome, Ok(s) if !s.replayed) {
                        known.moving.undo();
                    }
                    outcomes.push((i, outcome));
                }
                let advanced = ahead.filter(|(k, _)| k.moving.last_sequence != start);
                if let Some((known, _)) = advanced {
                    diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
                        .set(ledger_head::last_sequence.eq(known.moving.last_sequence))
                        .execute(c)?;
                }
                Ok(())
            });
            self.metrics
                .add_postings(metrics::postings::take_committed());
            match committed {
                Ok(()) => {
                    self.metrics.group_commit_groups.inc();
                    self.metrics.group_commit_members.add(count);
                    for (i, outcome) in outcomes {
                        answers[i] = Some(outcome);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, members = count, "a group of postings failed to commit");
                    for i in indices {
                        answers[i] = Some(Err(group_failed(&e)));
                    }
                }
            }
        }
        for (i, r) in alone {
            answers[i] = Some(r.run(&mut conn, KeyCheck::LockAndLook, None));
            self.metrics
                .add_postings(metrics::postings::take_committed());
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(stopped())))
            .collect()
    }
}

/// Slice of the window the committer waits before it looks again whether
/// any posting is still on its way.
const LOOK_AGAIN: Duration = Duration::from_micros(250);

/// The members of the group `first` opens: everything already queued, then
/// whatever arrives within the window, which runs from `first`'s arrival
/// (requests that queued while the previous group committed go at once).
/// The group closes early when nothing is queued and no posting is on its
/// way (`coming`): a lone posting pays no window, and under load the group
/// closes as soon as the postings in flight have joined it.
fn gather(
    first: Queued,
    incoming: &mpsc::Receiver<Queued>,
    coming: &AtomicUsize,
    window: Duration,
    max: usize,
) -> Vec<Queued> {
    let deadline = first.arrived + window;
    let mut group = vec![first];
    while group.len() < max {
        if let Ok(q) = incoming.try_recv() {
            group.push(q);
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || coming.load(Ordering::SeqCst) == 0 {
            break;
        }
        if let Ok(q) = incoming.recv_timeout(left.min(LOOK_AGAIN)) {
            group.push(q);
        }
    }
    group
}

/// The answer of every member of a group that did not commit.
fn group_failed(e: &ApiError) -> ApiError {
    match e {
        ApiError::Unavailable(m) => ApiError::Unavailable(m.clone()),
        _ => ApiError::Unavailable(
            "the group of postings this one was in could not commit; retry with the same Idempotency-Key"
                .into(),
        ),
    }
}

/// Stockpile and depot ids of the members' stockpiles that exist, by key,
/// read in one statement.
fn resolve(
    conn: &mut DbConn,
    requests: &[Request],
) -> QueryResult<BTreeMap<StockpileKey, (i64, i64)>> {
    let wanted: BTreeSet<&StockpileKey> = requests.iter().flat_map(|r| &r.stockpiles).collect();
    let codes: Vec<&str> = wanted
        .iter()
        .map(|k| k.depot.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let elements: Vec<&str> = wanted
        .iter()
        .map(|k| k.element.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows: Vec<(i64, i64, String, String, String, String)> = stockpiles::table
        .inner_join(depots::table)
        .filter(depots::code.eq_any(codes))
        .filter(stockpiles::element.eq_any(elements))
        .select((
            stockpiles::id,
            depots::id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
        .load(conn)?;
    let by_name: BTreeMap<(String, String, String, String), (i64, i64)> = rows
        .into_iter()
        .map(|(s, d, code, element, form, grade)| ((code, element, form, grade), (s, d)))
        .collect();
    Ok(wanted
        .into_iter()
        .filter_map(|k| {
            let name = (
                k.depot.as_str().to_string(),
                k.element.as_str().to_string(),
                k.form.as_str().to_string(),
                k.grade.as_str().to_string(),
            );
            by_name.get(&name).map(|ids| (k.clone(), *ids))
        })
        .collect())
}

/// Stored responses by (subject, key), as `idempotency::lookup_all` reads them.
type Recorded = BTreeMap<(String, String), idempotency::Stored>;

/// What the members would each read for themselves under the locks the
/// group took ahead (PostgreSQL), read once for all of them: the stored
/// responses of their keys, their depot rows, stockpile ids (already
/// resolved), the newest entry of each stockpile, the elements' floors and
/// ceilings, the period lock and `ledger_head`. Six statements a group
/// rather than about nine a member (`ledger::post::Known`).
fn read_ahead(
    conn: &mut DbConn,
    members: &[(usize, Request)],
    ids: &BTreeMap<StockpileKey, (i64, i64)>,
) -> ApiResult<(Known, Recorded)> {
    // The members' stockpiles only: those the group locked.
    let ids: BTreeMap<&StockpileKey, (i64, i64)> = members
        .iter()
        .flat_map(|(_, r)| &r.stockpiles)
        .filter_map(|k| ids.get(k).map(|v| (k, *v)))
        .collect();
    let pairs: BTreeSet<(String, String)> = members
        .iter()
        .map(|(_, r)| (r.subject.clone(), r.key.clone()))
        .collect();
    let recorded = idempotency::lookup_all(conn, &pairs)?;
    let depot_ids: Vec<i64> = ids
        .values()
        .map(|(_, d)| *d)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let depots = crate::depots::repo::by_ids(conn, &depot_ids)?
        .into_iter()
        .map(|d| (d.code.clone(), d))
        .collect();
    let stockpile_ids: Vec<i64> = ids
        .values()
        .map(|(s, _)| *s)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let newest = super::post::newest_entries(conn, &stockpile_ids)?;
    let elements: Vec<String> = ids
        .keys()
        .map(|k| k.element.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let policies = crate::policy::repo::current_of(conn, &elements)?;
    let floors = elements
        .iter()
        .map(|e| (e.clone(), policies.find(e).and_then(|p| p.reserve_floor_g)))
        .collect();
    let ceilings = super::limits::ceilings_of(conn, &elements)?;
    let period_lock = crate::periods::repo::current_lock(conn)?;
    let last_sequence = ledger_head::table
        .filter(ledger_head::id.eq(1))
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let known = Known {
        depots,
        stockpiles: ids.iter().map(|(k, (s, _))| ((*k).clone(), *s)).collect(),
        floors,
        ceilings,
        period_lock,
        moving: super::post::Moving::new(newest, last_sequence),
    };
    Ok((known, recorded))
}

/// Every lock a group's members take (PostgreSQL), in the order they are
/// taken: ids and symbols sorted, so every group and every posting agree.
struct Locks {
    keys: BTreeSet<i64>,
    depots: BTreeSet<i64>,
    stockpiles: BTreeSet<i64>,
    elements: BTreeSet<&'static str>,
}

impl Locks {
    fn of(members: &[(usize, Request)], ids: &BTreeMap<StockpileKey, (i64, i64)>) -> Locks {
        let mut locks = Locks {
            keys: BTreeSet::new(),
            depots: BTreeSet::new(),
            stockpiles: BTreeSet::new(),
            elements: BTreeSet::new(),
        };
        for (_, r) in members {
            locks.keys.insert(idempotency::key_lock(&r.subject, &r.key));
            for k in &r.stockpiles {
                if let Some((s, d)) = ids.get(k) {
                    locks.stockpiles.insert(*s);
                    locks.depots.insert(*d);
                }
                locks.elements.insert(k.element.as_str());
            }
        }
        locks
    }

    /// Takes them, in one round trip. Every value is an integer or an element
    /// symbol (one of 17 fixed ASCII words), so the statements are safe to
    /// write out; `FOR NO KEY UPDATE` is the lock the postings' own UPDATEs take.
    fn take(&self, conn: &mut DbConn) -> QueryResult<()> {
        let mut sql = String::new();
        for k in &self.keys {
            let _ = write!(sql, "SELECT pg_advisory_xact_lock({k});");
        }
        let list =
            |ids: &BTreeSet<i64>| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        if !self.depots.is_empty() {
            let _ = write!(
                sql,
                "SELECT 1 FROM depots WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE;",
                list(&self.depots)
            );
        }
        if !self.stockpiles.is_empty() {
            let _ = write!(
                sql,
                "SELECT 1 FROM stockpiles WHERE id IN ({}) ORDER BY id FOR NO KEY UPDATE;",
                list(&self.stockpiles)
            );
        }
        // One statement per element, in the byte order `ledger::limits`
        // locks them in (a collation could order them otherwise).
        for e in self
            .elements
            .iter()
            .filter(|e| e.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            let _ = write!(
                sql,
                "SELECT 1 FROM element_policies WHERE element = '{e}' FOR NO KEY UPDATE;"
            );
        }
        sql.push_str("UPDATE ledger_head SET last_sequence = last_sequence WHERE id = 1;");
        conn.batch_execute(&sql)
    }
}

/// Runs one posting through group commit: the idempotency fast path and the
/// in-process claim here, as `AppState::idempotent` does, then the group.
pub async fn post(
    state: &crate::AppState,
    group: &GroupCommit,
    mut request: Request,
) -> ApiResult<StoredResponse> {
    let (subject, key, hash) = (
        request.subject.clone(),
        request.key.clone(),
        request.request_hash.clone(),
    );
    let way = group.on_the_way();
    // Fast path: a replay needs no group.
    let found = state
        .db(move |c| idempotency::lookup(c, &subject, &key, &hash))
        .await?;
    let stored = match found {
        Some(found) => found,
        None => {
            request.claim = Some(state.in_flight.claim(&request.subject, &request.key)?);
            group.submit(request, way).await?
        }
    };
    if stored.replayed {
        state.metrics.idempotent_replays.inc();
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(key: &str) -> Queued {
        let (reply, _) = oneshot::channel();
        Queued {
            request: Request {
                subject: "s".into(),
                key: key.into(),
                request_hash: "h".into(),
                stockpiles: Vec::new(),
                work: Box::new(|_, _| Ok(serde_json::Value::Null)),
                claim: None,
            },
            arrived: Instant::now(),
            reply,
        }
    }

    fn keys(group: &[Queued]) -> Vec<&str> {
        group.iter().map(|q| q.request.key.as_str()).collect()
    }

    // The window is a minute: the tests finish long before it unless the
    // group waits for it, which they would then show by hanging.
    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_lone_posting_closes_its_group_at_once() {
        let (_tx, rx) = mpsc::channel();
        let coming = AtomicUsize::new(0);
        let started = Instant::now();
        let group = gather(queued("a"), &rx, &coming, MINUTE, 64);
        assert_eq!(keys(&group), ["a"]);
        assert!(started.elapsed() < MINUTE / 2);
    }

    #[test]
    fn postings_already_queued_join_without_a_wait() {
        let (tx, rx) = mpsc::channel();
        for k in ["b", "c", "d"] {
            tx.send(queued(k)).unwrap();
        }
        let coming = AtomicUsize::new(0);
        let group = gather(queued("a"), &rx, &coming, MINUTE, 3);
        assert_eq!(keys(&group), ["a", "b", "c"], "at most max_members");
        let group = gather(rx.recv().unwrap(), &rx, &coming, MINUTE, 3);
        assert_eq!(keys(&group), ["d"]);
    }

    #[test]
    fn a_group_waits_for_a_posting_on_its_way_then_closes() {
        let (tx, rx) = mpsc::channel();
        let coming = Arc::new(AtomicUsize::new(1));
        let late = {
            let coming = coming.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                tx.send(queued("b")).unwrap();
                coming.fetch_sub(1, Ordering::SeqCst);
                // The sender stays open: only `coming` can close the group.
                std::thread::sleep(Duration::from_millis(200));
                drop(tx);
            })
        };
        let started = Instant::now();
        let group = gather(queued("a"), &rx, &coming, MINUTE, 64);
        assert_eq!(keys(&group), ["a", "b"]);
        assert!(started.elapsed() < MINUTE / 2);
        late.join().unwrap();
    }

    #[test]
    fn the_window_bounds_the_wait_for_a_posting_that_never_comes() {
        let (_tx, rx) = mpsc::channel();
        let coming = AtomicUsize::new(1);
        let window = Duration::from_millis(20);
        let started = Instant::now();
        let group = gather(queued("a"), &rx, &coming, window, 64);
        assert_eq!(keys(&group), ["a"]);
        assert!(started.elapsed() >= window);
    }
}
