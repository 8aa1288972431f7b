//! The loop every replica runs: fan new events out into deliveries, lease the
//! due ones, POST them signed, and record what each receiver answered.
//!
//! It wakes on every event the hub sees (PostgreSQL `NOTIFY`, SQLite's poll)
//! and every `poll_ms` otherwise, for retries that fall due. Attempts run as
//! tasks of their own, at most `concurrency` at once, so one slow receiver
//! holds up nobody else.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix_web::web;
use futures_util::StreamExt;

use super::model::{secret_bytes, sign, Backoff};
use super::repo::{self, After, Leased, Outcome};
use crate::config::WebhookSettings;
use crate::db::types;
use crate::metrics::DeliveryOutcome;
use crate::AppState;

/// Events read per fan-out transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Fan-out transactions per pass, so a long backlog still lets due retries
/// through between passes.
const FAN_OUT_PASSES: usize = 20;

/// Starts this replica's worker, unless `webhooks.enabled` is off.
pub fn spawn(state: web::Data<AppState>) {
    if !state.settings.webhooks.enabled {
        return;
    }
    actix_web::rt::spawn(run(state));
}

fn backoff(s: &WebhookSettings) -> Backoff {
    Backoff {
        base: Duration::from_millis(s.retry_base_ms),
        cap: Duration::from_millis(s.retry_cap_ms),
        window: Duration::from_secs(s.retry_window_hours * 3600),
    }
}

async fn run(state: web::Data<AppState>) {
    let settings = state.settings.webhooks.clone();
    let poll = Duration::from_millis(settings.poll_ms);
    // rustls needs a process-wide crypto provider before the first https
    // connection; an Err means one is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Redirects are not followed: a receiver answers where it was registered.
    let client = awc::Client::builder()
        .timeout(Duration::from_millis(settings.timeout_ms))
        .disable_redirects()
        .finish();
    let in_flight = Rc::new(Cell::new(0usize));
    let mut wake = state.events.subscribe();
    loop {
        let woke = actix_web::rt::time::timeout(poll, wake.recv()).await;
        if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) = woke {
            // No hub (it never started): poll alone.
            actix_web::rt::time::sleep(poll).await;
        }
        // One pass serves every event that arrived meanwhile: under a burst
        // of postings the worker makes a pass per burst, not per event.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            wake.try_recv()
        {}
        // Without an enabled webhook there is nothing to fan out or send;
        // asking costs one read, where a pass would queue two write
        // transactions (on SQLite, behind the postings' write gate).
        match state.db(repo::any_enabled).await {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the webhooks; retrying at the next wake");
                continue;
            }
        }
        fan_out(&state, &settings).await;
        start_due(&state, &settings, &client, &in_flight).await;
    }
}

async fn fan_out(state: &web::Data<AppState>, s: &WebhookSettings) {
    let max_payload = s.max_payload_bytes;
    let window = chrono::Duration::hours(s.retry_window_hours as i64);
    for _ in 0..FAN_OUT_PASSES {
        match state
            .write(move |c| repo::fan_out(c, FAN_OUT_BATCH, max_payload, window))
            .await
        {
            Ok(done) if done.events < FAN_OUT_BATCH as usize => return,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "webhook fan-out failed; the next pass retries");
                return;
            }
        }
    }
}

/// Leases what is due, up to the free attempt slots, and starts each attempt.
async fn start_due(
    state: &web::Data<AppState>,
    s: &WebhookSettings,
    client: &awc::Client,
    in_flight: &Rc<Cell<usize>>,
) {
    let free = s.concurrency.saturating_sub(in_flight.get());
    if free == 0 {
        return;
    }
    let now = types::now();
    // Long enough for the request and for recording its outcome; a replica
    // that dies holding a lease delays that delivery by this much.
    let until = now + chrono::Duration::milliseconds(s.timeout_ms as i64 + 30_000);
    let leased = match state
        .write(move |c| repo::lease_due(c, now, until, free as i64))
        .await
    {
        Ok(leased) => leased,
        Err(e) => {
            tracing::warn!(error = %e, "cannot lease due webhook deliveries");
            return;
        }
    };
    for delivery in leased {
        in_flight.set(in_flight.get() + 1);
        let (state, s, client, in_flight) =
            (state.clone(), s.clone(), client.clone(), in_flight.clone());
        actix_web::rt::spawn(async move {
            let outcome = attempt(&client, &delivery, &s).await;
            finish(&state, &s, &delivery, outcome).await;
            in_flight.set(in_flight.get() - 1);
        });
    }
}

