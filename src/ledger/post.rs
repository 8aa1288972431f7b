//! The one way into the ledger. Acquisitions, releases, transfers and batches
//! (and, later, order executions, loan returns and adjustments) all call `post`,
//! inside a write transaction. It enforces invariants 1–3 and 6–7 of DESIGN.md:
//!
//! 1. Locks in one global order so concurrent postings cannot deadlock: new
//!    stockpile rows (by key), then depot rows (by id), then stockpile rows (by
//!    id), then element rows (by symbol), then the single `ledger_head` row,
//!    last, just before commit.
//! 2. Each lock is a conditional UPDATE that checks the invariant as it takes the
//!    lock (stock never below zero, depot never over capacity), so no check can
//!    go stale between reading and writing.
//! 3. Sequence numbers come from `ledger_head` while it is held to commit, so
//!    sequence order is commit order, sequences have no gaps, and a cursor over
//!    the ledger never skips a row.
//! 4. Hashes chain per stockpile off the head read under the stockpile's lock,
//!    and commit to the stockpile's identity (depot, element, form, grade).
//! 5. Element rows (`element_policies`) are locked after the stockpiles, in
//!    symbol order: under them the reserve floor and the annual ceilings are
//!    checked against totals no other posting can change meanwhile.
//! 6. Every value a decision rests on is read under the lock that keeps it
//!    stable until commit: a depot's status and drawdown limit come back from
//!    the statement that locks the depot row; the period lock is read after
//!    `ledger_head` is held, which setting a period lock takes too; and one
//!    instant, taken under the locks, dates undated legs and `recorded_at`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::chain::{StockpileIdentity, GENESIS};
use super::model::{first_negative_as_of, running_balances, utc_day, Leg, StockpileKey};
use super::repo::{EntryRecord, EntryRow};
use crate::config::LedgerSettings;
use crate::db::schema::{
    depots, ledger_balances as lb, ledger_entries as le, ledger_head, stockpiles,
};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::depots::model::DepotStatus;
use crate::depots::repo::{self as depot_repo, DepotRow};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::periods;

/// Who posts, under which key, and what.
pub struct Posting<'a> {
    pub actor: &'a str,
    pub idempotency_key: &'a str,
    pub legs: Vec<Leg>,
    /// Set when the posting executes or returns a release order.
    pub order: Option<OrderLink>,
}

/// What a posting does for a release order: every entry references the order,
/// an execution consumes the order's reservation on its stockpile in the same
/// statement that takes the stockpile's lock, and an emergency drawdown may go
/// below the reserve floor.
#[derive(Debug, Clone, Copy)]
pub struct OrderLink {
    pub order_id: i64,
    /// Grams of the order's reservation this posting consumes (on the
    /// stockpile of its outflow leg).
    pub consumes_reserved_g: i64,
    pub floor_exempt: bool,
}

/// What a group of postings (`ledger::group`, PostgreSQL) read once for all
/// its members, after taking every lock they need: values a member would
/// otherwise read itself, statement by statement, under those same locks.
/// `post_in` takes them from here rather than from the database.
///
/// The depot rows, floors, ceilings and the period lock cannot change while
/// the group holds its locks (depot, element and `ledger_head` rows; only
/// `id` and `code` of a depot row are used, its status and on-hand are
/// re-checked by the UPDATE that moves it). What members change themselves
/// is in `moving`, where the group undoes a member that does not commit.
#[derive(Debug, Default)]
pub struct Known {
    pub depots: BTreeMap<String, DepotRow>,
    pub stockpiles: BTreeMap<StockpileKey, i64>,
    /// Reserve floor by element (`None`: no floor); every element of the
    /// group is a key.
    pub floors: BTreeMap<String, Option<i64>>,
    /// Ceiling rows of the group's elements: (element, fiscal year) →
    /// (acquire max, dispose max).
    pub ceilings: BTreeMap<(String, i32), (i64, i64)>,
    pub period_lock: Option<DateTime<Utc>>,
    pub moving: Moving,
}

/// The part of `Known` the members' postings advance.
#[derive(Debug, Default)]
pub struct Moving {
    /// The newest `occurred_at` of each of the group's stockpiles (`None`:
    /// no entry yet), as its next member would read it.
    pub newest: BTreeMap<i64, Option<chrono::NaiveDateTime>>,
    /// `ledger_head.last_sequence` as the next member would advance it; the
    /// group writes it to `ledger_head` once, before its COMMIT.
    pub last_sequence: i64,
    /// What the running member changed, for `undo`: `last_sequence` at its
    /// `begin` and the `newest` values it replaced, oldest first. A journal
    /// rather than a copy per member: a member touches few stockpiles.
    begun_at: i64,
    replaced: Vec<(i64, Option<Option<chrono::NaiveDateTime>>)>,
}

impl Moving {
    pub fn new(newest: BTreeMap<i64, Option<chrono::NaiveDateTime>>, last_sequence: i64) -> Self {
        Moving {
            newest,
            last_sequence,
            begun_at: last_sequence,
            replaced: Vec::new(),
        }
    }

    /// Starts a member: `undo` puts back what it changes from here.
    pub fn begin(&mut self) {
        self.begun_at = self.last_sequence;
        self.replaced.clear();
    }

    /// Undoes the member since `begin` (its savepoint rolled back).
    pub fn undo(&mut self) {
        self.last_sequence = self.begun_at;
        for (id, old) in self.replaced.drain(..).rev() {
            match old {
                Some(v) => self.newest.insert(id, v),
                None => self.newest.remove(&id),
            };
        }
    }

    /// The member wrote an entry of `stockpile` at `at`.
    fn wrote(&mut self, stockpile: i64, at: chrono::NaiveDateTime) {
        let old = self.newest.get(&stockpile).copied();
        self.replaced.push((stockpile, old));
        self.newest.insert(stockpile, old.flatten().max(Some(at)));
    }
}

