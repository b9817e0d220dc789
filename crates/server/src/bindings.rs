//! `/v1/bindings` (§10): a plugin asks to own a conversation; people approve it like any other
//! request, on the conversation's own account.

use std::time::Duration;

use assent_core::model::{Binding, BindingRequest, Channel, Conversation};
use assent_engine::BindingOutcome;
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    auth::Scope,
    error::{ApiError, ErrorBody},
    extract::{Body, Caller, Params},
    views::{ApprovalView, binding_view},
};

/// `POST /v1/bindings` answer: bound at once, or waiting for approval.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct BindingAnswer {
    /// `bound` or `pending` (or the pending approval's final status after `?wait=`).
    status: String,
    /// The binding, once bound.
    binding: Option<Binding>,
    /// The binding approval, when people must decide.
    approval: Option<ApprovalView>,
}

/// Which conversation (`GET` / `DELETE`).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationParams {
    /// Platform.
    channel: Channel,
    /// Channel account (default `default`).
    account: Option<String>,
    /// Conversation id.
    conversation: String,
    /// Parent conversation.
    parent: Option<String>,
    /// Thread.
    thread: Option<String>,
    /// `DELETE`: the owning plugin install's root (admins may omit it).
    plugin_root: Option<String>,
}

impl ConversationParams {
    fn conversation(&self) -> Conversation {
        Conversation {
            channel: self.channel,
            account: self.account.clone().unwrap_or_else(|| "default".to_owned()),
            conversation: self.conversation.clone(),
            parent: self.parent.clone(),
            thread: self.thread.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestParams {
    /// Seconds to wait for the approval (≤ 300).
    wait: Option<u64>,
}

#[utoipa::path(post, path = "/v1/bindings", tag = "bindings", params(RequestParams), request_body = BindingRequest,
    responses((status = 201, body = BindingAnswer), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<RequestParams>,
    Body(req): Body<BindingRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::Request)?;
    let answer = match state.engine.request_binding(req, &caller.0.id()).await? {
        BindingOutcome::Bound(b) => {
            BindingAnswer { status: "bound".to_owned(), binding: Some(*b), approval: None }
        }
        BindingOutcome::Pending(a) => {
            let mut a = *a;
            if let Some(secs) = params.wait.filter(|_| !a.status.is_terminal()) {
                a = state.engine.wait(&a.id, Duration::from_secs(secs.min(300))).await?;
            }
            let view = ApprovalView::new(&a, &state.keyring, &state.redactor, state.engine.now());
            let status = serde_json::to_value(a.status).ok().and_then(|v| v.as_str().map(str::to_owned));
            BindingAnswer { status: status.unwrap_or_default(), binding: None, approval: Some(view) }
        }
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

#[utoipa::path(get, path = "/v1/bindings", tag = "bindings", params(ConversationParams),
    responses((status = 200, body = Binding), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<ConversationParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require(Scope::Approve)?;
    match state.engine.binding_for(&params.conversation()).await? {
        Some(b) => Ok(Json(binding_view(&state.redactor, &b))),
        None => Err(ApiError::not_found("binding")),
    }
}

#[utoipa::path(delete, path = "/v1/bindings", tag = "bindings", params(ConversationParams),
    responses((status = 200, description = "`{\"removed\": bool}`; false when nothing was bound"), (status = 409, body = ErrorBody)))]
pub(crate) async fn detach(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<ConversationParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Detaching changes who owns a conversation: plugins (request) and admins only, never a
    // metrics or approve-only token (issue 9, finding 4).
    caller.require(Scope::Request)?;
    let admin = caller.0.has(Scope::Admin);
    if !admin && params.plugin_root.is_none() {
        return Err(ApiError::invalid(
            "plugin_root: the owning install's root is required (admins may omit it)",
        ));
    }
    let removed = state
        .engine
        .detach_binding(&params.conversation(), params.plugin_root.as_deref(), &caller.actor(), admin)
        .await?;
    Ok(Json(serde_json::json!({ "removed": removed })))
}
