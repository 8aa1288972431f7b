//! Import flows: statistics of what arrived, per element, form, origin and
//! period (issue 8). `series` holds the arithmetic cover and release rules
//! share; `repo` loads and ingests flows; `upload` reads an upload as it
//! streams in; `model` is one row's validation; `cover` is days of cover.

pub mod countries;
pub mod cover;
pub mod model;
pub mod repo;
pub mod routes;
pub mod series;
pub mod upload;
