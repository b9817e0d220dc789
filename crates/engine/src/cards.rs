//! One ordered queue per delivered card: every edit the engine makes to a card (a quorum
//! progress edit, the final update, a delete, clearing its controls) takes the card's turn, so
//! edits of one card never overlap or reorder.
//!
//! - A progress edit holds a ticket; a newer progress edit for the same card supersedes it, so
//!   only the latest state is sent.
//! - Once the final action is queued, no progress edit is sent: it checks under the card's turn.
//! - A progress edit takes its tickets, then reads the record once and renders it once per
//!   account and button setting for all the approval's cards; an edit that read an older record
//!   holds older tickets and gives way. It retries transient errors (with the platform's
//!   retry-after) while the approval is pending, re-reading the record each time.
//!
//! The queues are in memory; the store's unfinalized entries stay the durable truth, and a
//! restart finalizes them as before.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use assent_core::{
    capability::{DynApprovalCapability, Erased, RetryKind},
    id::{ApprovalId, EntryId},
    model::{AccountKey, Approval, Entry, EntryState},
};
use futures::future::join_all;

use crate::{EngineHandle, backoff, guarded, guarded_sync};

/// The cards this process edits, each with its turn.
#[derive(Default)]
pub(crate) struct CardQueues {
    slots: Mutex<HashMap<EntryId, Arc<Slot>>>,
}

/// One card's queue.
#[derive(Default)]
pub(crate) struct Slot {
    /// Held while an edit of the card is being sent.
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The newest progress edit's ticket; older ones give way.
    newest: AtomicU64,
    /// The final action is queued or done: progress edits stop.
    finishing: AtomicBool,
}

impl CardQueues {
    fn slot(&self, id: &EntryId) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(id.clone()).or_default().clone()
    }

    /// The card's final action is settled (done or abandoned): its queue goes. A progress edit
    /// still waiting holds the old slot, sees it finishing and gives way; one queued later makes
    /// a new slot and reads a terminal record.
    pub(crate) fn forget(&self, id: &EntryId) {
        self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}

/// Longest wait between attempts of a progress edit with no retry-after from the platform.
const PROGRESS_MAX_BACKOFF: Duration = Duration::from_secs(30);

impl EngineHandle {
    fn cards(&self) -> &CardQueues {
        &self.inner.cards
    }

    /// Marks the card as finishing and waits for its turn: no progress edit is sent after this.
    pub(crate) async fn final_turn(&self, entry: &Entry) -> CardTurn {
        let slot = self.cards().slot(&entry.entry_id);
        slot.finishing.store(true, Ordering::SeqCst);
        let guard = slot.turn.clone().lock_owned().await;
        CardTurn { _guard: guard }
    }

    /// LC-6: every card of `a` shows its quorum progress ("Approvals 1/2"), controls kept.
    pub(crate) fn spawn_progress_update(&self, a: &Approval) {
        let (h, id) = (self.clone(), a.id.clone());
        self.spawn(async move { h.progress_update(&id).await });
    }

    async fn progress_update(&self, id: &ApprovalId) {
        let Ok(entries) = self.inner.store.entries(id).await else { return };
        // Tickets before the read: an edit rendered from an older record always holds an older
        // ticket, so it gives way to the newer one.
        let cards: Vec<ProgressCard> = entries
            .into_iter()
            .filter(|e| e.state == EntryState::Delivered)
            .filter_map(|entry| {
                let cap = self.capability(&entry.account_key())?;
                let slot = self.cards().slot(&entry.entry_id);
                let ticket = slot.newest.fetch_add(1, Ordering::SeqCst) + 1;
                Some(ProgressCard { buttons: self.entry_has_buttons(&entry), entry, cap, slot, ticket })
            })
            .collect();
        if cards.is_empty() {
            return;
        }
        let rendered = self.render_progress(id, &cards).await;
        let payload = |i: usize| rendered.as_ref().and_then(|(slots, payloads)| payloads[slots[i]].as_ref());
        join_all(cards.iter().enumerate().map(|(i, card)| self.send_progress(id, card, payload(i)))).await;
    }

