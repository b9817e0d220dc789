//! The Bot API methods ("Making requests": `https://api.telegram.org/bot<token>/METHOD_NAME`,
//! method names case-insensitive, parameters as a query string, form or JSON; answers
//! `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}` with the HTTP status
//! equal to `error_code`).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, RawQuery, State as AxumState},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::{
    Shared, html,
    state::{Bot, CallbackAnswer, Chat, Fault, State, StoredMessage, unix_now},
    wire,
};

/// A refusal, as the Bot API words it.
#[derive(Debug)]
pub(crate) struct Failure {
    code: u16,
    description: String,
    retry_after: Option<u32>,
}

impl Failure {
    fn bad(what: &str) -> Self {
        Self { code: 400, description: format!("Bad Request: {what}"), retry_after: None }
    }

    fn forbidden(what: &str) -> Self {
        Self { code: 403, description: format!("Forbidden: {what}"), retry_after: None }
    }

    fn conflict(what: &str) -> Self {
        Self { code: 409, description: format!("Conflict: {what}"), retry_after: None }
    }

    pub(crate) fn too_many(retry_after: u32) -> Self {
        Self {
            code: 429,
            description: format!("Too Many Requests: retry after {retry_after}"),
            retry_after: Some(retry_after),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "ok": false, "error_code": self.code, "description": self.description });
        if let Some(s) = self.retry_after {
            body["parameters"] = json!({ "retry_after": s });
        }
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(body)).into_response()
    }
}

type Answer = Result<Value, Failure>;

/// `POST|GET /bot<token>/<method>`.
pub(crate) async fn call(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let method = method.to_ascii_lowercase();
    let Some(token) = bot.strip_prefix("bot").map(str::to_owned) else {
        return Failure { code: 404, description: "Not Found".to_owned(), retry_after: None }.into_response();
    };
    let fault = {
        let mut s = shared.lock();
        *s.calls.entry(method.clone()).or_default() += 1;
        if s.bot_mut(&token).is_none() {
            return Failure { code: 401, description: "Unauthorized".to_owned(), retry_after: None }
                .into_response();
        }
        s.faults.get_mut(&method).and_then(std::collections::VecDeque::pop_front)
    };
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            return Failure::too_many(retry_after).into_response();
        }
        Some(Fault::ServerError(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html><body>Bad Gateway</body></html>").into_response();
        }
        Some(Fault::Drop) => {
            // Closing the connection unanswered: hyper drops it when the handler panics.
            panic!("fake-telegram: dropping the connection of a {method} call on purpose")
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let params = match params(query.as_deref(), content_type, &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let answer = if method == "getupdates" {
        get_updates(&shared, &token, &params).await
    } else {
        let mut s = shared.lock();
        dispatch(&mut s, &token, &method, &params)
    };
    if method == "setwebhook" && answer.is_ok() {
        shared.wake_webhook(&token);
    }
    match answer {
        Ok(result) => Json(json!({ "ok": true, "result": result })).into_response(),
        Err(f) => f.into_response(),
    }
}

/// Parameters from the query string and the body (JSON, a URL-encoded form, or
/// `multipart/form-data`, which clients use for methods that may upload a file), as "Making
/// requests" lists them.
fn params(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<Map<String, Value>, Failure> {
    let mut out = Map::new();
    let form = |text: &str, out: &mut Map<String, Value>| {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(text);
        for (k, v) in pairs {
            // Objects (reply_markup) arrive JSON-serialized in forms.
            let value = serde_json::from_str(&v).unwrap_or(Value::String(v));
            out.insert(k, value);
        }
    };
    if let Some(q) = query {
        form(q, &mut out);
    }
    let text = std::str::from_utf8(body).map_err(|_| Failure::bad("request body is not UTF-8"))?;
    if let Some(boundary) = content_type.split("boundary=").nth(1) {
        for (name, value) in multipart(text, boundary.trim_matches('"')) {
            out.insert(name, serde_json::from_str(&value).unwrap_or(Value::String(value)));
        }
        return Ok(out);
    }
    match text.trim_start().chars().next() {
        None => {}
        Some('{') => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return Err(Failure::bad("can't parse JSON object")),
        },
        Some(_) => form(text, &mut out),
    }
    Ok(out)
}

/// The text fields of a `multipart/form-data` body.
fn multipart(body: &str, boundary: &str) -> Vec<(String, String)> {
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str())
        .filter_map(|part| {
            let (head, value) = part.split_once("\r\n\r\n")?;
            let name = head.split("name=\"").nth(1)?.split('"').next()?.to_owned();
            Some((name, value.strip_suffix("\r\n").unwrap_or(value).to_owned()))
        })
        .collect()
}

fn serde_urlencoded_pairs(text: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{text}").parse().unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

fn dispatch(s: &mut State, token: &str, method: &str, p: &Map<String, Value>) -> Answer {
    match method {
        "getme" => {
            let bot = bot(s, token);
            let mut me = wire::bot_user(bot);
            me["can_join_groups"] = json!(true);
            me["can_read_all_group_messages"] = json!(false);
            me["supports_inline_queries"] = json!(false);
            me["can_connect_to_business"] = json!(false);
            me["has_main_web_app"] = json!(false);
            Ok(me)
        }
        "sendmessage" => send_message(s, token, p),
        "editmessagetext" => edit(s, token, p, true),
        "editmessagereplymarkup" => edit(s, token, p, false),
        "deletemessage" => delete_message(s, token, p),
        "answercallbackquery" => answer_callback(s, token, p),
        "setmycommands" => set_commands(s, token, p),
        "getmycommands" => Ok(bot(s, token).commands.clone()),
        "getchat" => get_chat(s, token, p),
        "setwebhook" => set_webhook(s, token, p),
        "deletewebhook" => {
            let b = bot(s, token);
            b.webhook = None;
            if p.get("drop_pending_updates").and_then(Value::as_bool) == Some(true) {
                b.updates.clear();
            }
            Ok(json!(true))
        }
        "getwebhookinfo" => {
            let b = bot(s, token);
            let mut info = json!({ "url": "", "has_custom_certificate": false, "pending_update_count": b.updates.len() });
            if let Some(w) = &b.webhook {
                info["url"] = json!(w.url);
                if let Some((date, message)) = &w.last_error {
                    info["last_error_date"] = json!(date);
                    info["last_error_message"] = json!(message);
                }
            }
            Ok(info)
        }
        _ => Err(Failure {
            code: 404,
            description: "Not Found: method not found".to_owned(),
            retry_after: None,
        }),
    }
}

fn bot<'a>(s: &'a mut State, token: &str) -> &'a mut Bot {
    s.bot_mut(token).unwrap_or_else(|| unreachable!("the token was checked"))
}

