//! ST-8: following the commits of other replicas on a shared store.
//!
//! The store signals "committed up to seq N" (PostgreSQL `LISTEN`); this replica then reads the
//! events after its cursor and applies each one it did not commit itself: it republishes it to
//! local subscribers and waiters, updates its pending index so it can precheck interactions for
//! approvals created elsewhere, delivers new approvals to the accounts it holds, and finalizes its
//! own accounts' cards when an approval ends elsewhere. A missed signal costs at most one poll
//! period: the cursor is also checked every second.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use assent_core::{
    id::ApprovalId,
    model::{AccountKey, Event, EventType},
    store::CommitFeed,
};
use futures::StreamExt;

use crate::{EngineError, EngineHandle};

/// Poll period when no signal arrives.
const POLL: Duration = Duration::from_secs(1);
/// How long a fetched event waits before it counts as another replica's.
const LOCAL_GRACE: Duration = Duration::from_millis(20);
/// Local seqs remembered at most (a seq the feed never returns must not pile up).
const MAX_LOCAL_SEQS: usize = 100_000;
const PAGE: usize = 500;

/// What this replica committed itself, so it does not apply it twice.
#[derive(Debug, Default)]
pub(crate) struct Replication {
    active: AtomicBool,
    /// Seqs of events committed here and not yet seen on the feed.
    local_seqs: Mutex<HashSet<u64>>,
    /// Approvals whose deliveries this replica has planned (created here, or seen once).
    planned: Mutex<HashSet<ApprovalId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replication {
    /// Records events this replica committed (no-op without replicas).
    pub(crate) fn published_here(&self, events: &[Arc<Event>]) {
        if self.active.load(Ordering::Acquire) && !events.is_empty() {
            let mut seqs = lock(&self.local_seqs);
            if seqs.len() > MAX_LOCAL_SEQS {
                seqs.clear();
            }
            seqs.extend(events.iter().map(|e| e.seq));
        }
    }

    /// Claims the deliveries of `id` for this replica; false if it already planned them.
    pub(crate) fn plan_once(&self, id: &ApprovalId) -> bool {
        !self.active.load(Ordering::Acquire) || lock(&self.planned).insert(id.clone())
    }

    fn forget(&self, id: &ApprovalId) {
        lock(&self.planned).remove(id);
    }

    fn committed_here(&self, seq: u64) -> bool {
        lock(&self.local_seqs).remove(&seq)
    }
}

impl EngineHandle {
    /// Starts following other replicas from the newest stored event on.
    pub(crate) async fn follow_replicas(&self, mut feed: CommitFeed) -> Result<(), EngineError> {
        self.inner.replication.active.store(true, Ordering::Release);
        let mut cursor = self.latest_event_seq().await?;
        let h = self.clone();
        self.spawn(async move {
            loop {
                tokio::select! {
                    () = h.inner.shutdown.cancelled() => return,
                    signal = feed.next() => if signal.is_none() {
                        // The listening session ended: keep polling.
                        feed = Box::pin(futures::stream::pending());
                    },
                    () = tokio::time::sleep(POLL) => {}
                }
                cursor = h.catch_up(cursor).await;
            }
        });
        Ok(())
    }

    /// Applies every event after `cursor`; returns the new cursor.
    async fn catch_up(&self, mut cursor: u64) -> u64 {
        loop {
            let page = match self.inner.store.events_since(cursor, PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read other replicas' events; will retry");
                    return cursor;
                }
            };
            if !page.is_empty() {
                // A commit of this replica is recorded just after the store returns; give it
                // that moment, so it is not mistaken for another replica's.
                tokio::time::sleep(LOCAL_GRACE).await;
            }
            let full = page.len() == PAGE;
            for e in page {
                cursor = e.seq;
                if !self.inner.replication.committed_here(e.seq) {
                    self.apply_remote(e).await;
                }
            }
            if !full {
                return cursor;
            }
        }
    }

    /// One event another replica committed: the index first, then local subscribers and
    /// waiters, so whoever is woken sees this replica already up to date.
    async fn apply_remote(&self, e: Event) {
        if let Some(id) = &e.approval_id {
            match e.kind {
                EventType::Delivered => {
                    if let Some(account) = e.data["account"].as_str().and_then(AccountKey::parse) {
                        self.index().add_handler(id, &account);
                    }
                }
                EventType::Requested | EventType::Vote => self.remote_pending(id).await,
                EventType::Approved | EventType::Denied | EventType::Expired | EventType::Cancelled => {
                    self.inner.replication.forget(id);
                    if let Ok(Some(a)) = self.inner.store.approval(id).await {
                        self.index().finish(&a, self.now());
                        self.spawn_finalize_approval(a);
                    }
                }
                _ => {}
            }
        }
        let e = Arc::new(e);
        let _ = self.inner.events.send(Arc::clone(&e));
        self.wake_waiters(std::slice::from_ref(&e));
    }

    /// An approval created or voted on elsewhere: index it, and deliver it to the accounts this
    /// replica holds, once.
    async fn remote_pending(&self, id: &ApprovalId) {
        let Ok(Some(a)) = self.inner.store.approval(id).await else { return };
        if a.status.is_terminal() {
            return;
        }
        let handled: Vec<AccountKey> = match self.inner.store.entries(id).await {
            Ok(entries) => entries.iter().map(|e| e.account_key()).collect(),
            Err(_) => Vec::new(),
        };
        self.index().upsert(&a, handled);
        if self.inner.replication.plan_once(id) {
            let (targets, _, skipped) = self.plan_for(&a);
            self.audit_quietly(skipped).await;
            let mine: Vec<_> =
                targets.into_iter().filter(|t| self.capability(&t.account).is_some()).collect();
            if !mine.is_empty() {
                // As for a local create: the accounts about to get a card handle it from now
                // on, so a click on the card is never refused for arriving before the
                // delivery's own bookkeeping.
                for t in &mine {
                    self.index().add_handler(id, &t.account);
                }
                self.spawn_deliveries(a, mine, false);
            }
        }
    }
}
