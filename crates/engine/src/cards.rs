//! One ordered queue per delivered card: every edit the engine makes to a card (a quorum
//! progress edit, the final update, a delete, clearing its controls) takes the card's turn, so
//! edits of one card never overlap or reorder.
//!
//! - A progress edit holds a ticket; a newer progress edit for the same card supersedes it, so
//!   only the latest state is sent.
//! - Once the final action is queued, no progress edit is sent: it checks under the card's turn.
//! - Each progress edit renders from the record as stored when its turn comes, not from the
//!   snapshot that queued it, and retries transient errors (with the platform's retry-after)
//!   while the approval is pending.
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
    capability::RetryKind,
    id::{ApprovalId, EntryId},
    model::{Approval, Entry, EntryState},
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
        self.spawn(async move {
            let Ok(entries) = h.inner.store.entries(&id).await else { return };
            let live = entries.into_iter().filter(|e| e.state == EntryState::Delivered);
            let open = live.filter(|e| h.capability(&e.account_key()).is_some());
            join_all(open.map(|e| h.send_progress(&id, e))).await;
        });
    }

    async fn send_progress(&self, id: &ApprovalId, entry: Entry) {
        let slot = self.cards().slot(&entry.entry_id);
        let ticket = slot.newest.fetch_add(1, Ordering::SeqCst) + 1;
        let mut attempt = 0;
        loop {
            let wait = {
                let _turn = slot.turn.lock().await;
                let superseded = slot.newest.load(Ordering::SeqCst) != ticket;
                if superseded || slot.finishing.load(Ordering::SeqCst) {
                    return;
                }
                match self.progress_edit(id, &entry).await {
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
    async fn progress_edit(&self, id: &ApprovalId, entry: &Entry) -> Option<Option<Duration>> {
        let a = match self.inner.store.approval(id).await {
            Ok(Some(a)) if !a.status.is_terminal() => a,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(approval = %id, error = %e, "progress edit: could not read the approval");
                return Some(None);
            }
        };
        let cap = self.capability(&entry.account_key())?;
        let view = self.card(&a, &entry.account_key(), self.entry_has_buttons(entry));
        let payload = guarded_sync(|| cap.presentation().render(&view)).ok()?;
        match guarded(cap.transport().update(&entry.native_ref, &payload)).await {
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

/// A card's turn for its final action; the next edit waits until it is dropped.
pub(crate) struct CardTurn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
}
