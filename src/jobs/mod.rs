//! Scheduled work (rule evaluation, checkpoints, audit reports) that runs
//! exactly once per slot across every `reserve serve` sharing a database.
//!
//! A slot is an instant a cron schedule names. A replica runs a slot only when
//! its INSERT of the `(job, slot)` row into `job_claims` succeeds, and it does
//! the work in that same transaction: on PostgreSQL a second replica's INSERT
//! waits on the first one's uncommitted key and then finds it taken; a crash
//! mid-run rolls the claim back with the work, so the slot runs again later.
//! Slots missed while every replica was down are found from the newest claimed
//! slot at the next start.

pub mod repo;
pub mod runner;
pub mod schedule;

pub use runner::{spawn, Job};
pub use schedule::{CatchUp, Schedule};
