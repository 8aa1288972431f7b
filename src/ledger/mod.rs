//! The ledger: append-only, hash-chained entries; one way in (`post::post`).
pub mod chain;
pub mod dto;
pub mod group;
pub mod limits;
pub mod model;
pub mod post;
pub mod repo;
pub mod routes;
pub mod verify;
