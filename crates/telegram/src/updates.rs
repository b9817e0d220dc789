//! Inbound (CH-TG-3, CH-TG-5): long polling ("getUpdates"), button presses and typed
//! `/approve`.
//!
//! Only the replica that serves the account polls (two pollers would end each other's calls
//! with 409). The id of the last handled update is kept in the account's state directory, so a
//! restart neither handles an update twice nor skips one.
//!
//! A press is answered from the task that received it, before anything else: a hop to another
//! task (and thread) before the answer cost a bare bot's whole latency again
//! (`cargo xtask bench telegram`). The decision and everything slower run in their own task.

use std::{sync::Arc, time::Duration};

use assent_core::{
    command::TypedMessage,
    lifecycle::Rejection,
    model::{Actor, Channel, Surface},
};
use teloxide_core::{
    RequestError,
    payloads::setters::*,
    requests::Requester,
    types::{AllowedUpdate, CallbackQuery, Message, Update, UpdateKind, User},
};

use crate::{Shared, card, send};

/// Seconds a `getUpdates` call waits for news; below teloxide's 17 s request timeout.
const POLL_SECONDS: u32 = 10;
/// "answerCallbackQuery": the notification text is 0-200 characters.
const ANSWER_LIMIT: usize = 200;
/// A callback answer is best effort: it never holds the decision.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause after failed polls.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const OFFSET_FILE: &str = "update-offset";

