//! Recomputes the ledger from its entries and compares with what is stored:
//! hash chains (which commit to each stockpile's identity), running balances,
//! sequence continuity, stockpile and depot totals, that closed depots hold
//! nothing, and that no depot shipped more on a UTC day than the drawdown
//! limit in force when that day's last outflow was posted. Names the first
//! bad entry.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::Serialize;

use super::chain::{StockpileIdentity, GENESIS};
use super::model::utc_day;
use super::repo::EntryRow;
use crate::db::schema::{depot_history, depots, ledger_entries as le, ledger_head, stockpiles};
use crate::db::{types, DbConn};
use crate::depots::model::DepotStatus;
use crate::error::ApiResult;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// What kind of problem: `gap`, `hash_mismatch`, `balance_mismatch`,
    /// `behind_checkpoint`, `checkpoint_mismatch`, `checkpoint_invalid`,
    /// `stockpile_mismatch`, `stockpile_missing`, `depot_mismatch`,
    /// `drawdown_exceeded` or `period_lock`.
    pub kind: &'static str,
    /// The first bad entry's sequence, when the problem is in an entry.
    pub sequence: Option<i64>,
    pub stockpile_id: Option<i64>,
    pub depot_id: Option<i64>,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries_checked: i64,
    pub stockpiles_checked: i64,
    /// The newest sequence the ledger head says was posted.
    pub last_sequence: i64,
    /// The newest sequence up to which everything checked out.
    pub verified_through: i64,
    pub first_problem: Option<Finding>,
    /// The latest signed checkpoint the ledger was checked against, if any.
    pub checkpoint: Option<CheckpointStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointStatus {
    pub id: i64,
    pub created_at: String,
    pub last_sequence: i64,
    pub merkle_root: String,
}

/// How to verify: the key checkpoints must be signed with (when the caller
/// has one), and a callback told `(entries checked, entries posted)` after
/// every page.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    pub trusted_key: Option<String>,
    pub progress: Option<&'a mut dyn FnMut(i64, i64)>,
}

#[derive(Default)]
struct Running {
    head: String,
    balance: i64,
    count: i64,
}

/// Entries read per query: memory stays bounded by one page (plus one running
/// head per stockpile and one total per depot and day), however long the
/// ledger.
pub const PAGE: i64 = 5_000;

/// Verifies one consistent snapshot of the whole ledger, so writers running
/// meanwhile cannot produce false alarms.
pub fn verify(conn: &mut DbConn) -> ApiResult<VerifyReport> {
    verify_with(conn, VerifyOptions::default())
}

pub fn verify_with(conn: &mut DbConn, opts: VerifyOptions<'_>) -> ApiResult<VerifyReport> {
    crate::db::read_transaction(conn, |c| verify_snapshot(c, opts))
}

/// What a stockpile row says it is, with its depot.
struct StockpileRow {
    depot_id: i64,
    depot: String,
    element: String,
    form: String,
    grade: String,
}

impl StockpileRow {
    fn identity(&self) -> StockpileIdentity<'_> {
        StockpileIdentity {
            depot: &self.depot,
            element: &self.element,
            form: &self.form,
            grade: &self.grade,
        }
    }
}

/// One depot's outflows on one UTC day, and the newest of them.
struct DayOutflow {
    shipped_g: i64,
    last_sequence: i64,
    last_recorded_at: chrono::NaiveDateTime,
}

/// Checks one entry against its stockpile's running state and advances it.
fn check_entry(
    e: &EntryRow,
    expected_sequence: i64,
    stockpile: Option<&StockpileRow>,
    running: &mut BTreeMap<i64, Running>,
) -> Result<(), (&'static str, String)> {
    if e.sequence != expected_sequence {
        return Err((
            "gap",
            format!(
                "sequence {} follows {}: entries are missing",
                e.sequence,
                expected_sequence - 1
            ),
        ));
    }
    let Some(stockpile) = stockpile else {
        return Err((
            "stockpile_missing",
            format!(
                "the entry refers to stockpile {}, which does not exist",
                e.stockpile_id
            ),
        ));
    };
    let r = running.entry(e.stockpile_id).or_insert_with(|| Running {
        head: GENESIS.to_string(),
        ..Default::default()
    });
    if e.prev_hash != r.head {
        return Err((
            "hash_mismatch",
            "prev_hash does not match the previous entry of its stockpile".into(),
        ));
    }
    if e.chained(stockpile.identity()).hash(&e.prev_hash) != e.hash {
        return Err((
            "hash_mismatch",
            format!(
                "hash does not match the entry's contents and its stockpile's identity \
             (now {} {} grade {} at {}): the entry, or the stockpile's depot, element, \
             form or grade, was changed",
                stockpile.element, stockpile.form, stockpile.grade, stockpile.depot
            ),
        ));
    }
    r.balance += e.quantity_g;
    if e.balance_after_g != r.balance {
        return Err((
            "balance_mismatch",
            format!(
                "balance_after is {} g but the running sum is {} g",
                e.balance_after_g, r.balance
            ),
        ));
    }
    if r.balance < 0 {
        return Err(("balance_mismatch", "balance is negative".into()));
    }
    r.head = e.hash.clone();
    r.count += 1;
    Ok(())
}

