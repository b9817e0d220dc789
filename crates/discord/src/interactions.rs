//! Interactions (CH-DC-3, CH-DC-6), however they arrive (gateway or HTTP endpoint).
//!
//! [`begin`] runs from memory only: it prechecks the click or command and returns the first
//! response ("Interaction Response Types": 6, DEFERRED_UPDATE_MESSAGE, for a click; 5 with the
//! EPHEMERAL flag for `/approve`), which is sent before anything else. [`finish`] then records
//! the decision, and answers the person privately on the interaction's token (valid 15 min).

use std::{sync::Arc, time::Duration};

use assent_core::{
    command::TypedMessage,
    lifecycle::Rejection,
    model::{Actor, Channel, Surface},
};
use assent_engine::{Accepted, TypedOutcome};
use serde_json::{Value, json};
use serenity::{
    http::{LightMethod, Route},
    model::{
        application::{CommandDataOptionValue, CommandInteraction, ComponentInteraction, Interaction},
        id::ApplicationId,
        user::User,
    },
};

use crate::{Shared, card, cut, error::DiscordError};

/// "Message Flags": EPHEMERAL.
const EPHEMERAL: u64 = 1 << 6;
/// A follow-up sent while Discord still processes our HTTP response can find no webhook yet
/// (10015): it is tried again after this pause, a few times.
const FOLLOWUP_PAUSE: Duration = Duration::from_millis(250);
const FOLLOWUP_ATTEMPTS: usize = 8;

/// `PUT /applications/{id}/commands`: `/approve ref decision [reason]`, in servers and DMs.
pub(crate) async fn register_commands(shared: &Shared, application_id: u64) -> Result<(), DiscordError> {
    let choice = |name: &str| json!({ "name": name, "value": name });
    let approve = json!({
        "name": "approve",
        "type": 1,
        "description": "Decide an approval by its ref",
        "contexts": [0, 1],
        "integration_types": [0],
        "options": [
            { "type": 3, "name": "ref", "description": "The ref on the card, such as a1b2c3d4", "required": true },
            { "type": 3, "name": "decision", "description": "What to decide", "required": true,
              "choices": [choice("allow-once"), choice("allow-always"), choice("deny")] },
            { "type": 3, "name": "reason", "description": "Why (shown on the card)", "required": false, "max_length": 200 },
        ],
    });
    let route = Route::Commands { application_id: ApplicationId::new(application_id) };
    shared.rest.call(route, LightMethod::Put, Some(&json!([approve]))).await
}

/// Where private answers to one interaction go.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    application_id: u64,
    token: String,
}

impl Reply {
    fn of(application_id: ApplicationId, token: &str) -> Self {
        Self { application_id: application_id.get(), token: token.to_owned() }
    }

    /// The engine's handle on the click, for `reply_private`.
    pub(crate) fn context(&self) -> Value {
        json!({ "discord_interaction": { "application_id": self.application_id, "token": self.token } })
    }

    pub(crate) fn from_context(context: &Value) -> Option<Self> {
        let i = &context["discord_interaction"];
        Some(Self { application_id: i["application_id"].as_u64()?, token: i["token"].as_str()?.to_owned() })
    }

    /// An ephemeral follow-up: only the person who acted sees it.
    pub(crate) async fn ephemeral(&self, shared: &Shared, text: &str) -> Result<(), DiscordError> {
        let body = json!({ "content": cut(text), "flags": EPHEMERAL, "allowed_mentions": { "parse": [] } });
        self.retrying(shared, LightMethod::Post, &body).await
    }

    /// Fills in a deferred response ("Edit Original Interaction Response").
    async fn edit_original(&self, shared: &Shared, text: &str) -> Result<(), DiscordError> {
        let body = json!({ "content": cut(text), "allowed_mentions": { "parse": [] } });
        self.retrying(shared, LightMethod::Patch, &body).await
    }

    /// POST is a follow-up, PATCH the original response. Either may find no webhook (10015) or
    /// no original (10008) while Discord still processes our first response: tried again a few
    /// times after a short pause.
    async fn retrying(&self, shared: &Shared, method: LightMethod, body: &Value) -> Result<(), DiscordError> {
        let application_id = ApplicationId::new(self.application_id);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let route = match method {
                LightMethod::Patch => {
                    Route::WebhookOriginalInteractionResponse { application_id, token: &self.token }
                }
                _ => Route::WebhookFollowupMessages { application_id, token: &self.token },
            };
            match shared.rest.call(route, method, Some(body)).await {
                Err(e) if matches!(e.code(), Some(10015 | 10008)) && attempt < FOLLOWUP_ATTEMPTS => {
                    tokio::time::sleep(FOLLOWUP_PAUSE).await;
                }
                other => return other,
            }
        }
    }
}

/// What runs after the first response.
pub(crate) enum After {
    /// Record a click (or tell the clicker why not).
    Settle { actor: Actor, precheck: Result<Accepted, Rejection>, reply: Reply },
    /// "Full command": the redacted text, privately.
    FullText { actor: Actor, token: String, reply: Reply },
    /// `/approve`: record it and fill in the deferred answer.
    Command { outcome: TypedOutcome, reply: Reply },
}

/// The first response, and the work after it.
pub(crate) struct Begun {
    /// The interaction response body.
    pub(crate) response: Value,
    pub(crate) after: Option<After>,
}

/// The clicker: `member.user` in a guild, `user` in a DM ("Interaction Object").
fn actor(member_user: Option<&User>, user: &User, in_guild: bool) -> Actor {
    let user = member_user.unwrap_or(user);
    let display = user.global_name.clone().unwrap_or_else(|| user.name.clone());
    let surface = if in_guild { Surface::Origin } else { Surface::ApproverDm };
    Actor::platform(Channel::Discord, user.id.get().to_string(), display, surface)
}

