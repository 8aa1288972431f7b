//! The audit trail: one row per authenticated write attempt (POST, PUT,
//! PATCH, DELETE with a valid token), refused ones included, written by this
//! middleware after the response is built and before it is sent, by one
//! writer thread that puts the rows arriving together in one transaction
//! ([`TrailWriter`]). No route writes or edits it; triggers make it
//! append-only.
//!
//! Attempts without a valid token (401) are not recorded: anyone could fill
//! the table with them, and they carry no subject to hold to account. The
//! throttle and the request log see them.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::db::schema::audit_trail as at;
use crate::db::{types, write_transaction, DbConn};
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::http::request_id::RequestId;
use crate::AppState;

/// The problem `type` of an error response, left in its extensions.
#[derive(Debug, Clone, Copy)]
pub struct ProblemType(pub &'static str);

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = at, treat_none_as_default_value = false)]
pub struct NewTrailRow {
    pub at: NaiveDateTime,
    pub subject: String,
    pub roles: String,
    pub request_id: String,
    pub method: String,
    pub route: String,
    pub path: String,
    pub status: i32,
    pub problem_type: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = at)]
pub struct TrailRow {
    pub id: i64,
    pub at: NaiveDateTime,
    pub subject: String,
    pub roles: String,
    pub request_id: String,
    pub method: String,
    pub route: String,
    pub path: String,
    pub status: i32,
    pub problem_type: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrailView {
    pub id: i64,
    pub at: String,
    pub subject: String,
    pub roles: Vec<String>,
    pub request_id: String,
    pub method: String,
    pub route: String,
    pub path: String,
    pub status: i32,
    pub outcome: String,
    pub problem_type: Option<String>,
    pub idempotency_key: Option<String>,
}

impl From<TrailRow> for TrailView {
    fn from(r: TrailRow) -> TrailView {
        let outcome = if (200..300).contains(&r.status) {
            "accepted"
        } else {
            "refused"
        };
        TrailView {
            id: r.id,
            at: types::rfc3339(types::from_db(r.at)),
            subject: r.subject,
            roles: r
                .roles
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            request_id: r.request_id,
            method: r.method,
            route: r.route,
            path: r.path,
            status: r.status,
            outcome: outcome.into(),
            problem_type: r.problem_type,
            idempotency_key: r.idempotency_key,
        }
    }
}

fn clip(s: &str, max: usize) -> String {
    // Never a NUL (PostgreSQL refuses it in text), never unbounded.
    s.chars().filter(|c| *c != '\0').take(max).collect()
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let writes = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|k| clip(k, 202));
    let res = next.call(req).await?;
    if !writes {
        return Ok(res);
    }
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Ok(res);
    };
    // The handler's authentication left the caller here; a request refused
    // before it authenticated (a 405, a throttle's 429) is judged by its token.
    let user = res
        .request()
        .extensions()
        .get::<AuthUser>()
        .cloned()
        .or_else(|| {
            let token = bearer.as_deref()?.trim();
            let (scheme, token) = token.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| state.keys.verify(token.trim()).ok())
                .flatten()
        });
    let Some(user) = user else {
        return Ok(res);
    };
    let request = res.request();
    let row = NewTrailRow {
        at: types::to_db(types::now()),
        subject: clip(&user.subject, 200),
        roles: user
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
        request_id: request
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        method: request.method().to_string(),
        route: clip(
            &request
                .match_pattern()
                .unwrap_or_else(|| "(no route)".to_string()),
            300,
        ),
        path: clip(request.path(), 2000),
        status: i32::from(res.status().as_u16()),
        problem_type: res
            .response()
            .extensions()
            .get::<ProblemType>()
            .map(|p| format!("/problems/{}", p.0)),
        idempotency_key: key,
    };
    let recorded = state.trail.record(row).await;
    if let Err(e) = recorded {
        // The response is decided; losing its trail row is logged loudly.
        tracing::error!(error = %e, "could not record a write attempt in the audit trail");
    }
    Ok(res)
}

pub fn record(conn: &mut DbConn, rows: &[NewTrailRow]) -> ApiResult<()> {
    write_transaction(conn, |c| {
        crate::insert_rows!(c, at::table, rows)?;
        Ok(())
    })
}

