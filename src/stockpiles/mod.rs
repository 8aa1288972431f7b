//! Stockpiles: one element, form and grade at one depot, with maintained balances.
pub mod repo;
pub mod routes;
