//! Finalization (LC-12, CAP-3): after a terminal commit every delivered card gets its channel's
//! final action, independently, with retries for 24 h. Unfinalized entries are the persisted
//! queue, so a restart picks up where it stopped.
//!
//! Work is grouped per approval: one read of the record, the cards' final actions run
//! concurrently (a failure affects only its own card), and one commit records the outcomes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use assent_core::{
    capability::{CapabilityError, DynApprovalCapability, FinalAction},
    card::CardView,
    id::ApprovalId,
    model::{AccountKey, Approval, AuditEntry, AuditType, Entry, EntryState, FinalActionKind},
    store::{Commit, EntryWrite},
};
use futures::future::join_all;
use serde_json::json;

use crate::{EngineHandle, InflightGuard, backoff, guarded, guarded_sync};

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

/// What happened to one card.
enum Outcome {
    Finalized(FinalActionKind),
    Failed(CapabilityError),
    /// Its account is not attached here; look again later without spending an attempt.
    Unattached,
}

impl EngineHandle {
    /// One pass over due entries (retries, restarts, stale-click re-queues), grouped by approval.
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
        let mut groups: BTreeMap<ApprovalId, Vec<Entry>> = BTreeMap::new();
        for e in due {
            groups.entry(e.approval_id.clone()).or_default().push(e);
        }
        for (id, entries) in groups {
            let claimed = self.claim_entries(entries);
            if claimed.is_empty() {
                continue;
            }
            let h = self.clone();
            self.spawn(async move {
                match h.inner.store.approval(&id).await {
                    Ok(Some(a)) => h.finalize_group(&a, claimed).await,
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(approval = %id, error = %e, "could not read an approval to finalize")
                    }
                }
            });
        }
    }

    /// Right after a terminal commit: finalize the approval's cards without waiting for a pass.
    pub(crate) fn spawn_finalize_approval(&self, approval: Approval) {
        let h = self.clone();
        self.spawn(async move {
            match h.inner.store.entries(&approval.id).await {
                Ok(entries) => {
                    let claimed =
                        h.claim_entries(entries.into_iter().filter(Entry::needs_finalizing).collect());
                    h.finalize_group(&approval, claimed).await;
                }
                // The periodic pass picks them up.
                Err(e) => {
                    tracing::warn!(approval = %approval.id, error = %e, "could not read entries to finalize")
                }
            }
        });
    }

    /// A card that landed after the terminal commit (LC-12).
    pub(crate) fn spawn_finalize_late(&self, approval_id: ApprovalId, entry: Entry) {
        let claimed = self.claim_entries(vec![entry]);
        if claimed.is_empty() {
            return;
        }
        let h = self.clone();
        self.spawn(async move {
            if let Ok(Some(a)) = h.inner.store.approval(&approval_id).await {
                h.finalize_group(&a, claimed).await;
            }
        });
    }

    /// Claims entries for this worker; entries another worker holds are skipped.
    fn claim_entries(&self, entries: Vec<Entry>) -> Vec<(Entry, InflightGuard)> {
        entries
            .into_iter()
            .filter_map(|e| self.claim(format!("fin:{}", e.entry_id)).map(|g| (e, g)))
            .collect()
    }

    async fn finalize_group(&self, approval: &Approval, claimed: Vec<(Entry, InflightGuard)>) {
        // One final card per account, shared by all its cards there: `slots` says whose.
        let mut views: Vec<(AccountKey, CardView)> = Vec::new();
        let slots: Vec<usize> = claimed
            .iter()
            .map(|(entry, _)| {
                let account = entry.account_key();
                views.iter().position(|(k, _)| *k == account).unwrap_or_else(|| {
                    let view = self.card(approval, &account, false);
                    views.push((account, view));
                    views.len() - 1
                })
            })
            .collect();
        let views = &views;
        let outcomes = join_all(claimed.iter().zip(slots).map(|((entry, _), slot)| async move {
            let (account, view) = &views[slot];
            match self.capability(account) {
                None => Outcome::Unattached,
                Some(cap) => match self.apply_final_action(view, entry, &cap).await {
                    Ok(kind) => Outcome::Finalized(kind),
                    Err(e) => Outcome::Failed(e),
                },
            }
        }))
        .await;
        let now = self.now();
        let mut commit = Commit::default();
        let mut finished_accounts: Vec<AccountKey> = Vec::new();
        for ((mut entry, _claim), outcome) in claimed.into_iter().zip(outcomes) {
            match outcome {
                Outcome::Unattached => entry.next_attempt_at = Some(now + UNATTACHED_RECHECK),
                Outcome::Finalized(kind) => {
                    self.inner.cards.forget(&entry.entry_id);
                    entry.state = EntryState::Finalized;
                    entry.final_action = Some(kind);
                    entry.last_error = None;
                    commit.audit.push(
                        AuditEntry::new(AuditType::Finalized, now)
                            .approval(&approval.id)
                            .account(entry.account_key())
                            .details(json!({ "action": kind, "target": entry.target_key })),
                    );
                    if !finished_accounts.contains(&entry.account_key()) {
                        finished_accounts.push(entry.account_key());
                    }
                }
                Outcome::Failed(e) => self.record_failure(approval, &mut entry, &e, &mut commit),
            }
            commit.entries.push(EntryWrite::Update(entry));
        }
        if let Err(e) = self.commit(commit).await {
            tracing::error!(approval = %approval.id, error = %e, "could not record final actions; they will be retried");
            return;
        }
        self.notify_finalized(&approval.id, finished_accounts).await;
    }

    /// LC-12: back off (1 s doubling to 5 min) for 24 h, then abandon and audit. A stored entry
    /// that no longer decodes is abandoned at once (CAP-1).
    fn record_failure(
        &self,
        approval: &Approval,
        entry: &mut Entry,
        e: &CapabilityError,
        commit: &mut Commit,
    ) {
        let now = self.now();
        entry.attempts += 1;
        entry.last_error = Some(e.to_string());
        let decided = approval.decided_at.unwrap_or(approval.created_at);
        let give_up =
            matches!(e, CapabilityError::Decode { .. }) || decided + self.config().finalize_give_up <= now;
        if give_up {
            self.inner.cards.forget(&entry.entry_id);
            entry.state = EntryState::Abandoned;
            commit.audit.push(
                AuditEntry::new(AuditType::FinalizeFailed, now)
                    .approval(&approval.id)
                    .account(entry.account_key())
                    .details(json!({ "error": e.to_string(), "attempts": entry.attempts, "target": entry.target_key })),
            );
        } else {
            entry.state = EntryState::FinalizeFailed;
            let wait =
                backoff(entry.attempts - 1, Duration::from_secs(1), self.config().finalize_max_backoff);
            entry.next_attempt_at = Some(now + wait);
        }
    }

    /// CAP-3: `Update` → update; `Delete` → delete, falling back to an update; `ClearActions` →
    /// clear_actions; `Leave` → nothing. Anchors are unbound afterwards.
    async fn apply_final_action(
        &self,
        view: &CardView,
        entry: &Entry,
        cap: &Arc<dyn DynApprovalCapability>,
    ) -> Result<FinalActionKind, CapabilityError> {
        // The card's turn: a progress edit in flight goes first, none is sent after.
        let _turn = self.final_turn(entry).await;
        let action = guarded_sync(|| cap.presentation().finish(view, &entry.native_ref))?;
        let kind = match action {
            FinalAction::Update(payload) => {
                guarded(cap.transport().update(&entry.native_ref, &payload)).await?;
                FinalActionKind::Update
            }
            FinalAction::Delete => match guarded(cap.transport().delete(&entry.native_ref)).await {
                Ok(()) => FinalActionKind::Delete,
                Err(_) => {
                    let payload = guarded_sync(|| cap.presentation().render(view))?;
                    guarded(cap.transport().update(&entry.native_ref, &payload)).await?;
                    FinalActionKind::Update
                }
            },
            FinalAction::ClearActions => {
                if let Some(ix) = cap.interactions() {
                    guarded(ix.clear_actions(&entry.native_ref)).await?;
                }
                FinalActionKind::ClearActions
            }
            FinalAction::Leave => FinalActionKind::Leave,
        };
        if let Some(anchor) = &entry.anchor
            && let Some(ix) = cap.interactions()
            && let Err(e) = guarded(ix.unbind(anchor)).await
        {
            tracing::debug!(error = %e, "unbind after finalization failed");
        }
        Ok(kind)
    }

    /// `on_finalized` once every card of the approval on an account is final.
    async fn notify_finalized(&self, id: &ApprovalId, accounts: Vec<AccountKey>) {
        let observers: Vec<_> = accounts
            .into_iter()
            .filter_map(|k| self.capability(&k).filter(|c| c.observe().is_some()).map(|c| (k, c)))
            .collect();
        if observers.is_empty() {
            return;
        }
        let Ok(entries) = self.inner.store.entries(id).await else { return };
        for (account, cap) in observers {
            let done = entries.iter().filter(|e| e.account_key() == account).all(|e| !e.needs_finalizing());
            if let (true, Some(observe)) = (done, cap.observe()) {
                observe.on_finalized(id);
            }
        }
    }
}
