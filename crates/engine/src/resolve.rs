//! Interactions (IX-1..IX-9): a synchronous, memory-only `precheck` whose answer a channel can
//! ack with at once, then a durable `resolve` by compare-and-set. Also cancel and consume.

use assent_core::{
    command::{ParsedCommand, TypedMessage, parse_approve, recorded_text},
    id::ApprovalId,
    lifecycle::{ExpiryCause, Rejection, RequesterError, VoteOutcome, apply_vote, cancel, consume, expire},
    model::{AccountKey, Actor, Approval, AuditEntry, AuditType, Decision, EventType, Kind},
    policy::GrantScope,
    store::{ApprovalWrite, CONVERSATION_BOUND, Commit, StoreError},
    text::DisplayText,
    token::TokenAction,
};
use serde_json::json;

use crate::{
    EngineError, EngineHandle, ResolveError,
    index::{Lookup, RefMiss, check_pending},
    transition::{TransitionError, event},
};

/// How many times `resolve` re-reads after losing a compare-and-set race to a non-final vote.
const CAS_RETRIES: usize = 16;

/// Which approval an interaction is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRef {
    /// A full id (from a verified token, the console or the API).
    Id(ApprovalId),
    /// A typed ref: a ≥ 8-character prefix (IX-5).
    Prefix(String),
}

/// Who vouches for the actor (IX-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// A chat platform verified the sender; they must be an approver of this receiving account
    /// for the kind, and the account must handle the approval.
    Channel(AccountKey),
    /// The server verified an `approve`-scope console session or API token.
    Approver,
}

/// An approver's answer as a channel, the console or the API received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The approval.
    pub approval: ApprovalRef,
    /// The kind the control or request named; a mismatch is `NotFound` (LC-17).
    pub kind: Option<Kind>,
    /// The decision.
    pub decision: Decision,
    /// The platform-verified actor.
    pub actor: Actor,
    /// Who vouches for the actor.
    pub authority: Authority,
    /// Deny reason (redacted before it is stored).
    pub reason: Option<String>,
    /// An explicit grant scope (console, API, CLI only; PO-7).
    pub grant_scope: Option<GrantScope>,
}

/// A prechecked interaction, ready for the ack and then `resolve`. Only `precheck` makes one, so
/// holding an `Accepted` proves the actor passed authorization (IX-4): a channel cannot skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    id: ApprovalId,
    kind: Kind,
    decision: Decision,
    actor: Actor,
    account: Option<AccountKey>,
    reason: Option<String>,
    grant_scope: Option<GrantScope>,
    ack_text: String,
}

impl Accepted {
    /// The approval.
    pub fn id(&self) -> &ApprovalId {
        &self.id
    }

    /// The decision.
    pub fn decision(&self) -> Decision {
        self.decision
    }

    /// The actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Text for the platform ack: "Recording: allow once" or "Already recorded.".
    pub fn ack_text(&self) -> &str {
        &self.ack_text
    }
}

/// What `resolve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The record after the decision.
    pub approval: Approval,
    /// The same actor repeated the same answer: nothing changed (LC-5).
    pub idempotent: bool,
    /// `(votes, required)` after a non-final vote.
    pub progress: Option<(usize, u8)>,
    /// Reply text (IX-6).
    pub reply: String,
}

/// Result of a typed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypedOutcome {
    /// Not for us: say nothing.
    Ignore,
    /// Reply with this text and stop (usage, approvals off).
    Reply(String),
    /// Refused.
    Rejected(Rejection),
    /// Accepted: ack, then resolve.
    Accepted(Accepted),
}

impl EngineHandle {
    /// IX-2 precheck: memory only, no I/O. Exists, kind, status, deadline, authorized, allowed.
    pub fn precheck(&self, ix: &Interaction) -> Result<Accepted, Rejection> {
        self.counted(self.check_interaction(ix))
    }

