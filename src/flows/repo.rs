//! Import flows in the database: ingesting validated rows (idempotent per
//! source and external id), listing them, and reading them for the
//! arithmetic in `series`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;

use super::model::FlowRow;
use super::series::FlowSpan;
use crate::db::schema::import_flows as f;
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::elements::model::{ElementSymbol, Form};
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};

/// `element`'s flows whose period overlaps `from..=to`, optionally only from
/// `origins` (ISO 3166-1 alpha-2 codes).
pub fn spans(
    conn: &mut DbConn,
    element: &str,
    origins: Option<&[String]>,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<Vec<FlowSpan>> {
    let mut by_element = spans_of(conn, &[element], origins, from, to)?;
    Ok(by_element.remove(element).unwrap_or_default())
}

/// The flows of each of `elements` whose period overlaps `from..=to`,
/// optionally only from `origins`, in one query: what `cover` and a run of
/// every release rule read, instead of one query an element.
pub fn spans_of<S: AsRef<str>>(
    conn: &mut DbConn,
    elements: &[S],
    origins: Option<&[String]>,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<HashMap<String, Vec<FlowSpan>>> {
    let elements: Vec<&str> = elements.iter().map(AsRef::as_ref).collect();
    let mut q = f::table
        .filter(f::element.eq_any(elements))
        .filter(f::period_end.ge(from))
        .filter(f::period_start.le(to))
        .select((
            f::element,
            f::period_start,
            f::period_end,
            f::quantity_g,
            f::origin_country,
        ))
        .into_boxed();
    if let Some(origins) = origins {
        q = q.filter(f::origin_country.eq_any(origins));
    }
    let rows: Vec<(String, NaiveDate, NaiveDate, i64, String)> = q.load(conn)?;
    let mut by_element: HashMap<String, Vec<FlowSpan>> = HashMap::new();
    for (element, period_start, period_end, quantity_g, origin_country) in rows {
        by_element.entry(element).or_default().push(FlowSpan {
            period_start,
            period_end,
            quantity_g,
            origin_country,
        });
    }
    Ok(by_element)
}

/// The data horizon: the latest `period_end` seen for `element` from any
/// origin, or `None` when no flow is on record. Never narrowed to some
/// origins: an origin that stops shipping altogether reports no rows, and its
/// silence must read as a drop, not as data not yet in.
pub fn data_horizon(conn: &mut DbConn, element: &str) -> ApiResult<Option<NaiveDate>> {
    Ok(data_horizons(conn, &[element])?.remove(element))
}

/// The data horizon of each of `elements` that has flows, in one query.
pub fn data_horizons<S: AsRef<str>>(
    conn: &mut DbConn,
    elements: &[S],
) -> ApiResult<HashMap<String, NaiveDate>> {
    use diesel::sql_types::Text;
    if elements.is_empty() {
        return Ok(HashMap::new());
    }
    // Each element's newest period end is the last entry of its part of the
    // (element, period_end) index: one probe an element. The GROUP BY this
    // replaces read every flow of the elements (20,400 in scenario 9: 4-8 ms
    // on PostgreSQL, twice a round of cover plus the rules).
    let postgres = matches!(conn, DbConn::Postgres(_));
    let sql = format!(
        "{} SELECT e.element AS element, \
         (SELECT MAX(f.period_end) FROM import_flows f WHERE f.element = e.element) AS horizon \
         FROM e",
        crate::db::values_cte("e", &["element"], elements.len(), postgres, 1)
    );
    let rows: Vec<Horizon> = crate::per_backend!(conn, |c| {
        let mut q = diesel::sql_query(&sql).into_boxed();
        for e in elements {
            q = q.bind::<Text, _>(e.as_ref());
        }
        q.load(c)?
    });
    Ok(rows
        .into_iter()
        .filter_map(|r| r.horizon.map(|h| (r.element, h)))
        .collect())
}

/// An element's newest period end, if it has flows.
#[derive(QueryableByName)]
struct Horizon {
    #[diesel(sql_type = diesel::sql_types::Text)]
    element: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Date>)]
    horizon: Option<NaiveDate>,
}

/// What one ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Rows written.
    pub inserted: u64,
    /// Rows already on record with the same content.
    pub unchanged: u64,
    /// Elements that got newly inserted rows (release rules re-evaluate them).
    pub touched: BTreeSet<ElementSymbol>,
    /// Every element the rows named, inserted or unchanged.
    pub elements: BTreeSet<ElementSymbol>,
}

/// One row that names a stored flow's (source, external_id) with other content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FlowConflict {
    /// The row's index in the upload, as in `rows[{row}]`.
    pub row: u64,
    pub field: String,
    pub source: String,
    pub external_id: String,
    /// Fields whose values differ from the stored flow's.
    pub fields: Vec<&'static str>,
}

