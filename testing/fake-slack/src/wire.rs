//! The JSON Slack sends: messages, and the payloads of a click (`block_actions`), a slash
//! command and a message event (`event_callback`), as "Interactivity", "Slash commands" and
//! the Events API document them.

use serde_json::{Value, json};

use crate::{APP_ID, BOT_ID, TEAM_ID, state::StoredMessage};

/// A message object, as `chat.postMessage` returns it and payloads carry it.
pub(crate) fn message(m: &StoredMessage) -> Value {
    let mut v = json!({
        "type": "message",
        "text": m.text,
        "ts": m.ts,
        "blocks": m.blocks,
        "team": TEAM_ID,
    });
    match &m.user {
        Some(u) => v["user"] = json!(u),
        None => {
            v["bot_id"] = json!(BOT_ID);
            v["app_id"] = json!(APP_ID);
        }
    }
    if let Some(t) = &m.thread_ts {
        v["thread_ts"] = json!(t);
    }
    v
}

fn user(id: &str, name: &str) -> Value {
    json!({ "id": id, "username": name, "name": name, "team_id": TEAM_ID })
}

/// A `block_actions` payload for a click on `button` of `m` by `who`.
pub(crate) fn block_actions(
    m: &StoredMessage,
    block_id: &str,
    button: &Value,
    who: (&str, &str),
    trigger: &str,
) -> Value {
    let action = json!({
        "type": "button",
        "action_id": button["action_id"],
        "block_id": block_id,
        "text": button["text"],
        "value": button["value"],
        "style": button["style"],
        "action_ts": m.ts,
    });
    json!({
        "type": "block_actions",
        "user": user(who.0, who.1),
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": { "type": "message", "message_ts": m.ts, "channel_id": m.channel, "is_ephemeral": false },
        "trigger_id": trigger,
        "team": { "id": TEAM_ID, "domain": "fake" },
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": { "id": m.channel, "name": "directmessage" },
        "message": message(m),
        "state": { "values": {} },
        "response_url": format!("https://hooks.slack.com/actions/{TEAM_ID}/1/{trigger}"),
        "actions": [action],
    })
}

/// A slash command's fields (form-encoded over HTTP, an object over Socket Mode).
pub(crate) fn command(channel: &str, who: (&str, &str), text: &str, trigger: &str) -> Vec<(String, String)> {
    [
        ("token", "legacy-verification-token"),
        ("team_id", TEAM_ID),
        ("team_domain", "fake"),
        ("channel_id", channel),
        ("channel_name", "directmessage"),
        ("user_id", who.0),
        ("user_name", who.1),
        ("command", "/approve"),
        ("text", text),
        ("api_app_id", APP_ID),
        ("is_enterprise_install", "false"),
        ("response_url", "https://hooks.slack.com/commands/1/2/3"),
        ("trigger_id", trigger),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An `event_callback` wrapping a message a person typed.
pub(crate) fn message_event(m: &StoredMessage, event_id: &str, channel_type: &str) -> Value {
    let mut event = message(m);
    event["channel"] = json!(m.channel);
    event["channel_type"] = json!(channel_type);
    event["event_ts"] = json!(m.ts);
    json!({
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": crate::state::unix_secs(),
        "authorizations": [{ "team_id": TEAM_ID, "user_id": crate::BOT_USER, "is_bot": true, "is_enterprise_install": false }],
        "is_ext_shared_channel": false,
    })
}
