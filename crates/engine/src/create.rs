//! Creating approvals (LC-1..LC-3, LC-7): validate, evaluate policy, commit durably, then deliver
//! in the background.

use assent_core::{
    clock::Timestamp,
    id::IdGenExt,
    lifecycle::{ExpiryCause, approve_by_grant, expire},
    model::{Action, Approval, AuditEntry, AuditType, EventType, Kind, NewApproval, Quorum, Status},
    routing::resolve_origin,
    store::{ApprovalWrite, Commit, GrantWrite, IdempotencyRecord, StoreError},
};
use serde_json::json;

use crate::{EngineError, EngineHandle, grants::judged_again, transition::event};

impl EngineHandle {
    /// Creates an approval (LC-1). Returns once it is durable: pending with deliveries started
    /// in the background (LC-3), approved by a grant, or `expired/no-route` when nobody can be
    /// reached (LC-7). A replay of the same idempotency key returns the existing approval (LC-2).
    pub async fn create(&self, req: NewApproval) -> Result<Approval, EngineError> {
        req.validate()?;
        let mut req = req;
        req.action = match req.action {
            Action::Binding(b) => Action::Binding(b.validated()?),
            other => other,
        };
        judged_again(|| self.create_once(&req)).await
    }

    async fn create_once(&self, req: &NewApproval) -> Result<Approval, EngineError> {
        let now = self.now();
        let kind = req.action.kind();
        let grants = match kind {
            Kind::Plugin => Vec::new(),
            _ => self.inner.store.active_grants(kind).await?,
        };
        let eval = self.config().policy.evaluate(req, &grants, now)?;
        let session_key = req.effective_session_key();
        let registry_origin = match &session_key {
            Some(k) => self.inner.store.session_origin(k).await?,
            None => None,
        };
        let origin = match &req.action {
            Action::Binding(b) => Some(b.conversation.as_origin()),
            _ => resolve_origin(req.origin.as_ref(), registry_origin.as_ref()),
        };
        let approval = Approval {
            id: self.inner.ids.approval_id(),
            action: req.action.clone(),
            status: Status::Pending,
            mode: None,
            reason: None,
            created_at: now,
            expires_at: now + eval.timeout,
            decided_at: None,
            allowed_decisions: eval.allowed_decisions.clone(),
            grant_scope: eval.grant_scope.clone(),
            quorum: Quorum { required: eval.quorum, votes: Vec::new() },
            requester: req.requester.clone(),
            origin: origin.clone(),
            agent_id: req.agent_id.clone(),
            session_key: session_key.clone(),
            idempotency_key: req.idempotency_key.clone(),
            callback: req.callback.clone(),
            decided_by: None,
            deny_reason: None,
            consumed_at: None,
            grant_id: None,
            on_timeout: eval.on_timeout,
            prevent_self_approval: eval.prevent_self_approval,
            policy_rule: eval.rule.clone(),
            version: 1,
        };
        let mut commit = Commit {
            approval: Some(ApprovalWrite::Insert {
                approval: approval.clone(),
                idempotency: req.idempotency_key.as_ref().map(|key| IdempotencyRecord {
                    principal: req.requester.principal.clone(),
                    key: key.clone(),
                    digest: req.payload_digest(),
                }),
            }),
            session_origin: match (&session_key, &req.origin) {
                (Some(k), Some(o)) => Some((k.clone(), o.clone())),
                _ => None,
            },
            ..Commit::default()
        };
        commit.audit.push(
            AuditEntry::new(AuditType::Requested, now)
                .approval(&approval.id)
                .details(json!({ "requester": approval.requester.principal, "rule": approval.policy_rule })),
        );
        commit.events.push(event(self, EventType::Requested, &approval));

        // A grant match approves at once, with no cards (LC-1).
        if let Some(grant_id) = eval.auto_approve {
            let mut approved = approve_by_grant(&approval, now);
            approved.grant_id = Some(grant_id.clone());
            approved.version = 1;
            let stored = grants.iter().any(|g| g.id == grant_id);
            use_grant(&mut commit, stored, &approved, now);
            return self.insert_terminal(commit, approved).await;
        }

        let (targets, selection, skipped) = self.plan_for(&approval);
        commit.audit.extend(skipped);
        for channel in &selection.ambiguous {
            commit.audit.push(
                AuditEntry::new(AuditType::RoutingAmbiguous, now)
                    .approval(&approval.id)
                    .details(json!({ "channel": channel, "hint": "set `default = true` on one account" })),
            );
        }
        if targets.is_empty() && !self.console_is_route() {
            let mut expired =
                expire(&approval, ExpiryCause::NoRoute, now).unwrap_or_else(|| approval.clone());
            expired.version = 1;
            return self.insert_terminal(commit, expired).await;
        }
        // ST-8: this replica delivers it; another one learning of it from the commit must not.
        self.inner.replication.plan_once(&approval.id);
        match self.commit(commit).await {
            Ok(_) => {}
            Err(StoreError::IdempotentReplay(existing)) => return self.existing(&existing).await,
            Err(e) => return Err(e.into()),
        }
        crate::transition::log_state(&approval);
        let handled = targets.iter().map(|t| t.account.clone()).collect();
        self.index().upsert(&approval, handled);
        self.spawn_deliveries(approval.clone(), targets, true);
        Ok(approval)
    }

    async fn existing(&self, id: &assent_core::id::ApprovalId) -> Result<Approval, EngineError> {
        self.inner.store.approval(id).await?.ok_or(EngineError::NotFound)
    }

    /// Inserts a record that is terminal from birth (grant or no-route), with its callbacks.
    async fn insert_terminal(&self, mut commit: Commit, terminal: Approval) -> Result<Approval, EngineError> {
        let now = self.now();
        let (audit_kind, event_kind) = match terminal.status {
            Status::Approved => (AuditType::AutoApproved, EventType::Approved),
            _ => (AuditType::Expired, EventType::Expired),
        };
        commit.audit.push(
            AuditEntry::new(audit_kind, now)
                .approval(&terminal.id)
                .details(json!({ "status": terminal.status, "reason": terminal.reason })),
        );
        commit.events.push(event(self, event_kind, &terminal));
        commit.callbacks = crate::transition::callback_jobs(&terminal, None, now);
        if let Some(ApprovalWrite::Insert { approval, .. }) = &mut commit.approval {
            *approval = terminal.clone();
        }
        match self.commit(commit).await {
            Ok(_) => {}
            Err(StoreError::IdempotentReplay(existing)) => return self.existing(&existing).await,
            Err(e) => return Err(e.into()),
        }
        crate::transition::log_state(&terminal);
        self.index().finish(&terminal, now);
        self.inner.callback_wake.notify_one();
        Ok(terminal)
    }
}

/// Audits a grant's use and counts it. `stored` says the grant came from the store (config
/// grants are not stored and count no uses).
fn use_grant(commit: &mut Commit, stored: bool, approval: &Approval, now: Timestamp) {
    let mut a = AuditEntry::new(AuditType::GrantUsed, now).approval(&approval.id);
    a.grant_id = approval.grant_id.clone();
    commit.audit.push(a);
    if let (true, Some(id)) = (stored, &approval.grant_id) {
        commit.grants.push(GrantWrite::Use { id: id.clone(), at: now });
    }
}
