//! API-3: every error is `{"error": {"code", "message", "details"}}` with a stable code.

use assent_core::lifecycle::{Rejection, RequesterError};
use assent_engine::{EngineError, ResolveError};
use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The error body of every failed request (API-3), for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

/// `error` of [`ErrorBody`].
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable code, e.g. `already_resolved`.
    code: String,
    /// For people.
    message: String,
    /// Structured details, or null.
    details: serde_json::Value,
}

/// An API error: HTTP status, stable code, human message, optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code (API-3).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// Structured details.
    pub details: Value,
    retry_after: Option<u64>,
}

impl ApiError {
    /// A new error without details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Value::Null, retry_after: None }
    }

    /// Adds details.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Replaces the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "send `Authorization: Bearer <token>`; `assent token new` makes one",
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }

    /// 429 `rate_limited`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many attempts; slow down");
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "code": self.code, "message": self.message, "details": self.details } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let message = r.to_string();
        match r {
            Rejection::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            Rejection::AlreadyResolved { by, outcome } => {
                Self::new(StatusCode::CONFLICT, "already_resolved", message).details(json!({
                    "outcome": outcome,
                    "by": by.map(|a| a.display_handle()),
                }))
            }
            Rejection::Expired => Self::new(StatusCode::CONFLICT, "expired", message),
            Rejection::Unauthorized => Self::new(StatusCode::FORBIDDEN, "forbidden", message),
            Rejection::DecisionNotAllowed => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "decision_not_allowed", message)
            }
            Rejection::AmbiguousRef => Self::new(StatusCode::CONFLICT, "ambiguous_ref", message),
            Rejection::Throttled { retry_after } => Self::rate_limited(retry_after.as_secs()),
            _ => Self::new(StatusCode::CONFLICT, "rejected", message),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Invalid(v) if v.field == "ref" => {
                Self::new(StatusCode::BAD_REQUEST, "ref_too_short", format!("ref: {}", v.message))
            }
            EngineError::Invalid(v) => Self::invalid(message).details(json!({ "field": v.field })),
            EngineError::TimeoutOutOfRange(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "timeout_out_of_range", message)
            }
            EngineError::IdempotencyConflict => {
                Self::new(StatusCode::CONFLICT, "idempotency_conflict", message)
            }
            EngineError::NotFound => Self::not_found("approval"),
            EngineError::Requester(RequesterError::Forbidden) => Self::forbidden(message),
            EngineError::Requester(RequesterError::Rejected(r)) | EngineError::Rejected(r) => r.into(),
            EngineError::Requester(RequesterError::NotApproved(_)) => {
                Self::new(StatusCode::CONFLICT, "not_approved", message)
            }
            EngineError::Requester(RequesterError::AlreadyConsumed) => {
                Self::new(StatusCode::CONFLICT, "already_consumed", message)
            }
            EngineError::Scope(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "grant_scope_not_allowed", message)
            }
            EngineError::ConversationBound { .. } => {
                Self::new(StatusCode::CONFLICT, "conversation_bound", message)
            }
            EngineError::ConversationOwnedByCore => {
                Self::new(StatusCode::CONFLICT, "conversation_owned_by_core", message)
            }
            EngineError::Store(_) => unavailable(message),
            _ => unavailable(message),
        }
    }
}

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> Self {
        let message = e.to_string();
        match e {
            ResolveError::Rejected(r) => r.into(),
            ResolveError::Store(_) => unavailable(message),
            ResolveError::ConversationBound { .. } => {
                Self::new(StatusCode::CONFLICT, "conversation_bound", message)
            }
            ResolveError::Scope(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "grant_scope_not_allowed", message)
            }
            _ => unavailable(message),
        }
    }
}

impl From<assent_core::store::StoreError> for ApiError {
    fn from(e: assent_core::store::StoreError) -> Self {
        unavailable(e.to_string())
    }
}

fn unavailable(message: String) -> ApiError {
    tracing::error!(error = %message, "store failure answered with 503");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the store is unavailable; nothing was changed",
    )
}