    /// Counts a precheck's outcome (`EngineStats`, `/metrics`).
    fn counted(&self, outcome: Result<Accepted, Rejection>) -> Result<Accepted, Rejection> {
        let slot = match &outcome {
            Ok(_) => 0,
            Err(r) => 1 + r.code_index(),
        };
        self.inner.counters.interactions[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        outcome
    }

    fn check_interaction(&self, ix: &Interaction) -> Result<Accepted, Rejection> {
        let now = self.now();
        let id = self.lookup_ref(ix)?;
        let index = self.index();
        let summary = match index.lookup(&id) {
            Lookup::Pending(s) => s,
            Lookup::Terminal { kind, rejection, winner } => {
                if ix.kind.is_some_and(|k| k != kind) {
                    return Err(Rejection::NotFound);
                }
                if winner.is_some_and(|(p, d)| p == ix.actor.principal && d == ix.decision) {
                    return Ok(self.accepted(
                        ix,
                        id,
                        kind,
                        assent_core::command::ALREADY_RECORDED.to_owned(),
                    ));
                }
                drop(index);
                if let Authority::Channel(account) = &ix.authority {
                    self.requeue_finalization(&id, account);
                }
                return Err(rejection);
            }
            Lookup::Unknown => return Err(Rejection::NotFound),
        };
        let kind = summary.kind;
        let repeat = check_pending(summary, ix.kind.unwrap_or(kind), ix.decision, &ix.actor, now)?;
        if let Authority::Channel(account) = &ix.authority {
            let handles = summary.handled_by.contains(account);
            let binding_requester = self.config().requester_may_approve_bindings
                && ix.decision == Decision::AllowOnce
                && summary
                    .binding_requester
                    .as_ref()
                    .is_some_and(|(acc, user)| acc == account && *user == ix.actor.user_id);
            let approver = self.routing_of(account).is_some_and(|r| r.is_approver(kind, &ix.actor.user_id));
            let same_platform = ix.actor.channel == Some(account.channel);
            if !(same_platform && handles && (approver || binding_requester)) {
                drop(index);
                self.audit_rejection(&id, ix, &Rejection::Unauthorized);
                return Err(Rejection::Unauthorized);
            }
        }
        let ack = if repeat {
            assent_core::command::ALREADY_RECORDED.to_owned()
        } else {
            format!("Recording: {}", ix.decision.label())
        };
        Ok(self.accepted(ix, id, kind, ack))
    }

    fn accepted(&self, ix: &Interaction, id: ApprovalId, kind: Kind, ack_text: String) -> Accepted {
        Accepted {
            id,
            kind,
            decision: ix.decision,
            actor: ix.actor.clone(),
            account: match &ix.authority {
                Authority::Channel(a) => Some(a.clone()),
                Authority::Approver => None,
            },
            reason: ix.reason.clone(),
            grant_scope: ix.grant_scope.clone(),
            ack_text,
        }
    }

    fn lookup_ref(&self, ix: &Interaction) -> Result<ApprovalId, Rejection> {
        let prefix = match &ix.approval {
            ApprovalRef::Id(id) => return Ok(id.clone()),
            ApprovalRef::Prefix(p) => p.to_ascii_lowercase(),
        };
        if let Ok(id) = ApprovalId::parse(&prefix) {
            return Ok(id);
        }
        let account = match &ix.authority {
            Authority::Channel(a) => Some(a),
            Authority::Approver => None,
        };
        let throttle_key =
            account.cloned().unwrap_or_else(|| AccountKey::new(assent_core::model::Channel::Console, "api"));
        let now = self.now();
        let mut throttle = self.inner.throttle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        throttle.check(&throttle_key, &ix.actor.principal, now)?;
        match self.index().resolve_prefix(&prefix, account) {
            Ok(id) => Ok(id),
            Err(miss) => {
                throttle.record_failure(&throttle_key, &ix.actor.principal, now);
                Err(match miss {
                    RefMiss::NotFound => Rejection::NotFound,
                    RefMiss::Ambiguous => Rejection::AmbiguousRef,
                })
            }
        }
    }

    /// Precheck of a button press: verifies the token MAC for the receiving account first
    /// (IX-11). A "Full command" token is not a decision and is refused here.
    pub fn precheck_token(
        &self,
        account: &AccountKey,
        token: &str,
        actor: Actor,
    ) -> Result<Accepted, Rejection> {
        let t = match self.config().keyring.verify(token, account) {
            Ok(t) => t,
            Err(r) => return self.counted(Err(r)),
        };
        let TokenAction::Decide(decision) = t.action else {
            return self.counted(Err(Rejection::DecisionNotAllowed));
        };
        self.precheck(&Interaction {
            approval: ApprovalRef::Id(t.id),
            kind: Some(t.kind),
            decision,
            actor,
            authority: Authority::Channel(account.clone()),
            reason: None,
            grant_scope: None,
        })
    }

    /// Parses and prechecks a typed message (IX-5). Approvals off answers RT-1's text.
    pub fn precheck_typed(
        &self,
        account: &AccountKey,
        actor: Actor,
        msg: TypedMessage<'_>,
        bot_username: Option<&str>,
    ) -> TypedOutcome {
        let (reference, decision, reason) = match parse_approve(msg, bot_username) {
            ParsedCommand::NotACommand | ParsedCommand::OtherBot => return TypedOutcome::Ignore,
            ParsedCommand::Usage(text) => return TypedOutcome::Reply(text.to_owned()),
            ParsedCommand::Approve { reference, decision, reason } => (reference, decision, reason),
        };
        if self.routing_of(account).is_none_or(|r| r.enabled == assent_core::routing::Enablement::Off) {
            return TypedOutcome::Reply(assent_core::command::APPROVALS_OFF.to_owned());
        }
        let ix = Interaction {
            approval: ApprovalRef::Prefix(reference),
            kind: None,
            decision,
            actor,
            authority: Authority::Channel(account.clone()),
            reason,
            grant_scope: None,
        };
        match self.precheck(&ix) {
            Ok(a) => TypedOutcome::Accepted(a),
            Err(r) => TypedOutcome::Rejected(r),
        }
    }

    /// IX-1: records the decision durably by compare-and-set. A lost race returns the winner's
    /// rejection; a decision at or after the deadline expires the approval itself (LC-8).
    pub async fn resolve(&self, acc: Accepted) -> Result<Resolution, ResolveError> {
        let reason =
            acc.reason.as_deref().map(|r| DisplayText::new(r, &self.config().policy.redactor, false).full);
        // Checks that need the stored record, read once, before anything is written.
        let binding_allow = acc.kind == Kind::Binding && acc.decision != Decision::Deny;
        if (acc.grant_scope.is_some() || binding_allow)
            && let Some(current) = self.inner.store.approval(&acc.id).await?
        {
            if let Some(scope) = &acc.grant_scope {
                self.config().policy.rule_named(&current.policy_rule).allows_scope(scope, &current)?;
            }
            if binding_allow {
                self.check_conversation_free(&current).await?;
            }
        }
        for _ in 0..CAS_RETRIES {
            let current = self.inner.store.approval(&acc.id).await?.ok_or(Rejection::NotFound)?;
            if current.kind() != acc.kind {
                return Err(Rejection::NotFound.into());
            }
            let outcome = match apply_vote(&current, &acc.actor, acc.decision, reason.clone(), self.now()) {
                Ok(o) => o,
                Err(Rejection::Expired) if !current.status.is_terminal() => {
                    self.expire_now(&current).await;
                    return Err(Rejection::Expired.into());
                }
                Err(r) => {
                    if let Some(account) = &acc.account {
                        self.requeue_finalization(&acc.id, account);
                    }
                    return Err(r.into());
                }
            };
            let next = match outcome {
                VoteOutcome::Idempotent => {
                    return Ok(Resolution {
                        reply: assent_core::command::ALREADY_RECORDED.to_owned(),
                        approval: current,
                        idempotent: true,
                        progress: None,
                    });
                }
                VoteOutcome::Recorded(next) | VoteOutcome::Decided(next) => next,
            };
            match self.apply_transition(&current, next, Some(&acc.actor), acc.grant_scope.clone()).await {
                Ok(next) => return Ok(self.resolution(next, acc.decision)),
                // Another install bound the conversation after the check above: say who.
                Err(TransitionError::Store(StoreError::Conflict(CONVERSATION_BOUND))) => {
                    self.check_conversation_free(&current).await?;
                }
                Err(TransitionError::Store(StoreError::Conflict(_))) => continue,
                Err(TransitionError::Store(e)) => return Err(e.into()),
                Err(TransitionError::Scope(e)) => return Err(e.into()),
            }
        }
        Err(StoreError::Unavailable("too much contention on one approval".to_owned()).into())
    }

    fn resolution(&self, next: Approval, decision: Decision) -> Resolution {
        let progress =
            (!next.status.is_terminal()).then_some((next.quorum.votes.len(), next.quorum.required));
        if progress.is_some() {
            self.spawn_progress_update(&next);
        }
        Resolution {
            reply: recorded_text(next.short_ref(), decision, progress),
            approval: next,
            idempotent: false,
            progress,
        }
    }

    /// Expires a due approval (LC-8), used by late decisions and the sweeper.
    pub(crate) async fn expire_now(&self, current: &Approval) {
        if let Some(next) = expire(current, ExpiryCause::Timeout, self.now()) {
            let _ = self.apply_transition(current, next, None, None).await;
        }
    }

    /// IX-8: a click on a terminal approval re-queues finalization of that account's cards.
    fn requeue_finalization(&self, id: &ApprovalId, account: &AccountKey) {
        let h = self.clone();
        let (id, account) = (id.clone(), account.clone());
        self.spawn(async move {
            let Ok(entries) = h.inner.store.entries(&id).await else { return };
            for mut e in entries.into_iter().filter(|e| e.account_key() == account && e.needs_finalizing()) {
                e.next_attempt_at = Some(h.now());
                let commit =
                    Commit { entries: vec![assent_core::store::EntryWrite::Update(e)], ..Commit::default() };
                let _ = h.commit(commit).await;
            }
            h.inner.finalize_wake.notify_one();
        });
    }

    /// Audits a refused interaction without delaying the ack (spawned).
    fn audit_rejection(&self, id: &ApprovalId, ix: &Interaction, rejection: &Rejection) {
        let h = self.clone();
        let audit = AuditEntry::new(AuditType::InteractionRejected, self.now())
            .approval(id)
            .actor(&ix.actor)
            .details(json!({ "rejection": rejection, "decision": ix.decision }));
        let audit = match &ix.authority {
            Authority::Channel(a) => audit.account(a.clone()),
            Authority::Approver => audit,
        };
        self.spawn(async move {
            let _ = h.commit(Commit { audit: vec![audit], ..Commit::default() }).await;
        });
    }

    /// LC-10: the requester (own) or an admin cancels; cards finalize.
    pub async fn cancel(
        &self,
        id: &ApprovalId,
        actor: &Actor,
        is_admin: bool,
    ) -> Result<Approval, EngineError> {
        for _ in 0..CAS_RETRIES {
            let current = self.inner.store.approval(id).await?.ok_or(EngineError::NotFound)?;
            let next = cancel(&current, actor, is_admin, self.now())?;
            match self.apply_transition(&current, next, Some(actor), None).await {
                Ok(a) => return Ok(a),
                Err(TransitionError::Store(StoreError::Conflict(_))) => continue,
                Err(TransitionError::Store(e)) => return Err(e.into()),
                Err(TransitionError::Scope(e)) => return Err(e.into()),
            }
        }
        Err(EngineError::Store(StoreError::Unavailable("too much contention on one approval".to_owned())))
    }

    /// LC-11: sets `consumed_at` once, requester only, approved only.
    pub async fn consume(&self, id: &ApprovalId, principal: &str) -> Result<Approval, EngineError> {
        let current = self.inner.store.approval(id).await?.ok_or(EngineError::NotFound)?;
        let next = consume(&current, principal, self.now())?;
        let audit =
            AuditEntry::new(AuditType::Consumed, self.now()).approval(id).details(json!({ "by": principal }));
        let commit = Commit {
            approval: Some(ApprovalWrite::Update {
                approval: next.clone(),
                expected_version: current.version,
            }),
            audit: vec![audit],
            events: vec![event(self, EventType::Consumed, &next)],
            ..Commit::default()
        };
        match self.commit(commit).await {
            Ok(_) => Ok(next),
            Err(StoreError::Conflict(_)) => Err(RequesterError::AlreadyConsumed.into()),
            Err(e) => Err(e.into()),
        }
    }
}