/// The latest checkpoint, checked on its own, with its heads by stockpile.
struct Anchor {
    status: CheckpointStatus,
    id: i64,
    heads: BTreeMap<i64, crate::audit::merkle::Head>,
}

fn load_anchor(
    conn: &mut DbConn,
    trusted: Option<&str>,
) -> ApiResult<Result<Option<Anchor>, Finding>> {
    use crate::audit::checkpoints;
    let invalid = |problem: String| Finding {
        kind: "checkpoint_invalid",
        sequence: None,
        stockpile_id: None,
        depot_id: None,
        problem,
    };
    if let Some(problem) = checkpoints::check_links(conn)? {
        return Ok(Err(invalid(problem)));
    }
    let Some(row) = checkpoints::latest(conn)? else {
        return Ok(Ok(None));
    };
    let heads = checkpoints::heads_of(conn, row.id)?;
    if let Err(problem) = checkpoints::check(&row, &heads, trusted) {
        return Ok(Err(invalid(problem)));
    }
    Ok(Ok(Some(Anchor {
        status: CheckpointStatus {
            id: row.id,
            created_at: types::rfc3339(types::from_db(row.created_at)),
            last_sequence: row.last_sequence,
            merkle_root: row.merkle_root.clone(),
        },
        id: row.id,
        heads: heads.iter().map(|h| (h.stockpile_id, h.head())).collect(),
    })))
}

