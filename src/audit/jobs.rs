//! The audit's scheduled jobs: checkpoints (and audit reports), each slot run
//! once across every replica through `jobs::repo::run_once`.

use std::sync::Arc;

use super::checkpoints;
use super::signing::AuditKey;
use crate::config::Settings;
use crate::jobs::{CatchUp, Job, Schedule};

pub const CHECKPOINT_JOB: &str = "audit.checkpoint";

/// Every audit job the settings turn on. Without a signing key there are none
/// (`serve` refuses to start without one unless reports are off).
pub fn scheduled(settings: &Settings) -> Vec<Job> {
    let Some(key) = key_of(settings) else {
        return Vec::new();
    };
    let mut jobs = Vec::new();
    let a = &settings.audit;
    if let Some(schedule) = schedule_of(&a.checkpoint_cron) {
        let key = key.clone();
        jobs.push(Job {
            name: CHECKPOINT_JOB,
            schedule,
            // A missed hour needs no checkpoint of its own: the next one
            // commits to everything since.
            catch_up: CatchUp::Latest,
            work: Arc::new(move |c, _slot| {
                checkpoints::create(c, &key, "schedule")
                    .map(|v| format!("checkpoint {} over {} stockpiles", v.id, v.stockpiles))
            }),
        });
    }
    jobs.extend(super::reports::scheduled(settings, &key));
    jobs
}

pub fn key_of(settings: &Settings) -> Option<Arc<AuditKey>> {
    match settings.audit.signing_key.trim() {
        "" => None,
        spec => AuditKey::parse(spec).ok().map(Arc::new),
    }
}

pub fn schedule_of(expr: &str) -> Option<Schedule> {
    match expr.trim() {
        "" => None,
        e => Schedule::parse(e).ok(),
    }
}
