//! Webhooks: admins register URLs per event type; every matching event is
//! POSTed to them signed the Standard Webhooks way (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature`), retried with exponential
//! backoff for up to `webhooks.retry_window_hours`, with a delivery log and
//! redelivery on demand. `docs/webhooks.md` is the walk-through.
//!
//! - `model`: secret, signature, URL and event-type rules, backoff (pure);
//! - `repo`: registrations, fan-out, leases and the delivery log;
//! - `worker`: the loop each replica runs, and the outbound HTTP;
//! - `routes`, `dto`: the admin endpoints.

pub mod dto;
pub mod model;
pub mod repo;
pub mod routes;
pub mod worker;