/// Writes the middleware's trail rows on a thread of its own. Rows that
/// arrive while one transaction commits go together in the next, so under
/// load the trail costs one commit per group of write attempts rather than
/// one each: on SQLite every commit is a flush of its own, and a posting's
/// trail row had doubled its flushes (scenario 8 of `scripts/bench.sh`).
/// Nothing waits for company: a lone row is written at once. Each caller
/// still waits for its row's commit before its response goes out.
pub struct TrailWriter {
    queue: std::sync::mpsc::Sender<Pending>,
}

struct Pending {
    row: NewTrailRow,
    done: tokio::sync::oneshot::Sender<ApiResult<()>>,
}

/// Rows one transaction takes at most.
const TRAIL_GROUP: usize = 256;

impl TrailWriter {
    /// Starts the writer thread; it ends when the writer is dropped.
    pub fn start(
        pool: crate::db::Pool,
        gate: Option<std::sync::Arc<crate::db::WriteGate>>,
        outage: crate::Outage,
    ) -> std::io::Result<Self> {
        let (queue, incoming) = std::sync::mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("audit-trail".into())
            .spawn(move || {
                while let Ok(first) = incoming.recv() {
                    let mut group = vec![first];
                    group.extend(incoming.try_iter().take(TRAIL_GROUP - 1));
                    write_group(&pool, gate.as_deref(), &outage, group);
                }
            })?;
        Ok(Self { queue })
    }

    /// Records `row` and waits until it is committed.
    pub async fn record(&self, row: NewTrailRow) -> ApiResult<()> {
        let (done, committed) = tokio::sync::oneshot::channel();
        let gone = || ApiError::Unavailable("the audit trail writer stopped".into());
        self.queue.send(Pending { row, done }).map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }
}

/// One transaction for the group; if it fails, each row alone, so one bad
/// row cannot lose the others.
fn write_group(
    pool: &crate::db::Pool,
    gate: Option<&crate::db::WriteGate>,
    outage: &crate::Outage,
    group: Vec<Pending>,
) {
    let (rows, done): (Vec<NewTrailRow>, Vec<_>) =
        group.into_iter().map(|p| (p.row, p.done)).unzip();
    let written: ApiResult<Vec<ApiResult<()>>> = if outage.is_open() {
        Err(ApiError::Unavailable("the database is unavailable".into()))
    } else {
        crate::db::checkout(pool, gate)
            .inspect_err(|_| outage.trip())
            .map_err(ApiError::from)
            .and_then(|mut conn| match record(&mut conn, &rows) {
                Ok(()) => Ok(rows.iter().map(|_| Ok(())).collect()),
                Err(_) if rows.len() > 1 => {
                    Ok(rows.chunks(1).map(|one| record(&mut conn, one)).collect())
                }
                Err(e) => Err(e),
            })
    };
    let each = written.unwrap_or_else(|e| {
        let shown = e.to_string();
        rows.iter()
            .map(|_| Err(ApiError::Unavailable(shown.clone())))
            .collect()
    });
    for (done, result) in done.into_iter().zip(each) {
        let _ = done.send(result);
    }
}

/// Filters of `GET /api/v1/audit-trail`.
#[derive(Debug, Clone, Default)]
pub struct TrailFilter {
    pub subject: Option<String>,
    pub method: Option<String>,
    pub status: Option<i32>,
    /// Refused (status ≥ 400) or accepted attempts only.
    pub refused: Option<bool>,
    pub route: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

pub fn list(conn: &mut DbConn, f: &TrailFilter, page: &PageRequest) -> ApiResult<Vec<TrailRow>> {
    let mut q = at::table.select(TrailRow::as_select()).into_boxed();
    if let Some(s) = &f.subject {
        q = q.filter(at::subject.eq(s.clone()));
    }
    if let Some(m) = &f.method {
        q = q.filter(at::method.eq(m.clone()));
    }
    if let Some(s) = f.status {
        q = q.filter(at::status.eq(s));
    }
    match f.refused {
        Some(true) => q = q.filter(at::status.ge(400)),
        Some(false) => q = q.filter(at::status.lt(400)),
        None => {}
    }
    if let Some(r) = &f.route {
        q = q.filter(at::route.eq(r.clone()));
    }
    if let Some(r) = &f.request_id {
        q = q.filter(at::request_id.eq(r.clone()));
    }
    if let Some(t) = f.from {
        q = q.filter(at::at.ge(t));
    }
    if let Some(t) = f.to {
        q = q.filter(at::at.lt(t));
    }
    q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(at::id.lt(a)).order(at::id.desc()),
        (Order::NewestFirst, None) => q.order(at::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(at::id.gt(a)).order(at::id.asc()),
        (Order::OldestFirst, None) => q.order(at::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}