/// Posts every leg or none. Must run inside `db::write_transaction`.
pub fn post(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    posting: Posting<'_>,
) -> ApiResult<Vec<EntryRecord>> {
    post_in(conn, settings, posting, None)
}

/// `post`, taking what a group read for it (`known`) instead of reading it.
/// Without `known` it sends exactly the statements of `post`.
pub fn post_in(
    conn: &mut DbConn,
    settings: &LedgerSettings,
    posting: Posting<'_>,
    mut known: Option<&mut Known>,
) -> ApiResult<Vec<EntryRecord>> {
    let now = types::now();
    let mut legs = posting.legs;
    if legs.is_empty() {
        return Err(ApiError::field("entries", "nothing to post"));
    }
    if let Err(prefix) = super::model::check_transfer_pairs(&legs) {
        return Err(ApiError::field(
            format!("{prefix}to_depot"),
            "a transfer moves one quantity of one element, form and grade from one depot to another",
        ));
    }
    check_future(settings, &legs, now)?;
    let depots = match known.as_deref().and_then(|k| known_depots(k, &legs)) {
        Some(d) => d,
        None => load_depots(conn, &legs)?,
    };
    let stockpile_ids = match known.as_deref().and_then(|k| known_stockpiles(k, &legs)) {
        Some(ids) => ids,
        None => resolve_stockpiles(conn, &legs, &depots, now)?,
    };
    let leg_stockpiles: Vec<i64> = legs.iter().map(|l| stockpile_ids[&l.key]).collect();

    let locked_depots = lock_depots(conn, &legs, &depots, &stockpile_ids)?;
    let stockpile_heads = lock_stockpiles(conn, &legs, &leg_stockpiles, posting.order.as_ref())?;
    let newest = known.as_deref().map(|k| &k.moving.newest);
    let instant = date_undated_legs(conn, &mut legs, &leg_stockpiles, newest)?;
    check_drawdown(conn, &legs, &locked_depots)?;
    check_history(conn, &legs, &leg_stockpiles, &stockpile_heads)?;
    let floor_exempt = posting.order.is_some_and(|o| o.floor_exempt);
    super::limits::check(conn, settings, &legs, floor_exempt, known.as_deref())?;

    // Last lock of the transaction: the global sequence. A group holds it
    // already and counts its members' sequences itself (`Moving`).
    let n = legs.len() as i64;
    let last: i64 = match known.as_deref_mut() {
        Some(k) => {
            k.moving.last_sequence += n;
            k.moving.last_sequence
        }
        None => diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
            .set(ledger_head::last_sequence.eq(ledger_head::last_sequence + n))
            .returning(ledger_head::last_sequence)
            .get_result(conn)?,
    };
    let first = last - n + 1;
    // Setting a period lock takes `ledger_head` too, so the lock read here
    // (or by the group, under its hold of `ledger_head`) cannot change
    // before this posting commits.
    let lock = match known.as_deref() {
        Some(k) => k.period_lock,
        None => periods::repo::current_lock(conn)?,
    };
    check_period_lock(lock, &legs)?;

    let movement_id = uuid::Uuid::new_v4().to_string();
    let recorded_at = types::to_db(instant);
    let mut heads: BTreeMap<i64, String> = stockpile_heads
        .iter()
        .map(|(id, h)| (*id, h.head_hash.clone()))
        .collect();
    let mut balances: BTreeMap<i64, std::vec::IntoIter<i64>> = stockpile_heads
        .iter()
        .map(|(id, h)| (*id, h.balances.clone().into_iter()))
        .collect();
    let newest = known.as_deref().map(|k| &k.moving.newest);
    let mut balance_index =
        BalanceIndex::new(conn, &legs, &leg_stockpiles, &stockpile_heads, newest)?;
    let mut records = Vec::with_capacity(legs.len());
    for (i, leg) in legs.into_iter().enumerate() {
        let stockpile_id = leg_stockpiles[i];
        let prev_hash = heads[&stockpile_id].clone();
        let balance_after = balances
            .get_mut(&stockpile_id)
            .and_then(|b| b.next())
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("balance missing for leg {i}")))?;
        let mut row = EntryRow {
            sequence: first + i as i64,
            stockpile_id,
            kind: leg.kind.as_str().to_string(),
            quantity_g: leg.quantity.0,
            balance_after_g: balance_after,
            occurred_at: types::to_db(leg.occurred_at),
            recorded_at,
            actor: posting.actor.to_string(),
            reference: leg.details.reference,
            counterparty: leg.details.counterparty,
            origin_country: leg.details.origin_country,
            unit_price_micros: leg.details.unit_price.map(|p| p.0),
            currency: leg.details.currency,
            note: leg.details.note,
            idempotency_key: posting.idempotency_key.to_string(),
            movement_id: movement_id.clone(),
            order_id: posting.order.map(|o| o.order_id),
            prev_hash,
            hash: String::new(),
        };
        let identity = StockpileIdentity {
            depot: leg.key.depot.as_str(),
            element: leg.key.element.as_str(),
            form: leg.key.form.as_str(),
            grade: leg.key.grade.as_str(),
        };
        row.hash = row.chained(identity).hash(&row.prev_hash);
        heads.insert(stockpile_id, row.hash.clone());
        balance_index.add(conn, &row)?;
        crate::metrics::postings::stage(leg.kind);
        records.push(EntryRecord {
            entry: row,
            depot: leg.key.depot.to_string(),
            element: leg.key.element.to_string(),
            form: leg.key.form.as_str().to_string(),
            grade: leg.key.grade.to_string(),
        });
    }
    // One multi-row INSERT per chunk rather than one statement per entry: a
    // batch of 1,000 entries was 1,000 round trips (issue 11, scenario 3).
    // Chunks keep the bind parameters (19 a row) under both backends' limits.
    for chunk in records.chunks(INSERT_CHUNK) {
        insert_entries(conn, chunk)?;
    }
    balance_index.flush(conn)?;
    let heads: Vec<(i64, String, i64)> = heads
        .into_iter()
        .map(|(id, head)| {
            let added = leg_stockpiles.iter().filter(|s| **s == id).count() as i64;
            (id, head, added)
        })
        .collect();
    for chunk in heads.chunks(INSERT_CHUNK) {
        update_heads(conn, chunk)?;
    }
    if let Some(k) = known {
        for r in &records {
            k.moving.wrote(r.entry.stockpile_id, r.entry.occurred_at);
        }
    }
    Ok(records)
}

