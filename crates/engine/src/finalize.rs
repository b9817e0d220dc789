//! Finalization (LC-12, CAP-3): after a terminal commit every delivered card gets its channel's
//! final action, independently, with retries for 24 h. Unfinalized entries are the persisted
//! queue, so a restart picks up where it stopped.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{CapabilityError, DynApprovalCapability, FinalAction},
    model::{Approval, AuditEntry, AuditType, Entry, EntryState, FinalActionKind},
    store::{Commit, EntryWrite},
};
use serde_json::json;

use crate::{EngineHandle, backoff, guarded, guarded_sync};

const BATCH: usize = 256;
const TICK: Duration = Duration::from_secs(1);
/// Delay before re-checking an entry whose account is not attached here.
const UNATTACHED_RECHECK: Duration = Duration::from_secs(5);

pub(crate) async fn run(h: EngineHandle) {
    loop {
        h.finalize_pass().await;
        tokio::select! {
            () = h.inner.shutdown.cancelled() => return,
            () = h.inner.finalize_wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

impl EngineHandle {
    /// One pass over due entries; each runs in its own task so a slow platform delays only its
    /// own cards.
    pub(crate) async fn finalize_pass(&self) {
        // Entries already in flight are still due in the store; look past them.
        let in_flight = self.inner.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len();
        let due = match self.inner.store.finalize_due(self.now(), BATCH + in_flight).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "finalization backlog unavailable");
                return;
            }
        };
        for entry in due {
            self.spawn_finalize(entry);
        }
    }

    /// Finalizes one entry in its own task unless another worker already has it.
    pub(crate) fn spawn_finalize(&self, entry: Entry) {
        let Some(claim) = self.claim(format!("fin:{}", entry.entry_id)) else { return };
        let h = self.clone();
        self.spawn(async move {
            h.finalize_entry(entry).await;
            drop(claim);
        });
    }

    /// Right after a terminal commit: finalize the approval's cards without waiting for a pass.
    pub(crate) fn spawn_finalize_approval(&self, id: &assent_core::id::ApprovalId) {
        let h = self.clone();
        let id = id.clone();
        self.spawn(async move {
            match h.inner.store.entries(&id).await {
                Ok(entries) => {
                    entries.into_iter().filter(Entry::needs_finalizing).for_each(|e| h.spawn_finalize(e))
                }
                // The periodic pass picks them up.
                Err(e) => tracing::warn!(approval = %id, error = %e, "could not read entries to finalize"),
            }
        });
    }

    async fn finalize_entry(&self, mut entry: Entry) {
        let Ok(Some(approval)) = self.inner.store.approval(&entry.approval_id).await else { return };
        let Some(cap) = self.capability(&entry.account_key()) else {
            // The account's handler runs elsewhere (or not yet); look again later without
            // spending an attempt.
            entry.next_attempt_at = Some(self.now() + UNATTACHED_RECHECK);
            let _ =
                self.commit(Commit { entries: vec![EntryWrite::Update(entry)], ..Commit::default() }).await;
            return;
        };
        let result = self.apply_final_action(&approval, &entry, &cap).await;
        let now = self.now();
        let mut audit =
            AuditEntry::new(AuditType::Finalized, now).approval(&approval.id).account(entry.account_key());
        match result {
            Ok(kind) => {
                entry.state = EntryState::Finalized;
                entry.final_action = Some(kind);
                entry.last_error = None;
                audit = audit.details(json!({ "action": kind, "target": entry.target_key }));
            }
            Err(e) => {
                entry.attempts += 1;
                entry.last_error = Some(e.to_string());
                let decided = approval.decided_at.unwrap_or(approval.created_at);
                let give_up = matches!(e, CapabilityError::Decode { .. })
                    || decided + self.config().finalize_give_up <= now;
                if give_up {
                    entry.state = EntryState::Abandoned;
                    audit = AuditEntry::new(AuditType::FinalizeFailed, now)
                        .approval(&approval.id)
                        .account(entry.account_key())
                        .details(json!({ "error": e.to_string(), "attempts": entry.attempts, "target": entry.target_key }));
                } else {
                    entry.state = EntryState::FinalizeFailed;
                    let wait = backoff(
                        entry.attempts - 1,
                        Duration::from_secs(1),
                        self.config().finalize_max_backoff,
                    );
                    entry.next_attempt_at = Some(now + wait);
                    let commit = Commit { entries: vec![EntryWrite::Update(entry)], ..Commit::default() };
                    let _ = self.commit(commit).await;
                    return;
                }
            }
        }
        let commit = Commit {
            entries: vec![EntryWrite::Update(entry.clone())],
            audit: vec![audit],
            ..Commit::default()
        };
        if self.commit(commit).await.is_ok() {
            self.notify_finalized(&approval, &entry, &cap).await;
        }
    }

    /// CAP-3: `Update` → update; `Delete` → delete, falling back to an update; `ClearActions` →
    /// clear_actions; `Leave` → nothing. Anchors are unbound afterwards.
    async fn apply_final_action(
        &self,
        approval: &Approval,
        entry: &Entry,
        cap: &Arc<dyn DynApprovalCapability>,
    ) -> Result<FinalActionKind, CapabilityError> {
        let view = self.card(approval, &entry.account_key(), false);
        let action = guarded_sync(|| cap.finish(&view, &entry.native_ref))?;
        let kind = match action {
            FinalAction::Update(payload) => {
                guarded(cap.update(&entry.native_ref, &payload)).await?;
                FinalActionKind::Update
            }
            FinalAction::Delete => match guarded(cap.delete(&entry.native_ref)).await {
                Ok(()) => FinalActionKind::Delete,
                Err(_) => {
                    let payload = guarded_sync(|| cap.render(&view))?;
                    guarded(cap.update(&entry.native_ref, &payload)).await?;
                    FinalActionKind::Update
                }
            },
            FinalAction::ClearActions => {
                guarded(cap.clear_actions(&entry.native_ref)).await?;
                FinalActionKind::ClearActions
            }
            FinalAction::Leave => FinalActionKind::Leave,
        };
        if let Some(anchor) = &entry.anchor
            && let Err(e) = guarded(cap.unbind(anchor)).await
        {
            tracing::debug!(error = %e, "unbind after finalization failed");
        }
        Ok(kind)
    }

    async fn notify_finalized(
        &self,
        approval: &Approval,
        entry: &Entry,
        cap: &Arc<dyn DynApprovalCapability>,
    ) {
        let Some(observe) = cap.observe() else { return };
        let Ok(entries) = self.inner.store.entries(&approval.id).await else { return };
        let account = entry.account_key();
        if entries.iter().filter(|e| e.account_key() == account).all(|e| !e.needs_finalizing()) {
            observe.on_finalized(&approval.id);
        }
    }
}
