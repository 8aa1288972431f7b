//! Period locks: no ledger entry may occur before the latest lock.
pub mod repo;
pub mod routes;