fn int(p: &Map<String, Value>, key: &str) -> Option<i64> {
    match p.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str)
}

/// The bot's chat named by `chat_id`, checked as sending to it would be ("sendMessage").
fn chat_for_sending<'a>(bot: &'a mut Bot, p: &Map<String, Value>) -> Result<&'a mut Chat, Failure> {
    let id = int(p, "chat_id").ok_or_else(|| Failure::bad("chat_id is empty"))?;
    if bot.blocked_by.contains(&id) {
        return Err(Failure::forbidden("bot was blocked by the user"));
    }
    match bot.chats.get_mut(&id) {
        Some(c) => Ok(c),
        // A person who never wrote to the bot has no chat with it.
        None if id > 0 => Err(Failure::forbidden("bot can't initiate conversation with a user")),
        None => Err(Failure::bad("chat not found")),
    }
}

/// `text` with `parse_mode`: its visible text, checked ("Formatting options"; 1-4096 characters
/// after entities parsing).
fn message_text(p: &Map<String, Value>) -> Result<(String, String), Failure> {
    let raw = text(p, "text").unwrap_or_default().to_owned();
    let visible = match text(p, "parse_mode") {
        Some(m) if m.eq_ignore_ascii_case("html") => {
            html::visible_text(&raw).map_err(|e| Failure::bad(&e))?
        }
        Some(other) if !other.is_empty() => {
            return Err(Failure::bad(&format!("unsupported parse_mode \"{other}\"")));
        }
        _ => raw.clone(),
    };
    if visible.trim().is_empty() {
        return Err(Failure::bad("message text is empty"));
    }
    if html::utf16_len(&visible) > 4096 {
        return Err(Failure::bad("message is too long"));
    }
    Ok((visible, raw))
}

/// `reply_markup` (InlineKeyboardMarkup): every callback button carries 1-64 bytes of data.
fn markup(p: &Map<String, Value>) -> Result<Option<Value>, Failure> {
    let Some(m) = p.get("reply_markup") else { return Ok(None) };
    let m = match m {
        Value::String(s) => serde_json::from_str(s)
            .map_err(|_| Failure::bad("can't parse reply keyboard markup JSON object"))?,
        other => other.clone(),
    };
    let rows = m.get("inline_keyboard").and_then(Value::as_array).ok_or_else(|| {
        Failure::bad("can't parse inline keyboard button: field \"inline_keyboard\" must be an Array")
    })?;
    for button in rows.iter().filter_map(Value::as_array).flatten() {
        if button.get("text").and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(Failure::bad(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard",
            ));
        }
        if let Some(data) = button.get("callback_data").and_then(Value::as_str)
            && (data.is_empty() || data.len() > 64)
        {
            return Err(Failure::bad("BUTTON_DATA_INVALID"));
        }
    }
    // An empty keyboard is no keyboard.
    Ok(rows.iter().any(|r| r.as_array().is_some_and(|r| !r.is_empty())).then_some(m))
}

