//! One place that turns a state change into a durable commit: the approval CAS write, its audit
//! entries, events, callback outbox rows, and the grant or binding an approval creates. Keeping
//! this in one function is what makes "the binding commits with the decision" (BD-9) and "the
//! callback row is written in the terminal transaction" (LC-14) true for every path.

use assent_core::{
    card,
    id::IdGenExt,
    lifecycle::requester_outcome,
    model::{
        Action, Actor, Approval, AuditEntry, AuditType, Binding, Event, EventType, Mode, Reason, Status,
    },
    policy::{GrantScope, grant_for},
    store::{
        ApprovalWrite, BindingWrite, CallbackJob, CallbackState, CallbackTarget, CallbackWrite, Commit,
        GrantWrite, StoreError,
    },
};
use serde_json::{Value, json};

use crate::EngineHandle;

/// Redacted display fields for events and callbacks; never raw argv or env (API-4).
pub(crate) fn event_data(h: &EngineHandle, a: &Approval) -> Value {
    let redactor = &h.config().policy.redactor;
    json!({
        "ref": a.short_ref(),
        "status": a.status,
        "mode": a.mode,
        "reason": a.reason,
        "title": card::title(a, redactor),
        "text": card::main_block(a, redactor).text.full,
        "decided_by": a.decided_by.as_ref().map(Actor::who),
        "votes": a.quorum.votes.len(),
        "required": a.quorum.required,
        "expires_at": a.expires_at,
    })
}

pub(crate) fn event(h: &EngineHandle, kind: EventType, a: &Approval) -> Event {
    event_with(h, kind, a, event_data(h, a))
}

/// An event of `a` whose data was rendered already (shared by several events).
pub(crate) fn event_with(h: &EngineHandle, kind: EventType, a: &Approval, data: Value) -> Event {
    Event { seq: 0, kind, at: h.now(), approval_kind: Some(a.kind()), approval_id: Some(a.id.clone()), data }
}

/// One INFO line per state change: id, kind, status and reason, never the action itself (its
/// text may hold secrets; the audit log and the console have it, redacted).
pub(crate) fn log_state(a: &Approval) {
    let by = a.decided_by.as_ref().map(Actor::who);
    tracing::info!(approval = %a.id, kind = %a.kind(), status = ?a.status, reason = ?a.reason, by, "approval {:?}", a.status);
}

fn status_event(a: &Approval) -> EventType {
    match a.status {
        Status::Pending => EventType::Vote,
        Status::Approved => EventType::Approved,
        Status::Denied => EventType::Denied,
        Status::Expired => EventType::Expired,
        Status::Cancelled => EventType::Cancelled,
    }
}

fn status_audit(a: &Approval) -> AuditType {
    match (a.status, a.reason) {
        (Status::Pending, _) => AuditType::Vote,
        (Status::Approved, Some(Reason::Grant)) => AuditType::AutoApproved,
        (Status::Approved | Status::Denied, _) => AuditType::Decided,
        (Status::Expired, _) => AuditType::Expired,
        (Status::Cancelled, _) => AuditType::Cancelled,
    }
}

fn decision_of(a: &Approval) -> Option<&'static str> {
    match (a.status, a.mode) {
        (Status::Approved, Some(Mode::Always)) => Some("allow-always"),
        (Status::Approved, _) => Some("allow-once"),
        (Status::Denied, _) => Some("deny"),
        _ => None,
    }
}

/// Builds the commit for a transition from `prev` to `next` by `actor`. For a terminal `next` it
/// also writes callbacks, the allow-always grant and the binding.
pub(crate) fn transition_commit(
    h: &EngineHandle,
    prev: &Approval,
    mut next: Approval,
    actor: Option<&Actor>,
    explicit_scope: Option<GrantScope>,
) -> Result<(Commit, Approval), assent_core::policy::ScopeError> {
    let now = h.now();
    let mut commit = Commit::default();
    let mut audit = AuditEntry::new(status_audit(&next), now).approval(&next.id);
    if let Some(actor) = actor {
        audit = audit.actor(actor);
    }
    let mut details = json!({ "status": next.status, "reason": next.reason, "mode": next.mode });
    if next.reason == Some(Reason::TimeoutFallback) {
        details["unsafe_timeout_fallback"] = json!(true);
    }
    if let Some(r) = &next.deny_reason {
        details["deny_reason"] = json!(r);
    }
    commit.audit.push(audit.details(details));

    if next.status == Status::Approved && next.mode == Some(Mode::Always) {
        if let Some(scope) = explicit_scope {
            next.grant_scope = Some(scope);
        }
        let scope = next.grant_scope.clone().unwrap_or_else(GrantScope::exact);
        let by = actor.cloned().unwrap_or_else(|| Actor::token("assent"));
        let grant = grant_for(&next, &scope, &by, h.inner.ids.grant_id(), now)?;
        next.grant_id = Some(grant.id.clone());
        let mut a = AuditEntry::new(AuditType::GrantCreated, now).approval(&next.id).actor(&by);
        a.grant_id = Some(grant.id.clone());
        commit.audit.push(a.details(json!({ "scope": scope.label() })));
        commit.events.push(Event {
            seq: 0,
            kind: EventType::GrantCreated,
            at: now,
            approval_kind: Some(next.kind()),
            approval_id: Some(next.id.clone()),
            data: json!({ "grant_id": grant.id, "scope": scope.label() }),
        });
        commit.grants.push(GrantWrite::Insert(Box::new(grant)));
    }

    let binding = binding_for(h, &next);
    if let Some(b) = &binding {
        let mut a = AuditEntry::new(AuditType::BindingCreated, now).approval(&next.id);
        a.binding_id = Some(b.id.clone());
        commit.audit.push(a.details(json!({ "plugin_id": b.plugin.id, "plugin_root": b.plugin.root })));
        commit.events.push(Event {
            seq: 0,
            kind: EventType::BindingCreated,
            at: now,
            approval_kind: Some(next.kind()),
            approval_id: Some(next.id.clone()),
            data: json!({ "binding_id": b.id, "plugin_id": b.plugin.id }),
        });
        commit.bindings.push(BindingWrite::Bind(Box::new(b.clone())));
    }

    if next.status.is_terminal() {
        commit.callbacks = callback_jobs(&next, binding.as_ref(), now);
    }
    commit.events.push(event(h, status_event(&next), &next));
    commit.approval = Some(ApprovalWrite::Update { approval: next.clone(), expected_version: prev.version });
    Ok((commit, next))
}