/// Prechecks `interaction` from memory. `None` for kinds assent does not handle.
pub(crate) fn begin(shared: &Shared, interaction: &Interaction) -> Option<Begun> {
    match interaction {
        Interaction::Ping(_) => Some(Begun { response: json!({ "type": 1 }), after: None }),
        Interaction::Component(c) => Some(click(shared, c)),
        Interaction::Command(c) if c.data.name == "approve" => Some(command(shared, c)),
        _ => None,
    }
}

fn click(shared: &Shared, c: &ComponentInteraction) -> Begun {
    let actor = actor(c.member.as_ref().map(|m| &m.user), &c.user, c.guild_id.is_some());
    let reply = Reply::of(c.application_id, &c.token);
    let token = c.data.custom_id.clone();
    let precheck = shared.inbound.precheck_token(&token, actor.clone());
    let after = if matches!(precheck, Err(Rejection::DecisionNotAllowed)) {
        After::FullText { actor, token, reply }
    } else {
        After::Settle { actor, precheck, reply }
    };
    Begun { response: json!({ "type": 6 }), after: Some(after) }
}

fn option<'a>(c: &'a CommandInteraction, name: &str) -> Option<&'a str> {
    c.data.options.iter().find(|o| o.name == name).and_then(|o| match &o.value {
        CommandDataOptionValue::String(s) => Some(s.trim()),
        _ => None,
    })
}

fn command(shared: &Shared, c: &CommandInteraction) -> Begun {
    let actor = actor(c.member.as_ref().map(|m| &m.user), &c.user, c.guild_id.is_some());
    let reply = Reply::of(c.application_id, &c.token);
    let (reference, decision) = (option(c, "ref").unwrap_or(""), option(c, "decision").unwrap_or(""));
    let outcome = if reference.contains(char::is_whitespace) || decision.contains(char::is_whitespace) {
        TypedOutcome::Reply(
            "The ref and the decision are single words, such as a1b2c3d4 and deny.".to_owned(),
        )
    } else {
        let mut text = format!("/approve {reference} {decision}");
        if let Some(reason) = option(c, "reason").filter(|r| !r.is_empty()) {
            text.push(' ');
            text.push_str(&reason.replace('\n', " "));
        }
        let msg = TypedMessage { text: &text, is_edit: false, from_bot: false };
        shared.inbound.precheck_typed(actor, msg, None)
    };
    // DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, ephemeral: "thinking…" only the person sees.
    Begun {
        response: json!({ "type": 5, "data": { "flags": EPHEMERAL } }),
        after: Some(After::Command { outcome, reply }),
    }
}

/// Runs what comes after the first response.
pub(crate) async fn finish(shared: Arc<Shared>, after: After) {
    let outcome = match after {
        After::Settle { actor, precheck, reply } => {
            if let Some(Err(e)) = shared.inbound.settle(&actor, precheck, &reply.context()).await {
                tracing::warn!(account = %shared.key, error = %e, "a Discord click could not be recorded");
            }
            Ok(())
        }
        After::FullText { actor, token, reply } => full_text(&shared, &actor, &token, &reply).await,
        After::Command { outcome, reply } => {
            let Some(text) = shared.inbound.answer_typed(outcome).await else { return };
            reply.edit_original(&shared, &text).await
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(account = %shared.key, error = %e, "could not answer a Discord interaction");
    }
}

/// The first response was refused because the interaction's 3 seconds had passed (it arrived
/// late, after a gateway outage): nothing is recorded, and the person is told so, by DM.
pub(crate) async fn expired(shared: Arc<Shared>, after: After) {
    let actor = match &after {
        After::Settle { actor, .. } | After::FullText { actor, .. } => actor.clone(),
        After::Command { .. } => return, // Discord already told them the command failed.
    };
    let text = "Your click reached assent after Discord's 3-second limit, so it was not recorded. \
                Press the button again.";
    let Ok(user) = actor.user_id.parse::<u64>() else { return };
    let sent = match shared.dm(user).await {
        Ok(channel) => shared.say(channel, text).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        tracing::warn!(account = %shared.key, error = %e, "could not tell a person their click expired");
    }
}

/// PO-11: "Full command" sends the full redacted text as ephemeral follow-ups.
async fn full_text(shared: &Shared, actor: &Actor, token: &str, reply: &Reply) -> Result<(), DiscordError> {
    match shared.inbound.full_text(token, actor).await {
        Err(r) => reply.ephemeral(shared, &r.to_string()).await,
        Ok(text) => {
            for chunk in chunks(&text, crate::CONTENT_LIMIT - 16) {
                reply.ephemeral(shared, &format!("```\n{}\n```", card::code(&chunk))).await?;
            }
            Ok(())
        }
    }
}

/// `text` in pieces of at most `limit` characters once fenced: [`card::code`] turns each
/// "```" (3 characters) into 5, so a piece of `limit * 3 / 5` characters always fits.
fn chunks(text: &str, limit: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(limit * 3 / 5).map(|c| c.iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::chunks;
    use crate::card::code;

    #[test]
    fn ch_dc_3_full_text_pieces_fit_even_when_made_of_fences() {
        for text in ["x".repeat(5000), "`".repeat(5000)] {
            let pieces = chunks(&text, 1984);
            assert!(pieces.iter().all(|p| code(p).chars().count() <= 1984));
            assert_eq!(pieces.concat(), text, "nothing lost");
        }
    }
}