/// One signed POST. Only the first `max_response_bytes` of a failing
/// receiver's answer are read, for the log.
async fn attempt(client: &awc::Client, d: &Leased, s: &WebhookSettings) -> Outcome {
    let started_at = types::now();
    let clock = Instant::now();
    let timestamp = started_at.timestamp();
    let signature = match secret_bytes(&d.secret) {
        Ok(key) => sign(&key, &d.delivery_id, timestamp, d.payload.as_bytes()),
        Err(e) => {
            return Outcome {
                started_at,
                duration_ms: 0,
                status_code: None,
                error: Some(format!("the webhook's stored secret is unusable: {e}")),
            }
        }
    };
    let sent = client
        .post(&d.url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("user-agent", concat!("reserve/", env!("CARGO_PKG_VERSION"))))
        .insert_header(("webhook-id", d.delivery_id.as_str()))
        .insert_header(("webhook-timestamp", timestamp.to_string()))
        .insert_header(("webhook-signature", signature))
        .send_body(d.payload.clone())
        .await;
    let (status_code, error) = match sent {
        Ok(mut response) => {
            let code = response.status().as_u16();
            if (200..300).contains(&code) {
                (Some(code), None)
            } else {
                let excerpt = read_excerpt(&mut response, s.max_response_bytes, s.timeout_ms).await;
                (Some(code), Some(format!("HTTP {code}: {excerpt}")))
            }
        }
        Err(awc::error::SendRequestError::Timeout) => {
            (None, Some(format!("no answer within {} ms", s.timeout_ms)))
        }
        Err(e) => (None, Some(format!("request failed: {e}"))),
    };
    Outcome {
        started_at,
        duration_ms: clock.elapsed().as_millis() as i64,
        status_code,
        error,
    }
}

/// Up to `max` bytes of a response body, as text, within the time left.
async fn read_excerpt<S>(
    response: &mut awc::ClientResponse<S>,
    max: usize,
    timeout_ms: u64,
) -> String
where
    S: futures_util::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut body = Vec::new();
    let read = async {
        while body.len() < max {
            match response.next().await {
                Some(Ok(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    let _ = actix_web::rt::time::timeout(Duration::from_millis(timeout_ms), read).await;
    body.truncate(max);
    String::from_utf8_lossy(&body).trim().to_string()
}

async fn finish(state: &web::Data<AppState>, s: &WebhookSettings, d: &Leased, outcome: Outcome) {
    state.metrics.webhook_attempt(if outcome.delivered() {
        DeliveryOutcome::Delivered
    } else {
        DeliveryOutcome::Failed
    });
    let backoff = backoff(s);
    let jitter = 0.5 + rand::random::<f64>() / 2.0;
    let (leased, logged) = (d.clone(), outcome.clone());
    match state
        .write(move |c| repo::record(c, &leased, &logged, &backoff, jitter))
        .await
    {
        Ok(After::Delivered) => {
            tracing::debug!(delivery = %d.delivery_id, attempt = d.attempt, "webhook delivered")
        }
        Ok(After::RetryAt(at)) => tracing::info!(
            delivery = %d.delivery_id,
            attempt = d.attempt,
            retry_at = %types::rfc3339(at),
            error = outcome.error.as_deref().unwrap_or(""),
            "webhook delivery failed; will retry"
        ),
        Ok(After::GaveUp) => tracing::warn!(
            delivery = %d.delivery_id,
            attempts = d.attempt,
            error = outcome.error.as_deref().unwrap_or(""),
            "webhook delivery failed for good: its retry window is over"
        ),
        Ok(After::LeaseLost) => tracing::warn!(
            delivery = %d.delivery_id,
            "a webhook attempt outlived its lease (or its webhook was disabled); its outcome is logged only"
        ),
        // The lease runs out and the delivery is attempted again.
        Err(e) => {
            tracing::warn!(delivery = %d.delivery_id, error = %e, "cannot record a webhook attempt")
        }
    }
}
