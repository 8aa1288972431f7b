//! Stockpile rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::schema::{depots, stockpiles};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::ledger::chain::GENESIS;
use crate::ledger::model::StockpileKey;

/// Creates the stockpile for `key` unless it exists. The statement differs per
/// backend only in syntax support; both skip silently on a concurrent create.
pub fn insert_if_missing(
    conn: &mut DbConn,
    depot_id: i64,
    key: &StockpileKey,
    now: DateTime<Utc>,
) -> ApiResult<bool> {
    let values = (
        stockpiles::depot_id.eq(depot_id),
        stockpiles::element.eq(key.element.as_str()),
        stockpiles::form.eq(key.form.as_str()),
        stockpiles::grade.eq(key.grade.as_str()),
        stockpiles::on_hand_g.eq(0i64),
        stockpiles::reserved_g.eq(0i64),
        stockpiles::head_hash.eq(GENESIS),
        stockpiles::entry_count.eq(0i64),
        stockpiles::created_at.eq(types::to_db(now)),
    );
    let insert = diesel::insert_into(stockpiles::table)
        .values(values)
        .on_conflict_do_nothing();
    let inserted = crate::per_backend!(conn, |c| insert.execute(c)?);
    Ok(inserted > 0)
}

/// A stockpile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StockpileView {
    pub id: i64,
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
    pub on_hand_kg: String,
    pub reserved_kg: String,
    pub available_kg: String,
    pub entry_count: i64,
    pub head_hash: String,
    pub created_at: String,
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    String,
    chrono::NaiveDateTime,
);

fn view(r: Row) -> StockpileView {
    let (id, depot, element, form, grade, on_hand, reserved, entry_count, head_hash, created_at) =
        r;
    StockpileView {
        id,
        depot,
        element,
        form,
        grade,
        on_hand_kg: Grams(on_hand).to_kg_string(),
        reserved_kg: Grams(reserved).to_kg_string(),
        available_kg: Grams(on_hand - reserved).to_kg_string(),
        entry_count,
        head_hash,
        created_at: types::rfc3339(types::from_db(created_at)),
    }
}

#[derive(Debug, Clone, Default)]
pub struct StockpileFilter {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub form: Option<String>,
    pub grade: Option<String>,
}

macro_rules! columns {
    () => {
        (
            stockpiles::id,
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
            stockpiles::on_hand_g,
            stockpiles::reserved_g,
            stockpiles::entry_count,
            stockpiles::head_hash,
            stockpiles::created_at,
        )
    };
}

pub fn list(
    conn: &mut DbConn,
    f: &StockpileFilter,
    page: &PageRequest,
) -> ApiResult<Vec<StockpileView>> {
    let mut q = stockpiles::table
        .inner_join(depots::table)
        .select(columns!())
        .into_boxed();
    if let Some(d) = &f.depot {
        q = q.filter(depots::code.eq(d.clone()));
    }
    if let Some(e) = &f.element {
        q = q.filter(stockpiles::element.eq(e.clone()));
    }
    if let Some(fm) = &f.form {
        q = q.filter(stockpiles::form.eq(fm.clone()));
    }
    if let Some(g) = &f.grade {
        q = q.filter(stockpiles::grade.eq(g.clone()));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => {
            q.filter(stockpiles::id.lt(a)).order(stockpiles::id.desc())
        }
        (Order::NewestFirst, None) => q.order(stockpiles::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(stockpiles::id.gt(a)).order(stockpiles::id.asc()),
        (Order::OldestFirst, None) => q.order(stockpiles::id.asc()),
    };
    let rows: Vec<Row> = q.limit(page.limit + 1).load(conn)?;
    Ok(rows.into_iter().map(view).collect())
}

pub fn get(conn: &mut DbConn, id: i64) -> ApiResult<StockpileView> {
    stockpiles::table
        .inner_join(depots::table)
        .filter(stockpiles::id.eq(id))
        .select(columns!())
        .first::<Row>(conn)
        .optional()?
        .map(view)
        .ok_or_else(|| ApiError::NotFound(format!("no stockpile with id {id}")))
}

/// Finds the stockpile for `key`, creating it when missing (explicit creation,
/// before any stock arrives). Runs inside a write transaction. Says whether it
/// was created (`true`) or already existed.
pub fn create(conn: &mut DbConn, key: &StockpileKey) -> ApiResult<(StockpileView, bool)> {
    let depot: Option<(i64, String)> = depots::table
        .filter(depots::code.eq(key.depot.as_str()))
        .select((depots::id, depots::status))
        .first(conn)
        .optional()?;
    let (depot_id, status) = depot
        .ok_or_else(|| ApiError::field("depot", format!("no depot with code {}", key.depot)))?;
    if status == "closed" {
        return Err(ApiError::conflict(
            "depot-not-active",
            format!("depot {} is closed", key.depot),
            serde_json::json!({ "depot": key.depot.as_str(), "depot_status": status }),
        ));
    }
    let created = insert_if_missing(conn, depot_id, key, types::now())?;
    let id: i64 = stockpiles::table
        .filter(stockpiles::depot_id.eq(depot_id))
        .filter(stockpiles::element.eq(key.element.as_str()))
        .filter(stockpiles::form.eq(key.form.as_str()))
        .filter(stockpiles::grade.eq(key.grade.as_str()))
        .select(stockpiles::id)
        .first(conn)?;
    Ok((get(conn, id)?, created))
}