/// The legs' depots from what the group read, if it read them all.
fn known_depots(known: &Known, legs: &[Leg]) -> Option<BTreeMap<String, DepotRow>> {
    legs.iter()
        .map(|l| {
            known
                .depots
                .get(l.key.depot.as_str())
                .map(|d| (d.code.clone(), d.clone()))
        })
        .collect()
}

/// The legs' stockpile ids from what the group read, if it read them all
/// (a member whose stockpile does not exist yet never runs in a group).
fn known_stockpiles(known: &Known, legs: &[Leg]) -> Option<BTreeMap<StockpileKey, i64>> {
    legs.iter()
        .map(|l| known.stockpiles.get(&l.key).map(|id| (l.key.clone(), *id)))
        .collect()
}

/// The newest `occurred_at` of stockpile `id` (a value, or a column of an
/// enclosing query) as a query: one backward step on the (stockpile_id,
/// occurred_at) index, however long the stockpile's history. A macro so the
/// single read keeps its statement and the group's read for all its
/// stockpiles (`newest_entries`) takes the same one as a subquery.
macro_rules! newest_of {
    ($id:expr) => {
        le::table
            .filter(le::stockpile_id.eq($id))
            .order(le::occurred_at.desc())
            .select(le::occurred_at)
    };
}

/// The newest `occurred_at` of stockpile `id`: from the group's `known`
/// when it has it, else read (`newest_of`).
fn newest_entry(
    conn: &mut DbConn,
    id: i64,
    known: Option<&BTreeMap<i64, Option<chrono::NaiveDateTime>>>,
) -> ApiResult<Option<chrono::NaiveDateTime>> {
    if let Some(newest) = known.and_then(|k| k.get(&id)) {
        return Ok(*newest);
    }
    Ok(newest_of!(id).first(conn).optional()?)
}

