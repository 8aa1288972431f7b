//! Staging, positioning and reading events, and stream tickets.
//!
//! Writers call [`stage`] anywhere inside a write transaction; the row gets its
//! position in [`seal_staged`], which `db::write_transaction` runs as the last
//! step before commit, so the position is taken while `ledger_head` is held —
//! the lock every posting takes last and holds to commit. Staging early and
//! positioning late keeps the lock order of every path unchanged (depots,
//! stockpiles, elements, then `ledger_head`), and a savepoint rolled back takes
//! its staged events with it.

use std::cell::Cell;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use super::model::{Event, Filter, Position, LEDGER_ENTRY};
use crate::auth::{AuthUser, Role};
use crate::db::schema::{event_tickets as tk, events as ev, ledger_head};
use crate::db::{types, DbConn};
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::Order;
use crate::ledger::dto::EntryView;
use crate::ledger::repo::LedgerFilter;

thread_local! {
    /// Whether this thread's open write transaction staged an event. A write
    /// transaction runs start to end on one blocking thread, so this spares
    /// every posting a query for staged rows it never made.
    static STAGED: Cell<bool> = const { Cell::new(false) };
}

/// Stages an event in the caller's write transaction. `subject` names what it
/// is about (`order:12`), for jobs that announce a thing once.
pub fn stage(
    conn: &mut DbConn,
    kind: &str,
    element: Option<&str>,
    depot: Option<&str>,
    subject: Option<&str>,
    data: &Value,
) -> ApiResult<()> {
    diesel::insert_into(ev::table)
        .values((
            ev::kind.eq(kind),
            ev::element.eq(element),
            ev::depot.eq(depot),
            ev::subject.eq(subject),
            ev::at.eq(types::to_db(types::now())),
            ev::data.eq(data.to_string()),
        ))
        .execute(conn)?;
    STAGED.with(|s| s.set(true));
    Ok(())
}

/// An event to stage, as [`stage`] takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub element: Option<String>,
    pub depot: Option<String>,
    pub subject: Option<String>,
    pub data: Value,
}

/// Stages `events` in one statement, in their order: what many [`stage`]
/// calls would, without a round trip each (a rule evaluation round stages
/// two events per firing rule).
pub fn stage_all(conn: &mut DbConn, events: &[NewEvent]) -> ApiResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let at = types::to_db(types::now());
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                ev::kind.eq(e.kind.as_str()),
                ev::element.eq(e.element.as_deref()),
                ev::depot.eq(e.depot.as_deref()),
                ev::subject.eq(e.subject.as_deref()),
                ev::at.eq(at),
                ev::data.eq(e.data.to_string()),
            )
        })
        .collect();
    // Ids follow the rows' order (one statement, rows inserted in turn), and
    // `seal_staged` positions by id: the order given is the order streamed.
    for chunk in rows.chunks(STAGE_CHUNK) {
        crate::insert_rows!(conn, ev::table, chunk)?;
    }
    STAGED.with(|s| s.set(true));
    Ok(())
}

/// Rows a multi-row statement on `events` carries at most (6 bind
/// parameters an event row: 6,000, well under SQLite's 32,766).
const STAGE_CHUNK: usize = 1000;

/// Forgets whether the transaction now starting staged anything.
pub(crate) fn begin_transaction() {
    STAGED.with(|s| s.set(false));
}

/// Positions the events this transaction staged, if it staged any. Called by
/// `db::write_transaction` just before commit.
pub(crate) fn seal_staged(conn: &mut DbConn) -> diesel::QueryResult<()> {
    if !STAGED.with(|s| s.replace(false)) {
        return Ok(());
    }
    // Uncommitted rows of other transactions are invisible here, and every
    // committed row has a position, so the staged rows seen are this
    // transaction's own (ones of a rolled-back savepoint are gone).
    let staged: Vec<i64> = ev::table
        .filter(ev::after_sequence.is_null())
        .order(ev::id.asc())
        .select(ev::id)
        .load(conn)?;
    if staged.is_empty() {
        return Ok(());
    }
    let after_sequence: i64 = diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
        .set(ledger_head::last_sequence.eq(ledger_head::last_sequence))
        .returning(ledger_head::last_sequence)
        .get_result(conn)?;
    let last_sub: Option<i64> = ev::table
        .filter(ev::after_sequence.eq(after_sequence))
        .select(diesel::dsl::max(ev::sub))
        .first(conn)?;
    // One UPDATE for all of them (a chunk of them, past STAGE_CHUNK), not
    // one a row: `sub` numbers them on from the last one after the same
    // entry, in id order, as one UPDATE a row did.
    let positions = subs(&staged, last_sub.unwrap_or(0));
    for chunk in positions.chunks(STAGE_CHUNK) {
        position(conn, after_sequence, chunk)?;
    }
    Ok(())
}

/// Each staged event's `sub`: `last_sub + 1`, `+ 2`, … in the order given
/// (id order).
fn subs(staged: &[i64], last_sub: i64) -> Vec<(i64, i64)> {
    staged
        .iter()
        .zip(1..)
        .map(|(&id, k)| (id, last_sub + k))
        .collect()
}

