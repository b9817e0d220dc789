//! [`Inbound`]: everything a channel crate asks of the engine (CAP-5), in one place.
//!
//! A channel never touches the store. When a person presses a control, reacts or types
//! `/approve`, the channel:
//! 1. checks it with a `precheck_*` call: synchronous, from memory, so the platform is acked
//!    inside its deadline with the returned text;
//! 2. acks the platform;
//! 3. calls [`Inbound::settle`]: the decision is recorded, and a refusal or a failure to record
//!    reaches the presser privately through the channel's `reply_private`.

use std::time::Duration;

use assent_core::{
    command::TypedMessage,
    lifecycle::Rejection,
    model::{AccountKey, Actor, Decision, Kind},
    token::TokenAction,
};

use crate::{
    Accepted, ApprovalRef, Authority, EngineHandle, Interaction, Resolution, ResolveError, TypedOutcome,
};

/// How long a private reply may take before it is given up: it must never hold the channel.
const REPLY_LIMIT: Duration = Duration::from_secs(2);

/// The engine as one channel account sees it.
#[derive(Clone)]
pub struct Inbound {
    engine: EngineHandle,
    account: AccountKey,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").field("account", &self.account).finish_non_exhaustive()
    }
}

impl Inbound {
    /// The inbound side of `account`.
    pub fn new(engine: EngineHandle, account: AccountKey) -> Self {
        Self { engine, account }
    }

    /// The account this channel speaks for.
    pub fn account(&self) -> &AccountKey {
        &self.account
    }

    /// Whether this replica runs the account now (ST-7). Every replica's bot may see a typed
    /// command; only the serving one answers it.
    pub fn is_serving(&self) -> bool {
        self.engine.is_serving(&self.account)
    }

    /// IX-2 for a control's callback token: the MAC binds it to this account.
    pub fn precheck_token(&self, token: &str, actor: Actor) -> Result<Accepted, Rejection> {
        self.engine.precheck_token(&self.account, token, actor)
    }

    /// IX-2 for a press the channel has already tied to an approval (a reaction on a bound card).
    pub fn precheck(
        &self,
        approval: ApprovalRef,
        kind: Option<Kind>,
        decision: Decision,
        actor: Actor,
    ) -> Result<Accepted, Rejection> {
        let ix = Interaction {
            approval,
            kind,
            decision,
            actor,
            authority: Authority::Channel(self.account.clone()),
            reason: None,
            grant_scope: None,
        };
        self.engine.precheck(&ix)
    }

    /// IX-5: a typed message. `bot_username` is how commands address this bot
    /// (`/approve@assentbot`); commands for other bots are ignored.
    pub fn precheck_typed(
        &self,
        actor: Actor,
        msg: TypedMessage<'_>,
        bot_username: Option<&str>,
    ) -> TypedOutcome {
        self.engine.precheck_typed(&self.account, actor, msg, bot_username)
    }

    /// The answer to a typed command, after recording it when accepted: the usage text, the
    /// refusal, the recorded decision or why it could not be recorded. `None`: not for this bot,
    /// say nothing.
    pub async fn answer_typed(&self, outcome: TypedOutcome) -> Option<String> {
        Some(match outcome {
            TypedOutcome::Ignore => return None,
            TypedOutcome::Reply(text) => text,
            TypedOutcome::Rejected(r) => r.to_string(),
            TypedOutcome::Accepted(accepted) => match self.resolve(accepted).await {
                Ok(resolution) => resolution.reply,
                Err(e) => e.to_string(),
            },
        })
    }

    /// Records an accepted press. Prefer [`Inbound::settle`] after a button press; this is for
    /// replies the channel posts itself (a typed command's answer).
    pub async fn resolve(&self, accepted: Accepted) -> Result<Resolution, ResolveError> {
        self.engine.resolve(accepted).await
    }

    /// After the ack: records an accepted press. A refusal, or a decision that could not be
    /// recorded, is told to `actor` privately through the channel's `reply_private` with
    /// `context` (the channel's own handle on the press: an interaction token, a response URL).
    /// The reply is best effort and limited to 2 s. `None` when the precheck refused.
    pub async fn settle(
        &self,
        actor: &Actor,
        precheck: Result<Accepted, Rejection>,
        context: &serde_json::Value,
    ) -> Option<Result<Resolution, ResolveError>> {
        let (refusal, outcome) = match precheck {
            Err(rejection) => (rejection.to_string(), None),
            Ok(accepted) => match self.resolve(accepted).await {
                Ok(resolution) => return Some(Ok(resolution)),
                Err(e) => (refusal_text(&e), Some(Err(e))),
            },
        };
        self.reply_private(actor, context, &refusal).await;
        outcome
    }

    /// Like [`Inbound::settle`], for a channel that answers the person itself: it may run on a
    /// replica that does not hold the account (an HTTP hook), where no capability could reply.
    /// Returns the refusal, or why the decision could not be recorded; `None` once recorded.
    pub async fn settle_reply(&self, precheck: Result<Accepted, Rejection>) -> Option<String> {
        match precheck {
            Err(rejection) => Some(rejection.to_string()),
            Ok(accepted) => self.resolve(accepted).await.err().map(|e| refusal_text(&e)),
        }
    }

    /// PO-11: a "Full command" press. The full redacted text of the approval's command (and
    /// script), for an approver of this account only; the channel sends it to them privately.
    pub async fn full_text(&self, token: &str, actor: &Actor) -> Result<String, Rejection> {
        let engine = &self.engine;
        let t = engine.config().keyring.verify(token, &self.account)?;
        if t.action != TokenAction::FullText {
            return Err(Rejection::DecisionNotAllowed);
        }
        let approver =
            engine.routing_of(&self.account).is_some_and(|r| r.is_approver(t.kind, &actor.user_id));
        if actor.channel != Some(self.account.channel) || !approver {
            return Err(Rejection::Unauthorized);
        }
        let a = engine.approval(&t.id).await.ok().flatten().ok_or(Rejection::NotFound)?;
        let view = engine.card(&a, &self.account, false);
        let blocks: Vec<String> =
            view.blocks.iter().map(|b| format!("{}:\n{}", b.label, b.text.full)).collect();
        Ok(blocks.join("\n\n"))
    }

    async fn reply_private(&self, actor: &Actor, context: &serde_json::Value, text: &str) {
        let Some(cap) = self.engine.capability(&self.account) else { return };
        let reply = crate::guarded(cap.transport().reply_private(actor, context, text));
        match tokio::time::timeout(REPLY_LIMIT, reply).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(account = %self.account, error = %e, "private reply failed"),
            Err(_) => tracing::debug!(account = %self.account, "private reply took over 2 s; given up"),
        }
    }
}

/// What the presser is told when their press was accepted but not recorded.
fn refusal_text(e: &ResolveError) -> String {
    match e {
        // A store failure's text is for the operator's log, not for a chat.
        ResolveError::Store(_) => "Your answer could not be recorded; please press again.".to_owned(),
        other => other.to_string(),
    }
}
