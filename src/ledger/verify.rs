//! Recomputes the ledger from its entries and compares with what is stored:
//! hash chains, running balances, sequence continuity, stockpile and depot
//! totals. Names the first bad entry.

use std::collections::BTreeMap;

use diesel::prelude::*;
use serde::Serialize;

use super::chain::GENESIS;
use super::repo::EntryRow;
use crate::db::schema::{depots, ledger_entries as le, ledger_head, stockpiles};
use crate::db::DbConn;
use crate::error::ApiResult;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
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
}

#[derive(Default)]
struct Running {
    head: String,
    balance: i64,
    count: i64,
}

const PAGE: i64 = 5_000;

/// Verifies one consistent snapshot of the whole ledger, so writers running
/// meanwhile cannot produce false alarms.
pub fn verify(conn: &mut DbConn) -> ApiResult<VerifyReport> {
    crate::db::read_transaction(conn, verify_snapshot)
}

/// Checks one entry against its stockpile's running state and advances it.
fn check_entry(
    e: &EntryRow,
    expected_sequence: i64,
    running: &mut BTreeMap<i64, Running>,
) -> Result<(), String> {
    if e.sequence != expected_sequence {
        return Err(format!(
            "sequence {} follows {}: entries are missing",
            e.sequence,
            expected_sequence - 1
        ));
    }
    let r = running.entry(e.stockpile_id).or_insert_with(|| Running {
        head: GENESIS.to_string(),
        ..Default::default()
    });
    if e.prev_hash != r.head {
        return Err("prev_hash does not match the previous entry of its stockpile".into());
    }
    if e.chained().hash(&e.prev_hash) != e.hash {
        return Err("hash does not match the entry's contents".into());
    }
    r.balance += e.quantity_g;
    if e.balance_after_g != r.balance {
        return Err(format!(
            "balance_after is {} g but the running sum is {} g",
            e.balance_after_g, r.balance
        ));
    }
    if r.balance < 0 {
        return Err("balance is negative".into());
    }
    r.head = e.hash.clone();
    r.count += 1;
    Ok(())
}

fn verify_snapshot(conn: &mut DbConn) -> ApiResult<VerifyReport> {
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
            if let Err(problem) = check_entry(e, verified_through + 1, &mut running) {
                first_problem = Some(Finding {
                    sequence: Some(e.sequence),
                    stockpile_id: Some(e.stockpile_id),
                    depot_id: None,
                    problem,
                });
                break 'pages;
            }
            verified_through = e.sequence;
        }
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
                sequence: None,
                stockpile_id: Some(*id),
                depot_id: None,
                problem: "entries refer to a stockpile that does not exist".into(),
            });
        }
    }
    if first_problem.is_none() {
        let depot_rows: Vec<(i64, i64, i64)> = depots::table
            .select((depots::id, depots::on_hand_g, depots::capacity_g))
            .load(conn)?;
        for (id, on_hand, capacity) in depot_rows {
            let sum = depot_sums.get(&id).copied().unwrap_or(0);
            let problem = if sum != on_hand {
                Some(format!(
                    "depot on_hand is {on_hand} g but its stockpiles hold {sum} g"
                ))
            } else if on_hand > capacity {
                Some(format!(
                    "depot holds {on_hand} g, over its capacity of {capacity} g"
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                first_problem = Some(Finding {
                    sequence: None,
                    stockpile_id: None,
                    depot_id: Some(id),
                    problem,
                });
                break;
            }
        }
    }
    Ok(VerifyReport {
        ok: first_problem.is_none(),
        entries_checked: checked,
        stockpiles_checked: stockpile_rows.len() as i64,
        last_sequence: head,
        verified_through,
        first_problem,
    })
}
