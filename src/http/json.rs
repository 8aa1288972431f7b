//! `ApiJson<T>`: a JSON body extractor whose every failure is a problem document
//! naming the field: 415 for a wrong content type, 413 past the size limit, 400
//! for malformed JSON, 422 (with the JSON path) for well-formed JSON of the
//! wrong shape, unknown fields included.

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures_util::{future::LocalBoxFuture, StreamExt};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use crate::AppState;

pub struct ApiJson<T>(pub T);

impl<T> ApiJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for ApiJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.settings.server.max_body_bytes)
            .unwrap_or(1 << 20);
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let essence = v
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                essence == "application/json"
                    || (essence.starts_with("application/") && essence.ends_with("+json"))
            })
            .unwrap_or(false);
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType(
                    "send the body as JSON with `Content-Type: application/json`".into(),
                ));
            }
            if declared_len.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            parse(&body).map(ApiJson)
        })
    }
}

/// Parses a JSON document into `T`, classifying the failure.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::BadRequest(
            "the request body is empty; send a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(value) => {
            // Trailing garbage after the document is malformed JSON too.
            let mut rest =
                serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
            let _ = rest.next();
            if rest.next().is_some() {
                return Err(ApiError::BadRequest(
                    "the body holds more than one JSON document".into(),
                ));
            }
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Data => {
                    let field = if path == "." {
                        "body".to_string()
                    } else {
                        path
                    };
                    let message =
                        number_for_decimal(&field, &inner).unwrap_or_else(|| clean_message(&inner));
                    Err(ApiError::Validation(vec![FieldError::new(field, message)]))
                }
                Category::Syntax | Category::Eof | Category::Io => Err(ApiError::BadRequest(
                    format!("malformed JSON: {}", clean_message(&inner)),
                )),
            }
        }
    }
}

/// What to say when a JSON number arrives where the API wants an exact decimal
/// string: serde's "invalid type: floating point `12.5`, expected a string"
/// does not tell a newcomer what to send instead.
fn number_for_decimal(field: &str, e: &serde_json::Error) -> Option<String> {
    let msg = e.to_string();
    if !(msg.starts_with("invalid type: integer")
        || msg.starts_with("invalid type: floating point"))
    {
        return None;
    }
    let name = field.rsplit('.').next().unwrap_or(field);
    if name.ends_with("_kg") || name.contains("_kg_") {
        Some(
            "send kilograms as a string such as \"12.500\", not a JSON number: quantities are exact decimals"
                .into(),
        )
    } else if name.contains("price") {
        Some(
            "send prices as a string such as \"81.25\", not a JSON number: money is an exact decimal"
                .into(),
        )
    } else {
        None
    }
}

/// serde's message without the " at line 1 column 7" suffix, which the field
/// path already says better.
fn clean_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) if e.classify() == serde_json::error::Category::Data => msg[..i].to_string(),
        _ => msg,
    }
}

/// An optional whole number. JSON (and JSON Schema's `integer`) does not tell
/// `2027` from `2027.0`, so neither does this; `2027.5` is refused.
pub fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i32::try_from(i).ok(),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() <= f64::from(i32::MAX) => Some(f as i32),
        _ => None,
    };
    whole
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        quantity_kg: String,
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        depot: String,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Validation(v) => v[0].field.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn wrong_shapes_name_their_field() {
        assert_eq!(
            field_of(parse::<Body>(br#"{"quantity_kg": 5}"#).unwrap_err()),
            "quantity_kg"
        );
        assert_eq!(
            field_of(
                parse::<Body>(br#"{"quantity_kg": "5", "inner": {"depot": "A", "x": 1}}"#)
                    .unwrap_err()
            ),
            "inner.x"
        );
        assert!(matches!(
            parse::<Body>(br#"{"quantity_kg": "5", "qty": 1}"#),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            parse::<Body>(b"{\"quantity_kg\": "),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(parse::<Body>(b""), Err(ApiError::BadRequest(_))));
        assert!(matches!(
            parse::<Body>(br#"{"quantity_kg":"1"} {}"#),
            Err(ApiError::BadRequest(_))
        ));
    }

    fn message_of(e: ApiError) -> String {
        match e {
            ApiError::Validation(v) => v[0].message.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn kilograms_sent_as_numbers_are_told_to_use_strings() {
        for body in [&br#"{"quantity_kg": 12.5}"#[..], br#"{"quantity_kg": 12}"#] {
            let m = message_of(parse::<Body>(body).unwrap_err());
            assert!(m.contains("as a string such as \"12.500\""), "{m}");
        }
        // Other wrong types keep serde's wording, which names the type.
        let m = message_of(parse::<Body>(br#"{"quantity_kg": true}"#).unwrap_err());
        assert!(m.contains("invalid type: boolean"), "{m}");
    }
}
