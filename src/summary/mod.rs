//! `GET /api/v1/summary`: what a dashboard draws, in one call, from the
//! maintained balances (never by summing the ledger).
pub mod routes;
