//! Element policy (reserve floor, consumption, drawdown and test-sale caps,
//! every version kept) and annual ceilings (the National Defense Stockpile's
//! Annual Materials Plan). `ledger::limits` enforces both on every posting.
pub mod dto;
pub mod model;
pub mod repo;
pub mod routes;
