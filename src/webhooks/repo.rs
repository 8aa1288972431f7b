//! Webhooks in the database: registrations, the fan-out of events into
//! deliveries, leases on due deliveries, and the delivery log.
//!
//! Exactly once across replicas:
//! - Fan-out runs under the `webhook_cursor` row lock and advances the cursor
//!   in the transaction that inserts the deliveries, so each event becomes one
//!   delivery per matching webhook whichever replica gets there first.
//! - Creating or enabling a webhook takes the same lock and records the newest
//!   event position (`starts_after`): it gets every event after that, and
//!   none of the history before it, however far the cursor lags.
//! - An attempt first leases its delivery (a conditional UPDATE, and on
//!   PostgreSQL `FOR UPDATE SKIP LOCKED` so replicas do not queue on each
//!   other's rows); its outcome is written only under the same lease token.
//!   A replica that dies mid-attempt leaves a lease that expires, and the
//!   attempt is made again: receivers deduplicate by `webhook-id`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use super::dto::{AttemptView, DeliveryView, WebhookChange, WebhookView};
use super::model::{new_secret, Backoff, EventTypes};
use crate::db::schema::{
    webhook_attempts as wa, webhook_cursor as wc, webhook_deliveries as wd, webhooks as wh,
};
use crate::db::{types, DbConn};
use crate::error::{ApiError, ApiResult};
use crate::events::model::{Event, Filter, Position};
use crate::http::pagination::{Order, PageRequest};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = wh)]
pub struct WebhookRow {
    pub id: i64,
    pub url: String,
    pub event_types: String,
    pub description: Option<String>,
    pub secret: String,
    pub enabled: bool,
    pub version: i64,
    pub created_at: NaiveDateTime,
    pub created_by: String,
    pub updated_at: NaiveDateTime,
    pub updated_by: String,
    pub deleted_at: Option<NaiveDateTime>,
    pub starts_after: String,
}

impl WebhookRow {
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id,
            url: self.url.clone(),
            event_types: EventTypes::from_stored(&self.event_types)
                .as_slice()
                .to_vec(),
            description: self.description.clone(),
            enabled: self.enabled,
            secret: None,
            version: self.version,
            created_at: types::rfc3339(types::from_db(self.created_at)),
            created_by: self.created_by.clone(),
            updated_at: types::rfc3339(types::from_db(self.updated_at)),
            updated_by: self.updated_by.clone(),
        }
    }

    fn starts_after(&self) -> Position {
        parse_position(&self.starts_after)
    }
}

/// A stored position; `""` is before every event.
fn parse_position(s: &str) -> Position {
    if s.is_empty() {
        Position::START
    } else {
        s.parse().unwrap_or(Position::START)
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no webhook {id}"))
}

/// A live (not deleted) webhook.
pub fn find(conn: &mut DbConn, id: i64) -> ApiResult<WebhookRow> {
    wh::table
        .filter(wh::id.eq(id))
        .filter(wh::deleted_at.is_null())
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| not_found(id))
}

/// Takes the fan-out cursor's row lock until the transaction ends, and
/// answers the newest committed event position: where a webhook created or
/// enabled now starts.
fn hold_cursor(conn: &mut DbConn) -> ApiResult<Position> {
    diesel::update(wc::table.filter(wc::id.eq(1)))
        .set(wc::updated_at.eq(types::to_db(types::now())))
        .execute(conn)?;
    crate::events::repo::end(conn)
}

/// Registers a webhook; the answer carries its secret, shown this once.
pub fn create(conn: &mut DbConn, actor: &str, c: &WebhookChange) -> ApiResult<WebhookView> {
    let (Some(url), Some(types)) = (&c.url, &c.event_types) else {
        return Err(ApiError::internal(anyhow::anyhow!(
            "a validated registration has a url and event types"
        )));
    };
    let start = hold_cursor(conn)?;
    let now = types::to_db(types::now());
    let secret = new_secret();
    let id: i64 = diesel::insert_into(wh::table)
        .values((
            wh::url.eq(url),
            wh::event_types.eq(types.to_stored()),
            wh::description.eq(c.description.clone().flatten()),
            wh::secret.eq(&secret),
            wh::enabled.eq(c.enabled.unwrap_or(true)),
            wh::version.eq(1i64),
            wh::created_at.eq(now),
            wh::created_by.eq(actor),
            wh::updated_at.eq(now),
            wh::updated_by.eq(actor),
            wh::starts_after.eq(start.to_string()),
        ))
        .returning(wh::id)
        .get_result(conn)?;
    let mut view = find(conn, id)?.view();
    view.secret = Some(secret);
    Ok(view)
}

