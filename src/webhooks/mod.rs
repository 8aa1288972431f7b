//! Webhooks: admins register URLs per event type; events are delivered to
//! them signed the Standard Webhooks way, retried with exponential backoff.
//!
//! Built so far: the domain decisions (`model`: secret, signature, URL and
//! event-type validation, backoff) and the tables
//! (`migrations/*/2026-12-01-000002_webhooks`). The endpoints, the delivery
//! worker and the fan-out from the event stream are not built yet.

pub mod model;