/// The newest `occurred_at` of each of stockpiles `ids` (`None`: no entry
/// yet), in one statement (group commit, `ledger::group`).
pub(super) fn newest_entries(
    conn: &mut DbConn,
    ids: &[i64],
) -> ApiResult<BTreeMap<i64, Option<chrono::NaiveDateTime>>> {
    let newest = newest_of!(stockpiles::id).limit(1).single_value();
    let rows: Vec<(i64, Option<chrono::NaiveDateTime>)> = stockpiles::table
        .filter(stockpiles::id.eq_any(ids))
        .select((stockpiles::id, newest))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// `occurred_at` may lag (late reports) but not lead the clock by more than the
/// tolerated skew.
fn check_future(settings: &LedgerSettings, legs: &[Leg], now: DateTime<Utc>) -> ApiResult<()> {
    let horizon = now + Duration::seconds(settings.max_future_skew_secs);
    let future: Vec<FieldError> = legs
        .iter()
        .filter(|l| l.occurred_at > horizon)
        .map(|l| {
            FieldError::new(
                format!("{}occurred_at", l.field_prefix),
                "lies in the future",
            )
        })
        .collect();
    if !future.is_empty() {
        return Err(ApiError::Validation(future));
    }
    Ok(())
}

/// No leg may fall in a closed period (`lock`, read while `ledger_head` is
/// held).
fn check_period_lock(lock: Option<DateTime<Utc>>, legs: &[Leg]) -> ApiResult<()> {
    if let Some(lock) = lock {
        if let Some(leg) = legs.iter().find(|l| l.occurred_at < lock) {
            return Err(ApiError::conflict(
                "period-closed",
                format!(
                    "{}occurred_at {} falls in a closed period: the books are closed before {}; post a correction in the open period",
                    leg.field_prefix,
                    types::rfc3339(leg.occurred_at),
                    types::rfc3339(lock)
                ),
                json!({ "locked_before": types::rfc3339(lock) }),
            ));
        }
    }
    Ok(())
}

fn load_depots(conn: &mut DbConn, legs: &[Leg]) -> ApiResult<BTreeMap<String, DepotRow>> {
    let codes: BTreeSet<String> = legs.iter().map(|l| l.key.depot.to_string()).collect();
    let rows = depot_repo::by_codes(conn, &codes.iter().cloned().collect::<Vec<_>>())?;
    let depots: BTreeMap<String, DepotRow> =
        rows.into_iter().map(|d| (d.code.clone(), d)).collect();
    let missing: Vec<FieldError> = legs
        .iter()
        .filter(|l| !depots.contains_key(l.key.depot.as_str()))
        .map(|l| {
            let field = if l.kind == super::model::EntryKind::TransferIn {
                "to_depot"
            } else if l.kind == super::model::EntryKind::TransferOut {
                "from_depot"
            } else {
                "depot"
            };
            FieldError::new(
                format!("{}{field}", l.field_prefix),
                format!("no depot with code {}", l.key.depot),
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::Validation(missing));
    }
    Ok(depots)
}

fn depot_not_active(d: &DepotRow) -> ApiError {
    ApiError::conflict(
        "depot-not-active",
        format!("depot {} is {}: it takes no movements", d.code, d.status),
        json!({ "depot": d.code, "depot_status": d.status }),
    )
}

/// Finds each leg's stockpile, creating those that receive material for the
/// first time. Returns stockpile ids by key.
fn resolve_stockpiles(
    conn: &mut DbConn,
    legs: &[Leg],
    depots: &BTreeMap<String, DepotRow>,
    now: DateTime<Utc>,
) -> ApiResult<BTreeMap<StockpileKey, i64>> {
    // Sorted keys: creations happen in one order in every transaction.
    let keys: BTreeSet<&StockpileKey> = legs.iter().map(|l| &l.key).collect();
    let mut ids = BTreeMap::new();
    for key in keys {
        let depot = &depots[key.depot.as_str()];
        let find = |conn: &mut DbConn| -> ApiResult<Option<i64>> {
            Ok(stockpiles::table
                .filter(stockpiles::depot_id.eq(depot.id))
                .filter(stockpiles::element.eq(key.element.as_str()))
                .filter(stockpiles::form.eq(key.form.as_str()))
                .filter(stockpiles::grade.eq(key.grade.as_str()))
                .select(stockpiles::id)
                .first(conn)
                .optional()?)
        };
        let id = match find(conn)? {
            Some(id) => id,
            None if legs.iter().any(|l| &l.key == key && l.quantity.0 > 0) => {
                crate::stockpiles::repo::insert_if_missing(conn, depot.id, key, now)?;
                find(conn)?
                    .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stockpile not created")))?
            }
            None => {
                let leg = legs
                    .iter()
                    .find(|l| &l.key == key)
                    .expect("key comes from legs");
                return Err(no_stockpile(leg, key));
            }
        };
        ids.insert(key.clone(), id);
    }
    Ok(ids)
}

/// An outflow from a stockpile that was never created: say so, rather than
/// "0 kg available", since the usual cause is a wrong form or grade.
fn no_stockpile(leg: &Leg, key: &StockpileKey) -> ApiError {
    ApiError::conflict(
        "insufficient-stock",
        format!(
            "{}quantity_kg: there is no stockpile of {} {} grade {} at {}; check the element, form and grade",
            leg.field_prefix,
            key.element,
            key.form.as_str(),
            key.grade,
            key.depot
        ),
        json!({
            "depot": key.depot.as_str(),
            "element": key.element.as_str(),
            "form": key.form.as_str(),
            "grade": key.grade.as_str(),
            "on_hand_kg": "0.000",
            "reserved_kg": "0.000",
            "available_kg": "0.000",
            "requested_kg": Grams(-leg.quantity.0).to_kg_string(),
        }),
    )
}

fn insufficient(
    leg: &Leg,
    key: &StockpileKey,
    on_hand: i64,
    reserved: i64,
    requested: i64,
) -> ApiError {
    ApiError::conflict(
        "insufficient-stock",
        format!(
            "{}quantity_kg: {} {} grade {} at {} has {} kg available, {} kg requested",
            leg.field_prefix,
            key.element,
            key.form.as_str(),
            key.grade,
            key.depot,
            Grams(on_hand - reserved),
            Grams(requested)
        ),
        json!({
            "depot": key.depot.as_str(),
            "element": key.element.as_str(),
            "form": key.form.as_str(),
            "grade": key.grade.as_str(),
            "on_hand_kg": Grams(on_hand).to_kg_string(),
            "reserved_kg": Grams(reserved).to_kg_string(),
            "available_kg": Grams(on_hand - reserved).to_kg_string(),
            "requested_kg": Grams(requested).to_kg_string(),
        }),
    )
}

/// A depot as read by the statement that locked its row: values a concurrent
/// PATCH cannot change before this posting commits.
struct LockedDepot {
    id: i64,
    code: String,
    max_drawdown_g_per_day: i64,
}

/// Applies each depot's net change in id order; an increase must fit the
/// capacity, checked by the same statement that takes the row lock. Returns
/// the locked depots by code.
fn lock_depots(
    conn: &mut DbConn,
    legs: &[Leg],
    depots: &BTreeMap<String, DepotRow>,
    stockpile_ids: &BTreeMap<StockpileKey, i64>,
) -> ApiResult<BTreeMap<String, LockedDepot>> {
    let mut net: BTreeMap<i64, (i64, &DepotRow)> = BTreeMap::new();
    for leg in legs {
        let d = &depots[leg.key.depot.as_str()];
        net.entry(d.id).or_insert((0, d)).0 += leg.quantity.0;
    }
    let mut locked = BTreeMap::new();
    for (id, (delta, d)) in net {
        let target = depots::table
            .filter(depots::id.eq(id))
            .filter(depots::status.eq(DepotStatus::Active.as_str()));
        let cols = (depots::code, depots::max_drawdown_g_per_day);
        let updated: Option<(String, i64)> = if delta > 0 {
            diesel::update(target.filter(depots::capacity_g.ge(depots::on_hand_g + delta)))
                .set(depots::on_hand_g.eq(depots::on_hand_g + delta))
                .returning(cols)
                .get_result(conn)
                .optional()?
        } else {
            diesel::update(target.filter(depots::on_hand_g.ge(-delta)))
                .set(depots::on_hand_g.eq(depots::on_hand_g + delta))
                .returning(cols)
                .get_result(conn)
                .optional()?
        };
        if let Some((code, max_drawdown_g_per_day)) = updated {
            locked.insert(
                code.clone(),
                LockedDepot {
                    id,
                    code,
                    max_drawdown_g_per_day,
                },
            );
        } else {
            let now = depot_repo::by_code(conn, &d.code)?;
            if now.status != DepotStatus::Active.as_str() {
                return Err(depot_not_active(&now));
            }
            if delta < 0 {
                // The depot as a whole holds less than leaves it, so some
                // stockpile of it does: report that stockpile's numbers.
                let leg = legs
                    .iter()
                    .find(|l| l.key.depot.as_str() == d.code && l.quantity.0 < 0)
                    .expect("a net outflow has an outflow leg");
                let (on_hand, reserved): (i64, i64) = stockpiles::table
                    .filter(stockpiles::id.eq(stockpile_ids[&leg.key]))
                    .select((stockpiles::on_hand_g, stockpiles::reserved_g))
                    .first(conn)?;
                return Err(insufficient(
                    leg,
                    &leg.key,
                    on_hand,
                    reserved,
                    -leg.quantity.0,
                ));
            }
            return Err(ApiError::conflict(
                "over-capacity",
                format!(
                    "depot {} holds {} kg of {} kg capacity; {} kg more does not fit",
                    now.code,
                    Grams(now.on_hand_g),
                    Grams(now.capacity_g),
                    Grams(delta)
                ),
                json!({
                    "depot": now.code,
                    "capacity_kg": Grams(now.capacity_g).to_kg_string(),
                    "on_hand_kg": Grams(now.on_hand_g).to_kg_string(),
                    "free_capacity_kg": Grams(now.capacity_g - now.on_hand_g).to_kg_string(),
                    "requested_kg": Grams(delta).to_kg_string(),
                }),
            ));
        }
    }
    Ok(locked)
}

/// A depot ships at most `max_drawdown_g_per_day` per UTC day (by `occurred_at`).
/// Runs after `lock_depots`, so the depot's row lock keeps both the day's total
/// and the limit (as locked, not as first read) stable. The day's total lives
/// in `depot_daily_shipments`, bumped here by the statement that reads it: one
/// row per depot and day, however many entries the day holds (summing the
/// day's entries made every posting slower as the day's ledger grew). A
/// refused posting rolls the bump back with everything else.
fn check_drawdown(
    conn: &mut DbConn,
    legs: &[Leg],
    depots: &BTreeMap<String, LockedDepot>,
) -> ApiResult<()> {
    use crate::db::schema::depot_daily_shipments as dds;
    let mut per_day: BTreeMap<(i64, DateTime<Utc>), (i64, &LockedDepot)> = BTreeMap::new();
    for leg in legs.iter().filter(|l| l.kind.is_shipment_out()) {
        let d = &depots[leg.key.depot.as_str()];
        per_day
            .entry((d.id, utc_day(leg.occurred_at).0))
            .or_insert((0, d))
            .0 += -leg.quantity.0;
    }
    for ((depot_id, day), (requested, d)) in per_day {
        // The depot's row lock (taken by `lock_depots`; on SQLite the write
        // lock) admits one posting per depot here, so update-else-insert
        // cannot race.
        let key = dds::table
            .filter(dds::depot_id.eq(depot_id))
            .filter(dds::day.eq(types::to_db(day)));
        let bumped: Option<i64> = diesel::update(key)
            .set(dds::shipped_g.eq(dds::shipped_g + requested))
            .returning(dds::shipped_g)
            .get_result(conn)
            .optional()?;
        let total = match bumped {
            Some(total) => total,
            None => {
                diesel::insert_into(dds::table)
                    .values((
                        dds::depot_id.eq(depot_id),
                        dds::day.eq(types::to_db(day)),
                        dds::shipped_g.eq(requested),
                    ))
                    .execute(conn)?;
                requested
            }
        };
        let shipped = total - requested;
        if total > d.max_drawdown_g_per_day {
            return Err(ApiError::conflict(
                "drawdown-rate-exceeded",
                format!(
                    "depot {} ships at most {} kg per day; {} kg already shipped on {}, {} kg more requested",
                    d.code,
                    Grams(d.max_drawdown_g_per_day),
                    Grams(shipped),
                    day.format("%Y-%m-%d"),
                    Grams(requested)
                ),
                json!({
                    "depot": d.code,
                    "day": day.format("%Y-%m-%d").to_string(),
                    "max_drawdown_kg_per_day": Grams(d.max_drawdown_g_per_day).to_kg_string(),
                    "shipped_kg": Grams(shipped).to_kg_string(),
                    "requested_kg": Grams(requested).to_kg_string(),
                }),
            ));
        }
    }
    Ok(())
}

/// A locked stockpile: its chain head and the balance after each of this
/// posting's legs on it, in leg order.
struct LockedStockpile {
    head_hash: String,
    balances: Vec<i64>,
    on_hand_before: i64,
    /// Entries of the stockpile before this posting.
    entry_count: i64,
}

/// Applies each stockpile's net change in id order. A decrease must leave the
/// available quantity (on-hand − reserved) non-negative, checked by the
/// statement that takes the row lock; so must every intermediate balance.
fn lock_stockpiles(
    conn: &mut DbConn,
    legs: &[Leg],
    leg_stockpiles: &[i64],
    order: Option<&OrderLink>,
) -> ApiResult<BTreeMap<i64, LockedStockpile>> {
    // An order's execution releases its reservation on the stockpile its
    // outflow leaves, in the statement that takes that stockpile's lock.
    let reservation: Option<(i64, i64)> =
        order.filter(|o| o.consumes_reserved_g > 0).and_then(|o| {
            legs.iter()
                .zip(leg_stockpiles)
                .find(|(l, _)| l.quantity.0 < 0)
                .map(|(_, s)| (*s, o.consumes_reserved_g))
        });
    let mut deltas: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (leg, id) in legs.iter().zip(leg_stockpiles) {
        deltas.entry(*id).or_default().push(leg.quantity.0);
    }
    // Many stockpiles (a batch) are locked in two statements; one or two (a
    // movement, a transfer) and an order's execution one statement each.
    let mut all = if reservation.is_none() && deltas.len() > 2 {
        let nets: Vec<(i64, i64)> = deltas
            .iter()
            .map(|(id, ds)| (*id, ds.iter().sum()))
            .collect();
        Some(lock_all(conn, &nets)?)
    } else {
        None
    };
    let mut locked = BTreeMap::new();
    for (id, ds) in deltas {
        let net: i64 = ds.iter().sum();
        let target = stockpiles::table.filter(stockpiles::id.eq(id));
        let cols = (
            stockpiles::on_hand_g,
            stockpiles::reserved_g,
            stockpiles::head_hash,
            stockpiles::entry_count,
        );
        let consumed = reservation.filter(|(s, _)| *s == id).map_or(0, |(_, g)| g);
        let updated: Option<LockedRow> = if let Some(all) = all.as_mut() {
            all.remove(&id)
        } else if consumed > 0 {
            diesel::update(
                target
                    .filter(stockpiles::reserved_g.ge(consumed))
                    .filter((stockpiles::on_hand_g - stockpiles::reserved_g).ge(-net - consumed)),
            )
            .set((
                stockpiles::on_hand_g.eq(stockpiles::on_hand_g + net),
                stockpiles::reserved_g.eq(stockpiles::reserved_g - consumed),
            ))
            .returning(cols)
            .get_result(conn)
            .optional()?
        } else if net < 0 {
            diesel::update(target.filter((stockpiles::on_hand_g - stockpiles::reserved_g).ge(-net)))
                .set(stockpiles::on_hand_g.eq(stockpiles::on_hand_g + net))
                .returning(cols)
                .get_result(conn)
                .optional()?
        } else {
            diesel::update(target)
                .set(stockpiles::on_hand_g.eq(stockpiles::on_hand_g + net))
                .returning(cols)
                .get_result(conn)
                .optional()?
        };
        // Name the first outflow on this stockpile: that is what lacked stock.
        let mut on_this = legs
            .iter()
            .zip(leg_stockpiles)
            .filter(|(_, s)| **s == id)
            .map(|(l, _)| l);
        let first_leg = on_this
            .clone()
            .find(|l| l.quantity.0 < 0)
            .or_else(|| on_this.next())
            .expect("stockpile has a leg");
        let Some((on_hand_after, reserved, head_hash, entry_count)) = updated else {
            let (on_hand, reserved): (i64, i64) = stockpiles::table
                .filter(stockpiles::id.eq(id))
                .select((stockpiles::on_hand_g, stockpiles::reserved_g))
                .first(conn)?;
            return Err(insufficient(
                first_leg,
                &first_leg.key,
                on_hand,
                reserved,
                -net,
            ));
        };
        let on_hand_before = on_hand_after - net;
        let balances = running_balances(on_hand_before, &ds);
        // Within a batch, an outflow may not rely on an inflow posted after it.
        let mine: Vec<&Leg> = legs
            .iter()
            .zip(leg_stockpiles)
            .filter(|(_, s)| **s == id)
            .map(|(l, _)| l)
            .collect();
        for ((leg_delta, balance), leg) in ds.iter().zip(&balances).zip(mine) {
            if *leg_delta < 0 && balance - reserved < 0 {
                return Err(insufficient(
                    leg,
                    &leg.key,
                    balance - leg_delta,
                    reserved,
                    -leg_delta,
                ));
            }
        }
        let head_hash = if head_hash.is_empty() {
            GENESIS.to_string()
        } else {
            head_hash
        };
        locked.insert(
            id,
            LockedStockpile {
                head_hash,
                balances,
                on_hand_before,
                entry_count,
            },
        );
    }
    Ok(locked)
}

/// A stockpile row as a locking UPDATE returns it: on hand after the
/// update, reserved, head hash, entry count.
type LockedRow = (i64, i64, String, i64);

#[derive(QueryableByName)]
struct LockedRowById {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    on_hand_g: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    reserved_g: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    head_hash: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    entry_count: i64,
}

/// `lock_stockpiles`' conditional UPDATEs for many stockpiles at once (no
/// order reservation among them): two statements instead of one a
/// stockpile, which for a 1,000-entry batch over 85 stockpiles were 85
/// round trips while every other posting on them waited. On PostgreSQL the
/// rows are first locked in id order (`FOR UPDATE`), the order every posting
/// takes them in, since a multi-row UPDATE locks in whatever order its plan
/// visits them. A stockpile missing from the answer lacked the stock.
fn lock_all(conn: &mut DbConn, nets: &[(i64, i64)]) -> ApiResult<BTreeMap<i64, LockedRow>> {
    use diesel::sql_types::BigInt;
    let ids: Vec<i64> = nets.iter().map(|(id, _)| *id).collect();
    if let DbConn::Postgres(c) = conn {
        stockpiles::table
            .filter(stockpiles::id.eq_any(&ids))
            .order(stockpiles::id)
            .select(stockpiles::id)
            .for_update()
            .load::<i64>(c)?;
    }
    let postgres = matches!(conn, DbConn::Postgres(_));
    let sql = format!(
        "{} UPDATE stockpiles SET on_hand_g = on_hand_g + v.net FROM v \
         WHERE stockpiles.id = v.sid AND (v.net >= 0 OR on_hand_g - reserved_g >= -v.net) \
         RETURNING id, on_hand_g, reserved_g, head_hash, entry_count",
        crate::db::values_cte("v", &["sid", "net"], nets.len(), postgres, 1),
    );
    let rows: Vec<LockedRowById> = crate::per_backend!(conn, |c| {
        let mut q = diesel::sql_query(&sql).into_boxed();
        for (id, net) in nets {
            q = q.bind::<BigInt, _>(*id).bind::<BigInt, _>(*net);
        }
        q.load(c)?
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.id,
                (r.on_hand_g, r.reserved_g, r.head_hash, r.entry_count),
            )
        })
        .collect())
}

