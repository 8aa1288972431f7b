//! The one error type handlers return, written as RFC 9457 `application/problem+json`.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use diesel::result::DatabaseErrorKind;
use serde::Serialize;
use serde_json::{json, Value};

/// One refused field: where (a JSON path such as `quantity_kg` or `entries[2].depot`,
/// a header name, or a query parameter) and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Invariant 8: the same subject may not both propose and approve.
    #[error("{0}")]
    SameSubject(String),
    /// A refusal because of the current state (stock, capacity, status, duplicates),
    /// with the numbers that explain it.
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: String,
        context: Value,
    },
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    IdempotencyKeyInFlight,
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    PreconditionRequired(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("too many failed attempts; retry in {0} s")]
    TooManyRequests(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>, context: Value) -> Self {
        ApiError::Conflict {
            code,
            detail: detail.into(),
            context,
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        ApiError::Internal(e.into())
    }

    /// Stable machine-readable code; also the last segment of the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Validation(_) => "validation",
            ApiError::NotFound(_) => "not-found",
            ApiError::MethodNotAllowed(_) => "method-not-allowed",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::SameSubject(_) => "same-subject",
            ApiError::Conflict { code, .. } => code,
            ApiError::IdempotencyKeyReused => "idempotency-key-reused",
            ApiError::IdempotencyKeyInFlight => "idempotency-key-in-flight",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::PreconditionRequired(_) => "precondition-required",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::TooManyRequests(_) => "too-many-requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "Malformed request",
            ApiError::Validation(_) => "Invalid request fields",
            ApiError::NotFound(_) => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Unauthorized(_) => "Authentication required",
            ApiError::Forbidden(_) => "Not allowed",
            ApiError::SameSubject(_) => "A second person must approve",
            ApiError::Conflict { .. } => "Refused by the current state",
            ApiError::IdempotencyKeyReused => "Idempotency key reused",
            ApiError::IdempotencyKeyInFlight => "Request still in flight",
            ApiError::PreconditionFailed(_) => "Precondition failed",
            ApiError::PreconditionRequired(_) => "Precondition required",
            ApiError::UnsupportedMediaType(_) => "Unsupported media type",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::TooManyRequests(_) => "Too many requests",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal server error",
        }
    }

    /// The problem document, without the status-specific headers.
    pub fn problem(&self) -> Value {
        let status = self.status_code();
        let detail = match self {
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            // Never leak internals (SQL, paths, driver messages) to clients.
            ApiError::Internal(_) => {
                "the server failed to handle this request; it has been logged".into()
            }
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Validation(errors) => errors.clone(),
            _ => Vec::new(),
        };
        let mut body = json!({
            "type": format!("/problems/{}", self.code()),
            "title": self.title(),
            "status": status.as_u16(),
            "detail": detail,
            "code": self.code(),
            "errors": errors,
        });
        if let ApiError::Conflict { context, .. } = self {
            if let (Some(obj), Value::Object(ctx)) = (body.as_object_mut(), context) {
                for (k, v) in ctx {
                    obj.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        body
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) | ApiError::IdempotencyKeyReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::SameSubject(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict { .. } | ApiError::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired(_) => StatusCode::PRECONDITION_REQUIRED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = ?e, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "application/problem+json"));
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"reserve\""));
            }
            ApiError::Unavailable(_) | ApiError::IdempotencyKeyInFlight => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::TooManyRequests(secs) => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            _ => {}
        }
        let mut response = response.body(self.problem().to_string());
        response
            .extensions_mut()
            .insert(crate::audit::trail::ProblemType(self.code()));
        response
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::Error as E;
        match e {
            E::NotFound => ApiError::NotFound("no such resource".into()),
            E::DatabaseError(kind, info) => match kind {
                DatabaseErrorKind::UniqueViolation => ApiError::conflict(
                    "already-exists",
                    "a resource with these identifying fields already exists",
                    Value::Null,
                ),
                DatabaseErrorKind::ForeignKeyViolation => ApiError::conflict(
                    "reference-missing",
                    "the request refers to something that does not exist",
                    Value::Null,
                ),
                DatabaseErrorKind::SerializationFailure | DatabaseErrorKind::ClosedConnection => {
                    ApiError::Unavailable(
                        "the database is busy; retry with the same Idempotency-Key".into(),
                    )
                }
                _ if is_transient(info.message()) => ApiError::Unavailable(
                    "the database is busy; retry with the same Idempotency-Key".into(),
                ),
                _ => ApiError::Internal(anyhow::anyhow!(
                    "database error {kind:?}: {}",
                    info.message()
                )),
            },
            E::BrokenTransactionManager => ApiError::Unavailable("database connection lost".into()),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// Messages of errors that go away on retry: SQLite's lock timeouts and a
/// PostgreSQL server that went away mid-request.
fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "database is locked",
        "database is busy",
        "server closed the connection",
        "terminating connection",
        "could not connect",
        "connection refused",
        "no connection to the server",
        "deadlock detected",
    ]
    .iter()
    .any(|s| m.contains(s))
}

impl From<crate::db::Unreachable> for ApiError {
    fn from(e: crate::db::Unreachable) -> Self {
        tracing::warn!(error = %e.0, "no database connection");
        ApiError::Unavailable("the database is unavailable".into())
    }
}

impl From<diesel::r2d2::PoolError> for ApiError {
    fn from(_: diesel::r2d2::PoolError) -> Self {
        ApiError::Unavailable("the database is unavailable".into())
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::Unavailable("the server is overloaded".into())
    }
}
