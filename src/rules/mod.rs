//! Release rules (issue 8): watch an element's imports, and when they drop
//! past a threshold propose a release order for a second person to approve.
//! `model` holds the fixed arithmetic and the decision, `repo` the rules,
//! their history and their evaluations, `routes` the HTTP surface,
//! `simulate` the what-if runs over the same model.

pub mod dto;
pub mod model;
pub mod repo;
pub mod routes;
pub mod simulate;
