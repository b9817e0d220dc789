//! `POST /hooks/{platform}/{account}`: events a platform pushes to one account (a Telegram
//! webhook, Slack's HTTP mode, Discord's interactions endpoint). No bearer token: each account's
//! hook verifies the platform's own secret or signature, and answers 401 when it does not match.

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};

use crate::{AppState, error::ApiError};

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path((platform, account)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let hook = state.hooks.iter().find(|(k, _)| k.channel.as_str() == platform && k.account == account);
    let Some((_, hook)) = hook else {
        return ApiError::not_found("hook").into_response();
    };
    let answer = hook.handle(assent_platform::HookRequest { headers, body: body.to_vec() }).await;
    (answer.status, [(axum::http::header::CONTENT_TYPE, answer.content_type)], answer.body).into_response()
}