/// Verifies inside the caller's transaction (which should see one snapshot).
pub fn verify_snapshot(conn: &mut DbConn, mut opts: VerifyOptions<'_>) -> ApiResult<VerifyReport> {
    let posted: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let (anchor, anchor_problem) = match load_anchor(conn, opts.trusted_key.as_deref())? {
        Ok(a) => (a, None),
        Err(f) => (None, Some(f)),
    };
    let checkpoint = anchor.as_ref().map(|a| a.status.clone());
    let identities: BTreeMap<i64, StockpileRow> = stockpiles::table
        .inner_join(depots::table)
        .select((
            stockpiles::id,
            stockpiles::depot_id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
        .load::<(i64, i64, String, String, String, String)>(conn)?
        .into_iter()
        .map(|(id, depot_id, depot, element, form, grade)| {
            (
                id,
                StockpileRow {
                    depot_id,
                    depot,
                    element,
                    form,
                    grade,
                },
            )
        })
        .collect();
    let mut outflows: BTreeMap<(i64, chrono::NaiveDateTime), DayOutflow> = BTreeMap::new();
    let mut running: BTreeMap<i64, Running> = BTreeMap::new();
    // The newest sequence up to which every entry checked out.
    let mut verified_through = 0i64;
    let mut checked = 0i64;
    let mut first_problem: Option<Finding> = None;
    'pages: loop {
        let rows: Vec<EntryRow> = le::table
            .filter(le::sequence.gt(verified_through))
            .order(le::sequence.asc())
            .limit(PAGE)
            .select(EntryRow::as_select())
            .load(conn)?;
        if rows.is_empty() {
            break;
        }
        for e in &rows {
            checked += 1;
            let stockpile = identities.get(&e.stockpile_id);
            let checked_entry = check_entry(e, verified_through + 1, stockpile, &mut running)
                .and_then(|()| match anchor.as_ref() {
                    Some(a) => check_against_anchor(e, a, &running),
                    None => Ok(()),
                });
            if let Err((kind, problem)) = checked_entry {
                first_problem = Some(Finding {
                    kind,
                    sequence: Some(e.sequence),
                    stockpile_id: Some(e.stockpile_id),
                    depot_id: None,
                    problem,
                });
                break 'pages;
            }
            verified_through = e.sequence;
            if let Some(sp) = stockpile.filter(|_| is_outflow(&e.kind)) {
                let day = types::to_db(utc_day(types::from_db(e.occurred_at)).0);
                let d = outflows.entry((sp.depot_id, day)).or_insert(DayOutflow {
                    shipped_g: 0,
                    last_sequence: 0,
                    last_recorded_at: e.recorded_at,
                });
                d.shipped_g -= e.quantity_g;
                d.last_sequence = e.sequence;
                d.last_recorded_at = e.recorded_at;
            }
        }
        if let Some(progress) = opts.progress.as_mut() {
            progress(checked, posted);
        }
    }
    // A stockpile whose chain ends before the head the checkpoint signed lost
    // its newest entries: the chain alone cannot show that.
    if first_problem.is_none() {
        if let Some(a) = &anchor {
            for (stockpile_id, h) in &a.heads {
                let reached = running.get(stockpile_id).map(|r| r.count).unwrap_or(0);
                if reached < h.entry_count {
                    first_problem = Some(Finding {
                        kind: "behind_checkpoint",
                        sequence: Some(h.last_sequence),
                        stockpile_id: Some(*stockpile_id),
                        depot_id: None,
                        problem: format!(
                            "the stockpile's chain holds {reached} entries, but checkpoint {} signed its head at sequence {} after {} entries (hash {}): its newest entries were deleted",
                            a.id, h.last_sequence, h.entry_count, h.head_hash
                        ),
                    });
                    break;
                }
            }
        }
    }
    if first_problem.is_none() {
        first_problem = anchor_problem;
    }
    let stockpile_rows: Vec<(i64, i64, i64, i64, String, i64)> = stockpiles::table
        .select((
            stockpiles::id,
            stockpiles::depot_id,
            stockpiles::on_hand_g,
            stockpiles::reserved_g,
            stockpiles::head_hash,
            stockpiles::entry_count,
        ))
        .load(conn)?;
    let head: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    if first_problem.is_none() && head != verified_through {
        first_problem = Some(Finding {
            kind: "gap",
            sequence: Some(head),
            stockpile_id: None,
            depot_id: None,
            problem: format!(
                "the ledger head says {head} entries were posted but {verified_through} are present"
            ),
        });
    }
    let mut depot_sums: BTreeMap<i64, i64> = BTreeMap::new();
    for (id, depot_id, on_hand, reserved, head_hash, count) in &stockpile_rows {
        *depot_sums.entry(*depot_id).or_default() += on_hand;
        if first_problem.is_some() {
            continue;
        }
        let r = running.remove(id).unwrap_or(Running {
            head: GENESIS.to_string(),
            ..Default::default()
        });
        let problem = if r.balance != *on_hand {
            Some(format!(
                "on_hand is {on_hand} g but its entries sum to {} g",
                r.balance
            ))
        } else if *head_hash != r.head {
            Some("head_hash is not the hash of its newest entry".to_string())
        } else if r.count != *count {
            Some(format!(
                "entry_count is {count} but {} entries exist",
                r.count
            ))
        } else if *reserved < 0 || reserved > on_hand {
            Some(format!("reserved {reserved} g is outside 0..=on_hand"))
        } else {
            None
        };
        if let Some(problem) = problem {
            first_problem = Some(Finding {
                kind: "stockpile_mismatch",
                sequence: None,
                stockpile_id: Some(*id),
                depot_id: None,
                problem,
            });
        }
    }
    if first_problem.is_none() {
        if let Some((id, _)) = running.iter().next() {
            first_problem = Some(Finding {
                kind: "stockpile_missing",
                sequence: None,
                stockpile_id: Some(*id),
                depot_id: None,
                problem: "entries refer to a stockpile that does not exist".into(),
            });
        }
    }
    if first_problem.is_none() {
        let depot_rows: Vec<(i64, i64, i64, String)> = depots::table
            .select((
                depots::id,
                depots::on_hand_g,
                depots::capacity_g,
                depots::status,
            ))
            .load(conn)?;
        for (id, on_hand, capacity, status) in depot_rows {
            let sum = depot_sums.get(&id).copied().unwrap_or(0);
            let problem = if sum != on_hand {
                Some(format!(
                    "depot on_hand is {on_hand} g but its stockpiles hold {sum} g"
                ))
            } else if on_hand > capacity {
                Some(format!(
                    "depot holds {on_hand} g, over its capacity of {capacity} g"
                ))
            } else if status == DepotStatus::Closed.as_str() && sum > 0 {
                Some(format!(
                    "depot is closed but its stockpiles hold {sum} g: stock in a closed depot can never move"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                first_problem = Some(Finding {
                    kind: "depot_mismatch",
                    sequence: None,
                    stockpile_id: None,
                    depot_id: Some(id),
                    problem,
                });
                break;
            }
        }
    }
    if first_problem.is_none() {
        first_problem = check_drawdown_days(conn, &outflows)?;
    }
    if first_problem.is_none() {
        first_problem = check_period_locks(conn)?;
    }
    Ok(VerifyReport {
        ok: first_problem.is_none(),
        entries_checked: checked,
        stockpiles_checked: stockpile_rows.len() as i64,
        last_sequence: head,
        verified_through,
        first_problem,
        checkpoint,
    })
}

/// The entry at a checkpointed head must be the one the checkpoint signed.
fn check_against_anchor(
    e: &EntryRow,
    anchor: &Anchor,
    running: &BTreeMap<i64, Running>,
) -> Result<(), (&'static str, String)> {
    let Some(h) = anchor.heads.get(&e.stockpile_id) else {
        return Ok(());
    };
    let Some(r) = running.get(&e.stockpile_id) else {
        return Ok(());
    };
    let at_head = e.sequence == h.last_sequence || r.count == h.entry_count;
    if at_head
        && (e.sequence != h.last_sequence
            || r.count != h.entry_count
            || e.hash != h.head_hash
            || e.balance_after_g != h.balance_g)
    {
        return Err((
            "checkpoint_mismatch",
            format!(
                "checkpoint {} signed this stockpile's head as sequence {} after {} entries, balance {} g, hash {}; the ledger has sequence {} after {} entries, balance {} g, hash {}",
                anchor.id, h.last_sequence, h.entry_count, h.balance_g, h.head_hash,
                e.sequence, r.count, e.balance_after_g, e.hash
            ),
        ));
    }
    Ok(())
}

fn is_outflow(kind: &str) -> bool {
    matches!(kind, "release" | "transfer_out" | "loan_out")
}

/// Each posting checks, under the depot's lock, that the day's outflows stay
/// within the limit in force at that moment; so the day's total must be within
/// the limit in force when its newest outflow was recorded (`depot_history`
/// keeps every version, stamped under the same lock).
fn check_drawdown_days(
    conn: &mut DbConn,
    outflows: &BTreeMap<(i64, chrono::NaiveDateTime), DayOutflow>,
) -> ApiResult<Option<Finding>> {
    let mut history: BTreeMap<i64, Vec<(chrono::NaiveDateTime, i64)>> = BTreeMap::new();
    for (depot_id, changed_at, limit) in depot_history::table
        .order((depot_history::depot_id, depot_history::version))
        .select((
            depot_history::depot_id,
            depot_history::changed_at,
            depot_history::max_drawdown_g_per_day,
        ))
        .load::<(i64, chrono::NaiveDateTime, i64)>(conn)?
    {
        history
            .entry(depot_id)
            .or_default()
            .push((changed_at, limit));
    }
    for ((depot_id, day), d) in outflows {
        let versions = history.get(depot_id).map(Vec::as_slice).unwrap_or(&[]);
        // The newest version stamped before the day's last outflow; the first
        // version when none is (clock skew between replicas).
        let Some(limit) = versions
            .iter()
            .rev()
            .find(|(at, _)| *at <= d.last_recorded_at)
            .or(versions.first())
            .map(|(_, limit)| *limit)
        else {
            return Ok(Some(Finding {
                kind: "drawdown_exceeded",
                sequence: Some(d.last_sequence),
                stockpile_id: None,
                depot_id: Some(*depot_id),
                problem: "the depot has no recorded limits (depot_history is empty)".into(),
            }));
        };
        if d.shipped_g > limit {
            return Ok(Some(Finding {
                kind: "drawdown_exceeded",
                sequence: Some(d.last_sequence),
                stockpile_id: None,
                depot_id: Some(*depot_id),
                problem: format!(
                    "the depot shipped {} g on {}, over the drawdown limit of {} g per day in force when that day's last outflow was posted",
                    d.shipped_g,
                    day.format("%Y-%m-%d"),
                    limit
                ),
            }));
        }
    }
    Ok(None)
}

/// No entry posted after a period lock was set may occur before it.
fn check_period_locks(conn: &mut DbConn) -> ApiResult<Option<Finding>> {
    use crate::db::schema::period_locks as pl;
    let locks: Vec<(i64, chrono::NaiveDateTime)> = pl::table
        .filter(pl::after_sequence.gt(0))
        .select((pl::after_sequence, pl::locked_before))
        .load(conn)?;
    for (after_sequence, locked_before) in locks {
        let early: Option<(i64, i64)> = le::table
            .filter(le::sequence.gt(after_sequence))
            .filter(le::occurred_at.lt(locked_before))
            .order(le::sequence.asc())
            .select((le::sequence, le::stockpile_id))
            .first(conn)
            .optional()?;
        if let Some((sequence, stockpile_id)) = early {
            return Ok(Some(Finding {
                kind: "period_lock",
                sequence: Some(sequence),
                stockpile_id: Some(stockpile_id),
                depot_id: None,
                problem: format!(
                    "the entry was posted after the books were closed before {} (at sequence {after_sequence}) but occurred before that",
                    types::rfc3339(types::from_db(locked_before))
                ),
            }));
        }
    }
    Ok(None)
}