pub fn list(
    conn: &mut DbConn,
    enabled: Option<bool>,
    page: &PageRequest,
) -> ApiResult<Vec<WebhookView>> {
    let mut q = wh::table
        .filter(wh::deleted_at.is_null())
        .select(WebhookRow::as_select())
        .into_boxed();
    if let Some(en) = enabled {
        q = q.filter(wh::enabled.eq(en));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(c)) => q.filter(wh::id.lt(c)).order(wh::id.desc()),
        (Order::NewestFirst, None) => q.order(wh::id.desc()),
        (Order::OldestFirst, Some(c)) => q.filter(wh::id.gt(c)).order(wh::id.asc()),
        (Order::OldestFirst, None) => q.order(wh::id.asc()),
    };
    let rows: Vec<WebhookRow> = q.limit(page.limit + 1).load(conn)?;
    Ok(rows.iter().map(WebhookRow::view).collect())
}

/// What an `If-Match` on a webhook demands: `None` for `*`.
pub type Expected = Option<i64>;

/// Takes the webhook's row lock if it is live and at the expected version.
fn lock_for_change(conn: &mut DbConn, id: i64, expected: Expected) -> ApiResult<WebhookRow> {
    crate::http::lock_at_version(
        conn,
        &format!("webhook {id}"),
        expected,
        |c| find(c, id),
        |r| r.version,
        |c, version| {
            diesel::update(
                wh::table
                    .filter(wh::id.eq(id))
                    .filter(wh::deleted_at.is_null())
                    .filter(wh::version.eq(version)),
            )
            .set(wh::version.eq(wh::version))
            .execute(c)
        },
    )
}

