//! The API description (`/openapi.yaml`) and a page that renders it (`/docs`),
//! both embedded in the binary.

pub mod routes;
