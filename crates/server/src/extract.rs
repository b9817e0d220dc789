//! Request extractors shared by the API handlers: who calls ([`Caller`], API-1, CH-WEB-2), and
//! JSON bodies and query strings that fail with API-3 errors instead of axum's plain text.

use assent_core::model::Actor;
use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Query, Request,
        rejection::{JsonRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{
    AppState,
    auth::{Principal, Scope},
    console,
    error::ApiError,
};

/// The authenticated caller of an API request: a bearer token, or a console session cookie sent
/// from the console's own origin (writes also need the CSRF header, CH-WEB-2).
pub(crate) struct Caller(pub(crate) Principal, pub(crate) Via);

/// How the caller authenticated: decisions through the console are recorded as `console:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// `Authorization: Bearer`.
    Token,
    /// A console session cookie.
    Console,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let peer = peer_ip(parts);
            let token = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
            return match token.and_then(|t| state.authenticate(t)) {
                // A known token always passes: the limit slows guessing, it must not lock out
                // the legitimate clients that share the guesser's address (NF-12).
                Some(p) => Ok(Caller(p, Via::Token)),
                None => {
                    state.auth_failures.check(peer).map_err(ApiError::rate_limited)?;
                    state.auth_failures.fail(peer);
                    Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        "the bearer token is not known to this server",
                    ))
                }
            };
        }
        match console::session_of(parts, state) {
            Some(session) => {
                // Reads too: the event stream and its WebSocket carry every approval.
                if !state.console_origins.allows(&parts.headers) {
                    return Err(ApiError::forbidden(
                        "console requests must come from the console's own origin (scheme, host and port)",
                    ));
                }
                if !parts.method.is_safe() && !console::csrf_ok(parts, &session) {
                    return Err(ApiError::forbidden("console writes need the X-Assent-CSRF header"));
                }
                Ok(Caller(session.principal, Via::Console))
            }
            None => Err(ApiError::unauthenticated()),
        }
    }
}

/// The client's address (loopback when unknown, e.g. in-process calls).
pub(crate) fn peer_ip(parts: &Parts) -> std::net::IpAddr {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

impl Caller {
    pub(crate) fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.0.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!("this needs a token with the `{scope:?}` scope").to_lowercase()))
        }
    }

    /// Reading approvals and their events needs a `request` token (its own) or an `approve`
    /// one (all): never a metrics-only token.
    pub(crate) fn require_reader(&self) -> Result<(), ApiError> {
        if self.0.has(Scope::Request) || self.0.has(Scope::Approve) {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs a token with the `request` or `approve` scope"))
        }
    }

    /// A `request`-only token sees its own approvals only (API-1).
    pub(crate) fn sees_all(&self) -> bool {
        self.0.has(Scope::Approve)
    }

    pub(crate) fn actor(&self) -> Actor {
        match self.1 {
            Via::Token => Actor::token(self.0.name.clone()),
            Via::Console => Actor::console(self.0.name.clone()),
        }
    }
}

/// JSON body with API-3 errors instead of axum's plain-text rejections.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is over 64 KiB"),
            ),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::invalid("send the body as JSON with `Content-Type: application/json`"))
            }
            Err(e) => Err(ApiError::invalid(format!("invalid JSON body: {}", e.body_text()))),
        }
    }
}

/// Query string with API-3 errors.
pub(crate) struct Params<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::invalid(format!("invalid query string: {}", e.body_text())))
            }
            Err(e) => Err(ApiError::invalid(e.body_text())),
        }
    }
}
