//! The JSON objects Discord sends, as its "Resources" pages document them (User, Channel,
//! Message, Guild Member, Interaction).

use serde_json::{Value, json};

use crate::{
    APPLICATION_ID, BOT_ID, BOT_NAME, GUILD_ID,
    state::{Place, State, StoredMessage},
};

/// "User Object".
pub(crate) fn user(id: u64, name: &str, bot: bool) -> Value {
    json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": null,
        "bot": bot,
        "public_flags": 0,
    })
}

pub(crate) fn bot_user() -> Value {
    user(BOT_ID, BOT_NAME, true)
}

pub(crate) fn person(s: &State, id: u64) -> Value {
    let name = s.people.get(&id).map_or("unknown", |p| p.name.as_str());
    user(id, name, false)
}

/// "Guild Member Object", as inside an interaction (with `permissions`).
pub(crate) fn member(s: &State, id: u64) -> Value {
    json!({
        "user": person(s, id),
        "nick": null,
        "avatar": null,
        "roles": [],
        "joined_at": "2024-01-01T00:00:00.000000+00:00",
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "permissions": "2248473465835073",
    })
}

/// "Channel Object": a DM (type 1) or a guild text channel (type 0).
pub(crate) fn channel(s: &State, id: u64) -> Value {
    match s.channels.get(&id).map(|c| &c.place) {
        Some(Place::Dm { recipient }) => json!({
            "id": id.to_string(),
            "type": 1,
            "last_message_id": null,
            "flags": 0,
            "recipients": [person(s, *recipient)],
        }),
        _ => json!({
            "id": id.to_string(),
            "type": 0,
            "guild_id": GUILD_ID.to_string(),
            "name": "approvals",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": false,
            "parent_id": null,
            "flags": 0,
        }),
    }
}

/// "Message Object".
pub(crate) fn message(s: &State, m: &StoredMessage) -> Value {
    let author = match m.author {
        Some(id) => person(s, id),
        None => bot_user(),
    };
    let mut out = json!({
        "id": m.id.to_string(),
        "channel_id": m.channel.to_string(),
        "author": author,
        "content": m.content,
        "timestamp": m.timestamp,
        "edited_timestamp": if m.edits.is_empty() { Value::Null } else { json!(m.timestamp) },
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": m.embeds,
        "pinned": false,
        "type": if m.interaction.is_some() { 20 } else { 0 },
        "flags": m.flags,
        "components": m.components,
    });
    if m.interaction.is_some() {
        out["webhook_id"] = json!(APPLICATION_ID.to_string());
        out["application_id"] = json!(APPLICATION_ID.to_string());
    }
    if matches!(s.channels.get(&m.channel).map(|c| &c.place), Some(Place::Guild { .. })) {
        out["guild_id"] = json!(GUILD_ID.to_string());
    }
    out
}

/// The custom ids of a message's buttons, row by row.
pub(crate) fn custom_ids(components: &[Value]) -> Vec<String> {
    components
        .iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["custom_id"].as_str().map(str::to_owned))
        .collect()
}
