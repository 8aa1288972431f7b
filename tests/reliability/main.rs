//! Reliability under load: conservation of material with many concurrent
//! clients (bank test), across several replicas, and while the server is
//! killed with SIGKILL and restarted (crash test). The servers are real
//! `reserve serve` processes; clients retry with the same Idempotency-Key.
//!
//! RESERVE_BANK_SECONDS sets how long each load runs (default 30).

#[path = "../api/helpers.rs"]
mod helpers;

mod audit;
mod bank;
mod cluster;
mod events;
mod outage;
mod races;
mod scheduler;
#[path = "../api/sse.rs"]
mod sse;
#[path = "../api/webhook_receiver.rs"]
mod webhook_receiver;
mod webhooks;
