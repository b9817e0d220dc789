//! [`HookedStore`]: a [`Store`] that delegates to another and calls a [`StoreHook`] first, for
//! tests and benchmarks that need a store to fail, slow down or count.

use std::{any::Any, sync::Arc, time::Duration};

use assent_core::{
    clock::Timestamp,
    id::{ApprovalId, EntryId, GrantId},
    model::{AccountKey, Approval, AuditEntry, Binding, Entry, Event, Grant, Kind, Origin, PendingFacts},
    store::{ApprovalFilter, AuditFilter, CallbackJob, Commit, Committed, Store, StoreError},
};
use async_trait::async_trait;

/// Hooks run before the wrapped store is called.
#[async_trait]
pub trait StoreHook: Send + Sync {
    /// Before each commit. An error refuses the commit; the returned value is held until the
    /// wrapped commit finishes (a lock guard, to model a single writer).
    async fn on_commit(&self, _commit: &Commit) -> Result<Option<Box<dyn Any + Send>>, StoreError> {
        Ok(None)
    }

    /// Before each read. An error refuses the read.
    fn on_read(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store wrapped with a [`StoreHook`].
pub struct HookedStore<H> {
    inner: Arc<dyn Store>,
    /// The hook, public so tests can flip its switches.
    pub hook: H,
}

impl<H: StoreHook> HookedStore<H> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, hook: H) -> Self {
        Self { inner, hook }
    }
}

#[async_trait]
impl<H: StoreHook> Store for HookedStore<H> {
    async fn commit_feed(&self) -> Result<Option<assent_core::store::CommitFeed>, StoreError> {
        self.inner.commit_feed().await
    }
    async fn try_lease(
        &self,
        account: &assent_core::model::AccountKey,
    ) -> Result<Option<Box<dyn assent_core::store::Lease>>, StoreError> {
        self.inner.try_lease(account).await
    }
    async fn commit(&self, c: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        let _held = self.hook.on_commit(&c).await?;
        self.inner.commit(c, now).await
    }
    async fn approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        self.hook.on_read()?;
        self.inner.approval(id).await
    }
    async fn pending(&self) -> Result<Vec<Approval>, StoreError> {
        self.hook.on_read()?;
        self.inner.pending().await
    }
    async fn pending_facts(&self) -> Result<Vec<PendingFacts>, StoreError> {
        self.hook.on_read()?;
        self.inner.pending_facts().await
    }
    async fn due_for_expiry(&self, now: Timestamp, limit: usize) -> Result<Vec<Approval>, StoreError> {
        self.hook.on_read()?;
        self.inner.due_for_expiry(now, limit).await
    }
    async fn approvals(&self, f: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        self.hook.on_read()?;
        self.inner.approvals(f).await
    }
    async fn entries(&self, id: &ApprovalId) -> Result<Vec<Entry>, StoreError> {
        self.hook.on_read()?;
        self.inner.entries(id).await
    }
    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        self.hook.on_read()?;
        self.inner.entry(id).await
    }
    async fn open_entries(&self, a: &AccountKey) -> Result<Vec<Entry>, StoreError> {
        self.hook.on_read()?;
        self.inner.open_entries(a).await
    }
    async fn entries_of_pending(&self) -> Result<Vec<Entry>, StoreError> {
        self.hook.on_read()?;
        self.inner.entries_of_pending().await
    }
    async fn finalize_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.hook.on_read()?;
        self.inner.finalize_due(now, limit).await
    }
    async fn active_grants(&self, kind: Kind) -> Result<Vec<Grant>, StoreError> {
        self.hook.on_read()?;
        self.inner.active_grants(kind).await
    }
    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.hook.on_read()?;
        self.inner.grants().await
    }
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        self.hook.on_read()?;
        self.inner.grant(id).await
    }
    async fn binding(&self, key: &str) -> Result<Option<Binding>, StoreError> {
        self.hook.on_read()?;
        self.inner.binding(key).await
    }
    async fn events_since(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        self.hook.on_read()?;
        self.inner.events_since(seq, limit).await
    }
    async fn latest_event_seq(&self) -> Result<u64, StoreError> {
        self.hook.on_read()?;
        self.inner.latest_event_seq().await
    }
    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        self.hook.on_read()?;
        self.inner.audit(f).await
    }
    async fn session_origin(&self, k: &str) -> Result<Option<Origin>, StoreError> {
        self.hook.on_read()?;
        self.inner.session_origin(k).await
    }
    async fn claim_callbacks(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        self.hook.on_read()?;
        self.inner.claim_callbacks(now, lease, limit).await
    }
    async fn callback(&self, key: &str) -> Result<Option<CallbackJob>, StoreError> {
        self.hook.on_read()?;
        self.inner.callback(key).await
    }
    async fn purge(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.hook.on_read()?;
        self.inner.purge(before).await
    }
}
