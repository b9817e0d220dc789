//! Every route the server answers, in one place: the `/v1` API, `/metrics`, platform hooks and
//! the console.
//! Handlers live in their own modules and never import this one.

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{delete, get, post},
};

use crate::{ApiError, AppState, approvals, bindings, console, events, grants, hooks, metrics, openapi};

/// API-3: bodies over 64 KiB are refused with `payload_too_large`.
pub(crate) const MAX_BODY: usize = 64 * 1024;

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/approvals", post(approvals::create).get(approvals::list))
        .route("/approvals/{reference}", get(approvals::show))
        .route("/approvals/{reference}/wait", get(approvals::wait))
        .route("/approvals/{reference}/resolve", post(approvals::resolve))
        .route("/approvals/{reference}/cancel", post(approvals::cancel))
        .route("/approvals/{reference}/consume", post(approvals::consume))
        .route("/events", get(events::sse))
        .route("/events/ws", get(events::ws))
        .route("/bindings", post(bindings::request).get(bindings::show).delete(bindings::detach))
        .route("/grants", get(grants::grants))
        .route("/grants/{id}", delete(grants::revoke_grant))
        .route("/audit", get(approvals::audit))
        .route("/health", get(approvals::health))
        .route("/ready", get(approvals::ready))
        .route("/openapi.json", get(openapi::serve))
        .fallback(|| async { ApiError::not_found("endpoint") });
    Router::new()
        .nest("/v1", api)
        .route("/metrics", get(metrics::render))
        .route("/hooks/{platform}/{account}", post(hooks::receive))
        .merge(console::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
