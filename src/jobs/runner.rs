//! The loop every replica runs: look for due slots, claim, run.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use chrono::{DateTime, Utc};

use super::{repo, CatchUp, Schedule};
use crate::db::DbConn;
use crate::error::ApiResult;
use crate::AppState;

/// The work of one slot; returns a one-line outcome kept in `job_claims`.
pub type Work = dyn Fn(&mut DbConn, DateTime<Utc>) -> ApiResult<String> + Send + Sync;

/// One scheduled job.
#[derive(Clone)]
pub struct Job {
    /// Unique name, the key in `job_claims` (e.g. `rules.evaluate`).
    pub name: &'static str,
    pub schedule: Schedule,
    pub catch_up: CatchUp,
    pub work: Arc<Work>,
}

/// A name for this process in `job_claims.claimed_by`.
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}", std::process::id())
}

/// Runs `jobs` on this replica: a first pass at once (so slots missed while
/// every replica was down run at start), then one every `poll`.
pub fn spawn(state: web::Data<AppState>, jobs: Vec<Job>, poll: Duration) {
    if jobs.is_empty() {
        return;
    }
    let replica: Arc<str> = replica_name().into();
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(poll);
        loop {
            ticks.tick().await;
            for job in &jobs {
                run_due(&state, job, &replica).await;
            }
        }
    });
}

/// Runs every due slot of `job` that no replica has run yet.
pub async fn run_due(state: &web::Data<AppState>, job: &Job, replica: &Arc<str>) {
    let name = job.name;
    let last = match state.db(move |c| repo::last_claimed(c, name)).await {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(job = name, error = %e, "cannot read the job's last slot");
            return;
        }
    };
    for slot in job
        .schedule
        .due(last, crate::db::types::now(), job.catch_up)
    {
        let (work, replica) = (job.work.clone(), replica.clone());
        let ran = state
            .db(move |c| repo::run_once(c, name, slot, &replica, |c| work(c, slot)))
            .await;
        match ran {
            Ok(Some(outcome)) => tracing::info!(job = name, %slot, outcome, "scheduled job ran"),
            Ok(None) => tracing::debug!(job = name, %slot, "another replica ran this slot"),
            Err(e) => {
                // The claim rolled back with the work: a later pass retries.
                tracing::warn!(job = name, %slot, error = %e, "scheduled job failed");
                return;
            }
        }
    }
}