/// Polls for as long as the channel runs.
pub(crate) async fn follow(shared: Arc<Shared>) {
    let mut offset = read_offset(&shared);
    // Once, not per update: the directory holds only the offset file.
    if let Err(e) = std::fs::create_dir_all(&shared.state_dir) {
        tracing::warn!(account = %shared.key, error = %e, "cannot create the Telegram state directory");
    }
    let mut backoff = Duration::from_secs(1);
    loop {
        if !shared.inbound.is_serving() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let mut request = shared
            .bot
            .get_updates()
            .timeout(POLL_SECONDS)
            .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        if let Some(o) = offset {
            request = request.offset(o);
        }
        match request.await {
            Ok(updates) => {
                backoff = Duration::from_secs(1);
                for update in updates {
                    let next = i32::try_from(update.id.0).unwrap_or(i32::MAX).saturating_add(1);
                    handle(&shared, update).await;
                    offset = Some(next);
                    write_offset(&shared, next);
                }
            }
            Err(RequestError::RetryAfter(s)) => tokio::time::sleep(s.duration()).await,
            Err(e) => {
                let e = crate::TelegramError::new(&e, &shared.token);
                tracing::warn!(account = %shared.key, error = %e, retry_in = ?backoff, "telegram getUpdates failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn read_offset(shared: &Shared) -> Option<i32> {
    std::fs::read_to_string(shared.state_dir.join(OFFSET_FILE)).ok().and_then(|s| s.trim().parse().ok())
}

fn write_offset(shared: &Shared, offset: i32) {
    if let Err(e) = std::fs::write(shared.state_dir.join(OFFSET_FILE), offset.to_string()) {
        tracing::warn!(account = %shared.key, error = %e, "could not keep the Telegram update offset");
    }
}

/// Handles one update. A press is answered right here (at most 2 s), from the task that
/// received it; the decision and everything slower run beside it.
pub(crate) async fn handle(shared: &Arc<Shared>, update: Update) {
    match update.kind {
        UpdateKind::CallbackQuery(q) => on_press(shared, q).await,
        UpdateKind::Message(m) => {
            let shared = shared.clone();
            tokio::spawn(async move { on_message(&shared, m).await });
        }
        _ => {}
    }
}

fn actor(user: &User, private: bool) -> Actor {
    let display = user.username.as_ref().map_or_else(|| user.first_name.clone(), |u| format!("@{u}"));
    let surface = if private { Surface::ApproverDm } else { Surface::Origin };
    Actor::platform(Channel::Telegram, user.id.0.to_string(), display, surface)
}

/// A button press: the precheck answers the callback at once (exactly once, ≤ 200 characters,
/// best effort, at most 2 s), then the decision is settled. A press on a message too old to be included
/// (`message` absent) is decided by its token alone.
async fn on_press(shared: &Arc<Shared>, q: CallbackQuery) {
    let private = q.message.as_ref().is_none_or(|m| m.chat().is_private());
    let actor = actor(&q.from, private);
    let data = q.data.clone().unwrap_or_default();
    let precheck = shared.inbound.precheck_token(&data, actor.clone());
    if matches!(precheck, Err(Rejection::DecisionNotAllowed)) {
        let shared = shared.clone();
        tokio::spawn(async move { full_text(&shared, q, &actor, &data).await });
        return;
    }
    let ack = match &precheck {
        Ok(a) => a.ack_text().to_owned(),
        Err(r) => r.to_string(),
    };
    let ack = clip(&ack);
    let context = serde_json::json!({ "answered": ack });
    // The answer goes first, before the decision's work competes with it, and waits at most
    // 2 s: a failed or slow answer never keeps the decision from being recorded.
    answer(shared.clone(), q, ack).await;
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Some(Err(e)) = shared.inbound.settle(&actor, precheck, &context).await {
            tracing::warn!(account = %shared.key, error = %e, "a Telegram press could not be recorded");
        }
    });
}

fn clip(text: &str) -> String {
    if text.chars().count() <= ANSWER_LIMIT {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(ANSWER_LIMIT - 1).collect();
    cut.push('…');
    cut
}

async fn answer(shared: Arc<Shared>, q: CallbackQuery, text: String) {
    let request = shared.bot.answer_callback_query(q.id).text(text);
    match tokio::time::timeout(ANSWER_TIMEOUT, request.into_future()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let e = crate::TelegramError::new(&e, &shared.token);
            tracing::debug!(account = %shared.key, error = %e, "answerCallbackQuery failed");
        }
        Err(_) => tracing::debug!(account = %shared.key, "answerCallbackQuery took over 2 s; given up"),
    }
}

/// PO-11: "Full command" sends the full redacted text to the presser's private chat.
async fn full_text(shared: &Arc<Shared>, q: CallbackQuery, actor: &Actor, data: &str) {
    match shared.inbound.full_text(data, actor).await {
        Err(r) => answer(shared.clone(), q, clip(&r.to_string())).await,
        Ok(text) => {
            answer(shared.clone(), q, "Sending you the full command in a private chat.".to_owned()).await;
            let Ok(chat) = actor.user_id.parse::<i64>() else { return };
            for chunk in chunks(&text, crate::MESSAGE_LIMIT - 32) {
                let html = format!("<pre>{}</pre>", card::esc(&chunk));
                if let Err(e) = send(shared, chat, None, &html, &[]).await {
                    tracing::warn!(account = %shared.key, error = %e, "could not send the full command");
                    return;
                }
            }
        }
    }
}

/// `text` in pieces whose escaped form fits a message.
fn chunks(text: &str, limit: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in text.chars() {
        let last = out.last_mut().unwrap_or_else(|| unreachable!("never empty"));
        if card::visible_len(&card::esc(last)) + c.len_utf16() > limit {
            out.push(String::new());
        }
        out.last_mut().unwrap_or_else(|| unreachable!("never empty")).push(c);
    }
    out
}

/// IX-5: `/approve <ref> <decision>` (or `/approve@thisbot …`) is answered in place.
async fn on_message(shared: &Arc<Shared>, m: Message) {
    let (Some(text), Some(from)) = (m.text(), m.from.as_ref()) else { return };
    // A polled update reaches only the serving replica anyway; a pushed one reaches exactly one.
    if !shared.pushed && !shared.inbound.is_serving() {
        return;
    }
    let Ok(username) = shared.username().await else { return };
    let msg = TypedMessage { text, is_edit: false, from_bot: from.is_bot };
    let outcome = shared.inbound.precheck_typed(actor(from, m.chat.is_private()), msg, Some(username));
    let Some(reply) = shared.inbound.answer_typed(outcome).await else { return };
    let thread = m.thread_id.map(|t| t.0.0);
    if let Err(e) = send(shared, m.chat.id.0, thread, &card::esc(&reply), &[]).await {
        tracing::warn!(account = %shared.key, error = %e, "could not answer a typed /approve");
    }
}
