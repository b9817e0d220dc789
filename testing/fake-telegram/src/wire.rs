//! The JSON shapes the Bot API answers with ("Available types": User, Chat, Message,
//! CallbackQuery, Update), built from the fake's state.

use serde_json::{Value, json};

use crate::state::{Bot, Chat, ChatKind, Person, StoredMessage};

/// `User` for a person.
pub(crate) fn user(p: &Person) -> Value {
    let mut u = json!({ "id": p.id, "is_bot": false, "first_name": p.first_name, "language_code": "en" });
    if let Some(name) = &p.username {
        u["username"] = json!(name);
    }
    u
}

/// `User` for the bot (also what `getMe` returns, with its capabilities).
pub(crate) fn bot_user(bot: &Bot) -> Value {
    json!({ "id": bot.id, "is_bot": true, "first_name": bot.first_name, "username": bot.username })
}

/// `Chat` as messages carry it.
pub(crate) fn chat(c: &Chat) -> Value {
    match &c.kind {
        ChatKind::Private(p) => {
            let mut v = json!({ "id": c.id, "type": "private", "first_name": p.first_name });
            if let Some(name) = &p.username {
                v["username"] = json!(name);
            }
            v
        }
        ChatKind::Group { title, forum } => {
            let mut v = json!({ "id": c.id, "type": "supergroup", "title": title });
            if *forum {
                v["is_forum"] = json!(true);
            }
            v
        }
    }
}

/// `Message`.
pub(crate) fn message(bot: &Bot, c: &Chat, m: &StoredMessage, people: &[Person]) -> Value {
    let from = match m.from {
        None => bot_user(bot),
        Some(id) => people
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| json!({ "id": id, "is_bot": false, "first_name": "?" }), user),
    };
    let mut v = json!({
        "message_id": m.id,
        "from": from,
        "chat": chat(c),
        "date": m.date,
        "text": m.text,
    });
    if let Some(thread) = m.thread {
        v["message_thread_id"] = json!(thread);
        v["is_topic_message"] = json!(true);
    }
    if let Some(markup) = &m.markup {
        v["reply_markup"] = markup.clone();
    }
    if let Some(edited) = m.edit_date {
        v["edit_date"] = json!(edited);
    }
    v
}
