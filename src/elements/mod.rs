//! Reference data: elements and forms.
pub mod model;
pub mod repo;
pub mod routes;
