//! API-6: the OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types. `docs/openapi.json` is its committed copy; a test fails when they differ.

use utoipa::OpenApi;

use crate::{approvals, bindings, error::ErrorBody, events, grants, metrics, views::ApprovalView};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "assent",
        description = "Approval gateway API: ask for approval, wait for it, decide, inspect. \
                       Authenticate with `Authorization: Bearer <token>`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        approvals::create,
        approvals::list,
        approvals::show,
        approvals::wait,
        approvals::resolve,
        approvals::cancel,
        approvals::consume,
        grants::grants,
        grants::revoke_grant,
        approvals::audit,
        approvals::health,
        approvals::ready,
        bindings::request,
        bindings::show,
        bindings::detach,
        events::sse,
        events::ws,
        metrics::render,
        serve,
    ),
    components(schemas(ApprovalView, ErrorBody, assent_core::model::Event)),
    tags(
        (name = "approvals", description = "Ask, wait, decide, cancel, consume"),
        (name = "grants", description = "Standing grants made by allow-always"),
        (name = "bindings", description = "Plugins owning conversations, approved by people"),
        (name = "audit", description = "The append-only audit log"),
        (name = "events", description = "Live events, resumable by seq"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// The OpenAPI document as pretty JSON (also served at `/v1/openapi.json`).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "This OpenAPI document")))]
pub(crate) async fn serve() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document())
}