/// Takes the posting's instant, under the stockpile locks: it becomes every
/// entry's `recorded_at` and the `occurred_at` of legs the client did not date.
/// It is never earlier than the newest entry of any stockpile an undated leg
/// touches (clocks of different replicas may disagree by a little), so an
/// undated leg never lands before history, and `occurred_at` of an undated leg
/// never lies after `recorded_at`.
fn date_undated_legs(
    conn: &mut DbConn,
    legs: &mut [Leg],
    leg_stockpiles: &[i64],
    known: Option<&BTreeMap<i64, Option<chrono::NaiveDateTime>>>,
) -> ApiResult<DateTime<Utc>> {
    let touched: BTreeSet<i64> = legs
        .iter()
        .zip(leg_stockpiles)
        .filter(|(l, _)| !l.occurred_at_given)
        .map(|(_, s)| *s)
        .collect();
    let mut instant = types::now();
    for id in touched {
        let newest = newest_entry(conn, id, known)?;
        if let Some(newest) = newest.map(types::from_db) {
            instant = instant.max(newest);
        }
    }
    for leg in legs.iter_mut().filter(|l| !l.occurred_at_given) {
        leg.occurred_at = instant;
    }
    Ok(instant)
}

/// A backdated outflow must not make any past as-of balance negative: 10 kg
/// received at noon cannot have funded a release dated 9:00.
fn check_history(
    conn: &mut DbConn,
    legs: &[Leg],
    leg_stockpiles: &[i64],
    locked: &BTreeMap<i64, LockedStockpile>,
) -> ApiResult<()> {
    for (id, state) in locked {
        let mine: Vec<&Leg> = legs
            .iter()
            .zip(leg_stockpiles)
            .filter(|(_, s)| *s == id)
            .map(|(l, _)| l)
            .collect();
        // Undated legs sit at or after the stockpile's newest entry (see
        // `date_undated_legs`), so they cannot reach back into history; the
        // running-balance check in `lock_stockpiles` already covers them.
        if !mine.iter().any(|l| l.quantity.0 < 0) || mine.iter().all(|l| !l.occurred_at_given) {
            continue;
        }
        let earliest = mine
            .iter()
            .map(|l| l.occurred_at)
            .min()
            .expect("at least one leg");
        let later: Vec<(chrono::NaiveDateTime, i64)> = le::table
            .filter(le::stockpile_id.eq(id))
            .filter(le::occurred_at.gt(types::to_db(earliest)))
            .select((le::occurred_at, le::quantity_g))
            .load(conn)?;
        if later.is_empty() && mine.len() == 1 {
            continue; // the new leg is the latest movement: today's check suffices
        }
        let later_sum: i64 = later.iter().map(|(_, q)| q).sum();
        let base = state.on_hand_before - later_sum;
        let mut events: Vec<(DateTime<Utc>, i64)> = later
            .into_iter()
            .map(|(t, q)| (types::from_db(t), q))
            .collect();
        events.extend(mine.iter().map(|l| (l.occurred_at, l.quantity.0)));
        if let Some((at, balance)) = first_negative_as_of(base, events) {
            let leg = mine[0];
            return Err(ApiError::conflict(
                "backdated-below-zero",
                format!(
                    "{}occurred_at: as of {} the stockpile would hold {} kg; a backdated outflow cannot use stock that arrived later",
                    leg.field_prefix,
                    types::rfc3339(at),
                    Grams(balance)
                ),
                json!({ "as_of": types::rfc3339(at), "balance_kg": Grams(balance).to_kg_string() }),
            ));
        }
    }
    Ok(())
}

