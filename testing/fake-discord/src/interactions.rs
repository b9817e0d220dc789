//! Interactions ("Receiving and Responding"): what a person's click or slash command sends the
//! bot, and the bot's responses. The first response must arrive within 3 seconds, or the
//! person sees "This interaction failed" and the token refuses it (10062); only one initial
//! response is allowed (40060).

use std::time::Instant;

use axum::{http::StatusCode, response::IntoResponse};
use serde_json::{Value, json};

use crate::{
    APPLICATION_ID, GUILD_ID,
    rest::{Failure, apply_edit, new_message},
    state::{Place, State, StoredInteraction},
    validate, wire,
};

/// "Interaction Type".
pub(crate) const PING: u8 = 1;
pub(crate) const APPLICATION_COMMAND: u8 = 2;
pub(crate) const MESSAGE_COMPONENT: u8 = 3;

/// "Message Flags": EPHEMERAL and LOADING (a deferred response's "thinking" message).
pub(crate) const EPHEMERAL: u64 = 1 << 6;
pub(crate) const LOADING: u64 = 1 << 7;

/// Records a new interaction and returns its payload, as the gateway's INTERACTION_CREATE or an
/// endpoint's POST carries it.
pub(crate) fn create(
    s: &mut State,
    kind: u8,
    user: u64,
    channel: u64,
    data: Value,
    message: Option<u64>,
) -> (u64, Value) {
    let id = s.id();
    let token = format!("aW50ZXJhY3Rpb246{id}OmZha2UtZGlzY29yZA");
    s.tokens.insert(token.clone(), id);
    s.interactions.insert(
        id,
        StoredInteraction {
            token: token.clone(),
            kind,
            channel,
            created: Instant::now(),
            acked: None,
            failed: false,
            extra_acks: 0,
            original: None,
            message,
            followups: Vec::new(),
        },
    );
    let mut payload = json!({
        "id": id.to_string(),
        "application_id": APPLICATION_ID.to_string(),
        "type": kind,
        "token": token,
        "version": 1,
    });
    if kind == PING {
        return (id, payload);
    }
    let guild = matches!(s.channels.get(&channel).map(|c| &c.place), Some(Place::Guild { .. }));
    payload["data"] = data;
    payload["channel_id"] = json!(channel.to_string());
    payload["channel"] = wire::channel(s, channel);
    payload["app_permissions"] = json!("2248473465835073");
    payload["locale"] = json!("en-US");
    payload["entitlements"] = json!([]);
    payload["attachment_size_limit"] = json!(26_214_400);
    if guild {
        // In a guild the clicker is `member.user`; `user` is absent.
        payload["guild_id"] = json!(GUILD_ID.to_string());
        payload["guild_locale"] = json!("en-US");
        payload["member"] = wire::member(s, user);
        payload["context"] = json!(0);
        payload["authorizing_integration_owners"] = json!({ "0": GUILD_ID.to_string() });
    } else {
        payload["user"] = wire::person(s, user);
        payload["context"] = json!(1);
        payload["authorizing_integration_owners"] = json!({ "1": user.to_string() });
    }
    if let Some(m) = message.and_then(|m| s.messages.get(&m)) {
        payload["message"] = wire::message(s, m);
    }
    (id, payload)
}

/// `POST /interactions/{id}/{token}/callback`, and the body an endpoint answers with.
pub(crate) fn callback(
    s: &mut State,
    id: &str,
    token: &str,
    body: &Value,
) -> Result<axum::response::Response, Failure> {
    let id: u64 = id.parse().map_err(|_| Failure::new(404, 10062, "Unknown interaction"))?;
    respond(s, id, token, body)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn respond(s: &mut State, id: u64, token: &str, body: &Value) -> Result<(), Failure> {
    let now = Instant::now();
    let Some(i) = s.interactions.get_mut(&id).filter(|i| i.token == token) else {
        return Err(Failure::new(404, 10062, "Unknown interaction"));
    };
    if i.expired(now) || i.failed {
        i.failed = true;
        return Err(Failure::new(404, 10062, "Unknown interaction"));
    }
    if i.acked.is_some() {
        i.extra_acks += 1;
        return Err(Failure::new(400, 40060, "Interaction has already been acknowledged."));
    }
    let kind = body["type"].as_u64().and_then(|k| u8::try_from(k).ok()).unwrap_or(0);
    let data = &body["data"];
    let allowed = match i.kind {
        PING => kind == 1,
        APPLICATION_COMMAND => matches!(kind, 4 | 5 | 9),
        _ => matches!(kind, 4..=7 | 9),
    };
    if !allowed {
        return Err(Failure::form(
            "type",
            "BASE_TYPE_CHOICES",
            "Value must be one of the interaction response types this interaction accepts.",
        ));
    }
    validate::message(data)
        .map_err(|(path, code, msg)| Failure::form(&format!("data.{path}"), code, &msg))?;
    let (channel, source) = (i.channel, i.message);
    i.acked = Some((now, kind));
    let original = match kind {
        // CHANNEL_MESSAGE_WITH_SOURCE, or DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE's "thinking".
        4 | 5 => {
            let mid = s.id();
            let mut m = new_message(mid, channel, data, Some(id));
            if kind == 5 {
                m.flags |= LOADING;
            }
            s.messages.insert(mid, m);
            Some(mid)
        }
        // UPDATE_MESSAGE edits the component's message; DEFERRED_UPDATE_MESSAGE promises to.
        7 => {
            if let Some(m) = source.and_then(|m| s.messages.get_mut(&m)) {
                apply_edit(m, data);
            }
            source
        }
        6 => source,
        _ => None,
    };
    if let Some(i) = s.interactions.get_mut(&id) {
        i.original = original;
    }
    Ok(())
}

/// The data of a button click.
pub(crate) fn component_data(custom_id: &str) -> Value {
    json!({ "custom_id": custom_id, "component_type": 2 })
}

/// The data of a slash command: its registered id and string options.
pub(crate) fn command_data(command: &Value, options: &[(&str, &str)]) -> Value {
    let options: Vec<Value> =
        options.iter().map(|(name, value)| json!({ "name": name, "type": 3, "value": value })).collect();
    json!({ "id": command["id"], "name": command["name"], "type": 1, "options": options })
}