/// Deliveries still waiting are not attempted for a webhook that was
/// disabled or deleted: they end `cancelled`.
fn cancel_pending(conn: &mut DbConn, webhook_id: i64) -> ApiResult<()> {
    diesel::update(
        wd::table
            .filter(wd::webhook_id.eq(webhook_id))
            .filter(wd::status.eq("pending")),
    )
    .set((
        wd::status.eq("cancelled"),
        wd::next_attempt_at.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Changes the fields given. Enabling a disabled webhook starts it at the
/// newest event: what happened while it was off is not sent.
pub fn update(
    conn: &mut DbConn,
    actor: &str,
    id: i64,
    expected: Expected,
    c: &WebhookChange,
) -> ApiResult<WebhookView> {
    // The cursor lock comes first, as in fan-out, so the two cannot deadlock.
    let start = hold_cursor(conn)?;
    let before = lock_for_change(conn, id, expected)?;
    let now = types::to_db(types::now());
    let enabled = c.enabled.unwrap_or(before.enabled);
    let starts_after = if enabled && !before.enabled {
        start.to_string()
    } else {
        before.starts_after.clone()
    };
    diesel::update(wh::table.filter(wh::id.eq(id)))
        .set((
            wh::url.eq(c.url.clone().unwrap_or(before.url.clone())),
            wh::event_types.eq(c
                .event_types
                .as_ref()
                .map(EventTypes::to_stored)
                .unwrap_or(before.event_types.clone())),
            wh::description.eq(match &c.description {
                Some(d) => d.clone(),
                None => before.description.clone(),
            }),
            wh::enabled.eq(enabled),
            wh::starts_after.eq(starts_after),
            wh::version.eq(wh::version + 1),
            wh::updated_at.eq(now),
            wh::updated_by.eq(actor),
        ))
        .execute(conn)?;
    if !enabled {
        cancel_pending(conn, id)?;
    }
    Ok(find(conn, id)?.view())
}

/// Retires a webhook: nothing more is sent to it; its log stays on record.
pub fn delete(conn: &mut DbConn, actor: &str, id: i64, expected: Expected) -> ApiResult<()> {
    hold_cursor(conn)?;
    lock_for_change(conn, id, expected)?;
    let now = types::to_db(types::now());
    diesel::update(wh::table.filter(wh::id.eq(id)))
        .set((
            wh::enabled.eq(false),
            wh::deleted_at.eq(Some(now)),
            wh::version.eq(wh::version + 1),
            wh::updated_at.eq(now),
            wh::updated_by.eq(actor),
        ))
        .execute(conn)?;
    cancel_pending(conn, id)
}

// ---------------------------------------------------------------------------
// Fan-out

/// The body sent for an event, Standard Webhooks style: `type`,
/// `timestamp` and `data`, plus the event's `id` (its stream position). An
/// event larger than `max_bytes` is sent thin, `data: null` and
/// `truncated: true`, for the receiver to read from the event stream.
pub fn payload(event: &Event, max_bytes: usize) -> String {
    let full = json!({
        "id": event.position.to_string(),
        "type": event.kind,
        "timestamp": types::rfc3339(event.at),
        "data": event.data_for(false),
    })
    .to_string();
    if full.len() <= max_bytes {
        return full;
    }
    json!({
        "id": event.position.to_string(),
        "type": event.kind,
        "timestamp": types::rfc3339(event.at),
        "data": null,
        "truncated": true,
    })
    .to_string()
}

/// What one fan-out pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FannedOut {
    /// Events read past the cursor (all of them when fewer than the batch).
    pub events: usize,
    pub deliveries: usize,
}

/// The webhooks that receive events: enabled and not deleted.
fn live() -> diesel::dsl::Filter<
    diesel::dsl::Filter<wh::table, diesel::dsl::Eq<wh::enabled, bool>>,
    diesel::dsl::IsNull<wh::deleted_at>,
> {
    wh::table
        .filter(wh::enabled.eq(true))
        .filter(wh::deleted_at.is_null())
}

/// Whether any webhook would receive an event: one indexed read, which the
/// worker asks before it queues on the write path.
pub fn any_enabled(conn: &mut DbConn) -> ApiResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(live())).get_result(conn)?)
}

/// Turns up to `batch` events past the cursor into deliveries, and advances
/// the cursor; must run in a write transaction. With no enabled webhook it
/// writes nothing.
pub fn fan_out(
    conn: &mut DbConn,
    batch: i64,
    max_payload_bytes: usize,
    retry_window: chrono::Duration,
) -> ApiResult<FannedOut> {
    // A cheap look first, so that a reserve with no webhooks never takes
    // the cursor's lock.
    if !any_enabled(conn)? {
        return Ok(FannedOut::default());
    }
    diesel::update(wc::table.filter(wc::id.eq(1)))
        .set(wc::updated_at.eq(wc::updated_at))
        .execute(conn)?;
    let cursor: String = wc::table.select(wc::position).first(conn)?;
    let hooks: Vec<WebhookRow> = live().select(WebhookRow::as_select()).load(conn)?;
    let Some(earliest) = hooks.iter().map(WebhookRow::starts_after).min() else {
        return Ok(FannedOut::default());
    };
    let from = parse_position(&cursor).max(earliest);
    let events = crate::events::repo::read_after(conn, from, batch, &Filter::default())?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(FannedOut::default());
    };
    let hooks: Vec<(WebhookRow, EventTypes, Position)> = hooks
        .into_iter()
        .map(|h| {
            let types = EventTypes::from_stored(&h.event_types);
            let start = h.starts_after();
            (h, types, start)
        })
        .collect();
    let now = types::now();
    let give_up = types::to_db(now + retry_window);
    let now = types::to_db(now);
    let mut made = 0;
    for event in &events {
        let wanted: Vec<i64> = hooks
            .iter()
            .filter(|(_, types, start)| event.position > *start && types.matches(&event.kind))
            .map(|(h, _, _)| h.id)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        let body = payload(event, max_payload_bytes);
        for webhook_id in wanted {
            diesel::insert_into(wd::table)
                .values((
                    wd::delivery_id.eq(new_delivery_id()),
                    wd::webhook_id.eq(webhook_id),
                    wd::event_position.eq(event.position.to_string()),
                    wd::event_type.eq(&event.kind),
                    wd::payload.eq(&body),
                    wd::status.eq("pending"),
                    wd::attempts.eq(0),
                    wd::created_at.eq(now),
                    wd::give_up_at.eq(give_up),
                    wd::next_attempt_at.eq(Some(now)),
                ))
                .execute(conn)?;
            made += 1;
        }
    }
    diesel::update(wc::table.filter(wc::id.eq(1)))
        .set((wc::position.eq(last.to_string()), wc::updated_at.eq(now)))
        .execute(conn)?;
    Ok(FannedOut {
        events: events.len(),
        deliveries: made,
    })
}