/// Rows a multi-row INSERT carries at most (19 bind parameters an entry row:
/// 9,500 a statement, under SQLite's 32,766 and PostgreSQL's 65,535).
const INSERT_CHUNK: usize = 500;

/// Inserts entries in one statement. A single entry goes as `EntryRow`
/// (absent optional fields left out on SQLite, DEFAULT on PostgreSQL: the
/// statement `benches/limit` replays). Several go as one multi-row INSERT; on
/// SQLite with NULL for absent fields, since SQLite has no DEFAULT keyword in
/// VALUES and diesel would otherwise send one statement a row.
fn insert_entries(conn: &mut DbConn, records: &[EntryRecord]) -> ApiResult<()> {
    match (conn, records) {
        (conn, [one]) => {
            diesel::insert_into(le::table)
                .values(&one.entry)
                .execute(conn)?;
        }
        (DbConn::Postgres(c), many) => {
            let rows: Vec<&EntryRow> = many.iter().map(|r| &r.entry).collect();
            diesel::insert_into(le::table).values(rows).execute(c)?;
        }
        (DbConn::Sqlite(c), many) => {
            let rows: Vec<EntryValues<'_>> =
                many.iter().map(|r| EntryValues::of(&r.entry)).collect();
            diesel::insert_into(le::table).values(rows).execute(c)?;
        }
    }
    Ok(())
}