/// Gives the staged events `positions` (id, sub) their place after ledger
/// entry `after_sequence`, in one statement.
fn position(
    conn: &mut DbConn,
    after_sequence: i64,
    positions: &[(i64, i64)],
) -> diesel::QueryResult<()> {
    use diesel::sql_types::BigInt;
    let postgres = matches!(conn, DbConn::Postgres(_));
    let sql = format!(
        "{} UPDATE events SET after_sequence = {}, sub = v.sub FROM v WHERE events.id = v.id",
        crate::db::values_cte("v", &["id", "sub"], positions.len(), postgres, 1),
        if postgres {
            format!("${}", positions.len() * 2 + 1)
        } else {
            "?".to_string()
        },
    );
    let updated = crate::per_backend!(conn, |c| {
        let mut q = diesel::sql_query(&sql).into_boxed();
        for &(id, sub) in positions {
            q = q.bind::<BigInt, _>(id).bind::<BigInt, _>(sub);
        }
        q.bind::<BigInt, _>(after_sequence).execute(c)?
    });
    debug_assert_eq!(updated, positions.len());
    Ok(())
}

/// Whether an event about `subject` of `kind` was ever announced.
pub fn announced(conn: &mut DbConn, kind: &str, subject: &str) -> ApiResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        ev::table
            .filter(ev::subject.eq(subject))
            .filter(ev::kind.eq(kind)),
    ))
    .get_result(conn)?)
}

/// The position of the newest committed event: where a stream that asks for
/// nothing old starts.
pub fn end(conn: &mut DbConn) -> ApiResult<Position> {
    let head: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let newest: Option<(Option<i64>, Option<i64>)> = ev::table
        .filter(ev::after_sequence.ge(head))
        .order((ev::after_sequence.desc(), ev::sub.desc()))
        .select((ev::after_sequence, ev::sub))
        .first(conn)
        .optional()?;
    Ok(match newest {
        Some((Some(sequence), Some(sub))) => Position { sequence, sub },
        _ => Position::ledger(head),
    })
}

/// Up to `limit` committed events after `after`, in position order, matching
/// `filter`.
///
/// Never returns an event that a later read could place before one it
/// returned: ledger entries are read up to the head read first (all of them
/// committed), and positioned events are read in one statement, which sees a
/// prefix of them since they are positioned under the same lock in commit
/// order. When one side fills `limit`, nothing past its last row is returned,
/// so the other side cannot run ahead of it.
pub fn read_after(
    conn: &mut DbConn,
    after: Position,
    limit: i64,
    filter: &Filter,
) -> ApiResult<Vec<Event>> {
    let limit = limit.clamp(1, 10_000);
    let head: i64 = ledger_head::table
        .select(ledger_head::last_sequence)
        .first(conn)?;
    let ledger = if filter.wants_kind(LEDGER_ENTRY) && after.sequence < head {
        ledger_after(conn, after.sequence, head, limit, filter)?
    } else {
        Vec::new()
    };
    let others = others_after(conn, after, head, limit, filter)?;
    let full = |v: &Vec<Event>| v.len() as i64 == limit;
    let cut = [(&ledger, full(&ledger)), (&others, full(&others))]
        .into_iter()
        .filter(|(v, f)| *f && !v.is_empty())
        .filter_map(|(v, _)| v.last().map(|e| e.position))
        .min();
    let mut all: Vec<Event> = ledger.into_iter().chain(others).collect();
    all.sort_by_key(|e| e.position);
    if let Some(cut) = cut {
        all.retain(|e| e.position <= cut);
    }
    all.truncate(limit as usize);
    Ok(all)
}

/// Ledger entries after sequence `after` up to `head`, as events: the
/// ledger's own list read, oldest first.
fn ledger_after(
    conn: &mut DbConn,
    after: i64,
    head: i64,
    limit: i64,
    filter: &Filter,
) -> ApiResult<Vec<Event>> {
    let f = LedgerFilter {
        element: filter.element.clone(),
        depot: filter.depot.clone(),
        depot_in: filter.scope.as_ref().map(|s| s.iter().cloned().collect()),
        up_to: Some(head),
        ..LedgerFilter::default()
    };
    crate::ledger::repo::read(conn, &f, Some(after), Order::OldestFirst, limit)?
        .into_iter()
        .map(|record| {
            let at = types::from_db(record.entry.recorded_at);
            let position = Position::ledger(record.entry.sequence);
            let (element, depot) = (record.element.clone(), record.depot.clone());
            let view = EntryView::from_record(record, true);
            Ok(Event {
                position,
                kind: LEDGER_ENTRY.to_string(),
                element: Some(element),
                depot: Some(depot),
                at,
                data: serde_json::to_value(view).map_err(ApiError::internal)?,
            })
        })
        .collect()
}

type EventRow = (
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    chrono::NaiveDateTime,
    String,
);

