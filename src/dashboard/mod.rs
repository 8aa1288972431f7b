//! The dashboard at `/`: a page, its script and its style sheet, embedded in
//! the binary. They need no token; everything the page shows comes from the
//! authenticated `/api/v1` API, called with the bearer token the user pastes.

pub mod routes;
