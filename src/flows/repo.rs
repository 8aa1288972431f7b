//! Reading import flows for the arithmetic in `series`.

use chrono::NaiveDate;
use diesel::prelude::*;

use super::series::FlowSpan;
use crate::db::schema::import_flows as f;
use crate::db::DbConn;
use crate::error::ApiResult;

/// `element`'s flows whose period overlaps `from..=to`, optionally only from
/// `origins` (ISO 3166-1 alpha-2 codes).
pub fn spans(
    conn: &mut DbConn,
    element: &str,
    origins: Option<&[String]>,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Vec<FlowSpan>> {
    let mut q = f::table
        .filter(f::element.eq(element))
        .filter(f::period_end.ge(from))
        .filter(f::period_start.le(to))
        .select((
            f::period_start,
            f::period_end,
            f::quantity_g,
            f::origin_country,
        ))
        .into_boxed();
    if let Some(origins) = origins {
        q = q.filter(f::origin_country.eq_any(origins));
    }
    let rows: Vec<(NaiveDate, NaiveDate, i64, String)> = q.load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(period_start, period_end, quantity_g, origin_country)| FlowSpan {
                period_start,
                period_end,
                quantity_g,
                origin_country,
            },
        )
        .collect())
}

/// The data horizon: the latest `period_end` seen for `element` from any
/// origin, or `None` when no flow is on record. Never narrowed to some
/// origins: an origin that stops shipping altogether reports no rows, and its
/// silence must read as a drop, not as data not yet in.
pub fn data_horizon(conn: &mut DbConn, element: &str) -> ApiResult<Option<NaiveDate>> {
    Ok(f::table
        .filter(f::element.eq(element))
        .select(diesel::dsl::max(f::period_end))
        .first(conn)?)
}
