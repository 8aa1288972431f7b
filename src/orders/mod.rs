//! Release orders (issue 7): the SPR's drawdowns, sales and exchanges. So far
//! the domain decisions only; routes and storage build on them.

pub mod model;
