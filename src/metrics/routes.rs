//! `GET /metrics`: unauthenticated, like the health checks. Served on the main
//! listener unless `metrics.bind` names a listener of its own (then only
//! there), and not at all with `metrics.enabled = false`.

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};

use super::text::{Exposition, CONTENT_TYPE};
use crate::error::{ApiError, ApiResult};
use crate::ledger::model::EntryKind;
use crate::AppState;

/// `GET /metrics` on the main listener.
pub async fn get(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let m = &state.settings.metrics;
    if !m.enabled || !m.bind.trim().is_empty() {
        return Err(ApiError::NotFound("no such route".into()));
    }
    Ok(scrape(&state).await)
}

/// `GET /metrics` on the dedicated listener.
async fn get_dedicated(state: web::Data<AppState>) -> HttpResponse {
    scrape(&state).await
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::NotFound("no such route".into()))
}

/// Serves `/metrics` alone on `listener` (`metrics.bind`), one worker.
pub fn run(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(get_dedicated))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .listen(listener)?
    .run())
}

/// Writes every family. The per-element gauges come from the database (one
/// grouped stockpile query and the policies); when it cannot be read they are
/// left out and `reserve_metrics_database_up` says so, while the in-process
/// families are still served.
pub async fn scrape(state: &AppState) -> HttpResponse {
    let stock = state.db(crate::flows::cover::stock_now).await;
    let mut out = Exposition::new();
    state.metrics.http.render(&mut out);

    let m = &state.metrics;
    out.family(
        "reserve_ledger_entries_total",
        "counter",
        "Ledger entries committed by this process, by kind.",
    );
    for kind in EntryKind::ALL {
        out.sample(
            "reserve_ledger_entries_total",
            &[("kind", kind.as_str())],
            m.postings(kind),
        );
    }
    out.family(
        "reserve_idempotent_replays_total",
        "counter",
        "Writes answered with the stored response of an earlier request with the same Idempotency-Key.",
    );
    out.sample(
        "reserve_idempotent_replays_total",
        &[],
        m.idempotent_replays.get(),
    );
    for (name, help, counter) in [
        (
            "reserve_group_commit_groups_total",
            "Groups of postings committed in one transaction each (group commit).",
            &m.group_commit_groups,
        ),
        (
            "reserve_group_commit_members_total",
            "Postings answered from a committed group (accepted, refused or replayed).",
            &m.group_commit_members,
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], counter.get());
    }
    labelled_counter(
        &mut out,
        "reserve_auth_failures_total",
        "Requests refused for want of a valid token (401) or of the role or scope they need (403).",
        "status",
        &[("401", &m.auth_unauthenticated), ("403", &m.auth_forbidden)],
    );
    labelled_counter(
        &mut out,
        "reserve_throttled_requests_total",
        "Requests answered 429 by the authentication-failure throttle, by what was throttled.",
        "by",
        &[
            ("address", &m.throttled_address),
            ("subject", &m.throttled_subject),
        ],
    );

    let pool = state.pool.state();
    let in_use = pool.connections.saturating_sub(pool.idle_connections);
    for (name, help, value) in [
        (
            "reserve_db_pool_max_connections",
            "Largest number of connections the pool opens (database.pool_size).",
            i64::from(state.pool.max_size()),
        ),
        (
            "reserve_db_pool_connections",
            "Connections the pool holds open.",
            i64::from(pool.connections),
        ),
        (
            "reserve_db_pool_idle_connections",
            "Open connections not in use.",
            i64::from(pool.idle_connections),
        ),
        (
            "reserve_db_pool_in_use_connections",
            "Connections handed out to a database call right now.",
            i64::from(in_use),
        ),
        (
            "reserve_db_pool_waiting",
            "Database calls waiting for a free connection right now.",
            m.pool_waiting.get(),
        ),
        (
            "reserve_event_stream_clients",
            "Clients connected to GET /api/v1/events on this process.",
            super::EVENT_STREAM_CLIENTS.get(),
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], value);
    }
    labelled_counter(
        &mut out,
        "reserve_webhook_deliveries_total",
        "Webhook delivery attempts made by this process, by outcome (delivered: the receiver answered 2xx).",
        "outcome",
        &[
            ("delivered", &m.webhook_delivered),
            ("failed", &m.webhook_failed),
        ],
    );

    out.family(
        "reserve_metrics_database_up",
        "gauge",
        "1 when this scrape could read the per-element figures from the database, else 0.",
    );
    out.sample("reserve_metrics_database_up", &[], i32::from(stock.is_ok()));
    out.family(
        "reserve_element_on_hand_kg",
        "gauge",
        "On-hand material of each element over every depot, form and grade, in kg.",
    );
    let items = stock.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "metrics: per-element figures not read");
        Vec::new()
    });
    for i in &items {
        if let Ok(kg) = i.holding_kg.parse::<f64>() {
            out.sample_f64(
                "reserve_element_on_hand_kg",
                &[("element", i.element.as_str())],
                kg,
            );
        }
    }
    out.family(
        "reserve_element_days_of_cover",
        "gauge",
        "Element-mass holding divided by the configured daily consumption (as GET /api/v1/cover); \
         absent for an element without a consumption figure.",
    );
    for i in &items {
        if let Some(days) = i
            .days_of_cover
            .as_deref()
            .and_then(|d| d.parse::<f64>().ok())
        {
            out.sample_f64(
                "reserve_element_days_of_cover",
                &[("element", i.element.as_str())],
                days,
            );
        }
    }
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(out.finish())
}

/// A counter family with one label, one sample per value.
fn labelled_counter(
    out: &mut Exposition,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, &super::Counter)],
) {
    out.family(name, "counter", help);
    for (value, counter) in values {
        out.sample(name, &[(label, value)], counter.get());
    }
}
