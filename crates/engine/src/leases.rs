//! ST-7: with several replicas, each account's platform connection runs on one of them. The
//! replica that takes the account's lease attaches it; the others keep its routing on standby
//! (so they plan its cards, which the holder delivers) and try again every 5 s. A lost lease
//! detaches the account at once, so a survivor can take it over.

use std::{sync::Arc, time::Duration};

use assent_core::{capability::DynApprovalCapability, model::AccountKey};
use tokio_util::sync::CancellationToken;

use crate::{EngineHandle, accounts::Attached};

/// How often a replica without the lease tries to take it.
const RETRY: Duration = Duration::from_secs(5);

/// Stops the lease loop of one account when dropped or cancelled.
#[derive(Debug)]
pub struct AccountRun {
    stop: CancellationToken,
    /// Cancelled when the loop has detached the account and let the lease go.
    finished: CancellationToken,
}

impl AccountRun {
    /// Stops trying, releases the lease and detaches the account.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// [`AccountRun::stop`], then waits until the account is detached, so a new handler for the
    /// same account never races the old one's detach (CAP-7).
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
        self.finished.cancelled().await;
    }
}

impl Drop for AccountRun {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl EngineHandle {
    /// Runs `capability` on this replica while it holds the account's lease (ST-7). With a store
    /// only one process can open, the lease is always granted and this is [`EngineHandle::attach`].
    pub fn attach_when_leased(&self, capability: Arc<dyn DynApprovalCapability>) -> AccountRun {
        let (stop, finished) = (CancellationToken::new(), CancellationToken::new());
        let (h, stopped, done) = (self.clone(), stop.clone(), finished.clone());
        self.spawn(async move {
            let _done = done.drop_guard();
            h.lease_loop(capability, stopped).await;
        });
        AccountRun { stop, finished }
    }

    async fn lease_loop(&self, cap: Arc<dyn DynApprovalCapability>, stop: CancellationToken) {
        let key = cap.account();
        loop {
            let lease = match self.inner.store.try_lease(&key).await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(account = %key, error = %e, "could not ask for the account lease");
                    None
                }
            };
            let Some(lease) = lease else {
                self.set_standby(&cap);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.inner.shutdown.cancelled() => break,
                    () = tokio::time::sleep(RETRY) => continue,
                }
            };
            self.clear_standby(&key);
            if let Err(e) = self.attach(cap.clone()).await {
                // Let the lease go (another replica may do better) and try again.
                tracing::warn!(account = %key, error = %e, retry_in = ?RETRY, "attaching a leased account failed");
                let _ = self.detach(&key).await;
                drop(lease);
                self.set_standby(&cap);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.inner.shutdown.cancelled() => break,
                    () = tokio::time::sleep(RETRY) => continue,
                }
            }
            tracing::info!(account = %key, "holding the account lease");
            let lost = tokio::select! {
                () = lease.lost() => true,
                () = stop.cancelled() => false,
                () = self.inner.shutdown.cancelled() => false,
            };
            let _ = self.detach(&key).await;
            drop(lease);
            if !lost {
                break;
            }
            tracing::warn!(account = %key, "lost the account lease; detached, will try to take it again");
            // Give the other replicas the first chance, so a flapping session does not win back
            // the account at once.
            self.set_standby(&cap);
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.inner.shutdown.cancelled() => break,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
        self.clear_standby(&key);
    }

    fn set_standby(&self, cap: &Arc<dyn DynApprovalCapability>) {
        let availability = cap.availability();
        if !availability.is_configured() {
            return;
        }
        let attached = Attached { capability: cap.clone(), routing: availability.routing() };
        let mut standby = self.inner.standby.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        standby.insert(cap.account(), attached);
    }

    fn clear_standby(&self, key: &AccountKey) {
        let mut standby = self.inner.standby.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        standby.remove(key);
    }

    /// The routing of an account another replica holds.
    pub(crate) fn standby_routing(&self, key: &AccountKey) -> Option<assent_core::routing::AccountRouting> {
        let standby = self.inner.standby.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        standby.get(key).map(|a| a.routing.clone())
    }
}
