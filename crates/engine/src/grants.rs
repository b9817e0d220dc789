//! Grant listing and revocation (PO-12). Config `[[allow]]` grants are listed but change only in
//! config.

use assent_core::{
    id::GrantId,
    model::{Actor, AuditEntry, AuditType, Event, EventType, Grant, GrantSource},
    store::{
        BINDING_MOVED, CONVERSATION_BOUND, Commit, GRANT_ALREADY_REVOKED, GRANT_NOT_ACTIVE, GrantWrite,
        StoreError,
    },
};
use serde_json::json;

use crate::{EngineError, EngineHandle};

impl EngineHandle {
    /// Stored grants (newest first) followed by config grants.
    pub async fn grants(&self) -> Result<Vec<Grant>, EngineError> {
        let mut all = self.inner.store.grants().await?;
        all.extend(self.config().policy.allow.iter().cloned());
        Ok(all)
    }

    /// Revokes a stored grant (admins only; the caller checks scope). Idempotent.
    pub async fn revoke_grant(&self, id: &GrantId, by: &Actor) -> Result<Grant, EngineError> {
        if self.config().policy.allow.iter().any(|g| &g.id == id && g.source == GrantSource::Config) {
            return Err(EngineError::Invalid(assent_core::model::ValidationError {
                field: "grant".to_owned(),
                message: "config grants change only in the config file ([[allow]])".to_owned(),
            }));
        }
        let grant = self.inner.store.grant(id).await?.ok_or(EngineError::NotFound)?;
        if grant.revoked_at.is_some() {
            return Ok(grant);
        }
        let now = self.now();
        let mut audit = AuditEntry::new(AuditType::GrantRevoked, now).actor(by);
        audit.grant_id = Some(grant.id.clone());
        audit.approval_id = grant.approval_id.clone();
        let event = Event {
            seq: 0,
            kind: EventType::GrantRevoked,
            at: now,
            approval_kind: Some(grant.kind),
            approval_id: grant.approval_id.clone(),
            data: json!({ "grant_id": grant.id, "by": by.principal }),
        };
        let commit = Commit {
            grants: vec![GrantWrite::Revoke { id: grant.id.clone(), at: now, by: by.principal.clone() }],
            audit: vec![audit],
            events: vec![event],
            ..Commit::default()
        };
        match self.commit(commit).await {
            // Revoked by someone else since it was read: theirs stands.
            Ok(_) | Err(StoreError::Conflict(GRANT_ALREADY_REVOKED)) => {}
            Err(e) => return Err(e.into()),
        }
        self.inner.store.grant(id).await?.ok_or(EngineError::NotFound)
    }
}

/// Runs `attempt` again when the store refused its write because what it read has changed since:
/// a grant it matched was revoked, or the conversation it binds or detaches moved on. The
/// request is then judged afresh on what holds now. Each retry needs yet another such change in
/// that short window, so three attempts are plenty; after them the conflict is the answer, which
/// integrations read as deny.
pub(crate) async fn judged_again<T, F, Fut>(mut attempt: F) -> Result<T, EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, EngineError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(EngineError::Store(StoreError::Conflict(
                GRANT_NOT_ACTIVE | BINDING_MOVED | CONVERSATION_BOUND,
            ))) if tries < 3 => tries += 1,
            outcome => return outcome,
        }
    }
}