/// "My bot is hitting limits, how do I avoid this?": about one message a second in a chat (a
/// short burst passes: here six in any five seconds) and at most 20 a minute in a group.
fn rate_limit(chat: &mut Chat) -> Result<(), Failure> {
    let now = std::time::Instant::now();
    let (window, allowed) =
        if chat.is_private() { (Duration::from_secs(5), 6) } else { (Duration::from_secs(60), 20) };
    while chat.sends.front().is_some_and(|t| now.duration_since(*t) >= window) {
        chat.sends.pop_front();
    }
    if chat.sends.len() >= allowed {
        let oldest = chat.sends.front().copied().unwrap_or(now);
        let wait = window.saturating_sub(now.duration_since(oldest)).as_secs_f64().ceil().max(1.0);
        return Err(Failure::too_many(wait as u32));
    }
    chat.sends.push_back(now);
    Ok(())
}

fn send_message(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let (visible, raw) = message_text(p)?;
    let markup = markup(p)?;
    let thread = int(p, "message_thread_id");
    let people = s.people.clone();
    let bot = bot(s, token);
    let chat = chat_for_sending(bot, p)?;
    if let Some(t) = thread
        && !chat.topics.contains_key(&t)
    {
        return Err(Failure::bad("message thread not found"));
    }
    rate_limit(chat)?;
    let id = chat.add(StoredMessage::new(None, visible, raw, thread, markup));
    let chat_id = chat.id;
    let bot = &*bot;
    let c = &bot.chats[&chat_id];
    Ok(wire::message(bot, c, &c.messages[&id], &people))
}

/// The bot's own, undeleted message `message_id` in `chat_id`.
fn own_message<'a>(
    bot: &'a mut Bot,
    p: &Map<String, Value>,
    missing: &str,
) -> Result<(i64, &'a mut StoredMessage), Failure> {
    let chat_id = int(p, "chat_id").ok_or_else(|| Failure::bad("chat_id is empty"))?;
    let id = int(p, "message_id").ok_or_else(|| Failure::bad("message identifier is not specified"))?;
    let chat = bot.chats.get_mut(&chat_id).ok_or_else(|| Failure::bad("chat not found"))?;
    let m = chat.messages.get_mut(&id).filter(|m| !m.deleted).ok_or_else(|| Failure::bad(missing))?;
    if m.from.is_some() {
        return Err(Failure::bad("message can't be edited"));
    }
    Ok((chat_id, m))
}

