//! Period-lock rows.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::{ledger_head, period_locks as pl};
use crate::db::{types, DbConn};
use crate::error::{ApiError, ApiResult};

/// The instant before which the books are closed, if any.
pub fn current_lock(conn: &mut DbConn) -> ApiResult<Option<DateTime<Utc>>> {
    let max: Option<NaiveDateTime> = pl::table
        .select(diesel::dsl::max(pl::locked_before))
        .first(conn)?;
    Ok(max.map(types::from_db))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeriodLockView {
    pub id: i64,
    pub locked_before: String,
    pub reason: String,
    pub set_by: String,
    pub created_at: String,
}

type Row = (i64, NaiveDateTime, String, String, NaiveDateTime);

fn view((id, locked_before, reason, set_by, created_at): Row) -> PeriodLockView {
    PeriodLockView {
        id,
        locked_before: types::rfc3339(types::from_db(locked_before)),
        reason,
        set_by,
        created_at: types::rfc3339(types::from_db(created_at)),
    }
}

/// Closes the books before `locked_before`. Locks only move forward (reopening a
/// closed period would let history be rewritten) and never past now.
/// Runs inside a write transaction.
pub fn insert(
    conn: &mut DbConn,
    locked_before: DateTime<Utc>,
    reason: &str,
    set_by: &str,
) -> ApiResult<PeriodLockView> {
    // Take `ledger_head`, the lock every posting holds while it checks the
    // period lock and until it commits: a posting in flight either commits
    // before this lock exists, or sees it and is refused. Never both.
    let after_sequence: i64 = diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
        .set(ledger_head::last_sequence.eq(ledger_head::last_sequence))
        .returning(ledger_head::last_sequence)
        .get_result(conn)?;
    let now = types::now();
    if locked_before > now {
        return Err(ApiError::field(
            "locked_before",
            "must not lie in the future",
        ));
    }
    if let Some(current) = current_lock(conn)? {
        if locked_before <= current {
            return Err(ApiError::conflict(
                "period-lock-backwards",
                format!(
                    "the books are already closed before {}; locks only move forward",
                    types::rfc3339(current)
                ),
                serde_json::json!({ "locked_before": types::rfc3339(current) }),
            ));
        }
    }
    diesel::insert_into(pl::table)
        .values((
            pl::locked_before.eq(types::to_db(locked_before)),
            pl::reason.eq(reason),
            pl::set_by.eq(set_by),
            pl::created_at.eq(types::to_db(now)),
            pl::after_sequence.eq(after_sequence),
        ))
        .execute(conn)?;
    let row: Row = pl::table
        .order(pl::id.desc())
        .select((
            pl::id,
            pl::locked_before,
            pl::reason,
            pl::set_by,
            pl::created_at,
        ))
        .first(conn)?;
    Ok(view(row))
}

pub fn list(conn: &mut DbConn) -> ApiResult<Vec<PeriodLockView>> {
    let rows: Vec<Row> = pl::table
        .order(pl::id.desc())
        .select((
            pl::id,
            pl::locked_before,
            pl::reason,
            pl::set_by,
            pl::created_at,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(view).collect())
}
