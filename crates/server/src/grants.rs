//! `GET /v1/grants` and `DELETE /v1/grants/{id}` (PO-12): standing grants, listed with what they
//! match, redacted and with control characters escaped.

use assent_core::{
    clock::Timestamp,
    id::GrantId,
    model::Kind,
    policy::{grant_scope_text, grant_subject},
    text::sanitize,
};
use axum::{Json, extract::Path};
use serde::Serialize;
use serde_json::json;

use crate::{
    AppState,
    auth::Scope,
    error::{ApiError, ErrorBody},
    extract::Caller,
    views::Page,
};

/// An active grant.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct GrantView {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) subject: String,
    /// Everything the grant compares, in words (PO-3, PO-12).
    pub(crate) scope: String,
    source: serde_json::Value,
    pub(crate) approval_id: Option<String>,
    pub(crate) created_by: String,
    pub(crate) created_at: Timestamp,
    pub(crate) last_used_at: Option<Timestamp>,
    pub(crate) use_count: u64,
    /// Not valid after this time (a `ttl:` scope).
    pub(crate) expires_at: Option<Timestamp>,
    /// Only for this agent session (a `session` scope).
    pub(crate) session_key: Option<String>,
}

pub(crate) fn grant_views(state: &AppState, grants: &[assent_core::model::Grant]) -> Vec<GrantView> {
    grants
        .iter()
        .filter(|g| g.revoked_at.is_none())
        .map(|g| GrantView {
            id: g.id.to_string(),
            kind: g.kind,
            // Redacted, then control and invisible characters escaped: a subject is an argv
            // that anyone with a request token chose (issue 9, finding 7).
            subject: sanitize(&state.redactor.redact(&grant_subject(g)).text, false),
            scope: sanitize(&state.redactor.redact(&grant_scope_text(g)).text, false),
            source: serde_json::to_value(g.source).unwrap_or_default(),
            approval_id: g.approval_id.as_ref().map(ToString::to_string),
            created_by: g.created_by.clone(),
            created_at: g.created_at,
            last_used_at: g.last_used_at,
            use_count: g.use_count,
            expires_at: g.constraints.expires_at,
            session_key: g.constraints.session_key.clone(),
        })
        .collect()
}

#[utoipa::path(get, path = "/v1/grants", tag = "grants", responses((status = 200, body = Page<GrantView>), (status = 403, body = ErrorBody)))]
pub(crate) async fn grants(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
) -> Result<Json<Page<GrantView>>, ApiError> {
    caller.require(Scope::Approve)?;
    let all = state.engine.grants().await?;
    Ok(Json(Page::all(grant_views(&state, &all))))
}

#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "grants", params(("id" = String, Path)), responses((status = 200, description = "Revoked"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_grant(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Scope::Admin)?;
    let id = GrantId::parse(&id).map_err(|_| ApiError::not_found("grant"))?;
    let g = state.engine.revoke_grant(&id, &caller.actor()).await?;
    Ok(Json(json!({ "id": g.id.to_string(), "revoked_at": g.revoked_at })))
}
