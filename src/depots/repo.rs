//! Depot rows.

use diesel::prelude::*;

use super::dto::{DepotChanges, NewDepot};
use super::model::DepotStatus;
use crate::db::schema::{depot_history, depots};
use crate::db::{types, DbConn};
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = depots)]
pub struct DepotRow {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub region: String,
    pub status: String,
    pub capacity_g: i64,
    pub max_drawdown_g_per_day: i64,
    pub on_hand_g: i64,
    pub version: i64,
    pub created_at: chrono::NaiveDateTime,
    pub updated_at: chrono::NaiveDateTime,
}

const COLUMNS: (
    depots::id,
    depots::code,
    depots::name,
    depots::region,
    depots::status,
    depots::capacity_g,
    depots::max_drawdown_g_per_day,
    depots::on_hand_g,
    depots::version,
    depots::created_at,
    depots::updated_at,
) = (
    depots::id,
    depots::code,
    depots::name,
    depots::region,
    depots::status,
    depots::capacity_g,
    depots::max_drawdown_g_per_day,
    depots::on_hand_g,
    depots::version,
    depots::created_at,
    depots::updated_at,
);

/// Keeps the depot's current version in `depot_history` (append-only), so
/// verification can judge past outflows by the limits in force then. Called
/// after the UPDATE that took the depot's row lock: `changed_at` is read under
/// that lock, as a posting's `recorded_at` is, so the two order like the locks.
fn record_version(conn: &mut DbConn, d: &DepotRow, actor: &str) -> ApiResult<()> {
    diesel::insert_into(depot_history::table)
        .values((
            depot_history::depot_id.eq(d.id),
            depot_history::version.eq(d.version),
            depot_history::status.eq(&d.status),
            depot_history::capacity_g.eq(d.capacity_g),
            depot_history::max_drawdown_g_per_day.eq(d.max_drawdown_g_per_day),
            depot_history::changed_at.eq(types::to_db(types::now())),
            depot_history::changed_by.eq(actor),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn insert(conn: &mut DbConn, d: &NewDepot, actor: &str) -> ApiResult<DepotRow> {
    let now = types::to_db(types::now());
    let exists: i64 = depots::table
        .filter(depots::code.eq(d.code.as_str()))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Err(ApiError::conflict(
            "depot-exists",
            format!("a depot with code {} already exists", d.code),
            serde_json::json!({ "depot": d.code.as_str() }),
        ));
    }
    diesel::insert_into(depots::table)
        .values((
            depots::code.eq(d.code.as_str()),
            depots::name.eq(&d.name),
            depots::region.eq(&d.region),
            depots::status.eq(DepotStatus::Active.as_str()),
            depots::capacity_g.eq(d.capacity.0),
            depots::max_drawdown_g_per_day.eq(d.max_drawdown_per_day.0),
            depots::on_hand_g.eq(0i64),
            depots::version.eq(1i64),
            depots::created_at.eq(now),
            depots::updated_at.eq(now),
        ))
        .execute(conn)?;
    let row = by_code(conn, d.code.as_str())?;
    record_version(conn, &row, actor)?;
    Ok(row)
}

pub fn by_code(conn: &mut DbConn, code: &str) -> ApiResult<DepotRow> {
    depots::table
        .filter(depots::code.eq(code))
        .select(COLUMNS)
        .first::<DepotRow>(conn)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no depot with code {code}")))
}

pub fn by_codes(conn: &mut DbConn, codes: &[String]) -> ApiResult<Vec<DepotRow>> {
    Ok(depots::table
        .filter(depots::code.eq_any(codes))
        .select(COLUMNS)
        .load(conn)?)
}

pub fn by_ids(conn: &mut DbConn, ids: &[i64]) -> ApiResult<Vec<DepotRow>> {
    Ok(depots::table
        .filter(depots::id.eq_any(ids))
        .select(COLUMNS)
        .load(conn)?)
}

pub fn list(
    conn: &mut DbConn,
    page: &PageRequest,
    status: Option<&str>,
) -> ApiResult<Vec<DepotRow>> {
    let mut q = depots::table.select(COLUMNS).into_boxed();
    if let Some(s) = status {
        q = q.filter(depots::status.eq(s.to_string()));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(after)) => {
            q.filter(depots::id.lt(after)).order(depots::id.desc())
        }
        (Order::NewestFirst, None) => q.order(depots::id.desc()),
        (Order::OldestFirst, Some(after)) => q.filter(depots::id.gt(after)).order(depots::id.asc()),
        (Order::OldestFirst, None) => q.order(depots::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}

/// The If-Match condition of an update.
#[derive(Debug, Clone, Copy)]
pub enum Precondition {
    /// `If-Match: *`: any current version.
    Any,
    /// The ETag of one version of one depot.
    Version { id: i64, version: i64 },
}

/// Applies `changes` if the depot still matches `precondition` (If-Match).
/// Runs inside a write transaction.
pub fn update(
    conn: &mut DbConn,
    code: &str,
    precondition: Precondition,
    changes: &DepotChanges,
    actor: &str,
) -> ApiResult<DepotRow> {
    let current = by_code(conn, code)?;
    let expected_version = match precondition {
        Precondition::Any => current.version,
        Precondition::Version { id, .. } if id != current.id => {
            return Err(ApiError::PreconditionFailed(
                "If-Match holds another depot's ETag".into(),
            ));
        }
        Precondition::Version { version, .. } => version,
    };
    if current.version != expected_version {
        return Err(ApiError::PreconditionFailed(format!(
            "the depot changed since you read it (now version {}); fetch it again and retry",
            current.version
        )));
    }
    let capacity = changes.capacity.map(|g| g.0).unwrap_or(current.capacity_g);
    if capacity < current.on_hand_g {
        return Err(ApiError::conflict(
            "capacity-below-stock",
            format!(
                "capacity {} kg is below the {} kg the depot holds",
                types::Grams(capacity),
                types::Grams(current.on_hand_g)
            ),
            serde_json::json!({
                "depot": code,
                "capacity_kg": types::Grams(capacity).to_kg_string(),
                "on_hand_kg": types::Grams(current.on_hand_g).to_kg_string(),
            }),
        ));
    }
    // The version in the WHERE clause makes a concurrent update lose cleanly, and
    // capacity >= on_hand is re-checked against the row as it is locked.
    let updated = diesel::update(
        depots::table
            .filter(depots::id.eq(current.id))
            .filter(depots::version.eq(expected_version))
            .filter(depots::on_hand_g.le(capacity)),
    )
    .set((
        depots::name.eq(changes.name.clone().unwrap_or(current.name.clone())),
        depots::region.eq(changes.region.clone().unwrap_or(current.region.clone())),
        depots::capacity_g.eq(capacity),
        depots::max_drawdown_g_per_day.eq(changes
            .max_drawdown_per_day
            .map(|g| g.0)
            .unwrap_or(current.max_drawdown_g_per_day)),
        depots::version.eq(depots::version + 1),
        depots::updated_at.eq(types::to_db(types::now())),
    ))
    .execute(conn)?;
    if updated == 0 {
        return Err(ApiError::PreconditionFailed(
            "the depot changed while updating; fetch it again and retry".into(),
        ));
    }
    let row = by_code(conn, code)?;
    record_version(conn, &row, actor)?;
    Ok(row)
}

/// Moves a depot to `to`; closing needs an empty depot. Runs inside a write
/// transaction.
///
/// The conditions are part of the UPDATE that takes the depot's row lock, the
/// same lock every posting takes: a close that queues behind a posting in
/// flight sees what that posting left (it re-evaluates `on_hand_g = 0` once the
/// lock is free), and a posting that queues behind a close finds the depot no
/// longer active. An unlocked read could not promise either.
pub fn set_status(
    conn: &mut DbConn,
    code: &str,
    to: DepotStatus,
    actor: &str,
) -> ApiResult<DepotRow> {
    let current = by_code(conn, code)?;
    let from = DepotStatus::from_stored(&current.status);
    if from == to {
        return Ok(current);
    }
    if !from.may_become(to) {
        return Err(closed(code));
    }
    let target = depots::table
        .filter(depots::id.eq(current.id))
        .filter(depots::status.ne(DepotStatus::Closed.as_str()));
    let changes = (
        depots::status.eq(to.as_str()),
        depots::version.eq(depots::version + 1),
        depots::updated_at.eq(types::to_db(types::now())),
    );
    let updated = if to == DepotStatus::Closed {
        diesel::update(target.filter(depots::on_hand_g.eq(0)))
            .set(changes)
            .execute(conn)?
    } else {
        diesel::update(target).set(changes).execute(conn)?
    };
    let row = by_code(conn, code)?;
    if updated == 0 {
        if row.status == DepotStatus::Closed.as_str() {
            return Err(closed(code));
        }
        return Err(ApiError::conflict(
            "depot-not-empty",
            format!(
                "depot {code} still holds {} kg; transfer it out before closing",
                types::Grams(row.on_hand_g)
            ),
            serde_json::json!({ "depot": code, "on_hand_kg": types::Grams(row.on_hand_g).to_kg_string() }),
        ));
    }
    record_version(conn, &row, actor)?;
    Ok(row)
}

fn closed(code: &str) -> ApiError {
    ApiError::conflict(
        "depot-closed",
        format!("depot {code} is closed; a closed depot cannot change status"),
        serde_json::json!({ "depot": code, "depot_status": DepotStatus::Closed.as_str() }),
    )
}