/// Rows per INSERT and per look-up of stored keys: 500 rows bind 6,000
/// parameters, well inside both backends' limits.
pub const CHUNK_ROWS: usize = 500;

/// Conflicts named in one refusal; the total is given beside them.
const MAX_LISTED_CONFLICTS: usize = 100;

/// Advisory-lock key serialising ingests on PostgreSQL ("importfl"): two
/// uploads of one key cannot both find it missing, and ids are handed out in
/// commit order, so a cursor over the list never skips a row.
const INGEST_LOCK: i64 = 0x696d_706f_7274_666c;

/// Ingests validated `rows` (each with its index in the upload), chunk by
/// chunk: a row whose (source, external_id) is stored with the same content
/// hash is unchanged; one stored with another hash is a conflict; the rest are
/// inserted. Any conflict refuses the whole upload with 409, naming each
/// conflicting row and its differing fields (up to 100, with the total).
///
/// Must run inside `db::write_transaction`: a refusal returns an error, so
/// the caller's transaction rolls back whatever chunks were inserted. Rows
/// must not repeat a key among themselves (`upload::read` guarantees it).
pub fn ingest<I>(conn: &mut DbConn, rows: I, recorded_by: &str) -> ApiResult<IngestOutcome>
where
    I: IntoIterator<Item = ApiResult<(u64, FlowRow)>>,
{
    crate::db::lock_key_for_transaction(conn, INGEST_LOCK)?;
    let recorded_at = types::to_db(types::now());
    let mut outcome = IngestOutcome::default();
    let mut conflicts: Vec<FlowConflict> = Vec::new();
    let mut conflicts_total = 0u64;
    let mut chunk: Vec<(u64, FlowRow)> = Vec::with_capacity(CHUNK_ROWS);
    let mut rows = rows.into_iter();
    loop {
        chunk.clear();
        for row in rows.by_ref().take(CHUNK_ROWS) {
            chunk.push(row?);
        }
        if chunk.is_empty() {
            break;
        }
        let stored = stored_rows(conn, &chunk)?;
        let mut new_rows = Vec::with_capacity(chunk.len());
        for (index, row) in &chunk {
            outcome.elements.insert(row.element);
            let hash = row.content_hash();
            match stored.get(&(row.source.clone(), row.external_id.clone())) {
                Some((stored_hash, _)) if *stored_hash == hash => outcome.unchanged += 1,
                Some((_, stored_row)) => {
                    conflicts_total += 1;
                    if conflicts.len() < MAX_LISTED_CONFLICTS {
                        conflicts.push(FlowConflict {
                            row: *index,
                            field: format!("rows[{index}]"),
                            source: row.source.clone(),
                            external_id: row.external_id.clone(),
                            fields: row.differing_fields(stored_row),
                        });
                    }
                }
                None => new_rows.push((row, hash)),
            }
        }
        // After the first conflict nothing more is written; the rest is only
        // checked, so the refusal names every conflicting row.
        if conflicts_total == 0 && !new_rows.is_empty() {
            insert_chunk(conn, &new_rows, recorded_at, recorded_by)?;
            outcome.inserted += new_rows.len() as u64;
            outcome
                .touched
                .extend(new_rows.iter().map(|(r, _)| r.element));
        }
    }
    if conflicts_total > 0 {
        return Err(conflict_error(conflicts, conflicts_total));
    }
    Ok(outcome)
}

fn conflict_error(conflicts: Vec<FlowConflict>, total: u64) -> ApiError {
    let first = &conflicts[0];
    ApiError::conflict(
        "flow-conflict",
        format!(
            "{}: source {:?} and external_id {:?} are on record with other content \
             (differing: {}); {total} row(s) conflict in all. Nothing was written: \
             a flow once recorded is not changed by an upload",
            first.field,
            first.source,
            first.external_id,
            first.fields.join(", "),
        ),
        serde_json::json!({ "conflicts": conflicts, "conflicts_total": total }),
    )
}

type StoredKey = (String, String);

/// The stored flows sharing a (source, external_id) with the chunk's rows:
/// their content hash and fields. One query per distinct source in the
/// chunk (an upload usually has one).
fn stored_rows(
    conn: &mut DbConn,
    chunk: &[(u64, FlowRow)],
) -> ApiResult<HashMap<StoredKey, (String, FlowRow)>> {
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (_, row) in chunk {
        by_source
            .entry(row.source.as_str())
            .or_default()
            .push(row.external_id.as_str());
    }
    let mut found = HashMap::new();
    for (source, ids) in by_source {
        for r in stored_with_source(conn, source, ids)? {
            let key = (r.source.clone(), r.external_id.clone());
            let hash = r.content_hash.clone();
            found.insert(key, (hash, r.into_row()?));
        }
    }
    Ok(found)
}

