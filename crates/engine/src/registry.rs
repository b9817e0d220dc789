//! The runtime-context registry (CAP-6) and handler bootstrap (CAP-7).
//!
//! A channel runtime registers its platform client (serenity `Http`, teloxide `Bot`, matrix
//! `Client`, …) under `(channel, account, "approval")` and keeps the [`Lease`]. The bootstrap
//! watches the key and (re)starts the account's approval handler whenever a new context appears,
//! retrying failures with backoff while that context is still the current one.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use assent_core::{capability::DynApprovalCapability, model::AccountKey};
use tokio::sync::watch;

use crate::{AccountRun, EngineHandle, backoff};

/// What the registry holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextState<C> {
    /// Nothing registered.
    Unregistered,
    /// A context, with a generation that grows on every registration.
    Registered {
        /// Registration generation.
        generation: u64,
        /// The platform client.
        context: C,
    },
}

impl<C> ContextState<C> {
    fn generation(&self) -> Option<u64> {
        match self {
            Self::Unregistered => None,
            Self::Registered { generation, .. } => Some(*generation),
        }
    }
}

/// Registry of platform contexts keyed by account, for the `"approval"` capability.
#[derive(Debug)]
pub struct ContextRegistry<C> {
    slots: Mutex<HashMap<AccountKey, watch::Sender<ContextState<C>>>>,
    next_generation: AtomicU64,
}

impl<C> Default for ContextRegistry<C> {
    fn default() -> Self {
        Self { slots: Mutex::default(), next_generation: AtomicU64::new(1) }
    }
}

/// Keeps a registration alive; dropping it unregisters only if it is still the current one.
#[derive(Debug)]
pub struct Lease<C: Clone + Send + Sync + 'static> {
    registry: Arc<ContextRegistry<C>>,
    key: AccountKey,
    generation: u64,
}

impl<C: Clone + Send + Sync + 'static> Drop for Lease<C> {
    fn drop(&mut self) {
        let sender = self.registry.sender(&self.key);
        sender.send_if_modified(|state| {
            let current = state.generation() == Some(self.generation);
            if current {
                *state = ContextState::Unregistered;
            }
            current
        });
    }
}

impl<C: Clone + Send + Sync + 'static> ContextRegistry<C> {
    /// A new registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn sender(&self, key: &AccountKey) -> watch::Sender<ContextState<C>> {
        let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(key.clone()).or_insert_with(|| watch::Sender::new(ContextState::Unregistered)).clone()
    }

    /// Registers (or replaces) the context of `key`.
    pub fn register(self: &Arc<Self>, key: AccountKey, context: C) -> Lease<C> {
        let generation = self.next_generation.fetch_add(1, Ordering::SeqCst);
        self.sender(&key).send_replace(ContextState::Registered { generation, context });
        Lease { registry: self.clone(), key, generation }
    }

    /// Watches `key`: `Registered`, replaced (a new generation) or `Unregistered`.
    pub fn watch(&self, key: &AccountKey) -> watch::Receiver<ContextState<C>> {
        self.sender(key).subscribe()
    }

    /// The current state of `key`.
    pub fn current(&self, key: &AccountKey) -> ContextState<C> {
        self.sender(key).borrow().clone()
    }
}

impl EngineHandle {
    /// CAP-7: runs the account's handler from whatever context is registered for `key`. On each
    /// registration the old handler is stopped and `factory` builds a new capability, retried
    /// (1 s doubling to 30 s) while that registration is current; a stale result is dropped so it
    /// never replaces a newer handler. The handler runs while this replica holds the account's
    /// lease ([`EngineHandle::attach_when_leased`]). Unregistering stops the handler.
    pub fn bootstrap<C, F, Fut>(&self, registry: Arc<ContextRegistry<C>>, key: AccountKey, factory: F)
    where
        C: Clone + Send + Sync + 'static,
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Arc<dyn DynApprovalCapability>, String>> + Send + 'static,
    {
        let h = self.clone();
        self.spawn(async move {
            let mut rx = registry.watch(&key);
            let mut running: Option<AccountRun> = None;
            loop {
                let state = rx.borrow_and_update().clone();
                // Stop the old handler first (CAP-7), whatever comes next.
                if let Some(run) = running.take() {
                    run.stop_and_wait().await;
                }
                if let ContextState::Registered { generation, context } = state {
                    running = h.start_generation(&registry, &key, generation, context, &factory, &rx).await;
                }
                tokio::select! {
                    () = h.inner.shutdown.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
            }
        });
    }

    async fn start_generation<C, F, Fut>(
        &self,
        registry: &ContextRegistry<C>,
        key: &AccountKey,
        generation: u64,
        context: C,
        factory: &F,
        rx: &watch::Receiver<ContextState<C>>,
    ) -> Option<AccountRun>
    where
        C: Clone + Send + Sync + 'static,
        F: Fn(C) -> Fut,
        Fut: Future<Output = Result<Arc<dyn DynApprovalCapability>, String>>,
    {
        // Watched through a clone, so the caller's receiver still sees the change that ends this.
        let mut replaced = rx.clone();
        let mut attempt = 0;
        loop {
            let result = factory(context.clone()).await;
            if registry.current(key).generation() != Some(generation) {
                return None; // Stale: a newer registration (or none) is in charge now.
            }
            let error = match result {
                Ok(cap) => return Some(self.attach_when_leased(cap)),
                Err(e) => e,
            };
            let wait = backoff(attempt, Duration::from_secs(1), Duration::from_secs(30));
            tracing::warn!(account = %key, error, ?wait, "approval handler failed to start; retrying");
            attempt += 1;
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return None,
                () = tokio::time::sleep(wait) => {}
                _ = replaced.changed() => return None,
            }
        }
    }
}
