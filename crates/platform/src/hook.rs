//! Inbound HTTP for platforms that push events to assent (Telegram webhooks, Slack's HTTP mode,
//! Discord's interactions endpoint): the server mounts each account's [`Hook`] at
//! `/hooks/<platform>/<account>` on every replica, so whichever replica the platform reaches
//! answers it.

use std::{future::Future, pin::Pin};

const TEXT: &str = "text/plain; charset=utf-8";

/// One request to an account's hook.
#[derive(Debug, Clone)]
pub struct HookRequest {
    /// The request headers (signatures, secret tokens).
    pub headers: http::HeaderMap,
    /// The raw body, as signed.
    pub body: Vec<u8>,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookResponse {
    /// Status.
    pub status: http::StatusCode,
    /// Body (JSON or empty).
    pub body: String,
    /// `Content-Type` of a non-empty body.
    pub content_type: &'static str,
}

impl HookResponse {
    /// `200` with an empty body.
    pub fn ok() -> Self {
        Self { status: http::StatusCode::OK, body: String::new(), content_type: TEXT }
    }

    /// `401` with a reason: the request did not prove it came from the platform.
    pub fn unauthorized(why: &str) -> Self {
        Self { status: http::StatusCode::UNAUTHORIZED, body: why.to_owned(), content_type: TEXT }
    }

    /// `200` with a JSON body (Discord's interaction responses).
    pub fn json(body: &serde_json::Value) -> Self {
        Self { status: http::StatusCode::OK, body: body.to_string(), content_type: "application/json" }
    }

    /// `503` with a reason: the hook cannot answer now; the platform may try again.
    pub fn unavailable(why: &str) -> Self {
        Self { status: http::StatusCode::SERVICE_UNAVAILABLE, body: why.to_owned(), content_type: TEXT }
    }

    /// `400` with a reason.
    pub fn bad_request(why: &str) -> Self {
        Self { status: http::StatusCode::BAD_REQUEST, body: why.to_owned(), content_type: TEXT }
    }
}

/// The future a hook answers with.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = HookResponse> + Send + 'a>>;

/// An account's inbound HTTP endpoint. It verifies the request itself (secret, signature) and
/// must answer inside the platform's deadline: ack first, work after.
pub trait Hook: Send + Sync {
    /// Handles one request.
    fn handle(&self, request: HookRequest) -> HookFuture<'_>;
}
