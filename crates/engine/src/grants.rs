//! Grant listing and revocation (PO-12). Config `[[allow]]` grants are listed but change only in
//! config.

use assent_core::{
    id::GrantId,
    model::{Actor, AuditEntry, AuditType, Event, EventType, Grant, GrantSource},
    store::{Commit, GrantWrite},
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
        let mut grant = self.inner.store.grant(id).await?.ok_or(EngineError::NotFound)?;
        if grant.revoked_at.is_some() {
            return Ok(grant);
        }
        let now = self.now();
        grant.revoked_at = Some(now);
        grant.revoked_by = Some(by.principal.clone());
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
            grants: vec![GrantWrite::Update(grant.clone())],
            audit: vec![audit],
            events: vec![event],
            ..Commit::default()
        };
        self.commit(commit).await?;
        Ok(grant)
    }
}
