//! What the webhook endpoints accept and answer.

use serde::{Deserialize, Serialize};

use super::model::{validate_url, EventTypes};
use crate::error::{ApiError, ApiResult, FieldError};
use crate::http::check_text;

/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// `POST /api/v1/webhooks`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// `PATCH /api/v1/webhooks/{id}`: only the fields sent change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchWebhook {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `""` clears it.
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// A checked registration or change.
#[derive(Debug, Clone, Default)]
pub struct WebhookChange {
    pub url: Option<String>,
    pub event_types: Option<EventTypes>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

fn check_url(errors: &mut Vec<FieldError>, raw: &str) -> Option<String> {
    match validate_url(raw) {
        Ok(u) => Some(u.to_string()),
        Err(e) => {
            errors.push(FieldError::new("url", e));
            None
        }
    }
}

fn check_types(errors: &mut Vec<FieldError>, types: &[String]) -> Option<EventTypes> {
    EventTypes::parse(types)
        .map_err(|e| errors.push(FieldError::new("event_types", e)))
        .ok()
}

fn finish(errors: Vec<FieldError>, change: WebhookChange) -> ApiResult<WebhookChange> {
    if errors.is_empty() {
        Ok(change)
    } else {
        Err(ApiError::Validation(errors))
    }
}

impl CreateWebhook {
    pub fn validate(&self) -> ApiResult<WebhookChange> {
        let mut errors = Vec::new();
        let change = WebhookChange {
            url: check_url(&mut errors, &self.url),
            event_types: check_types(&mut errors, &self.event_types),
            description: Some(check_text(
                &mut errors,
                "description",
                &self.description,
                MAX_DESCRIPTION_CHARS,
            )),
            enabled: Some(self.enabled.unwrap_or(true)),
        };
        finish(errors, change)
    }
}

impl PatchWebhook {
    pub fn validate(&self) -> ApiResult<WebhookChange> {
        let mut errors = Vec::new();
        if self.url.is_none()
            && self.event_types.is_none()
            && self.description.is_none()
            && self.enabled.is_none()
        {
            return Err(ApiError::BadRequest(
                "send at least one of url, event_types, description, enabled".into(),
            ));
        }
        let description = match self.description.as_deref() {
            None => None,
            Some(d) if d.trim().is_empty() => Some(None),
            Some(_) => Some(check_text(
                &mut errors,
                "description",
                &self.description,
                MAX_DESCRIPTION_CHARS,
            )),
        };
        let change = WebhookChange {
            url: self.url.as_deref().and_then(|u| check_url(&mut errors, u)),
            event_types: self
                .event_types
                .as_deref()
                .and_then(|t| check_types(&mut errors, t)),
            description,
            enabled: self.enabled,
        };
        finish(errors, change)
    }
}

/// A webhook. The secret appears only in the answer to its creation.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookView {
    pub id: i64,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// `whsec_…`: the key of the `webhook-signature` HMAC. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub version: i64,
    pub created_at: String,
    pub created_by: String,
    pub updated_at: String,
    pub updated_by: String,
}

impl WebhookView {
    pub fn etag(&self) -> String {
        webhook_etag(self.id, self.version)
    }
}

pub fn webhook_etag(id: i64, version: i64) -> String {
    format!("\"webhook-{id}-v{version}\"")
}

/// One attempt at a delivery, as the delivery log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub attempt: i32,
    pub started_at: String,
    pub duration_ms: i64,
    /// The receiver's HTTP status; `null` when none came (timeout, refused).
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub redelivery: bool,
}

/// One event for one webhook, with every attempt.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The `webhook-id` header sent with it: receivers deduplicate by it.
    pub id: String,
    pub webhook_id: i64,
    /// The event's position (its `id` on the event stream).
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered`, `failed` (retries ran out) or `cancelled`
    /// (the webhook was disabled or deleted first).
    pub status: String,
    pub attempts: i32,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub give_up_at: String,
    pub delivered_at: Option<String>,
    pub redelivered_at: Option<String>,
    pub attempt_log: Vec<AttemptView>,
}