/// Moves each stockpile's head to its newest entry's hash and counts its new
/// entries: (stockpile id, head hash, entries added). One statement however
/// many stockpiles: a 1,000-entry batch over 85 stockpiles sent 85 UPDATEs,
/// one round trip each, while it held `ledger_head` (scenario 3 of
/// `scripts/bench.sh`). A single stockpile keeps the plain UPDATE, the
/// statement `benches/limit` replays.
fn update_heads(conn: &mut DbConn, heads: &[(i64, String, i64)]) -> ApiResult<()> {
    if let [(id, head, added)] = heads {
        diesel::update(stockpiles::table.filter(stockpiles::id.eq(id)))
            .set((
                stockpiles::head_hash.eq(head),
                stockpiles::entry_count.eq(stockpiles::entry_count + added),
            ))
            .execute(conn)?;
        return Ok(());
    }
    use diesel::sql_types::{BigInt, Text};
    let postgres = matches!(conn, DbConn::Postgres(_));
    let sql = format!(
        "{} UPDATE stockpiles SET head_hash = v.head, \
         entry_count = stockpiles.entry_count + v.added FROM v WHERE stockpiles.id = v.id",
        crate::db::values_cte("v", &["id", "head", "added"], heads.len(), postgres, 1),
    );
    let updated = crate::per_backend!(conn, |c| {
        let mut q = diesel::sql_query(&sql).into_boxed();
        for (id, head, added) in heads {
            q = q
                .bind::<BigInt, _>(*id)
                .bind::<Text, _>(head.as_str())
                .bind::<BigInt, _>(*added);
        }
        q.execute(c)?
    });
    if updated != heads.len() {
        return Err(ApiError::internal(anyhow::anyhow!(
            "{updated} of {} stockpile heads moved",
            heads.len()
        )));
    }
    Ok(())
}

