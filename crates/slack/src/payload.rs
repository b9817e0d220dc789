//! What Slack sends, read into the few fields assent uses: a click ("block_actions" under
//! "Interactivity"), a slash command ("Slash commands": the form fields) and a message event
//! (Events API `event_callback` of type `message`). The same structs serve Socket Mode, where
//! each arrives as an envelope's `payload`, and HTTP mode.
//!
//! Only what assent needs is required, so a payload that differs elsewhere (a new field, a
//! block type nobody modelled) still decides; one that lacks a needed field is refused, and
//! refused before the ack, so Slack shows the person an error rather than a silent success.
//! Payloads are read straight from their JSON text: the rest (a click's whole message, its
//! blocks) is skipped, never built into a tree, which keeps the work before the ack small.

use serde::Deserialize;

/// `team.id` / `team_id` and `api_app_id`, which CH-SL-2 checks in both modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    pub(crate) team_id: String,
    pub(crate) app_id: String,
}

#[derive(Debug, Deserialize)]
struct Team {
    id: String,
}

/// "block_actions payloads": the clicker.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct User {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) username: Option<String>,
    #[serde(default)]
    pub(crate) name: Option<String>,
}

impl User {
    pub(crate) fn display(&self) -> String {
        self.username.clone().or_else(|| self.name.clone()).unwrap_or_else(|| self.id.clone())
    }
}

#[derive(Debug, Deserialize)]
struct Container {
    #[serde(default)]
    channel_id: Option<String>,
    #[serde(default)]
    thread_ts: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Action {
    pub(crate) action_id: String,
    #[serde(default)]
    pub(crate) value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawClick {
    team: Team,
    api_app_id: String,
    user: User,
    #[serde(default)]
    channel: Option<IdOnly>,
    container: Container,
    actions: Vec<Action>,
}

/// A button press.
#[derive(Debug, Clone)]
pub(crate) struct Click {
    pub(crate) source: Source,
    pub(crate) user: User,
    /// Where the card is: ephemeral answers go there.
    pub(crate) channel: String,
    pub(crate) thread_ts: Option<String>,
    pub(crate) action: Action,
}

/// A slash command's fields.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Command {
    pub(crate) team_id: String,
    pub(crate) api_app_id: String,
    pub(crate) channel_id: String,
    pub(crate) user_id: String,
    #[serde(default)]
    pub(crate) user_name: Option<String>,
    pub(crate) command: String,
    #[serde(default)]
    pub(crate) text: String,
}

/// A message event's `event`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MessageEvent {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) subtype: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) bot_id: Option<String>,
    #[serde(default)]
    pub(crate) text: Option<String>,
    #[serde(default)]
    pub(crate) channel: Option<String>,
    #[serde(default)]
    pub(crate) channel_type: Option<String>,
    #[serde(default)]
    pub(crate) ts: Option<String>,
    #[serde(default)]
    pub(crate) thread_ts: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawEvent {
    team_id: String,
    api_app_id: String,
    event_id: String,
    event: MessageEvent,
}

/// An Events API delivery.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) source: Source,
    pub(crate) event_id: String,
    pub(crate) event: MessageEvent,
}

/// One delivery, read.
#[derive(Debug, Clone)]
pub(crate) enum Incoming {
    Click(Click),
    Command(Command),
    Event(Event),
    /// Something assent does not act on (another interaction type, another event type).
    Other,
}

/// The `type` of a payload, read alone.
#[derive(Debug, Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

fn kind_of(json: &str) -> Result<Option<String>, String> {
    let k: Kind<'_> = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
    Ok(k.kind.map(|k| k.into_owned()))
}

#[derive(Debug, Deserialize)]
struct EventKind<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    event: Option<Kind<'a>>,
}