    /// The cards' progress payloads from one read of the record, rendered once per account and
    /// button setting: `slots[i]` is card `i`'s payload. `None` if the record could not be read
    /// (each card then reads it on its own turn) or is already terminal.
    async fn render_progress(
        &self,
        id: &ApprovalId,
        cards: &[ProgressCard],
    ) -> Option<(Vec<usize>, Vec<Option<Erased>>)> {
        let a = self.inner.store.approval(id).await.ok()??;
        if a.status.is_terminal() {
            return None;
        }
        let mut keys: Vec<(AccountKey, bool)> = Vec::new();
        let mut payloads = Vec::new();
        let slots = cards
            .iter()
            .map(|card| {
                let key = (card.entry.account_key(), card.buttons);
                keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                    let view = self.card(&a, &key.0, key.1);
                    payloads.push(guarded_sync(|| card.cap.presentation().render(&view)).ok());
                    keys.push(key);
                    keys.len() - 1
                })
            })
            .collect();
        Some((slots, payloads))
    }

    /// One card's progress edit on its turn: the shared payload first, then (after a transient
    /// error) a fresh render from the record as stored at each retry.
    async fn send_progress(&self, id: &ApprovalId, card: &ProgressCard, first: Option<&Erased>) {
        let mut first = first;
        let mut attempt = 0;
        loop {
            let wait = {
                let _turn = card.slot.turn.lock().await;
                let superseded = card.slot.newest.load(Ordering::SeqCst) != card.ticket;
                if superseded || card.slot.finishing.load(Ordering::SeqCst) {
                    return;
                }
                let outcome = match first.take() {
                    Some(payload) => self.send_edit(id, card, payload).await,
                    None => self.progress_edit(id, card).await,
                };
                match outcome {
                    None => return,
                    Some(wait) => wait,
                }
            };
            let wait = wait.unwrap_or_else(|| backoff(attempt, Duration::from_secs(1), PROGRESS_MAX_BACKOFF));
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt, rendered from the record as stored now. `None`: done (sent, superseded by a
    /// terminal state, or failed for good); `Some(retry_after)`: try again.
    async fn progress_edit(&self, id: &ApprovalId, card: &ProgressCard) -> Option<Option<Duration>> {
        let a = match self.inner.store.approval(id).await {
            Ok(Some(a)) if !a.status.is_terminal() => a,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(approval = %id, error = %e, "progress edit: could not read the approval");
                return Some(None);
            }
        };
        let view = self.card(&a, &card.entry.account_key(), card.buttons);
        let payload = guarded_sync(|| card.cap.presentation().render(&view)).ok()?;
        self.send_edit(id, card, &payload).await
    }

    async fn send_edit(
        &self,
        id: &ApprovalId,
        card: &ProgressCard,
        payload: &Erased,
    ) -> Option<Option<Duration>> {
        match guarded(card.cap.transport().update(&card.entry.native_ref, payload)).await {
            Ok(()) => None,
            Err(e) => match e.retry_kind() {
                RetryKind::Transient { retry_after } => {
                    tracing::debug!(approval = %id, error = %e, "progress edit failed; retrying");
                    Some(retry_after)
                }
                RetryKind::Permanent => {
                    tracing::warn!(approval = %id, error = %e, "progress edit failed for good");
                    None
                }
            },
        }
    }
}

/// A delivered card that a progress edit is queued for, with its ticket in the card's queue.
struct ProgressCard {
    entry: Entry,
    cap: Arc<dyn DynApprovalCapability>,
    buttons: bool,
    slot: Arc<Slot>,
    ticket: u64,
}

/// A card's turn for its final action; the next edit waits until it is dropped.
pub(crate) struct CardTurn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}