/// The stored flows of `source` with any of `external_ids`, by the unique
/// index on (source, external_id).
fn stored_with_source(
    conn: &mut DbConn,
    source: &str,
    external_ids: Vec<&str>,
) -> ApiResult<Vec<StoredFlow>> {
    use diesel::sql_types::{Array, Text};
    Ok(match conn {
        // `external_id IN (...)` got a plan that scanned every flow of the
        // source and compared it with each id (0.5 s per chunk once 50,000
        // flows were in, before the table had statistics); the ids joined as a
        // relation are one index probe each, whatever the statistics say.
        DbConn::Postgres(c) => diesel::sql_query(
            "SELECT f.* FROM unnest($1) AS k(external_id) \
             JOIN import_flows f ON f.source = $2 AND f.external_id = k.external_id",
        )
        .bind::<Array<Text>, _>(external_ids)
        .bind::<Text, _>(source)
        .load(c)?,
        DbConn::Sqlite(c) => f::table
            .filter(f::source.eq(source))
            .filter(f::external_id.eq_any(external_ids))
            .select(StoredFlow::as_select())
            .load(c)?,
    })
}

fn insert_chunk(
    conn: &mut DbConn,
    rows: &[(&FlowRow, String)],
    recorded_at: NaiveDateTime,
    recorded_by: &str,
) -> ApiResult<()> {
    let values: Vec<_> = rows
        .iter()
        .map(|(r, hash)| {
            (
                f::element.eq(r.element.as_str()),
                f::form.eq(r.form.as_str()),
                f::origin_country.eq(r.origin_country.as_str()),
                f::hs_code.eq(r.hs_code.as_str()),
                f::period_start.eq(r.period_start),
                f::period_end.eq(r.period_end),
                f::quantity_g.eq(r.quantity.0),
                f::source.eq(r.source.as_str()),
                f::external_id.eq(r.external_id.as_str()),
                f::content_hash.eq(hash.as_str()),
                f::recorded_at.eq(recorded_at),
                f::recorded_by.eq(recorded_by),
            )
        })
        .collect();
    // The shared connection type cannot write a multi-row INSERT; each
    // backend's own can, so the one statement goes to the inner connection.
    let insert = diesel::insert_into(f::table).values(values);
    crate::per_backend!(conn, |c| insert.execute(c)?);
    Ok(())
}

/// A stored flow, as the list shows it.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = f)]
pub struct StoredFlow {
    pub id: i64,
    pub element: String,
    pub form: String,
    pub origin_country: String,
    pub hs_code: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub quantity_g: i64,
    pub source: String,
    pub external_id: String,
    pub content_hash: String,
    pub recorded_at: NaiveDateTime,
    pub recorded_by: String,
}

impl StoredFlow {
    fn into_row(self) -> ApiResult<FlowRow> {
        let bad = |what: &str| {
            ApiError::internal(anyhow::anyhow!(
                "stored import flow {} has an invalid {what}",
                self.id
            ))
        };
        Ok(FlowRow {
            element: ElementSymbol::parse(&self.element).map_err(|_| bad("element"))?,
            form: Form::parse(&self.form).map_err(|_| bad("form"))?,
            origin_country: self.origin_country.clone(),
            hs_code: self.hs_code.clone(),
            period_start: self.period_start,
            period_end: self.period_end,
            quantity: Grams(self.quantity_g),
            source: self.source.clone(),
            external_id: self.external_id.clone(),
        })
    }
}

/// Filters of the flow list; dates select flows whose period overlaps
/// `from..=to`.
#[derive(Debug, Clone, Default)]
pub struct FlowFilter {
    pub element: Option<String>,
    pub origin: Option<String>,
    pub source: Option<String>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// One page of flows by id (plus one, to tell whether more follow).
pub fn list(
    conn: &mut DbConn,
    filter: &FlowFilter,
    page: &PageRequest,
) -> ApiResult<Vec<StoredFlow>> {
    let mut q = f::table.select(StoredFlow::as_select()).into_boxed();
    if let Some(e) = &filter.element {
        q = q.filter(f::element.eq(e.clone()));
    }
    if let Some(o) = &filter.origin {
        q = q.filter(f::origin_country.eq(o.clone()));
    }
    if let Some(s) = &filter.source {
        q = q.filter(f::source.eq(s.clone()));
    }
    if let Some(d) = filter.from {
        q = q.filter(f::period_end.ge(d));
    }
    if let Some(d) = filter.to {
        q = q.filter(f::period_start.le(d));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(f::id.lt(a)).order(f::id.desc()),
        (Order::NewestFirst, None) => q.order(f::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(f::id.gt(a)).order(f::id.asc()),
        (Order::OldestFirst, None) => q.order(f::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}

/// How many flows are on record (tests and the demo's summary line).
pub fn count(conn: &mut DbConn) -> ApiResult<i64> {
    Ok(f::table.count().get_result(conn)?)
}
