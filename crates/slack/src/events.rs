//! Clicks, `/approve` and typed messages (CH-SL-4, CH-SL-7), however they arrive.
//!
//! [`begin`] runs from memory only: it checks the workspace and app and says whether to
//! acknowledge. The caller acknowledges (the Socket Mode ack, or the HTTP 200) and only then
//! runs [`finish`], which prechecks the click or command, records the decision and answers the
//! person with `chat.postEphemeral`. So a click is acknowledged only once it is certain to be
//! carried to `resolve`: "selected" with no decision recorded cannot happen. The precheck comes
//! after the ack because Slack's ack carries nothing it could say: a refusal is a message.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use assent_core::{
    command::TypedMessage,
    model::{Actor, Channel, Surface},
};

use crate::{
    Shared,
    card::{self, DECIDE_ACTION, FULL_TEXT_ACTION},
    payload::{Click, Command, Event, Incoming},
    web::Identity,
};

/// Where private answers to one action go: ephemeral, in the conversation it came from.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) channel: String,
    pub(crate) user: String,
    pub(crate) thread_ts: Option<String>,
}

impl Reply {
    /// Ephemeral where the person acted; when Slack cannot show it there (they are not in that
    /// conversation), in their DM with the app instead.
    pub(crate) async fn send(&self, shared: &Shared, text: &str) -> Result<(), crate::SlackError> {
        let plain = card::plain(text);
        match shared.web.ephemeral(&self.channel, &self.user, self.thread_ts.as_deref(), &plain).await {
            Err(e)
                if matches!(
                    e.code(),
                    Some("user_not_in_channel" | "channel_not_found" | "not_in_channel")
                ) =>
            {
                let dm = shared.dm(&self.user).await?;
                shared.say(&dm, None, text).await
            }
            other => other,
        }
    }
}

/// What runs after the ack.
pub(crate) enum After {
    /// Precheck and record a click (or tell the clicker why not).
    Settle { actor: Actor, token: String, reply: Reply },
    /// "Full command": the redacted text, privately.
    FullText { actor: Actor, token: String, reply: Reply },
    /// `/approve` or a typed `approve …`: precheck, record and answer privately. `event_id`
    /// is remembered once the delivery is acknowledged (a typed message's retries share it).
    Typed { actor: Actor, text: String, reply: Reply, event_id: Option<String> },
}

/// Why a delivery is not acknowledged.
#[derive(Debug)]
pub(crate) enum Refused {
    /// Not readable: Slack shows the person an error.
    Malformed(String),
    /// From another workspace or app (CH-SL-2).
    Foreign(String),
}

/// Event ids seen lately (CH-SL-8): Slack retries a delivery it thinks was lost.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    ids: Mutex<HashMap<String, Instant>>,
}

/// "Events API": retries come within minutes; an hour is plenty.
const SEEN_FOR: Duration = Duration::from_secs(3600);

impl Seen {
    /// True if `id` was acknowledged already.
    fn handled(&self, id: &str) -> bool {
        let ids = self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        ids.get(id).is_some_and(|at| at.elapsed() < SEEN_FOR)
    }

    /// Remembers `id` as acknowledged; false if it already was.
    fn mark(&self, id: &str) -> bool {
        let mut ids = self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if ids.len() > 10_000 {
            ids.retain(|_, at| now.duration_since(*at) < SEEN_FOR);
        }
        ids.insert(id.to_owned(), now).is_none()
    }
}

fn actor(user: &str, display: String, channel: &str) -> Actor {
    // DMs with the app are `D…`; anything else is the conversation a request came from.
    let surface = if channel.starts_with('D') { Surface::ApproverDm } else { Surface::Origin };
    Actor::platform(Channel::Slack, user.to_owned(), display, surface)
}

/// Checks `incoming` from memory. `Ok(None)`: acknowledge, nothing to do.
pub(crate) fn begin(shared: &Shared, me: &Identity, incoming: Incoming) -> Result<Option<After>, Refused> {
    if let Some(source) = incoming.source()
        && (source.team_id != me.team_id || source.app_id != me.app_id)
    {
        return Err(Refused::Foreign(format!(
            "a delivery for team {} and app {}, but this account is team {} and app {}",
            source.team_id, source.app_id, me.team_id, me.app_id
        )));
    }
    Ok(match incoming {
        Incoming::Click(c) => click(c),
        Incoming::Command(c) => command(c),
        Incoming::Event(e) => message(shared, me, e),
        Incoming::Other => None,
    })
}

fn click(c: Click) -> Option<After> {
    let actor = actor(&c.user.id, c.user.display(), &c.channel);
    let reply = Reply { channel: c.channel, user: c.user.id, thread_ts: c.thread_ts };
    let token = c.action.value.unwrap_or_default();
    if c.action.action_id == FULL_TEXT_ACTION {
        return Some(After::FullText { actor, token, reply });
    }
    if !c.action.action_id.starts_with(DECIDE_ACTION) {
        return None;
    }
    Some(After::Settle { actor, token, reply })
}

