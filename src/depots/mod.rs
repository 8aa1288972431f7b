//! Depots: the storage sites, with capacity and drawdown-rate limits.
pub mod dto;
pub mod model;
pub mod repo;
pub mod routes;
