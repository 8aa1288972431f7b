//! HTTP plumbing shared by every feature: strict JSON bodies, the Idempotency-Key
//! header, request ids, pagination and CSV answers.

pub mod csv;
pub mod json;
pub mod pagination;
pub mod request_id;
pub mod throttle;

use actix_web::{dev::Payload, FromRequest, HttpRequest};
use chrono::{DateTime, Utc};
use std::future::{ready, Ready};

use crate::error::{ApiError, FieldError};

/// The `Idempotency-Key` request header, required on every POST that writes.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_idempotency_key(req))
    }
}

/// An `Idempotency-Key` that may be left out, for writes that are idempotent
/// by their own content (import flows); when sent it must be well formed.
#[derive(Debug, Clone)]
pub struct OptionalIdempotencyKey(pub Option<String>);

impl FromRequest for OptionalIdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(if req.headers().contains_key("idempotency-key") {
            parse_idempotency_key(req).map(|k| OptionalIdempotencyKey(Some(k.0)))
        } else {
            Ok(OptionalIdempotencyKey(None))
        })
    }
}

fn parse_idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    let err = |m: &str| ApiError::Validation(vec![FieldError::new("Idempotency-Key", m)]);
    let mut values = req.headers().get_all("idempotency-key");
    let value = values.next().ok_or_else(|| {
        err("this request writes, so it needs an Idempotency-Key header (e.g. a UUID)")
    })?;
    if values.next().is_some() {
        return Err(err("send exactly one Idempotency-Key header"));
    }
    let value = value.to_str().map_err(|_| err("must be printable ASCII"))?;
    // The draft standard wraps keys as a structured-field string ("..."); accept both.
    let key = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(err(&format!(
            "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        )));
    }
    if !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(err("must be printable ASCII without spaces"));
    }
    Ok(IdempotencyKey(key.to_string()))
}

/// Parses an optional query filter; a bad value is recorded in `errors`
/// under `field`, so a handler can name every bad filter at once.
pub fn filter<T>(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    parse(value?)
        .map_err(|m| errors.push(FieldError::new(field, m)))
        .ok()
}

/// Checks a free-text field: bounded length, no control characters.
pub fn check_text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &Option<String>,
    max_chars: usize,
) -> Option<String> {
    let v = value.as_ref()?;
    let trimmed = v.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "must not be blank when given"));
        return None;
    }
    if trimmed.chars().count() > max_chars {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
        return None;
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
        return None;
    }
    Some(trimmed.to_string())
}

/// Parses a timestamp from a query string. A raw `+` in a query string means a
/// space, so `as_of=2026-11-26T09:30:00+01:00` arrives as `…00 01:00`; when
/// that is what went wrong, the message says how to send it.
pub fn query_instant(value: &str) -> Result<DateTime<Utc>, String> {
    crate::db::types::parse_rfc3339(value).map_err(|e| {
        if value.contains(' ') && crate::db::types::parse_rfc3339(&value.replace(' ', "+")).is_ok()
        {
            format!(
                "{e}; a \"+\" in a query string arrives as a space, so encode the offset's \
                 \"+\" as %2B (e.g. 2026-11-26T09:30:00%2B01:00)"
            )
        } else {
            e
        }
    })
}

/// Takes the row lock of a versioned resource for a change its `If-Match`
/// allowed (`expected`: `None` for `*`). `find` reads it (404 when gone);
/// `lock` locks its row if it is still live at the given version, and says
/// how many rows it locked. Answers 412, naming the version now, when none.
pub fn lock_at_version<R>(
    conn: &mut crate::db::DbConn,
    what: &str,
    expected: Option<i64>,
    find: impl Fn(&mut crate::db::DbConn) -> Result<R, ApiError>,
    version: impl Fn(&R) -> i64,
    lock: impl FnOnce(&mut crate::db::DbConn, i64) -> diesel::QueryResult<usize>,
) -> Result<R, ApiError> {
    let before = find(conn)?;
    let locked = lock(conn, expected.unwrap_or(version(&before)))?;
    let current = find(conn)?;
    if locked == 0 {
        return Err(ApiError::PreconditionFailed(format!(
            "{what} changed since you read it (now version {}); fetch it again and retry",
            version(&current)
        )));
    }
    Ok(current)
}

/// What `If-Match` demands of the `kind` resource `id` whose ETags read
/// `"{kind}-{id}-v{version}"`: `None` for `*` (it exists), else the version.
pub fn if_match_version(
    req: &actix_web::HttpRequest,
    kind: &str,
    id: i64,
) -> Result<Option<i64>, ApiError> {
    let value = req
        .headers()
        .get(actix_web::http::header::IF_MATCH)
        .ok_or_else(|| {
            ApiError::PreconditionRequired(format!(
                "send If-Match with the {kind}'s ETag (or *) to change it"
            ))
        })?
        .to_str()
        .map_err(|_| ApiError::PreconditionFailed("If-Match is not a valid ETag".into()))?
        .trim();
    if value == "*" {
        return Ok(None);
    }
    let mismatch = || {
        ApiError::PreconditionFailed(format!("If-Match does not match the {kind}'s current ETag"))
    };
    let prefix = format!("\"{kind}-{id}-v");
    let version: i64 = value
        .strip_prefix(prefix.as_str())
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .filter(|v| *v >= 1)
        .ok_or_else(mismatch)?;
    Ok(Some(version))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plus_decoded_as_a_space_gets_a_hint() {
        let e = super::query_instant("2026-11-26T09:30:00 01:00").unwrap_err();
        assert!(e.contains("%2B"), "{e}");
        let e = super::query_instant("yesterday").unwrap_err();
        assert!(!e.contains("%2B"), "{e}");
        assert!(super::query_instant("2026-11-26T09:30:00+01:00").is_ok());
    }
}