impl Incoming {
    /// An interactivity payload (`payload=` over HTTP, the envelope's `payload` in Socket Mode).
    pub(crate) fn interactive(json: &str) -> Result<Self, String> {
        if kind_of(json)?.as_deref() != Some("block_actions") {
            return Ok(Self::Other);
        }
        let raw: RawClick =
            serde_json::from_str(json).map_err(|e| format!("not a block_actions payload: {e}"))?;
        let channel = raw
            .container
            .channel_id
            .or(raw.channel.map(|c| c.id))
            .ok_or("a block_actions payload with no channel")?;
        let action = raw.actions.into_iter().next().ok_or("a block_actions payload with no action")?;
        Ok(Self::Click(Click {
            source: Source { team_id: raw.team.id, app_id: raw.api_app_id },
            user: raw.user,
            channel,
            thread_ts: raw.container.thread_ts,
            action,
        }))
    }

    /// A slash command, as a JSON object of its fields.
    pub(crate) fn command(json: &str) -> Result<Self, String> {
        serde_json::from_str(json).map(Self::Command).map_err(|e| format!("not a slash command: {e}"))
    }

    /// An Events API callback.
    pub(crate) fn event(json: &str) -> Result<Self, String> {
        let kinds: EventKind<'_> = serde_json::from_str(json).map_err(|e| format!("not JSON: {e}"))?;
        let message = kinds.event.and_then(|e| e.kind).is_some_and(|k| k == "message");
        if kinds.kind.as_deref() != Some("event_callback") || !message {
            return Ok(Self::Other);
        }
        let raw: RawEvent = serde_json::from_str(json).map_err(|e| format!("not a message event: {e}"))?;
        Ok(Self::Event(Event {
            source: Source { team_id: raw.team_id, app_id: raw.api_app_id },
            event_id: raw.event_id,
            event: raw.event,
        }))
    }

    /// Where it comes from; `None` for [`Incoming::Other`].
    pub(crate) fn source(&self) -> Option<Source> {
        match self {
            Self::Click(c) => Some(c.source.clone()),
            Self::Command(c) => Some(Source { team_id: c.team_id.clone(), app_id: c.api_app_id.clone() }),
            Self::Event(e) => Some(e.source.clone()),
            Self::Other => None,
        }
    }
}

/// CH-SL-5: a `ts` as Slack compares them: seconds, then the fraction without trailing zeros
/// (`1700000000.000100` and `1700000000.0001` are one message).
pub(crate) fn canonical_ts(ts: &str) -> String {
    let (secs, fraction) = ts.split_once('.').unwrap_or((ts, ""));
    let secs = secs.trim_start_matches('0');
    let fraction = fraction.trim_end_matches('0');
    let secs = if secs.is_empty() { "0" } else { secs };
    if fraction.is_empty() { secs.to_owned() } else { format!("{secs}.{fraction}") }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Incoming, canonical_ts};

    #[test]
    fn ch_sl_5_thread_ts_compares_as_a_slack_number() {
        assert_eq!(canonical_ts("1700000000.000100"), canonical_ts("1700000000.0001"));
        assert_eq!(canonical_ts("1700000000.000000"), canonical_ts("1700000000"));
        assert_ne!(canonical_ts("1700000000.0001"), canonical_ts("1700000000.001"));
    }

    #[test]
    fn a_click_with_unmodelled_extras_still_reads() {
        let payload = json!({
            "type": "block_actions", "team": { "id": "T1", "domain": "x" }, "api_app_id": "A1",
            "user": { "id": "U1", "username": "kim", "team_id": "T1" },
            "container": { "type": "message", "channel_id": "D1", "message_ts": "1.2", "is_ephemeral": false },
            "message": { "blocks": [{ "type": "some_future_block" }] },
            "actions": [{ "type": "button", "action_id": "assent.decide.deny", "value": "tok", "block_id": "b" }],
        });
        let Incoming::Click(click) = Incoming::interactive(&payload.to_string()).unwrap() else { panic!() };
        assert_eq!((click.channel.as_str(), click.action.value.as_deref()), ("D1", Some("tok")));
    }

    #[test]
    fn a_click_without_a_user_is_refused() {
        let payload = json!({ "type": "block_actions", "team": { "id": "T1" }, "api_app_id": "A1",
            "container": { "channel_id": "D1" }, "actions": [] });
        assert!(Incoming::interactive(&payload.to_string()).is_err());
    }
}
