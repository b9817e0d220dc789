//! API-6: the OpenAPI 3.1 document, generated from the handlers' annotations and the request and
//! response types. `docs/openapi.json` is its committed copy; a test fails when they differ.

use utoipa::OpenApi;

use crate::{bindings, error::ErrorBody, http, views::ApprovalView};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "assent",
        description = "Approval gateway API: ask for approval, wait for it, decide, inspect. \
                       Authenticate with `Authorization: Bearer <token>`.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        http::create,
        http::list,
        http::show,
        http::wait,
        http::resolve,
        http::cancel,
        http::consume,
        http::grants,
        http::revoke_grant,
        http::audit,
        http::health,
        http::ready,
        bindings::request,
        bindings::show,
        bindings::detach,
    ),
    components(schemas(ApprovalView, ErrorBody, assent_core::model::Event)),
    tags(
        (name = "approvals", description = "Ask, wait, decide, cancel, consume"),
        (name = "grants", description = "Standing grants made by allow-always"),
        (name = "bindings", description = "Plugins owning conversations, approved by people"),
        (name = "audit", description = "The append-only audit log"),
        (name = "operations", description = "Health and readiness"),
    )
)]
struct ApiDoc;

/// The OpenAPI document as pretty JSON (also served at `/v1/openapi.json`).
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub(crate) async fn serve() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document())
}