fn binding_for(h: &EngineHandle, a: &Approval) -> Option<Binding> {
    let Action::Binding(b) = &a.action else { return None };
    (a.status == Status::Approved).then(|| Binding {
        id: h.inner.ids.binding_id(),
        key: b.conversation.binding_key(),
        plugin: b.plugin.clone(),
        conversation: b.conversation.clone(),
        bound_at: a.decided_at.unwrap_or(a.created_at),
        summary: b.summary.clone(),
        detach_hint: b.detach_hint.clone(),
        approval_id: Some(a.id.clone()),
    })
}

/// LC-14 / BD-8 outbox rows for a terminal approval.
pub(crate) fn callback_jobs(
    a: &Approval,
    binding: Option<&Binding>,
    now: assent_core::clock::Timestamp,
) -> Vec<CallbackWrite> {
    let job = |event: &str, target: CallbackTarget, payload: Value| {
        CallbackWrite::Insert(CallbackJob {
            key: format!("{}:{event}", a.id),
            approval_id: a.id.clone(),
            event: event.to_owned(),
            target,
            payload,
            attempts: 0,
            next_attempt_at: now,
            state: CallbackState::Pending,
            last_error: None,
        })
    };
    let mut jobs = Vec::new();
    if let Some(url) = &a.callback {
        let outcome = requester_outcome(a);
        let payload = json!({
            "event": "on_resolved",
            "approval_id": a.id,
            "kind": a.kind(),
            "status": a.status,
            "decision": decision_of(a),
            "reason": a.reason,
            "decided_by": a.decided_by.as_ref().map(Actor::who),
            "outcome": outcome.outcome,
            "text": outcome.text,
        });
        jobs.push(job("on_resolved", CallbackTarget::Url { url: url.clone() }, payload));
    }
    if let Action::Binding(b) = &a.action {
        let payload = json!({
            "event": "binding.resolved",
            "approval_id": a.id,
            "status": a.status,
            "decision": decision_of(a),
            "binding": binding.map(|x| json!({
                "id": x.id,
                "plugin_id": x.plugin.id,
                "plugin_name": x.plugin.name,
                "plugin_root": x.plugin.root,
                "conversation": x.conversation,
                "bound_at": x.bound_at,
                "summary": x.summary,
                "detach_hint": x.detach_hint,
            })),
            "request": {
                "summary": b.summary,
                "detach_hint": b.detach_hint,
                "requested_by": b.requested_by,
                "conversation": b.conversation,
            },
        });
        let target = CallbackTarget::Plugin { id: b.plugin.id.clone(), root: b.plugin.root.clone() };
        jobs.push(job("binding.resolved", target, payload));
    }
    jobs
}

impl EngineHandle {
    /// Commits a transition and updates the index; wakes finalizer and callbacks when terminal.
    pub(crate) async fn apply_transition(
        &self,
        prev: &Approval,
        next: Approval,
        actor: Option<&Actor>,
        explicit_scope: Option<GrantScope>,
    ) -> Result<Approval, TransitionError> {
        let (commit, next) = transition_commit(self, prev, next, actor, explicit_scope)?;
        self.commit(commit).await?;
        log_state(&next);
        if next.status.is_terminal() {
            self.index().finish(&next, self.now());
            self.spawn_finalize_approval(next.clone());
            self.inner.callback_wake.notify_one();
        } else {
            self.index().record_vote(&next);
        }
        Ok(next)
    }
}

/// Failure of [`EngineHandle::apply_transition`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransitionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scope(#[from] assent_core::policy::ScopeError),
}
