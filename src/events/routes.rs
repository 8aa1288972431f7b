//! `GET /api/v1/events` (Server-Sent Events) and `POST /api/v1/events/tickets`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

use super::model::{Event, Filter, KindFilter, Position};
use super::repo;
use crate::auth::{AuthUser, Role};
use crate::db::types;
use crate::elements::model::ElementSymbol;
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::OptionalIdempotencyKey;
use crate::AppState;

/// A comment line every 15 s keeps proxies from closing an idle stream and
/// tells the server soon when the client has gone.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Frames a stream may hold unsent; past this and [`SEND_TIMEOUT`], the
/// client is too slow and is cut off.
const QUEUE: usize = 256;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per backlog read while a resumed stream catches up.
const BACKLOG_BATCH: i64 = 500;
/// What a browser's `EventSource` waits before reconnecting.
const RETRY_MS: u64 = 2000;

/// Query names that look like a credential. Only `?ticket=` is accepted:
/// tokens in URLs end up in logs and browser history.
const CREDENTIAL_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "jwt",
    "bearer",
    "auth",
    "authorization",
    "api_key",
    "apikey",
    "key",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    pub after: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub element: Option<String>,
    pub depot: Option<String>,
    pub ticket: Option<String>,
}

/// `GET /api/v1/events`.
pub async fn stream(state: web::Data<AppState>, req: HttpRequest) -> ApiResult<HttpResponse> {
    // A token in the query string is refused as such (401) before the query
    // is read, rather than as an unknown parameter.
    refuse_query_credentials(&req)?;
    let q = web::Query::<StreamQuery>::from_query(req.query_string())
        .map_err(|e| crate::query_problem(&e))?
        .into_inner();
    let user = authenticate(&state, &req, q.ticket.as_deref()).await?;
    may_read_events(&user)?;
    let (after, filter) = parse(&req, &q, &user)?;
    let start = match after {
        Some(p) => p,
        None => state.db(repo::end).await?,
    };
    let live = state.events.subscribe();
    let (tx, mut rx) = mpsc::channel::<web::Bytes>(QUEUE);
    actix_web::rt::spawn(feed(
        state.clone().into_inner(),
        user,
        start,
        filter,
        live,
        tx,
    ));
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|o| o.map(Ok::<_, actix_web::Error>))
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache, no-store"))
        // Tells nginx-like proxies not to hold frames back.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// The bearer header, or a ticket for clients that cannot send headers.
fn refuse_query_credentials(req: &HttpRequest) -> ApiResult<()> {
    let query = req.query_string();
    match url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, _)| k.to_ascii_lowercase())
        .find(|k| CREDENTIAL_PARAMS.contains(&k.as_str()))
    {
        Some(name) => Err(ApiError::Unauthorized(format!(
            "credentials are not accepted in the query string (`{name}`): send \
             `Authorization: Bearer <token>`, or, from a browser's EventSource, a \
             `?ticket=` from POST /api/v1/events/tickets"
        ))),
        None => Ok(()),
    }
}

async fn authenticate(
    state: &web::Data<AppState>,
    req: &HttpRequest,
    ticket: Option<&str>,
) -> ApiResult<AuthUser> {
    let has_header = req.headers().contains_key(header::AUTHORIZATION);
    match ticket {
        Some(_) if has_header => Err(ApiError::Validation(vec![FieldError::new(
            "ticket",
            "send either an Authorization header or a ticket, not both",
        )])),
        Some(t) => {
            let t = t.to_string();
            state.db(move |c| repo::redeem_ticket(c, &t)).await
        }
        None => crate::auth::authenticate(req),
    }
}

/// Anyone who may read stock may read the stream; a bidder sees only its own
/// bids elsewhere, so a bidder-only token may not.
fn may_read_events(user: &AuthUser) -> ApiResult<()> {
    let readers = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];
    if readers.iter().any(|r| user.has(*r)) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the event stream needs the viewer role (or operator, approver, auditor, admin)".into(),
        ))
    }
}

