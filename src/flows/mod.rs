//! Import flows: statistics of what arrived, per element, form, origin and
//! period (issue 8). `series` holds the arithmetic cover and release rules
//! share; `repo` loads flows for it.

pub mod repo;
pub mod series;