/// `msg_` and 26 random base32 characters, like the Standard Webhooks
/// examples: the `webhook-id` a receiver deduplicates by.
fn new_delivery_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let bytes: [u8; 26] = rand::random();
    let tail: String = bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("msg_{tail}")
}

// ---------------------------------------------------------------------------
// Attempts

/// A delivery this replica may attempt until `leased_until`.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: i64,
    pub delivery_id: String,
    pub url: String,
    pub secret: String,
    pub payload: String,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    pub give_up_at: DateTime<Utc>,
    pub redelivery: bool,
    pub token: String,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
}

/// Leases up to `limit` due deliveries of live webhooks until `until`.
pub fn lease_due(
    conn: &mut DbConn,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: i64,
) -> ApiResult<Vec<Leased>> {
    let now_db = types::to_db(now);
    let due: Vec<i64> = match conn {
        // Rows another replica is leasing right now are skipped, not waited for.
        DbConn::Postgres(c) => diesel::sql_query(
            "SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
               AND (d.leased_until IS NULL OR d.leased_until < $1) \
               AND w.enabled AND w.deleted_at IS NULL \
             ORDER BY d.next_attempt_at LIMIT $2 FOR UPDATE OF d SKIP LOCKED",
        )
        .bind::<diesel::sql_types::Timestamp, _>(now_db)
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .load::<IdRow>(c)?
        .into_iter()
        .map(|r| r.id)
        .collect(),
        // SQLite has one writer at a time already (BEGIN IMMEDIATE).
        DbConn::Sqlite(_) => wd::table
            .inner_join(wh::table)
            .filter(wd::status.eq("pending"))
            .filter(wd::next_attempt_at.le(now_db))
            .filter(wd::leased_until.is_null().or(wd::leased_until.lt(now_db)))
            .filter(wh::enabled.eq(true))
            .filter(wh::deleted_at.is_null())
            .order(wd::next_attempt_at.asc())
            .limit(limit)
            .select(wd::id)
            .load(conn)?,
    };
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let token = hex::encode(rand::random::<[u8; 16]>());
    diesel::update(
        wd::table
            .filter(wd::id.eq_any(&due))
            .filter(wd::status.eq("pending"))
            .filter(wd::leased_until.is_null().or(wd::leased_until.lt(now_db))),
    )
    .set((
        wd::leased_until.eq(Some(types::to_db(until))),
        wd::lease_token.eq(Some(&token)),
        wd::attempts.eq(wd::attempts + 1),
    ))
    .execute(conn)?;
    type LeasedRow = (
        i64,
        String,
        String,
        String,
        String,
        i32,
        NaiveDateTime,
        Option<NaiveDateTime>,
    );
    let rows: Vec<LeasedRow> = wd::table
        .inner_join(wh::table)
        .filter(wd::lease_token.eq(&token))
        .order(wd::next_attempt_at.asc())
        .select((
            wd::id,
            wd::delivery_id,
            wh::url,
            wh::secret,
            wd::payload,
            wd::attempts,
            wd::give_up_at,
            wd::redelivered_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, delivery_id, url, secret, payload, attempt, give_up_at, redelivered)| Leased {
                id,
                delivery_id,
                url,
                secret,
                payload,
                attempt,
                give_up_at: types::from_db(give_up_at),
                redelivery: redelivered.is_some(),
                token: token.clone(),
            },
        )
        .collect())
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Delivered,
    RetryAt(DateTime<Utc>),
    GaveUp,
    /// The lease ran out (or the webhook was disabled) first: another
    /// attempt, or none, decides.
    LeaseLost,
}

