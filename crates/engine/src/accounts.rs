//! Attached channel accounts: start (CAP-8) and stop (CAP-9).

use std::sync::Arc;

use assent_core::{
    capability::DynApprovalCapability,
    model::{AccountKey, AuditEntry, AuditType},
    routing::AccountRouting,
    store::{Commit, EntryWrite},
};

use crate::{EngineError, EngineHandle, guarded};

/// One attached account: its capability and the routing it reported when attached.
pub(crate) struct Attached {
    pub(crate) capability: Arc<dyn DynApprovalCapability>,
    pub(crate) routing: AccountRouting,
}

/// What the server shows on the console's account page and `/v1/ready`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountStatus {
    /// The account.
    pub key: AccountKey,
    /// RT-1: enabled with approvers.
    pub active: bool,
    /// Number of approvers.
    pub approvers: usize,
}

impl EngineHandle {
    /// Attaches a channel account (CAP-8): re-binds its anchors, delivers pending approvals it
    /// handles but has no card for, then takes part in every new approval. An account that is
    /// not configured stays idle.
    pub async fn attach(&self, capability: Arc<dyn DynApprovalCapability>) -> Result<(), EngineError> {
        let availability = capability.availability();
        if !availability.is_configured() {
            return Ok(());
        }
        let key = capability.account();
        let routing = availability.routing();
        {
            let mut map = self.inner.accounts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.insert(key.clone(), Attached { capability: capability.clone(), routing });
        }
        self.rebind(&key, &capability).await?;
        let pending = self.index().pending_ids();
        for id in pending {
            if let Some(a) = self.inner.store.approval(&id).await?
                && !a.status.is_terminal()
            {
                let (targets, _, skipped) = self.plan_for(&a);
                self.audit_quietly(skipped).await;
                let mine: Vec<_> = targets.into_iter().filter(|t| t.account == key).collect();
                if !mine.is_empty() {
                    self.spawn_deliveries(a, mine, false);
                }
            }
        }
        self.inner.finalize_wake.notify_one();
        Ok(())
    }

    async fn rebind(
        &self,
        key: &AccountKey,
        cap: &Arc<dyn DynApprovalCapability>,
    ) -> Result<(), EngineError> {
        let Some(ix) = cap.interactions() else { return Ok(()) };
        for mut entry in self.inner.store.open_entries(key).await? {
            match guarded(ix.bind(&entry.native_ref)).await {
                Ok(anchor) if anchor != entry.anchor => {
                    entry.anchor = anchor;
                    let commit = Commit { entries: vec![EntryWrite::Update(entry)], ..Commit::default() };
                    self.commit(commit).await?;
                }
                Ok(_) => {}
                Err(e) => self.report_hook_error(key, &entry.approval_id, "bind", &e.to_string()).await,
            }
        }
        Ok(())
    }

    /// Detaches an account (CAP-9): unbinds anchors and cancels unbound deliveries. Its cards stay
    /// live and resolvable by whichever handler attaches next.
    pub async fn detach(&self, key: &AccountKey) -> Result<(), EngineError> {
        let removed = {
            let mut map = self.inner.accounts.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.remove(key)
        };
        let Some(attached) = removed else { return Ok(()) };
        let cap = attached.capability;
        let Some(ix) = cap.interactions() else { return Ok(()) };
        for entry in self.inner.store.open_entries(key).await? {
            let result = match &entry.anchor {
                Some(anchor) => guarded(ix.unbind(anchor)).await,
                None => guarded(ix.cancel_delivered(&entry.native_ref)).await,
            };
            if let Err(e) = result {
                self.report_hook_error(key, &entry.approval_id, "unbind", &e.to_string()).await;
            }
        }
        Ok(())
    }

    /// Attached accounts and whether they can approve.
    pub fn accounts(&self) -> Vec<AccountStatus> {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.values()
            .map(|a| AccountStatus {
                key: a.routing.key.clone(),
                active: a.routing.is_active(),
                approvers: a.routing.approvers.len(),
            })
            .collect()
    }

    /// Whether `key` is attached on this replica (it holds the lease), rather than on standby or
    /// absent. Channels whose every connection sees every message (Matrix) answer only then, so
    /// replicas do not answer twice.
    pub fn is_serving(&self, key: &AccountKey) -> bool {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.contains_key(key)
    }

    /// Whether this very capability (not a newer handler for the same account) is attached.
    pub(crate) fn is_attached(&self, cap: &Arc<dyn DynApprovalCapability>) -> bool {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&cap.account()).is_some_and(|a| Arc::ptr_eq(&a.capability, cap))
    }

    /// The routing of an account attached here, or held by another replica (ST-8: any replica
    /// authorizes interactions).
    pub(crate) fn routing_of(&self, key: &AccountKey) -> Option<AccountRouting> {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map(|a| a.routing.clone()).or_else(|| self.standby_routing(key))
    }

    /// CAP-10: a hook error is audited and logged; the loop goes on.
    pub(crate) async fn report_hook_error(
        &self,
        account: &AccountKey,
        approval: &assent_core::id::ApprovalId,
        hook: &str,
        error: &str,
    ) {
        tracing::warn!(%account, approval = %approval, hook, error, "channel hook failed");
        let audit = AuditEntry::new(AuditType::DeliveryFailed, self.now())
            .approval(approval)
            .account(account.clone())
            .details(serde_json::json!({ "hook": hook, "error": error }));
        let _ = self.commit(Commit { audit: vec![audit], ..Commit::default() }).await;
    }
}
