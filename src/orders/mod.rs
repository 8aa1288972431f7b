//! Release orders: the SPR's drawdowns, sales with sealed bids and exchanges,
//! approved by a second person, allocated across depots and executed through
//! `ledger::post`.

pub mod dto;
pub mod model;
pub mod repo;
pub mod routes;
