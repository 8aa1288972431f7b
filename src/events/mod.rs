//! The event stream (issue 10): everything the reserve announces — ledger
//! entries, order transitions, rule firings, flagged counts, overdue
//! exchanges, issued audit reports — in one gap-free total order that a
//! client can resume from without losing or repeating anything. See
//! `docs/events.md`.

pub mod hub;
pub mod model;
pub mod repo;
pub mod routes;

pub use hub::Hub;
