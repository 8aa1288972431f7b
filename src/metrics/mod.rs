//! Prometheus metrics: a small hand-rolled registry of atomics, written out in
//! the text exposition format 0.0.4 by `render`.
//!
//! Every series is allocated up front (HTTP series for each route pattern of
//! `routes::ROUTES` and each method), so recording a request is a lookup in a
//! map that never changes plus a few relaxed atomic adds: no lock on the hot
//! path. The registry belongs to one `AppState` (tests run several apps in one
//! process and each must see only its own counts), except the event-stream
//! client gauge, which the SSE handler reaches as a static.

pub mod http;
pub mod postings;
pub mod routes;
pub mod text;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::ledger::model::EntryKind;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub const fn new() -> Self {
        Gauge(AtomicI64::new(0))
    }

    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Clients connected to `GET /api/v1/events` in this process: the SSE handler
/// calls `inc()` when a stream opens and `dec()` when it ends (a drop guard,
/// so a client that disconnects mid-stream is counted out too).
pub static EVENT_STREAM_CLIENTS: Gauge = Gauge::new();

/// Outcome of one webhook delivery attempt, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Any other status, a timeout or a connection error.
    Failed,
}

/// Every metric of one app.
#[derive(Debug)]
pub struct Metrics {
    pub http: http::HttpMetrics,
    /// Committed ledger entries by kind, in `EntryKind::ALL` order.
    postings: [Counter; EntryKind::ALL.len()],
    /// Responses replayed for a repeated `Idempotency-Key`.
    pub idempotent_replays: Counter,
    /// Requests refused by authentication (401) or authorisation (403).
    pub auth_unauthenticated: Counter,
    pub auth_forbidden: Counter,
    /// Requests answered 429 by the failure throttle, by what was throttled.
    pub throttled_address: Counter,
    pub throttled_subject: Counter,
    /// Requests waiting for a pooled database connection right now.
    pub pool_waiting: Gauge,
    pub webhook_delivered: Counter,
    pub webhook_failed: Counter,
    /// Group commit (`ledger::group`): groups committed, and the postings
    /// (accepted, refused or replayed) they held.
    pub group_commit_groups: Counter,
    pub group_commit_members: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            http: http::HttpMetrics::new(),
            postings: Default::default(),
            idempotent_replays: Counter::default(),
            auth_unauthenticated: Counter::default(),
            auth_forbidden: Counter::default(),
            throttled_address: Counter::default(),
            throttled_subject: Counter::default(),
            pool_waiting: Gauge::default(),
            webhook_delivered: Counter::default(),
            webhook_failed: Counter::default(),
            group_commit_groups: Counter::default(),
            group_commit_members: Counter::default(),
        }
    }

    /// Adds entries committed by one database call (see `postings`).
    pub fn add_postings(&self, committed: postings::Tally) {
        for (counter, n) in self.postings.iter().zip(committed.0) {
            if n > 0 {
                counter.add(n);
            }
        }
    }

    /// Committed entries of `kind` so far.
    pub fn postings(&self, kind: EntryKind) -> u64 {
        self.postings[postings::slot(kind)].get()
    }

    /// Counts an authentication or authorisation refusal by its status.
    pub fn auth_failure(&self, status: u16) {
        match status {
            401 => self.auth_unauthenticated.inc(),
            403 => self.auth_forbidden.inc(),
            _ => {}
        }
    }

    pub fn webhook_attempt(&self, outcome: DeliveryOutcome) {
        match outcome {
            DeliveryOutcome::Delivered => self.webhook_delivered.inc(),
            DeliveryOutcome::Failed => self.webhook_failed.inc(),
        }
    }
}

/// Counts a request in the pool's waiting gauge until dropped.
pub struct Waiting<'a>(&'a Gauge);

impl<'a> Waiting<'a> {
    pub fn start(gauge: &'a Gauge) -> Self {
        gauge.inc();
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