fn parse(
    req: &HttpRequest,
    q: &StreamQuery,
    user: &AuthUser,
) -> ApiResult<(Option<Position>, Filter)> {
    let mut errors = Vec::new();
    // A header that is not visible ASCII cannot name a position.
    let header_id = match req.headers().get("Last-Event-ID").map(|v| v.to_str()) {
        Some(Ok(v)) => Some(v.trim().to_string()),
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "Last-Event-ID",
                "must be visible ASCII text: an event id as the stream sent it",
            ));
            None
        }
        None => None,
    };
    // A browser resending Last-Event-ID after a reconnect also still has the
    // `after` it first opened with; the header is the newer of the two.
    let after = match (header_id.as_deref(), q.after.as_deref()) {
        (Some(h), _) if !h.is_empty() => h
            .parse::<Position>()
            .map_err(|e| errors.push(FieldError::new("Last-Event-ID", e)))
            .ok(),
        (_, Some(a)) => a
            .trim()
            .parse::<Position>()
            .map_err(|e| errors.push(FieldError::new("after", e)))
            .ok(),
        _ => None,
    };
    let mut filter = Filter::for_user(user);
    if let Some(kinds) = &q.kind {
        for term in kinds.split(',') {
            match KindFilter::parse(term) {
                Ok(k) => filter.kinds.push(k),
                Err(e) => errors.push(FieldError::new("type", e)),
            }
        }
    }
    if let Some(e) = &q.element {
        match ElementSymbol::parse(e.trim()) {
            Ok(s) => filter.element = Some(s.as_str().to_string()),
            Err(e) => errors.push(FieldError::new("element", e)),
        }
    }
    if let Some(d) = &q.depot {
        let d = d.trim();
        if d.is_empty() || d.len() > 64 {
            errors.push(FieldError::new(
                "depot",
                "a depot code of 1 to 64 characters",
            ));
        } else {
            filter.depot = Some(d.to_string());
        }
    }
    if errors.is_empty() {
        Ok((after, filter))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Writes the stream: the backlog after `start` from the database, then live
/// events from the hub, each once and in order, until the client goes, falls
/// too far behind, or its token expires.
async fn feed(
    state: Arc<AppState>,
    user: AuthUser,
    start: Position,
    filter: Filter,
    mut live: broadcast::Receiver<Arc<Event>>,
    tx: mpsc::Sender<web::Bytes>,
) {
    let _client = state.events.client();
    let show_actors = user.may_see_actors();
    let send = |frame: String| {
        let tx = tx.clone();
        async move {
            matches!(
                tokio::time::timeout(SEND_TIMEOUT, tx.send(web::Bytes::from(frame))).await,
                Ok(Ok(()))
            )
        }
    };
    if !send(format!("retry: {RETRY_MS}\n: stream open at {start}\n\n")).await {
        return;
    }
    // The hub was subscribed to before this read, so whatever it broadcasts
    // from now on is either in this backlog or still in `live`.
    let mut last = start;
    loop {
        let f = filter.clone();
        let batch = match state
            .db(move |c| repo::read_after(c, last, BACKLOG_BATCH, &f))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "event stream backlog read failed; closing the stream");
                return;
            }
        };
        let n = batch.len() as i64;
        for e in batch {
            last = e.position;
            if !send(e.frame(show_actors)).await {
                return;
            }
        }
        if n < BACKLOG_BATCH {
            break;
        }
    }
    let expires_in = (user.expires_at - chrono::Utc::now().timestamp()).max(0) as u64;
    let expiry = tokio::time::sleep(Duration::from_secs(expires_in));
    tokio::pin!(expiry);
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(e) => {
                    // A filtered-out event still moves `last`, so the backlog
                    // overlap above is skipped either way.
                    if e.position <= last {
                        continue;
                    }
                    last = e.position;
                    if filter.matches(&e) && !send(e.frame(show_actors)).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(behind = n, "event stream client too slow; cut off");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => {
                if !send(": heartbeat\n\n".to_string()).await {
                    return;
                }
            }
            _ = &mut expiry => {
                let _ = send(format!(
                    "event: stream.closed\ndata: {}\n\n",
                    serde_json::json!({"reason": "the token has expired"})
                ))
                .await;
                return;
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct TicketView {
    pub ticket: String,
    pub expires_at: String,
}

/// `POST /api/v1/events/tickets`: a single-use, one-minute ticket standing for
/// the caller, for `GET /api/v1/events?ticket=`. Not an idempotent create: a
/// retry mints another ticket, and the unused one expires within a minute.
pub async fn ticket(
    state: web::Data<AppState>,
    user: AuthUser,
    // Accepted as on every write, and refused when malformed, but not stored:
    // replaying a single-use ticket would hand out a used one.
    _key: OptionalIdempotencyKey,
) -> ApiResult<HttpResponse> {
    may_read_events(&user)?;
    let (ticket, expires_at) = state
        .db(move |c| crate::db::write_transaction(c, |c| repo::issue_ticket(c, &user)))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TicketView {
            ticket,
            expires_at: types::rfc3339(expires_at),
        }))
}