/// Logs an attempt and schedules what follows, if this replica still holds
/// the delivery's lease. Must run in a write transaction.
pub fn record(
    conn: &mut DbConn,
    leased: &Leased,
    outcome: &Outcome,
    backoff: &Backoff,
    jitter: f64,
) -> ApiResult<After> {
    let now = types::now();
    let after = if outcome.delivered() {
        After::Delivered
    } else {
        match backoff.next_attempt(now, leased.attempt as u32, jitter, leased.give_up_at) {
            Some(next) => After::RetryAt(next),
            None => After::GaveUp,
        }
    };
    let (status, next, delivered) = match after {
        After::Delivered => ("delivered", None, Some(types::to_db(now))),
        After::RetryAt(t) => ("pending", Some(types::to_db(t)), None),
        _ => ("failed", None, None),
    };
    let ours = diesel::update(
        wd::table
            .filter(wd::id.eq(leased.id))
            .filter(wd::lease_token.eq(&leased.token))
            .filter(wd::status.eq("pending")),
    )
    .set((
        wd::status.eq(status),
        wd::next_attempt_at.eq(next),
        wd::delivered_at.eq(delivered),
        wd::leased_until.eq(None::<NaiveDateTime>),
        wd::lease_token.eq(None::<String>),
    ))
    .execute(conn)?;
    // The attempt was made either way, so the log keeps it.
    diesel::insert_into(wa::table)
        .values((
            wa::delivery_id.eq(leased.id),
            wa::attempt.eq(leased.attempt),
            wa::started_at.eq(types::to_db(outcome.started_at)),
            wa::duration_ms.eq(outcome.duration_ms),
            wa::status_code.eq(outcome.status_code.map(i32::from)),
            wa::error.eq(&outcome.error),
            wa::redelivery.eq(leased.redelivery),
        ))
        .execute(conn)?;
    Ok(if ours == 1 { after } else { After::LeaseLost })
}

// ---------------------------------------------------------------------------
// The delivery log

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = wd)]
struct DeliveryRow {
    id: i64,
    delivery_id: String,
    webhook_id: i64,
    event_position: String,
    event_type: String,
    status: String,
    attempts: i32,
    created_at: NaiveDateTime,
    give_up_at: NaiveDateTime,
    next_attempt_at: Option<NaiveDateTime>,
    delivered_at: Option<NaiveDateTime>,
    redelivered_at: Option<NaiveDateTime>,
}

fn at(t: NaiveDateTime) -> String {
    types::rfc3339(types::from_db(t))
}

/// The views of `rows`, each with its attempts, in one query for them all.
fn views(conn: &mut DbConn, rows: Vec<DeliveryRow>) -> ApiResult<Vec<(i64, DeliveryView)>> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    type AttemptRow = (
        i64,
        i32,
        NaiveDateTime,
        i64,
        Option<i32>,
        Option<String>,
        bool,
    );
    let attempts: Vec<AttemptRow> = wa::table
        .filter(wa::delivery_id.eq_any(&ids))
        .order(wa::id.asc())
        .select((
            wa::delivery_id,
            wa::attempt,
            wa::started_at,
            wa::duration_ms,
            wa::status_code,
            wa::error,
            wa::redelivery,
        ))
        .load(conn)?;
    let mut log: BTreeMap<i64, Vec<AttemptView>> = BTreeMap::new();
    for (delivery, attempt, started, duration_ms, status_code, error, redelivery) in attempts {
        log.entry(delivery).or_default().push(AttemptView {
            attempt,
            started_at: at(started),
            duration_ms,
            status_code,
            error,
            redelivery,
        });
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let view = DeliveryView {
                id: r.delivery_id,
                webhook_id: r.webhook_id,
                event_id: r.event_position,
                event_type: r.event_type,
                status: r.status,
                attempts: r.attempts,
                created_at: at(r.created_at),
                next_attempt_at: r.next_attempt_at.map(at),
                give_up_at: at(r.give_up_at),
                delivered_at: r.delivered_at.map(at),
                redelivered_at: r.redelivered_at.map(at),
                attempt_log: log.remove(&r.id).unwrap_or_default(),
            };
            (r.id, view)
        })
        .collect())
}

