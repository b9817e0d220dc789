//! The REST routes under `/api/v10`, as <https://discord.com/developers/docs/reference> and the
//! resource pages document them: JSON bodies, `{"message", "code", "errors"}` failures, the
//! per-route rate-limit headers and 429s ("Rate Limits").

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Path, State as AxumState},
    http::{HeaderMap, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{
    APPLICATION_ID, Shared, TOKEN,
    interactions::LOADING,
    state::{ChannelState, Fault, Place, StoredMessage, TOKEN_LIFETIME, iso_now},
    validate, wire,
};

/// Message creation per channel: five in any five seconds. Discord does not promise figures
/// ("Rate Limits": parse the headers, never hard-code); this is what it gives bots today.
const BUCKET_LIMIT: usize = 5;
const BUCKET_WINDOW: Duration = Duration::from_secs(5);

/// A failed call, in Discord's error shape ("JSON Error Codes").
pub(crate) struct Failure {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Failure {
    pub(crate) fn new(status: u16, code: u64, message: &str) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        Self { status, body: json!({ "message": message, "code": code }), headers: Vec::new() }
    }

    /// 50035 "Invalid Form Body", with the offending field's path (`embeds.0.title`).
    pub(crate) fn form(path: &str, code: &str, message: &str) -> Self {
        let mut errors = json!({ "_errors": [{ "code": code, "message": message }] });
        for part in path.rsplit('.') {
            errors = json!({ part: errors });
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "message": "Invalid Form Body", "code": 50035, "errors": errors }),
            headers: Vec::new(),
        }
    }

    /// 429 ("Exceeded Rate Limit Response").
    pub(crate) fn too_many(retry_after: f64, bucket: &str) -> Self {
        let secs = format!("{retry_after:.3}");
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": false }),
            headers: vec![
                ("retry-after", format!("{}", retry_after.ceil())),
                ("x-ratelimit-limit", BUCKET_LIMIT.to_string()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset-after", secs),
                ("x-ratelimit-bucket", bucket.to_owned()),
                ("x-ratelimit-scope", "user".to_owned()),
            ],
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

type Answer = Result<Response, Failure>;

fn ok(body: Value) -> Answer {
    Ok(axum::Json(body).into_response())
}

/// Every route, by method and path.
pub(crate) async fn call(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = route_name(&method, &parts);
    let fault = shared.lock().call(&route);
    match fault {
        Some(Fault::TooManyRequests { retry_after }) => {
            return Failure::too_many(retry_after, "fault").into_response();
        }
        Some(Fault::ServerError(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            return (status, "<html><body>upstream connect error</body></html>").into_response();
        }
        Some(Fault::Drop) => panic!("fake-discord: dropping the connection of {route} on purpose"),
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    // Interaction callbacks and webhooks authenticate by their token in the path.
    let token_route = matches!(parts.first(), Some(&"interactions" | &"webhooks"));
    let authorized =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {TOKEN}"));
    if !token_route && !authorized {
        return Failure::new(401, 0, "401: Unauthorized").into_response();
    }
    let json: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return Failure::new(400, 50109, "The request body contains invalid JSON.").into_response();
            }
        }
    };
    let answer = answer(&shared, &method, &parts, &json, &route);
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// A short name per route, for counting calls and injecting faults.
pub(crate) fn route_name(method: &Method, parts: &[&str]) -> String {
    let name = match (method.as_str(), parts) {
        ("GET", ["gateway"]) => "get_gateway",
        ("GET", ["gateway", "bot"]) => "get_gateway_bot",
        ("GET", ["applications" | "oauth2", "@me"] | ["oauth2", "applications", "@me"]) => "get_application",
        ("GET", ["users", id]) if *id != "@me" => "get_user",
        ("GET", ["users", "@me"]) => "get_current_user",
        ("PUT", ["applications", _, "commands"]) => "bulk_overwrite_commands",
        ("POST", ["users", "@me", "channels"]) => "create_dm",
        ("POST", ["channels", _, "messages"]) => "create_message",
        ("PATCH", ["channels", _, "messages", _]) => "edit_message",
        ("DELETE", ["channels", _, "messages", _]) => "delete_message",
        ("POST", ["interactions", _, _, "callback"]) => "interaction_callback",
        ("POST", ["webhooks", _, _]) => "create_followup",
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) => "edit_original",
        _ => return format!("{method} /{}", parts.join("/")),
    };
    name.to_owned()
}

fn answer(shared: &Shared, method: &Method, parts: &[&str], body: &Value, route: &str) -> Answer {
    let mut s = shared.lock();
    match route {
        "get_gateway" => ok(json!({ "url": shared.gateway_url() })),
        "get_gateway_bot" => ok(json!({
            "url": shared.gateway_url(),
            "shards": 1,
            "session_start_limit": {
                "total": 1000, "remaining": s.session_starts, "reset_after": 86_400_000, "max_concurrency": 1
            }
        })),
        "get_application" => ok(json!({
            "id": APPLICATION_ID.to_string(),
            "name": crate::BOT_NAME,
            "icon": null,
            "description": "",
            "bot_public": true,
            "bot_require_code_grant": false,
            "verify_key": shared.public_key(),
            "flags": if s.message_content { 1 << 19 } else { 0 },
            "bot": wire::bot_user(),
        })),
        "get_current_user" => ok(wire::bot_user()),
        "get_user" => match parts[1].parse::<u64>().ok().filter(|id| s.people.contains_key(id)) {
            Some(id) => ok(wire::person(&s, id)),
            None => Err(Failure::new(404, 10013, "Unknown User")),
        },
        "bulk_overwrite_commands" => overwrite_commands(&mut s, parts, body),
        "create_dm" => {
            let recipient = body["recipient_id"].as_str().and_then(|r| r.parse().ok());
            match recipient.filter(|r| s.people.contains_key(r)) {
                Some(r) => {
                    let id = s.dm_channel(r);
                    ok(wire::channel(&s, id))
                }
                None => Err(Failure::new(400, 50033, "Invalid Recipient(s)")),
            }
        }
        "create_message" => {
            let channel = parts[1].parse().unwrap_or(0);
            create_message(&mut s, channel, body)
        }
        "edit_message" => {
            edit_message(&mut s, parts[1].parse().unwrap_or(0), parts[3].parse().unwrap_or(0), body)
        }
        "delete_message" => {
            let id: u64 = parts[3].parse().unwrap_or(0);
            match s.messages.get_mut(&id).filter(|m| !m.deleted && m.channel.to_string() == parts[1]) {
                Some(m) => {
                    m.deleted = true;
                    Ok(StatusCode::NO_CONTENT.into_response())
                }
                None => Err(Failure::new(404, 10008, "Unknown Message")),
            }
        }
        "interaction_callback" => crate::interactions::callback(&mut s, parts[1], parts[2], body),
        "create_followup" => followup(&mut s, parts[1], parts[2], body),
        "edit_original" => edit_original(&mut s, parts[1], parts[2], body),
        _ => {
            tracing::warn!(%method, path = parts.join("/"), "fake-discord: no such route");
            Err(Failure::new(404, 0, "404: Not Found"))
        }
    }
}

fn overwrite_commands(s: &mut crate::state::State, parts: &[&str], body: &Value) -> Answer {
    if parts[1] != APPLICATION_ID.to_string() {
        return Err(Failure::new(403, 50001, "Missing Access"));
    }
    let Some(list) = body.as_array() else {
        return Err(Failure::form("", "BASE_TYPE_ARRAY", "Must be an array."));
    };
    let mut stored = Vec::new();
    for (i, c) in list.iter().enumerate() {
        validate::command(c)
            .map_err(|(path, code, msg)| Failure::form(&format!("{i}.{path}"), code, &msg))?;
        let mut c = c.clone();
        c["id"] = json!(s.id().to_string());
        c["application_id"] = json!(APPLICATION_ID.to_string());
        c["version"] = json!("1");
        stored.push(c);
    }
    s.commands = stored.clone();
    ok(Value::Array(stored))
}

/// "Create Message".
fn create_message(s: &mut crate::state::State, channel: u64, body: &Value) -> Answer {
    let Some(c) = s.channels.get(&channel) else { return Err(Failure::new(404, 10003, "Unknown Channel")) };
    validate::message(body).map_err(|(path, code, msg)| Failure::form(&path, code, &msg))?;
    if validate::is_empty(body) {
        return Err(Failure::new(400, 50006, "Cannot send an empty message"));
    }
    if let Place::Dm { recipient } = c.place
        && !s.people.get(&recipient).is_some_and(|p| p.dms_open)
    {
        return Err(Failure::new(403, 50007, "Cannot send messages to this user"));
    }
    let remaining = take_bucket(s.channels.get_mut(&channel).unwrap_or_else(|| unreachable!("checked")))
        .inspect_err(|_| s.rate_limited += 1)?;
    let id = s.id();
    let m = new_message(id, channel, body, None);
    s.messages.insert(id, m);
    let mut r = axum::Json(wire::message(s, &s.messages[&id])).into_response();
    for (name, value) in remaining {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    Ok(r)
}

/// One message creation from the channel's window; the rate-limit headers to send, or a 429.
fn take_bucket(c: &mut ChannelState) -> Result<Vec<(&'static str, String)>, Failure> {
    let now = Instant::now();
    while c.sends.front().is_some_and(|t| now.duration_since(*t) >= BUCKET_WINDOW) {
        c.sends.pop_front();
    }
    let reset_after = |c: &ChannelState| {
        c.sends.front().map_or(BUCKET_WINDOW, |t| BUCKET_WINDOW.saturating_sub(now.duration_since(*t)))
    };
    if c.sends.len() >= BUCKET_LIMIT {
        return Err(Failure::too_many(reset_after(c).as_secs_f64(), "channel-messages"));
    }
    c.sends.push_back(now);
    Ok(vec![
        ("x-ratelimit-limit", BUCKET_LIMIT.to_string()),
        ("x-ratelimit-remaining", (BUCKET_LIMIT - c.sends.len()).to_string()),
        ("x-ratelimit-reset-after", format!("{:.3}", reset_after(c).as_secs_f64())),
        ("x-ratelimit-bucket", "channel-messages".to_owned()),
    ])
}

pub(crate) fn new_message(id: u64, channel: u64, body: &Value, interaction: Option<u64>) -> StoredMessage {
    StoredMessage {
        id,
        channel,
        author: None,
        content: body["content"].as_str().unwrap_or_default().to_owned(),
        embeds: body["embeds"].as_array().cloned().unwrap_or_default(),
        components: body["components"].as_array().cloned().unwrap_or_default(),
        flags: body["flags"].as_u64().unwrap_or(0),
        allowed_mentions: body.get("allowed_mentions").cloned(),
        edits: Vec::new(),
        deleted: false,
        interaction,
        timestamp: iso_now(),
    }
}

/// Applies an edit's fields to `m` (only the fields given change).
pub(crate) fn apply_edit(m: &mut StoredMessage, body: &Value) {
    m.edits.push((m.embeds.clone(), m.components.clone()));
    if let Some(c) = body["content"].as_str() {
        c.clone_into(&mut m.content);
    }
    if let Some(e) = body["embeds"].as_array() {
        m.embeds.clone_from(e);
    }
    if let Some(c) = body["components"].as_array() {
        m.components.clone_from(c);
    }
}

/// "Edit Message": only the bot's own messages.
fn edit_message(s: &mut crate::state::State, channel: u64, id: u64, body: &Value) -> Answer {
    validate::message(body).map_err(|(path, code, msg)| Failure::form(&path, code, &msg))?;
    let Some(m) = s.messages.get_mut(&id).filter(|m| !m.deleted && m.channel == channel) else {
        return Err(Failure::new(404, 10008, "Unknown Message"));
    };
    if m.author.is_some() {
        return Err(Failure::new(403, 50005, "Cannot edit a message authored by another user"));
    }
    apply_edit(m, body);
    ok(wire::message(s, &s.messages[&id]))
}

/// The interaction a webhook token belongs to, if it is still valid ("Followup Messages").
fn by_token(s: &crate::state::State, app: &str, token: &str) -> Result<u64, Failure> {
    if app != APPLICATION_ID.to_string() {
        return Err(Failure::new(404, 10015, "Unknown Webhook"));
    }
    let id = *s.tokens.get(token).ok_or_else(|| Failure::new(404, 10015, "Unknown Webhook"))?;
    let i = &s.interactions[&id];
    if i.created.elapsed() > TOKEN_LIFETIME {
        return Err(Failure::new(401, 50027, "Invalid Webhook Token"));
    }
    if i.acked.is_none() {
        // A follow-up needs the initial response first.
        return Err(Failure::new(404, 10015, "Unknown Webhook"));
    }
    Ok(id)
}

/// "Create Followup Message": ephemeral with flag 64.
fn followup(s: &mut crate::state::State, app: &str, token: &str, body: &Value) -> Answer {
    let interaction = by_token(s, app, token)?;
    validate::message(body).map_err(|(path, code, msg)| Failure::form(&path, code, &msg))?;
    if validate::is_empty(body) {
        return Err(Failure::new(400, 50006, "Cannot send an empty message"));
    }
    let channel = s.interactions[&interaction].channel;
    let id = s.id();
    s.messages.insert(id, new_message(id, channel, body, Some(interaction)));
    if let Some(i) = s.interactions.get_mut(&interaction) {
        i.followups.push(id);
    }
    ok(wire::message(s, &s.messages[&id]))
}

/// "Edit Original Interaction Response": fills in a deferred response.
fn edit_original(s: &mut crate::state::State, app: &str, token: &str, body: &Value) -> Answer {
    let interaction = by_token(s, app, token)?;
    validate::message(body).map_err(|(path, code, msg)| Failure::form(&path, code, &msg))?;
    // A deferred response made a "thinking" message; a deferred update points at the
    // component's message. Either way, this edits it.
    let Some(id) = s.interactions[&interaction].original else {
        return Err(Failure::new(404, 10008, "Unknown Message"));
    };
    let m = s.messages.get_mut(&id).ok_or_else(|| Failure::new(404, 10008, "Unknown Message"))?;
    apply_edit(m, body);
    m.flags &= !LOADING;
    ok(wire::message(s, &s.messages[&id]))
}
