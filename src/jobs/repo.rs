//! The `job_claims` table: which replica ran which slot of which job.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::job_claims as jc;
use crate::db::{types, write_transaction, DbConn};
use crate::error::ApiResult;

/// The newest slot of `job` any replica has run.
pub fn last_claimed(conn: &mut DbConn, job: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let slot: Option<chrono::NaiveDateTime> = jc::table
        .filter(jc::job.eq(job))
        .select(diesel::dsl::max(jc::slot))
        .first(conn)?;
    Ok(slot.map(types::from_db))
}

/// Runs `work` for `(job, slot)` unless another replica has: claims the slot
/// and does the work in one transaction, and records the work's one-line
/// outcome. `Ok(None)` when the slot was already taken. An error rolls back
/// the claim with the work, so a later pass tries the slot again.
pub fn run_once<F>(
    conn: &mut DbConn,
    job: &str,
    slot: DateTime<Utc>,
    replica: &str,
    work: F,
) -> ApiResult<Option<String>>
where
    F: FnOnce(&mut DbConn) -> ApiResult<String>,
{
    write_transaction(conn, |c| {
        let now = types::to_db(types::now());
        let slot = types::to_db(slot);
        // On PostgreSQL a concurrent claimant's INSERT waits here until the
        // first commits (then inserts nothing) or rolls back (then wins).
        let insert = diesel::insert_into(jc::table)
            .values((
                jc::job.eq(job),
                jc::slot.eq(slot),
                jc::claimed_by.eq(replica),
                jc::claimed_at.eq(now),
                jc::finished_at.eq(now),
                jc::outcome.eq("running"),
            ))
            .on_conflict_do_nothing();
        let claimed = match c {
            DbConn::Postgres(pg) => insert.execute(pg)?,
            DbConn::Sqlite(lite) => insert.execute(lite)?,
        };
        if claimed == 0 {
            return Ok(None);
        }
        let outcome = work(c)?;
        diesel::update(jc::table.filter(jc::job.eq(job)).filter(jc::slot.eq(slot)))
            .set((
                jc::finished_at.eq(types::to_db(types::now())),
                jc::outcome.eq(&outcome),
            ))
            .execute(c)?;
        Ok(Some(outcome))
    })
}

/// One claimed slot, for tests and operators.
#[derive(Debug, Clone, Queryable)]
pub struct Claim {
    pub job: String,
    pub slot: chrono::NaiveDateTime,
    pub claimed_by: String,
    pub claimed_at: chrono::NaiveDateTime,
    pub finished_at: chrono::NaiveDateTime,
    pub outcome: String,
}

/// The newest `limit` claims of `job`, newest first.
pub fn recent(conn: &mut DbConn, job: &str, limit: i64) -> ApiResult<Vec<Claim>> {
    Ok(jc::table
        .filter(jc::job.eq(job))
        .order(jc::slot.desc())
        .limit(limit)
        .select((
            jc::job,
            jc::slot,
            jc::claimed_by,
            jc::claimed_at,
            jc::finished_at,
            jc::outcome,
        ))
        .load(conn)?)
}