/// A webhook's deliveries, newest first by default, paged by row id.
pub fn deliveries(
    conn: &mut DbConn,
    webhook_id: i64,
    status: Option<&str>,
    page: &PageRequest,
) -> ApiResult<Vec<(i64, DeliveryView)>> {
    find(conn, webhook_id)?;
    let mut q = wd::table
        .filter(wd::webhook_id.eq(webhook_id))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(wd::status.eq(s.to_string()));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(c)) => q.filter(wd::id.lt(c)).order(wd::id.desc()),
        (Order::NewestFirst, None) => q.order(wd::id.desc()),
        (Order::OldestFirst, Some(c)) => q.filter(wd::id.gt(c)).order(wd::id.asc()),
        (Order::OldestFirst, None) => q.order(wd::id.asc()),
    };
    let rows: Vec<DeliveryRow> = q.limit(page.limit + 1).load(conn)?;
    views(conn, rows)
}

fn find_delivery(conn: &mut DbConn, webhook_id: i64, delivery_id: &str) -> ApiResult<DeliveryRow> {
    find(conn, webhook_id)?;
    wd::table
        .filter(wd::webhook_id.eq(webhook_id))
        .filter(wd::delivery_id.eq(delivery_id))
        .select(DeliveryRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "webhook {webhook_id} has no delivery {delivery_id}"
            ))
        })
}

pub fn delivery(conn: &mut DbConn, webhook_id: i64, delivery_id: &str) -> ApiResult<DeliveryView> {
    let row = find_delivery(conn, webhook_id, delivery_id)?;
    let mut v = views(conn, vec![row])?;
    Ok(v.remove(0).1)
}

/// Sends a delivery again, whatever became of it, with a fresh retry window:
/// due now, same `webhook-id` (receivers deduplicate by it).
pub fn redeliver(
    conn: &mut DbConn,
    webhook_id: i64,
    delivery_id: &str,
    retry_window: chrono::Duration,
) -> ApiResult<DeliveryView> {
    let hook = find(conn, webhook_id)?;
    if !hook.enabled {
        return Err(ApiError::conflict(
            "webhook-disabled",
            format!("webhook {webhook_id} is disabled: enable it before asking for a redelivery"),
            json!({ "webhook_id": webhook_id }),
        ));
    }
    let row = find_delivery(conn, webhook_id, delivery_id)?;
    let now = types::now();
    let now_db = types::to_db(now);
    let give_up = types::to_db(now + retry_window).max(row.give_up_at);
    // Not while an attempt is under way: its outcome would overwrite this.
    let changed = diesel::update(
        wd::table
            .filter(wd::id.eq(row.id))
            .filter(wd::leased_until.is_null().or(wd::leased_until.lt(now_db))),
    )
    .set((
        wd::status.eq("pending"),
        wd::next_attempt_at.eq(Some(now_db)),
        wd::give_up_at.eq(give_up),
        wd::redelivered_at.eq(Some(now_db)),
        wd::delivered_at.eq(None::<NaiveDateTime>),
        wd::leased_until.eq(None::<NaiveDateTime>),
        wd::lease_token.eq(None::<String>),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Err(ApiError::conflict(
            "delivery-in-progress",
            format!("delivery {delivery_id} is being attempted right now; ask again in a moment"),
            json!({ "delivery_id": delivery_id }),
        ));
    }
    delivery(conn, webhook_id, delivery_id)
}