/// `editMessageText` (`text` = true) or `editMessageReplyMarkup`. A markup left out removes the
/// keyboard; an edit that changes nothing is refused as "message is not modified".
fn edit(s: &mut State, token: &str, p: &Map<String, Value>, text: bool) -> Answer {
    let new_text = if text { Some(message_text(p)?) } else { None };
    let new_markup = markup(p)?;
    let people = s.people.clone();
    let bot = bot(s, token);
    let (chat_id, m) = own_message(bot, p, "message to edit not found")?;
    let (visible, raw) = new_text.unwrap_or_else(|| (m.text.clone(), m.html.clone()));
    if raw == m.html && new_markup == m.markup {
        return Err(Failure::bad(
            "message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        ));
    }
    m.edits.push((m.text.clone(), m.markup.clone()));
    m.text = visible;
    m.html = raw;
    m.markup = new_markup;
    m.edit_date = Some(unix_now());
    let id = m.id;
    let bot = &*bot;
    let c = &bot.chats[&chat_id];
    Ok(wire::message(bot, c, &c.messages[&id], &people))
}

fn delete_message(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let bot = bot(s, token);
    let chat_id = int(p, "chat_id").ok_or_else(|| Failure::bad("chat_id is empty"))?;
    let id = int(p, "message_id").ok_or_else(|| Failure::bad("message identifier is not specified"))?;
    let m = bot
        .chats
        .get_mut(&chat_id)
        .and_then(|c| c.messages.get_mut(&id))
        .filter(|m| !m.deleted)
        .ok_or_else(|| Failure::bad("message to delete not found"))?;
    m.deleted = true;
    Ok(json!(true))
}

/// `answerCallbackQuery`: once per query, text up to 200 characters.
fn answer_callback(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let id = text(p, "callback_query_id").ok_or_else(|| Failure::bad("query_id is empty"))?.to_owned();
    let note = text(p, "text").map(str::to_owned);
    if note.as_deref().is_some_and(|t| html::utf16_len(t) > 200) {
        return Err(Failure::bad("MESSAGE_TOO_LONG"));
    }
    let too_old = "query is too old and response timeout expired or query ID is invalid";
    let q = s.queries.get_mut(&id).filter(|q| q.bot == token).ok_or_else(|| Failure::bad(too_old))?;
    // Telegram lets a bot answer a query once, within about 15 minutes.
    if !q.answers.is_empty() || q.created.elapsed() > Duration::from_secs(900) {
        return Err(Failure::bad(too_old));
    }
    let show_alert = p.get("show_alert").and_then(Value::as_bool).unwrap_or(false);
    q.answers.push(CallbackAnswer { text: note, show_alert });
    q.answered = Some(std::time::Instant::now());
    Ok(json!(true))
}

/// `setMyCommands`: 1-32 characters of lower-case letters, digits and underscores; descriptions
/// of 1-256 characters.
fn set_commands(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let commands = match p.get("commands") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let list = commands.as_array().ok_or_else(|| Failure::bad("can't parse commands JSON object"))?;
    for c in list {
        let name = c.get("command").and_then(Value::as_str).unwrap_or_default();
        let ok = (1..=32).contains(&name.len())
            && name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
        if !ok {
            return Err(Failure::bad("BOT_COMMAND_INVALID"));
        }
        let description = c.get("description").and_then(Value::as_str).unwrap_or_default();
        if !(1..=256).contains(&description.chars().count()) {
            return Err(Failure::bad("command description must be non-empty"));
        }
    }
    bot(s, token).commands = commands.clone();
    Ok(json!(true))
}

/// `getChat`: a chat the bot has (a person who never wrote to it has none).
fn get_chat(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let id = int(p, "chat_id").ok_or_else(|| Failure::bad("chat_id is empty"))?;
    let chat = bot(s, token).chats.get(&id).ok_or_else(|| Failure::bad("chat not found"))?;
    let mut info = wire::chat(chat);
    info["accent_color_id"] = json!(0);
    info["max_reaction_count"] = json!(11);
    info["accepted_gift_types"] = json!({ "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false, "premium_subscription": false });
    Ok(info)
}

/// `setWebhook`: an https URL (a loopback http URL is accepted, as the local Bot API server
/// does), and `secret_token` of 1-256 characters `A-Z a-z 0-9 _ -`.
fn set_webhook(s: &mut State, token: &str, p: &Map<String, Value>) -> Answer {
    let url = text(p, "url").unwrap_or_default().to_owned();
    let secret = text(p, "secret_token").map(str::to_owned);
    if let Some(sec) = &secret
        && (sec.is_empty()
            || sec.len() > 256
            || !sec.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(Failure::bad("secret token contains unallowed characters"));
    }
    let bot = bot(s, token);
    if p.get("drop_pending_updates").and_then(Value::as_bool) == Some(true) {
        bot.updates.clear();
    }
    if url.is_empty() {
        bot.webhook = None;
        return Ok(json!(true));
    }
    if !url.starts_with("https://") && !url.starts_with("http://127.0.0.1:") {
        return Err(Failure::bad("bad webhook: HTTPS url must be provided for webhook"));
    }
    bot.webhook = Some(crate::state::Webhook { url, secret, last_error: None });
    Ok(json!(true))
}

/// `getUpdates` ("Getting updates"): confirms every update below `offset`, then answers at once
/// if any are pending, else waits up to `timeout` seconds. A newer call ends a waiting one with
/// 409, and polling is refused while a webhook is set.
async fn get_updates(shared: &Shared, token: &str, p: &Map<String, Value>) -> Answer {
    let offset = int(p, "offset");
    let limit = int(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(int(p, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    let (generation, arrived) = {
        let mut s = shared.lock();
        let bot = bot(&mut s, token);
        if bot.webhook.is_some() {
            return Err(Failure::conflict(
                "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            ));
        }
        if let Some(offset) = offset {
            bot.updates.retain(|u| u["update_id"].as_i64().is_some_and(|id| id >= offset));
        }
        bot.poll_generation += 1;
        bot.arrived.notify_waiters();
        (bot.poll_generation, bot.arrived.clone())
    };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = arrived.notified();
        {
            let mut s = shared.lock();
            let bot = bot(&mut s, token);
            if bot.poll_generation != generation {
                s.conflicts += 1;
                return Err(Failure::conflict(
                    "terminated by other getUpdates request; make sure that only one bot instance is running",
                ));
            }
            if !bot.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(Value::Array(bot.updates.iter().take(limit).cloned().collect()));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}
