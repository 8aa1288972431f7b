//! Audit: physical counts, the audit trail of write attempts, signed
//! checkpoints of every stockpile's head, and signed audit reports.
//!
//! Pure decisions (variance and tolerance, Merkle trees, the canonical JSON a
//! report's signature covers, reconciliation) live in `model`, `merkle` and
//! `signing`, unit-tested without a database.
pub mod checkpoints;
pub mod counts;
pub mod jobs;
pub mod merkle;
pub mod model;
pub mod offline;
pub mod render;
pub mod reports;
pub mod routes;
pub mod signing;
pub mod trail;
