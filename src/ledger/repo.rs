//! Ledger rows and the reads over them.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{depots, ledger_entries as le, stockpiles};
use crate::db::DbConn;
use crate::error::ApiResult;
use crate::http::pagination::{Order, PageRequest};

/// A `ledger_entries` row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = le)]
pub struct EntryRow {
    pub sequence: i64,
    pub stockpile_id: i64,
    pub kind: String,
    pub quantity_g: i64,
    pub balance_after_g: i64,
    pub occurred_at: NaiveDateTime,
    pub recorded_at: NaiveDateTime,
    pub actor: String,
    pub reference: Option<String>,
    pub counterparty: Option<String>,
    pub origin_country: Option<String>,
    pub unit_price_micros: Option<i64>,
    pub currency: Option<String>,
    pub note: Option<String>,
    pub idempotency_key: String,
    pub movement_id: String,
    pub order_id: Option<i64>,
    pub prev_hash: String,
    pub hash: String,
}

impl EntryRow {
    /// The fields the entry's hash commits to, with the identity of the
    /// stockpile it belongs to.
    pub fn chained<'a>(
        &'a self,
        identity: super::chain::StockpileIdentity<'a>,
    ) -> super::chain::ChainedFields<'a> {
        super::chain::ChainedFields {
            sequence: self.sequence,
            stockpile_id: self.stockpile_id,
            identity,
            kind: &self.kind,
            quantity_g: self.quantity_g,
            balance_after_g: self.balance_after_g,
            occurred_at_micros: self.occurred_at.and_utc().timestamp_micros(),
            recorded_at_micros: self.recorded_at.and_utc().timestamp_micros(),
            actor: &self.actor,
            reference: self.reference.as_deref(),
            counterparty: self.counterparty.as_deref(),
            origin_country: self.origin_country.as_deref(),
            unit_price_micros: self.unit_price_micros,
            currency: self.currency.as_deref(),
            note: self.note.as_deref(),
            idempotency_key: &self.idempotency_key,
            movement_id: &self.movement_id,
            order_id: self.order_id,
        }
    }
}

/// An entry with the names of the stockpile it moved.
#[derive(Debug, Clone)]
pub struct EntryRecord {
    pub entry: EntryRow,
    pub depot: String,
    pub element: String,
    pub form: String,
    pub grade: String,
}

/// Filters of `GET /api/v1/ledger`.
#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub depot: Option<String>,
    pub element: Option<String>,
    pub form: Option<String>,
    pub kind: Option<String>,
    pub stockpile_id: Option<i64>,
    pub reference: Option<String>,
    pub movement_id: Option<String>,
    /// `occurred_at >= from`
    pub from: Option<NaiveDateTime>,
    /// `occurred_at < to`
    pub to: Option<NaiveDateTime>,
    /// Only entries at one of these depots (a token's depot scope).
    pub depot_in: Option<Vec<String>>,
    /// `sequence <= up_to`: nothing past a head read beforehand (the event
    /// stream's consistent cut).
    pub up_to: Option<i64>,
}

/// One page of entries (plus one, to tell whether more follow), by sequence.
pub fn list(
    conn: &mut DbConn,
    f: &LedgerFilter,
    page: &PageRequest,
) -> ApiResult<Vec<EntryRecord>> {
    read(conn, f, page.after, page.order, page.limit + 1)
}

/// Up to `rows` entries past sequence `after` in `order`.
pub fn read(
    conn: &mut DbConn,
    f: &LedgerFilter,
    after: Option<i64>,
    order: Order,
    rows: i64,
) -> ApiResult<Vec<EntryRecord>> {
    let mut q = le::table
        .inner_join(stockpiles::table.inner_join(depots::table))
        .select((
            EntryRow::as_select(),
            depots::code,
            stockpiles::element,
            stockpiles::form,
            stockpiles::grade,
        ))
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
    if let Some(k) = &f.kind {
        q = q.filter(le::kind.eq(k.clone()));
    }
    if let Some(s) = f.stockpile_id {
        q = q.filter(le::stockpile_id.eq(s));
    }
    if let Some(r) = &f.reference {
        q = q.filter(le::reference.eq(r.clone()));
    }
    if let Some(m) = &f.movement_id {
        q = q.filter(le::movement_id.eq(m.clone()));
    }
    if let Some(t) = f.from {
        q = q.filter(le::occurred_at.ge(t));
    }
    if let Some(t) = f.to {
        q = q.filter(le::occurred_at.lt(t));
    }
    if let Some(codes) = &f.depot_in {
        q = q.filter(depots::code.eq_any(codes.clone()));
    }
    if let Some(head) = f.up_to {
        q = q.filter(le::sequence.le(head));
    }
    q = match (order, after) {
        (Order::NewestFirst, Some(a)) => q.filter(le::sequence.lt(a)).order(le::sequence.desc()),
        (Order::NewestFirst, None) => q.order(le::sequence.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(le::sequence.gt(a)).order(le::sequence.asc()),
        (Order::OldestFirst, None) => q.order(le::sequence.asc()),
    };
    let found: Vec<(EntryRow, String, String, String, String)> = q.limit(rows).load(conn)?;
    Ok(found
        .into_iter()
        .map(|(entry, depot, element, form, grade)| EntryRecord {
            entry,
            depot,
            element,
            form,
            grade,
        })
        .collect())
}

/// On-hand of a stockpile as of `as_of` (by `occurred_at`), with how many
/// entries made it up and the newest of them: one backward step on
/// `ledger_balances`' key, however long the stockpile's history.
pub fn balance_as_of(
    conn: &mut DbConn,
    stockpile_id: i64,
    as_of: NaiveDateTime,
) -> ApiResult<(i64, i64, Option<i64>)> {
    use crate::db::schema::ledger_balances as lb;
    let row: Option<(i64, i64, i64)> = lb::table
        .filter(lb::stockpile_id.eq(stockpile_id))
        .filter(lb::occurred_at.le(as_of))
        .order((lb::occurred_at.desc(), lb::sequence.desc()))
        .select((lb::balance_g, lb::entries, lb::max_sequence))
        .first(conn)
        .optional()?;
    Ok(row.map_or((0, 0, None), |(b, n, s)| (b, n, Some(s))))
}

/// `SUM(quantity_g)` as BIGINT on both backends (PostgreSQL's own SUM of a
/// bigint is NUMERIC, which the shared connection type cannot read).
pub fn sum_quantity(
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::BigInt>> {
    diesel::dsl::sql("CAST(SUM(ledger_entries.quantity_g) AS BIGINT)")
}