fn others_after(
    conn: &mut DbConn,
    after: Position,
    head: i64,
    limit: i64,
    filter: &Filter,
) -> ApiResult<Vec<Event>> {
    let mut q = ev::table
        .filter(ev::after_sequence.le(head))
        .filter(
            ev::after_sequence.gt(after.sequence).or(ev::after_sequence
                .eq(after.sequence)
                .and(ev::sub.gt(after.sub))),
        )
        .select((
            ev::after_sequence,
            ev::sub,
            ev::kind,
            ev::element,
            ev::depot,
            ev::at,
            ev::data,
        ))
        .into_boxed();
    if !filter.kinds.is_empty() {
        // Exact kinds narrow in SQL; prefixes are checked below.
        let exact: Option<Vec<String>> = filter
            .kinds
            .iter()
            .map(|k| match k {
                super::model::KindFilter::Exact(k) => Some(k.clone()),
                super::model::KindFilter::Prefix(_) => None,
            })
            .collect();
        if let Some(exact) = exact {
            q = q.filter(ev::kind.eq_any(exact));
        }
    }
    if let Some(e) = &filter.element {
        q = q.filter(ev::element.eq(e.clone()));
    }
    if let Some(d) = &filter.depot {
        q = q.filter(ev::depot.eq(d.clone()));
    }
    if let Some(scope) = &filter.scope {
        q = q.filter(
            ev::depot
                .is_null()
                .or(ev::depot.eq_any(scope.iter().cloned().collect::<Vec<_>>())),
        );
    }
    let rows: Vec<EventRow> = q
        .order((ev::after_sequence.asc(), ev::sub.asc()))
        .limit(limit)
        .load(conn)?;
    let mut out = Vec::with_capacity(rows.len());
    for (sequence, sub, kind, element, depot, at, data) in rows {
        let (Some(sequence), Some(sub)) = (sequence, sub) else {
            continue;
        };
        if !filter.wants_kind(&kind) {
            continue;
        }
        out.push(Event {
            position: Position { sequence, sub },
            kind,
            element,
            depot,
            at: types::from_db(at),
            data: serde_json::from_str(&data).map_err(ApiError::internal)?,
        });
    }
    Ok(out)
}

/// How long a ticket may wait to be used.
pub const TICKET_TTL_SECS: i64 = 60;

/// Issues a single-use ticket standing for `user` for the next minute.
/// Returns the ticket and when it expires; only its hash is stored.
pub fn issue_ticket(conn: &mut DbConn, user: &AuthUser) -> ApiResult<(String, DateTime<Utc>)> {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let ticket = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let now = types::now();
    let expires_at = now + chrono::Duration::seconds(TICKET_TTL_SECS);
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    let depots = user
        .depots
        .as_ref()
        .map(|d| serde_json::to_string(d).unwrap_or_default());
    let token_expires_at = DateTime::from_timestamp(user.expires_at, 0).unwrap_or(expires_at);
    // Old tickets are of no use to anyone; clearing them here keeps the
    // table to a minute's worth.
    diesel::delete(tk::table.filter(tk::expires_at.lt(types::to_db(
        now - chrono::Duration::seconds(TICKET_TTL_SECS),
    ))))
    .execute(conn)?;
    diesel::insert_into(tk::table)
        .values((
            tk::ticket_hash.eq(hash_ticket(&ticket)),
            tk::subject.eq(&user.subject),
            tk::roles.eq(roles.join(",")),
            tk::depots.eq(depots),
            tk::token_expires_at.eq(types::to_db(token_expires_at)),
            tk::created_at.eq(types::to_db(now)),
            tk::expires_at.eq(types::to_db(expires_at)),
        ))
        .execute(conn)?;
    Ok((ticket, expires_at))
}

/// Uses a ticket up: the caller it stands for, or 401 if it is unknown,
/// used already or expired. One conditional UPDATE, so two replicas racing
/// for the same ticket cannot both win.
pub fn redeem_ticket(conn: &mut DbConn, ticket: &str) -> ApiResult<AuthUser> {
    let now = types::to_db(types::now());
    let row: Option<(String, String, Option<String>, chrono::NaiveDateTime)> = diesel::update(
        tk::table
            .filter(tk::ticket_hash.eq(hash_ticket(ticket)))
            .filter(tk::used_at.is_null())
            .filter(tk::expires_at.gt(now)),
    )
    .set(tk::used_at.eq(now))
    .returning((tk::subject, tk::roles, tk::depots, tk::token_expires_at))
    .get_result(conn)
    .optional()?;
    let (subject, roles, depots, token_expires_at) = row.ok_or_else(|| {
        ApiError::Unauthorized(
            "the ticket is unknown, used already or expired: ask POST /api/v1/events/tickets for a new one"
                .into(),
        )
    })?;
    Ok(AuthUser {
        subject,
        roles: roles.split(',').filter_map(Role::parse).collect(),
        depots: depots.and_then(|d| serde_json::from_str(&d).ok()),
        expires_at: token_expires_at.and_utc().timestamp(),
    })
}

fn hash_ticket(ticket: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ticket.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subs_number_on_from_the_last_in_the_order_given() {
        assert_eq!(subs(&[7, 9, 30], 0), vec![(7, 1), (9, 2), (30, 3)]);
        assert_eq!(subs(&[4], 12), vec![(4, 13)]);
        assert!(subs(&[], 5).is_empty());
    }
}