/// An entry as a multi-row INSERT on SQLite carries it: every column bound,
/// NULL for an absent field.
#[derive(Insertable)]
#[diesel(table_name = le, treat_none_as_default_value = false)]
struct EntryValues<'a> {
    sequence: i64,
    stockpile_id: i64,
    kind: &'a str,
    quantity_g: i64,
    balance_after_g: i64,
    occurred_at: chrono::NaiveDateTime,
    recorded_at: chrono::NaiveDateTime,
    actor: &'a str,
    reference: Option<&'a str>,
    counterparty: Option<&'a str>,
    origin_country: Option<&'a str>,
    unit_price_micros: Option<i64>,
    currency: Option<&'a str>,
    note: Option<&'a str>,
    idempotency_key: &'a str,
    movement_id: &'a str,
    order_id: Option<i64>,
    prev_hash: &'a str,
    hash: &'a str,
}

impl<'a> EntryValues<'a> {
    fn of(e: &'a EntryRow) -> Self {
        EntryValues {
            sequence: e.sequence,
            stockpile_id: e.stockpile_id,
            kind: &e.kind,
            quantity_g: e.quantity_g,
            balance_after_g: e.balance_after_g,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            actor: &e.actor,
            reference: e.reference.as_deref(),
            counterparty: e.counterparty.as_deref(),
            origin_country: e.origin_country.as_deref(),
            unit_price_micros: e.unit_price_micros,
            currency: e.currency.as_deref(),
            note: e.note.as_deref(),
            idempotency_key: &e.idempotency_key,
            movement_id: &e.movement_id,
            order_id: e.order_id,
            prev_hash: &e.prev_hash,
            hash: &e.hash,
        }
    }
}

/// A `ledger_balances` row: an entry's place in its stockpile's history by
/// (`occurred_at`, `sequence`).
#[derive(Insertable)]
#[diesel(table_name = lb, treat_none_as_default_value = false)]
struct BalanceRow {
    stockpile_id: i64,
    occurred_at: chrono::NaiveDateTime,
    sequence: i64,
    balance_g: i64,
    entries: i64,
    max_sequence: i64,
}

/// Keeps `ledger_balances` (migration 2026-12-02-000001) as the posting's
/// entries are made, under the stockpiles' row locks. An entry that occurs at
/// or after every earlier entry of its stockpile is last in the stockpile's
/// (occurred_at, sequence) order, so its balance as of itself is the running
/// balance it carries (`balance_after_g`) and its count all the stockpile's
/// entries: those rows go out in one multi-row INSERT. A back-dated entry
/// takes its balance from the row just before it in that order and adds
/// itself to every row after it; its sequence is the highest yet, so it
/// becomes their `max_sequence`.
struct BalanceIndex {
    /// Per stockpile: entries so far, and the newest `occurred_at` so far
    /// (`None` when every leg on it is undated: `date_undated_legs` dates
    /// them at or after the stockpile's newest entry).
    stockpiles: BTreeMap<i64, (i64, Option<chrono::NaiveDateTime>)>,
    pending: Vec<BalanceRow>,
}

impl BalanceIndex {
    fn new(
        conn: &mut DbConn,
        legs: &[Leg],
        leg_stockpiles: &[i64],
        locked: &BTreeMap<i64, LockedStockpile>,
        known: Option<&BTreeMap<i64, Option<chrono::NaiveDateTime>>>,
    ) -> ApiResult<Self> {
        let mut stockpiles = BTreeMap::new();
        for (id, state) in locked {
            let dated = legs
                .iter()
                .zip(leg_stockpiles)
                .any(|(l, s)| s == id && l.occurred_at_given);
            let newest = if dated {
                newest_entry(conn, *id, known)?.or(Some(chrono::NaiveDateTime::MIN))
            } else {
                None
            };
            stockpiles.insert(*id, (state.entry_count, newest));
        }
        Ok(Self {
            stockpiles,
            pending: Vec::new(),
        })
    }

    fn add(&mut self, conn: &mut DbConn, row: &EntryRow) -> ApiResult<()> {
        let (entries, newest) = self
            .stockpiles
            .get_mut(&row.stockpile_id)
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("stockpile not locked")))?;
        *entries += 1;
        let in_order = match newest {
            None => true,
            Some(n) if row.occurred_at >= *n => {
                *n = row.occurred_at;
                true
            }
            Some(_) => false,
        };
        if in_order {
            self.pending.push(BalanceRow {
                stockpile_id: row.stockpile_id,
                occurred_at: row.occurred_at,
                sequence: row.sequence,
                balance_g: row.balance_after_g,
                entries: *entries,
                max_sequence: row.sequence,
            });
            return Ok(());
        }
        // Back-dated: the rows before it must be in place first.
        self.flush(conn)?;
        let before: (i64, i64) = lb::table
            .filter(lb::stockpile_id.eq(row.stockpile_id))
            .filter(lb::occurred_at.le(row.occurred_at))
            .order((lb::occurred_at.desc(), lb::sequence.desc()))
            .select((lb::balance_g, lb::entries))
            .first(conn)
            .optional()?
            .unwrap_or((0, 0));
        diesel::update(
            lb::table
                .filter(lb::stockpile_id.eq(row.stockpile_id))
                .filter(lb::occurred_at.gt(row.occurred_at)),
        )
        .set((
            lb::balance_g.eq(lb::balance_g + row.quantity_g),
            lb::entries.eq(lb::entries + 1),
            lb::max_sequence.eq(row.sequence),
        ))
        .execute(conn)?;
        self.pending.push(BalanceRow {
            stockpile_id: row.stockpile_id,
            occurred_at: row.occurred_at,
            sequence: row.sequence,
            balance_g: before.0 + row.quantity_g,
            entries: before.1 + 1,
            max_sequence: row.sequence,
        });
        self.flush(conn)
    }

    fn flush(&mut self, conn: &mut DbConn) -> ApiResult<()> {
        for chunk in self.pending.chunks(INSERT_CHUNK) {
            if let [one] = chunk {
                diesel::insert_into(lb::table).values(one).execute(conn)?;
            } else {
                crate::insert_rows!(conn, lb::table, chunk)?;
            }
        }
        self.pending.clear();
        Ok(())
    }
}
