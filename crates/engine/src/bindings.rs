//! Conversation bindings (BD-1..BD-9): a plugin install asks to own a conversation; assent binds
//! it at once when a grant covers it, else asks the conversation's approvers.

use assent_core::{
    id::IdGenExt,
    model::{
        Action, Actor, Approval, AuditEntry, AuditType, Binding, BindingRequest, Conversation, Event,
        EventType, Kind, NewApproval,
    },
    policy::{MatchInput, grant_matches},
    routing::TargetAddr,
    store::{BindingWrite, Commit, GrantWrite},
};
use serde_json::json;

use crate::{EngineError, EngineHandle, ResolveError, grants::judged_again};

/// Result of a binding request (BD-1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingOutcome {
    /// Bound now (same root refreshed, or a `BindingPlugin` grant matched).
    Bound(Box<Binding>),
    /// Waiting for a human: the binding approval.
    Pending(Box<assent_core::model::Approval>),
}

/// Who owns a conversation (BD-6).
pub type ConversationBinding = Option<Binding>;

impl EngineHandle {
    /// BD-1: binds, refuses, or creates a `binding` approval.
    pub async fn request_binding(
        &self,
        req: BindingRequest,
        requester: &str,
    ) -> Result<BindingOutcome, EngineError> {
        let req = req.validated()?;
        judged_again(|| self.request_binding_once(&req, requester)).await
    }

    async fn request_binding_once(
        &self,
        req: &BindingRequest,
        requester: &str,
    ) -> Result<BindingOutcome, EngineError> {
        if self.owned_by_core(&req.conversation) {
            return Err(EngineError::ConversationOwnedByCore);
        }
        let key = req.conversation.binding_key();
        let now = self.now();
        if let Some(mut existing) = self.inner.store.binding(&key).await? {
            if existing.plugin.root != req.plugin.root {
                return Err(EngineError::ConversationBound { owner: existing.plugin.id });
            }
            existing.summary = req.summary.clone();
            existing.detach_hint = req.detach_hint.clone();
            let commit = Commit {
                bindings: vec![BindingWrite::Refresh(Box::new(existing.clone()))],
                ..Commit::default()
            };
            self.commit(commit).await?;
            return Ok(BindingOutcome::Bound(Box::new(existing)));
        }
        let action = Action::Binding(req.clone());
        let grants = self.inner.store.active_grants(Kind::Binding).await?;
        let input = MatchInput { action: &action, agent_id: None, session_key: None, now };
        if let Some(grant) =
            self.config().policy.allow.iter().chain(&grants).find(|g| grant_matches(g, &input))
        {
            let binding = Binding {
                id: self.inner.ids.binding_id(),
                key,
                plugin: req.plugin.clone(),
                conversation: req.conversation.clone(),
                bound_at: now,
                summary: req.summary.clone(),
                detach_hint: req.detach_hint.clone(),
                approval_id: None,
            };
            let mut used = AuditEntry::new(AuditType::GrantUsed, now);
            used.grant_id = Some(grant.id.clone());
            used.binding_id = Some(binding.id.clone());
            let mut created = AuditEntry::new(AuditType::BindingCreated, now);
            created.binding_id = Some(binding.id.clone());
            let mut commit = Commit {
                bindings: vec![BindingWrite::Bind(Box::new(binding.clone()))],
                audit: vec![used, created.details(json!({ "plugin_id": binding.plugin.id, "via": "grant" }))],
                events: vec![binding_event(EventType::BindingCreated, &binding, now)],
                ..Commit::default()
            };
            // Config grants are not stored and count no uses.
            if grants.iter().any(|g| g.id == grant.id) {
                commit.grants.push(GrantWrite::Use { id: grant.id.clone(), at: now });
            }
            self.commit(commit).await?;
            return Ok(BindingOutcome::Bound(Box::new(binding)));
        }
        let approval = self.create(NewApproval::new(action, requester)).await?;
        Ok(BindingOutcome::Pending(Box::new(approval)))
    }

    /// BD-6: who owns a conversation.
    pub async fn binding_for(&self, conversation: &Conversation) -> Result<ConversationBinding, EngineError> {
        let key = conversation.clone().normalized().binding_key();
        Ok(self.inner.store.binding(&key).await?)
    }

    /// BD-7: detach by the owning root (or an admin). Idempotent: `Ok(false)` when nothing was
    /// bound.
    pub async fn detach_binding(
        &self,
        conversation: &Conversation,
        plugin_root: Option<&str>,
        actor: &Actor,
        is_admin: bool,
    ) -> Result<bool, EngineError> {
        let key = conversation.clone().normalized().binding_key();
        judged_again(|| self.detach_once(&key, plugin_root, actor, is_admin)).await
    }

    async fn detach_once(
        &self,
        key: &str,
        plugin_root: Option<&str>,
        actor: &Actor,
        is_admin: bool,
    ) -> Result<bool, EngineError> {
        let Some(existing) = self.inner.store.binding(key).await? else { return Ok(false) };
        let owner = plugin_root.is_some_and(|r| r == existing.plugin.root);
        if !owner && !is_admin {
            return Err(EngineError::ConversationBound { owner: existing.plugin.id });
        }
        let now = self.now();
        let mut audit = AuditEntry::new(AuditType::BindingDetached, now).actor(actor);
        audit.binding_id = Some(existing.id.clone());
        let commit = Commit {
            bindings: vec![BindingWrite::Remove { key: key.to_owned(), id: existing.id.clone() }],
            audit: vec![audit.details(json!({ "plugin_id": existing.plugin.id, "by_admin": !owner }))],
            events: vec![binding_event(EventType::BindingDetached, &existing, now)],
            ..Commit::default()
        };
        self.commit(commit).await?;
        Ok(true)
    }

    /// A binding approval may be approved only while its conversation is free or already held
    /// by the same install: two requests for one conversation can both be pending, and the
    /// second approval must not silently replace the first owner (issue 9, finding 3).
    pub(crate) async fn check_conversation_free(&self, approval: &Approval) -> Result<(), ResolveError> {
        let Action::Binding(req) = &approval.action else { return Ok(()) };
        match self.inner.store.binding(&req.conversation.binding_key()).await? {
            Some(owner) if owner.plugin.root != req.plugin.root => {
                Err(ResolveError::ConversationBound { owner: owner.plugin.id })
            }
            _ => Ok(()),
        }
    }

    /// A conversation assent itself routes cards into (a `[[forward]]` target) cannot be bound.
    fn owned_by_core(&self, c: &Conversation) -> bool {
        let key =
            TargetAddr::Conversation { conversation: c.conversation.clone(), thread: c.thread.clone() }.key();
        self.config().forwards.iter().any(|f| {
            f.account.channel == c.channel
                && f.account.account == c.account
                && TargetAddr::Conversation { conversation: f.to.clone(), thread: f.thread.clone() }.key()
                    == key
        })
    }
}

fn binding_event(kind: EventType, b: &Binding, at: assent_core::clock::Timestamp) -> Event {
    Event {
        seq: 0,
        kind,
        at,
        approval_kind: Some(Kind::Binding),
        approval_id: b.approval_id.clone(),
        data: json!({ "binding_id": b.id, "plugin_id": b.plugin.id, "conversation": b.conversation }),
    }
}
