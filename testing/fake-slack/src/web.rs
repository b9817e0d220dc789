//! The Web API (<https://api.slack.com/web>): `POST {api_url}/<method>` with a Bearer token and a
//! form or JSON body; every answer is HTTP 200 with `{"ok": true, …}` or `{"ok": false,
//! "error": "…"}`, except rate limits ("Rate Limits": 429 with `Retry-After`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State as AxumState},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

use crate::{
    APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, Shared, TEAM_ID,
    state::{Conversation, Fault, State, StoredMessage},
    validate,
};

/// "Rate Limits": `chat.postMessage` allows about one message a second per channel, with short
/// bursts; more is refused with 429.
const BURST: usize = 3;
const WINDOW: Duration = Duration::from_secs(3);

fn fail(error: &str) -> Value {
    json!({ "ok": false, "error": error })
}

/// The request's parameters: query, form or JSON body, merged.
fn params(query: Option<&str>, content_type: &str, body: &[u8]) -> Result<Map<String, Value>, Value> {
    let mut out = Map::new();
    let pairs = |s: &str| url::form_urlencoded::parse(s.as_bytes()).into_owned().collect::<Vec<_>>();
    for (k, v) in pairs(query.unwrap_or_default()) {
        out.insert(k, Value::String(v));
    }
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => out.extend(m),
            _ => return Err(fail("invalid_json")),
        }
    } else if !body.is_empty() {
        for (k, v) in pairs(&String::from_utf8_lossy(body)) {
            out.insert(k, Value::String(v));
        }
    }
    Ok(out)
}

/// A parameter that may come as JSON or as a string of JSON (form bodies carry `blocks` so).
fn json_param(p: &Map<String, Value>, key: &str) -> Option<Value> {
    match p.get(key)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        other => Some(other.clone()),
    }
}

fn text_param<'a>(p: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    p.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub(crate) async fn call(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path(method): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.lock().call(&method);
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => return too_many(retry_after),
        Some(Fault::ServerError(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html><body>Slack is having trouble</body></html>").into_response();
        }
        Some(Fault::Drop) => panic!("fake-slack: dropping the connection of {method} on purpose"),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").unwrap_or_default();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let p = match params(query.as_deref(), content_type, &body) {
        Ok(p) => p,
        Err(e) => return axum::Json(e).into_response(),
    };
    // A token may also come as a parameter (older clients).
    let token = if token.is_empty() { text_param(&p, "token").unwrap_or_default() } else { token };
    let expected = if method == "apps.connections.open" { APP_TOKEN } else { BOT_TOKEN };
    if token.is_empty() {
        return axum::Json(fail("not_authed")).into_response();
    }
    if token != expected {
        let wrong_kind = method == "apps.connections.open" || token == APP_TOKEN;
        return axum::Json(fail(if wrong_kind { "not_allowed_token_type" } else { "invalid_auth" }))
            .into_response();
    }
    let mut s = shared.lock();
    let answer = match method.as_str() {
        "auth.test" => Ok(json!({
            "ok": true, "url": "https://fake.slack.com/", "team": "Fake", "user": "assent",
            "team_id": TEAM_ID, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": false,
        })),
        "apps.connections.open" => {
            let ticket = s.id("ticket-");
            Ok(json!({ "ok": true, "url": format!("{}?ticket={ticket}", shared.socket_url()) }))
        }
        "bots.info" => Ok(bot_info(&p)),
        "users.info" => Ok(user_info(&s, &p)),
        "conversations.open" => open(&mut s, &p),
        "chat.postMessage" => post(&mut s, &p),
        "chat.update" => update(&mut s, &p),
        "chat.delete" => delete(&mut s, &p),
        "chat.postEphemeral" => ephemeral(&mut s, &p),
        _ => Ok(fail("unknown_method")),
    };
    drop(s);
    match answer {
        Ok(v) => axum::Json(v).into_response(),
        Err(retry_after) => too_many(retry_after),
    }
}

fn too_many(retry_after: u64) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(fail("ratelimited"))).into_response();
    if let Ok(v) = retry_after.to_string().parse() {
        r.headers_mut().insert("retry-after", v);
    }
    r
}

type Answer = Result<Value, u64>;

/// "bots.info": the app's bot user, with its `app_id`.
fn bot_info(p: &Map<String, Value>) -> Value {
    if text_param(p, "bot") != Some(BOT_ID) {
        return fail("bot_not_found");
    }
    json!({ "ok": true, "bot": {
        "id": BOT_ID, "deleted": false, "name": "assent", "updated": 1_700_000_000,
        "app_id": crate::APP_ID, "user_id": BOT_USER,
        "icons": { "image_36": "https://a.slack-edge.com/36.png", "image_48": "https://a.slack-edge.com/48.png", "image_72": "https://a.slack-edge.com/72.png" },
    } })
}

/// "users.info": a person of the workspace.
fn user_info(s: &State, p: &Map<String, Value>) -> Value {
    let Some(id) = text_param(p, "user") else { return fail("user_not_found") };
    match s.people.get(id) {
        Some(name) => json!({ "ok": true, "user": {
            "id": id, "team_id": TEAM_ID, "name": name, "deleted": false, "is_bot": false,
            "profile": { "display_name": name, "real_name": name },
        } }),
        None if id == BOT_USER => {
            json!({ "ok": true, "user": { "id": id, "team_id": TEAM_ID, "name": "assent", "deleted": false, "is_bot": true } })
        }
        None => fail("user_not_found"),
    }
}