fn command(c: Command) -> Option<After> {
    if c.command != "/approve" {
        return None;
    }
    let actor = actor(&c.user_id, c.user_name.unwrap_or_else(|| c.user_id.clone()), &c.channel_id);
    let reply = Reply { channel: c.channel_id, user: c.user_id, thread_ts: None };
    // An empty `/approve` still deserves the usage text.
    let text = format!("/approve {}", c.text.trim());
    Some(After::Typed { actor, text, reply, event_id: None })
}

fn message(shared: &Shared, me: &Identity, e: Event) -> Option<After> {
    // Only peeked here: the id is remembered once the ack is out, so a delivery whose ack was
    // lost is handled when Slack sends it again.
    if shared.seen.handled(&e.event_id) {
        tracing::debug!(account = %shared.key, event = %e.event_id, "a retried Slack event, already handled");
        return None;
    }
    let m = e.event;
    // Edits, joins and bots' messages never decide (IX-5).
    if m.subtype.is_some() || m.bot_id.is_some() || m.kind != "message" {
        return None;
    }
    let (user, channel, text) = (m.user?, m.channel?, m.text?);
    if user == me.bot_user {
        return None;
    }
    let actor = actor(&user, user.clone(), &channel);
    // Answered in the thread it was typed in.
    let thread_ts = m.thread_ts.or(m.ts).filter(|_| m.channel_type.as_deref() != Some("im"));
    let reply = Reply { channel, user, thread_ts };
    Some(After::Typed { actor, text, reply, event_id: Some(e.event_id) })
}

/// Called once the ack is out: remembers an event's id and gives back what to do, or `None`
/// when another delivery of the same event was acknowledged first.
pub(crate) fn acked(shared: &Shared, after: After) -> Option<After> {
    if let After::Typed { event_id: Some(id), .. } = &after
        && !shared.seen.mark(id)
    {
        tracing::debug!(account = %shared.key, event = %id, "a retried Slack event, already handled");
        return None;
    }
    Some(after)
}

/// Runs what comes after the ack.
pub(crate) async fn finish(shared: Arc<Shared>, after: After) {
    let outcome = match after {
        After::Settle { actor, token, reply } => {
            // Answered from here, not through the engine's capability: on a replica without the
            // account (HTTP mode) there is none.
            let precheck = shared.inbound.precheck_token(&token, actor);
            match shared.inbound.settle_reply(precheck).await {
                Some(refusal) => reply.send(&shared, &refusal).await,
                None => Ok(()),
            }
        }
        After::FullText { actor, token, reply } => full_text(&shared, &actor, &token, &reply).await,
        After::Typed { actor, text, reply, .. } => {
            let msg = TypedMessage { text: &text, is_edit: false, from_bot: false };
            // Anything but an `approve` command is ignored quietly.
            let outcome = shared.inbound.precheck_typed(actor, msg, None);
            match shared.inbound.answer_typed(outcome).await {
                Some(text) => reply.send(&shared, &text).await,
                None => Ok(()),
            }
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(account = %shared.key, error = %e, "could not answer a Slack action");
    }
}

/// How much command one ephemeral message carries, before escaping.
const FULL_TEXT_PIECE: usize = 2000;

/// PO-11: "Full command" sends the full redacted text as ephemeral messages.
async fn full_text(
    shared: &Shared,
    actor: &Actor,
    token: &str,
    reply: &Reply,
) -> Result<(), crate::SlackError> {
    match shared.inbound.full_text(token, actor).await {
        Err(r) => reply.send(shared, &r.to_string()).await,
        Ok(text) => {
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(FULL_TEXT_PIECE) {
                let piece: String = piece.iter().collect();
                let fenced = format!("```{}```", card::code(&card::esc(&piece)));
                shared
                    .web
                    .ephemeral(&reply.channel, &reply.user, reply.thread_ts.as_deref(), &fenced)
                    .await?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Seen;

    /// CH-SL-8: an event is remembered only once acknowledged, so a delivery whose ack was lost
    /// (the socket died first) is still handled when Slack retries it, and only once.
    #[test]
    fn ch_sl_8_an_unacknowledged_event_is_not_remembered() {
        let seen = Seen::default();
        assert!(!seen.handled("Ev1"), "read, not yet acknowledged");
        assert!(!seen.handled("Ev1"), "the retry of a lost ack is still handled");
        assert!(seen.mark("Ev1"), "acknowledged once");
        assert!(seen.handled("Ev1"), "a later retry is a duplicate");
        assert!(!seen.mark("Ev1"), "a second ack of the same event does nothing");
    }
}
