//! The fake's user side: button clicks, reactions and typed commands made as a given user,
//! through the same engine calls a real channel makes (precheck → ack → settle).

use assent_core::{
    command::TypedMessage,
    lifecycle::Rejection,
    model::{Actor, Decision, Surface},
};
use assent_engine::{Accepted, ApprovalRef, EngineHandle, Inbound, ResolveError, TypedOutcome};

use super::{ClickOutcome, FakeChannel};

impl FakeChannel {
    /// A verified actor of this platform.
    pub fn actor(&self, user_id: &str) -> Actor {
        Actor::platform(self.account.channel, user_id, format!("@{user_id}"), Surface::ApproverDm)
    }

    /// Presses the button for `decision` on message `message_id` as `user_id`, the way a
    /// platform runtime does: verify token and precheck, ack at once, then resolve.
    pub async fn click(
        &self,
        engine: &EngineHandle,
        message_id: u64,
        decision: Decision,
        user_id: &str,
    ) -> ClickOutcome {
        let token = {
            let s = self.lock();
            let label_matches = |(_, t): &&(String, String)| token_decision(t) == Some(decision);
            s.messages
                .get(&message_id)
                .and_then(|m| m.payload.buttons.iter().find(label_matches).map(|(_, t)| t.clone()))
        };
        let Some(token) = token else {
            return ClickOutcome { ack: "no such button".to_owned(), resolution: None };
        };
        self.click_token(engine, &token, user_id).await
    }

    fn inbound(&self, engine: &EngineHandle) -> Inbound {
        Inbound::new(engine.clone(), self.account.clone())
    }

    /// Presses a button with a raw callback token (forged, stale or copied tokens included).
    pub async fn click_token(&self, engine: &EngineHandle, token: &str, user_id: &str) -> ClickOutcome {
        let inbound = self.inbound(engine);
        let actor = self.actor(user_id);
        ack_then_settle(&inbound, &actor, inbound.precheck_token(token, actor.clone())).await
    }

    /// Reacts to a card with a decision (anchor-based, like Matrix reactions). Only bound
    /// messages count.
    pub async fn react(
        &self,
        engine: &EngineHandle,
        message_id: u64,
        decision: Decision,
        user_id: &str,
    ) -> ClickOutcome {
        let target = {
            let s = self.lock();
            let bound = s.anchors.contains(&message_id);
            s.messages.get(&message_id).filter(|_| bound).map(|m| (m.approval.clone(), m.kind))
        };
        let Some((id, kind)) = target else {
            return ClickOutcome { ack: "not an approval card".to_owned(), resolution: None };
        };
        let inbound = self.inbound(engine);
        let actor = self.actor(user_id);
        let precheck = inbound.precheck(ApprovalRef::Id(id), Some(kind), decision, actor.clone());
        ack_then_settle(&inbound, &actor, precheck).await
    }

    /// Types a message as `user_id`; returns the bot's reply, if any.
    pub async fn type_message(&self, engine: &EngineHandle, text: &str, user_id: &str) -> Option<String> {
        let msg = TypedMessage { text, is_edit: false, from_bot: false };
        let inbound = self.inbound(engine);
        match inbound.precheck_typed(self.actor(user_id), msg, Some("assentbot")) {
            TypedOutcome::Ignore => None,
            TypedOutcome::Reply(text) => Some(text),
            TypedOutcome::Rejected(r) => Some(r.to_string()),
            TypedOutcome::Accepted(acc) => Some(match inbound.resolve(acc).await {
                Ok(res) => res.reply,
                Err(ResolveError::Rejected(r)) => r.to_string(),
                Err(e) => e.to_string(),
            }),
        }
    }
}

/// What a platform runtime does with a precheck: ack with its text at once, then settle (a
/// refusal also reaches the clicker privately).
async fn ack_then_settle(
    inbound: &Inbound,
    actor: &Actor,
    precheck: Result<Accepted, Rejection>,
) -> ClickOutcome {
    let ack = match &precheck {
        Err(r) => r.to_string(),
        Ok(acc) => acc.ack_text().to_owned(),
    };
    let resolution = inbound.settle(actor, precheck, &serde_json::Value::Null).await;
    ClickOutcome { ack, resolution }
}

/// Reads the decision out of a token's `d` field without verifying it (test inspection only).
pub fn token_decision(token: &str) -> Option<Decision> {
    match token.split('.').nth(2) {
        Some("o") => Some(Decision::AllowOnce),
        Some("a") => Some(Decision::AllowAlways),
        Some("d") => Some(Decision::Deny),
        _ => None,
    }
}