fn open(s: &mut State, p: &Map<String, Value>) -> Answer {
    let Some(users) = text_param(p, "users") else { return Ok(fail("users_list_not_supplied")) };
    if users.contains(',') {
        return Ok(fail("not_supported")); // Group DMs are not something assent opens.
    }
    if !s.people.contains_key(users) {
        return Ok(fail("user_not_found"));
    }
    let id = s.dm(users);
    Ok(json!({ "ok": true, "channel": { "id": id } }))
}

/// The message's `text` and `blocks`, checked as Slack checks them.
fn content(p: &Map<String, Value>) -> Result<(String, Vec<Value>), Value> {
    let text = text_param(p, "text").unwrap_or_default().to_owned();
    let blocks = match p.get("blocks") {
        None => Vec::new(),
        Some(_) => match json_param(p, "blocks") {
            Some(Value::Array(b)) => b,
            _ => return Err(fail("invalid_blocks_format")),
        },
    };
    if text.is_empty() && blocks.is_empty() {
        return Err(fail("no_text"));
    }
    if text.chars().count() > 40_000 {
        return Err(fail("msg_too_long"));
    }
    if let Err(why) = validate::blocks(&blocks) {
        return Err(
            json!({ "ok": false, "error": "invalid_blocks", "response_metadata": { "messages": [why] } }),
        );
    }
    Ok((text, blocks))
}

fn post(s: &mut State, p: &Map<String, Value>) -> Answer {
    let Some(channel) = text_param(p, "channel").map(str::to_owned) else {
        return Ok(fail("channel_not_found"));
    };
    let Some(c) = s.conversations.get_mut(&channel) else { return Ok(fail("channel_not_found")) };
    let (text, blocks) = match content(p) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let now = Instant::now();
    while c.posts.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        c.posts.pop_front();
    }
    if c.posts.len() >= BURST {
        s.rate_limited += 1;
        return Err(1);
    }
    c.posts.push_back(now);
    let thread_ts = text_param(p, "thread_ts").map(str::to_owned);
    if let Some(t) = &thread_ts
        && !s.messages.iter().any(|m| m.channel == channel && &m.ts == t)
    {
        return Ok(fail("thread_not_found"));
    }
    let ts = s.ts();
    let m = StoredMessage {
        channel: channel.clone(),
        ts: ts.clone(),
        thread_ts,
        user: None,
        text,
        blocks,
        edits: Vec::new(),
        deleted: false,
        ephemeral_to: None,
    };
    let message = crate::wire::message(&m);
    s.messages.push(m);
    Ok(json!({ "ok": true, "channel": channel, "ts": ts, "message": message }))
}

fn update(s: &mut State, p: &Map<String, Value>) -> Answer {
    let (Some(channel), Some(ts)) = (text_param(p, "channel"), text_param(p, "ts")) else {
        return Ok(fail("message_not_found"));
    };
    let (channel, ts) = (channel.to_owned(), ts.to_owned());
    let (text, blocks) = match content(p) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let Some(m) = s.message_mut(&channel, &ts) else { return Ok(fail("message_not_found")) };
    if m.user.is_some() {
        return Ok(fail("cant_update_message"));
    }
    m.edits.push(std::mem::replace(&mut m.blocks, blocks));
    m.text = text;
    let message = crate::wire::message(m);
    Ok(json!({ "ok": true, "channel": channel, "ts": ts, "text": m.text, "message": message }))
}

fn delete(s: &mut State, p: &Map<String, Value>) -> Answer {
    let (Some(channel), Some(ts)) = (text_param(p, "channel"), text_param(p, "ts")) else {
        return Ok(fail("message_not_found"));
    };
    let (channel, ts) = (channel.to_owned(), ts.to_owned());
    match s.message_mut(&channel, &ts) {
        Some(m) if m.user.is_none() => {
            m.deleted = true;
            Ok(json!({ "ok": true, "channel": channel, "ts": ts }))
        }
        Some(_) => Ok(fail("cant_delete_message")),
        None => Ok(fail("message_not_found")),
    }
}

fn ephemeral(s: &mut State, p: &Map<String, Value>) -> Answer {
    let (Some(channel), Some(user)) = (text_param(p, "channel"), text_param(p, "user")) else {
        return Ok(fail("channel_not_found"));
    };
    let (channel, user) = (channel.to_owned(), user.to_owned());
    let Some(c) = s.conversations.get(&channel) else { return Ok(fail("channel_not_found")) };
    if c.dm_with.as_deref().is_some_and(|u| u != user) {
        return Ok(fail("user_not_in_channel"));
    }
    let (text, blocks) = match content(p) {
        Ok(c) => c,
        Err(e) => return Ok(e),
    };
    let ts = s.ts();
    s.messages.push(StoredMessage {
        channel,
        ts: ts.clone(),
        thread_ts: text_param(p, "thread_ts").map(str::to_owned),
        user: None,
        text,
        blocks,
        edits: Vec::new(),
        deleted: false,
        ephemeral_to: Some(user),
    });
    Ok(json!({ "ok": true, "message_ts": ts }))
}

/// A channel the app is in.
pub(crate) fn new_channel(s: &mut State) -> String {
    let id = s.id("C");
    s.conversations.insert(id.clone(), Conversation { dm_with: None, posts: Default::default() });
    id
}
