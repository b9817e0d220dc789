#![doc = include_str!("../README.md")]

mod accounts;
mod bindings;
mod callbacks;
mod cards;
mod config;
mod create;
mod deliver;
mod error;
mod finalize;
mod grants;
mod inbound;
mod index;
mod leases;
pub mod registry;
mod replication;
mod resolve;
mod sweeper;
mod system;
mod transition;

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use assent_core::{
    capability::DynApprovalCapability,
    clock::{Clock, Timestamp},
    id::{ApprovalId, IdGen},
    lifecycle::Rejection,
    model::{AccountKey, Approval, Event},
    store::{Commit, Committed, Store, StoreError},
    throttle::GuessThrottle,
};
use tokio::sync::{Notify, broadcast};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::{
    accounts::AccountStatus,
    bindings::{BindingOutcome, ConversationBinding},
    callbacks::{BindingHandler, CallbackSink},
    config::{ConsoleRoute, EngineConfig},
    error::{EngineError, ResolveError},
    inbound::Inbound,
    leases::AccountRun,
    resolve::{Accepted, ApprovalRef, Authority, Interaction, Resolution, TypedOutcome},
    system::{OsIds, SystemClock},
};

/// Capacity of the live event channel; slower subscribers get `Lagged` and resume from the store.
const EVENT_BUFFER: usize = 1024;

/// Shared engine state. Locks are std locks held only for short, synchronous sections.
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    config: EngineConfig,
    index: Mutex<index::PendingIndex>,
    accounts: RwLock<BTreeMap<AccountKey, accounts::Attached>>,
    /// ST-7: accounts whose lease another replica holds; used for routing, never for I/O.
    standby: RwLock<BTreeMap<AccountKey, accounts::Attached>>,
    /// ST-8: state for following other replicas' commits.
    replication: replication::Replication,
    throttle: Mutex<GuessThrottle>,
    console_sessions: AtomicUsize,
    events: broadcast::Sender<Arc<Event>>,
    finalize_wake: Notify,
    callback_wake: Notify,
    callbacks: callbacks::Sinks,
    inflight: Mutex<std::collections::HashSet<String>>,
    /// One ordered edit queue per delivered card.
    cards: cards::CardQueues,
    waiters: Mutex<std::collections::HashMap<ApprovalId, std::sync::Weak<Notify>>>,
    counters: Counters,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Monotonic counters for `/metrics` (NF-13).
#[derive(Debug, Default)]
struct Counters {
    callback_failures: std::sync::atomic::AtomicU64,
    callbacks_given_up: std::sync::atomic::AtomicU64,
    /// Prechecked interactions: `[0]` accepted, `[1 + i]` refused with `Rejection::CODES[i]`.
    interactions: [std::sync::atomic::AtomicU64; 1 + Rejection::CODES.len()],
}

/// Engine figures for monitoring (NF-13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Pending approvals.
    pub pending: usize,
    /// Failed callback attempts (each is retried) since start.
    pub callback_failures: u64,
    /// Callbacks given up after their last attempt since start.
    pub callbacks_given_up: u64,
    /// Interactions (presses, reactions, typed commands, API decisions) accepted by the
    /// precheck since start.
    pub interactions_accepted: u64,
    /// Interactions refused by the precheck since start, per [`Rejection::CODES`] entry.
    pub interactions_refused: [u64; Rejection::CODES.len()],
}

impl EngineStats {
    /// Refused interactions with this rejection code.
    pub fn refused(&self, code: &str) -> u64 {
        Rejection::CODES.iter().position(|c| *c == code).map_or(0, |i| self.interactions_refused[i])
    }
}

/// A cheap, cloneable handle to a running engine: what channels, the server and the CLI call.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").field("pending", &self.pending_count()).finish_non_exhaustive()
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    config: EngineConfig,
    webhook: Option<Arc<dyn CallbackSink>>,
}

impl EngineBuilder {
    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `ids` instead of the OS random source.
    pub fn ids(mut self, ids: Arc<dyn IdGen>) -> Self {
        self.ids = ids;
        self
    }

    /// Sends URL callbacks through `sink` (the server's signed webhook client).
    pub fn webhook_sink(mut self, sink: Arc<dyn CallbackSink>) -> Self {
        self.webhook = Some(sink);
        self
    }

    /// Starts the engine in the LC-13 order: pending index, sweeper pass to completion,
    /// finalization backlog, then background loops. Channels attach afterwards.
    pub async fn start(self) -> Result<Engine, EngineError> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let inner = Arc::new(Inner {
            store: self.store,
            clock: self.clock,
            ids: self.ids,
            config: self.config,
            index: Mutex::default(),
            accounts: RwLock::default(),
            standby: RwLock::default(),
            replication: replication::Replication::default(),
            throttle: Mutex::default(),
            console_sessions: AtomicUsize::new(0),
            events,
            finalize_wake: Notify::new(),
            callback_wake: Notify::new(),
            callbacks: callbacks::Sinks::new(self.webhook),
            inflight: Mutex::default(),
            cards: cards::CardQueues::default(),
            waiters: Mutex::default(),
            counters: Counters::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        let handle = EngineHandle { inner };
        // Subscribe before loading, so no commit of another replica falls in between (ST-8).
        let feed = handle.inner.store.commit_feed().await?;
        handle.load_index().await?;
        handle.sweep_once().await?;
        handle.spawn_loops();
        if let Some(feed) = feed {
            handle.follow_replicas(feed).await?;
        }
        handle.inner.finalize_wake.notify_one();
        Ok(Engine { handle })
    }
}

/// One `wait` call's interest in an approval; the last one out removes the map entry.
struct Waiter<'a> {
    handle: &'a EngineHandle,
    id: ApprovalId,
    notify: Arc<Notify>,
}

impl<'a> Waiter<'a> {
    fn register(handle: &'a EngineHandle, id: &ApprovalId) -> Self {
        let mut map = handle.inner.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let notify = match map.get(id).and_then(std::sync::Weak::upgrade) {
            Some(n) => n,
            None => {
                let n = Arc::new(Notify::new());
                map.insert(id.clone(), Arc::downgrade(&n));
                n
            }
        };
        Waiter { handle, id: id.clone(), notify }
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        let mut map = self.handle.inner.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::strong_count(&self.notify) == 1 {
            map.remove(&self.id);
        }
    }
}

/// The running engine. Dropping it does not stop it; call [`Engine::shutdown`].
pub struct Engine {
    handle: EngineHandle,
}

impl Engine {
    /// A builder over `store` with the system clock and OS ids.
    pub fn builder(store: Arc<dyn Store>, config: EngineConfig) -> EngineBuilder {
        EngineBuilder { store, clock: Arc::new(SystemClock), ids: Arc::new(OsIds), config, webhook: None }
    }

    /// A handle for callers.
    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// LC-18: stops background loops, lets running deliveries, finalizations and callbacks
    /// finish for up to `grace`, then returns. Pending approvals stay pending.
    pub async fn shutdown(self, grace: Duration) {
        let inner = &self.handle.inner;
        inner.shutdown.cancel();
        inner.tasks.close();
        let _ = tokio::time::timeout(grace, inner.tasks.wait()).await;
        // Release the channels: they hold handles to this engine (to route what they receive),
        // so keeping them here would keep both alive.
        inner.accounts.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        inner.standby.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }
}

impl EngineHandle {
    /// The engine's clock: what every record and card is stamped with.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn index(&self) -> MutexGuard<'_, index::PendingIndex> {
        // A poisoned index means a panic inside a short synchronous section; the data is still
        // consistent (each section is a single insert or remove), so keep serving.
        self.inner.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits and publishes the events the store numbered.
    async fn commit(&self, commit: Commit) -> Result<Committed, StoreError> {
        let committed = self.inner.store.commit(commit, self.now()).await?;
        self.inner.replication.published_here(&committed.events);
        for e in &committed.events {
            // No subscriber is fine: events are also in the store for resume.
            let _ = self.inner.events.send(Arc::clone(e));
        }
        self.wake_waiters(&committed.events);
        Ok(committed)
    }

    /// Runs `fut` as an owned background task that shutdown waits for.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        self.inner.tasks.spawn(fut);
    }

    fn spawn_loops(&self) {
        self.spawn(sweeper::run(self.clone()));
        self.spawn(sweeper::retain(self.clone()));
        self.spawn(finalize::run(self.clone()));
        self.spawn(callbacks::run(self.clone()));
    }

    async fn load_index(&self) -> Result<(), EngineError> {
        // Two reads on two connections at once (NF-4).
        let store = &self.inner.store;
        let (pending, entries) = tokio::try_join!(store.pending_facts(), store.entries_of_pending())?;
        let mut handled: HashMap<ApprovalId, Vec<AccountKey>> = HashMap::new();
        for e in entries {
            let accounts = handled.entry(e.approval_id.clone()).or_default();
            if !accounts.contains(&e.account_key()) {
                accounts.push(e.account_key());
            }
        }
        let loaded = index::PendingIndex::load(pending, handled);
        *self.index() = loaded;
        Ok(())
    }

    /// Figures for monitoring.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        EngineStats {
            pending: self.pending_count(),
            callback_failures: c.callback_failures.load(Ordering::Relaxed),
            callbacks_given_up: c.callbacks_given_up.load(Ordering::Relaxed),
            interactions_accepted: c.interactions[0].load(Ordering::Relaxed),
            interactions_refused: std::array::from_fn(|i| c.interactions[1 + i].load(Ordering::Relaxed)),
        }
    }

    /// Number of pending approvals in the index.
    pub fn pending_count(&self) -> usize {
        self.index().len()
    }

    /// One approval from the store.
    pub async fn approval(&self, id: &ApprovalId) -> Result<Option<Approval>, EngineError> {
        Ok(self.inner.store.approval(id).await?)
    }

    /// Resolves a ref (full id or unique ≥ 8-character prefix among pending approvals, API-2).
    pub fn resolve_ref(&self, reference: &str) -> Result<ApprovalId, EngineError> {
        if let Ok(id) = ApprovalId::parse(reference) {
            return Ok(id);
        }
        if reference.len() < assent_core::id::REF_LEN {
            return Err(EngineError::Invalid(assent_core::model::ValidationError {
                field: "ref".to_owned(),
                message: "at least 8 characters".to_owned(),
            }));
        }
        self.index().resolve_prefix(&reference.to_ascii_lowercase(), None).map_err(|miss| match miss {
            index::RefMiss::NotFound => EngineError::NotFound,
            index::RefMiss::Ambiguous => {
                EngineError::Rejected(assent_core::lifecycle::Rejection::AmbiguousRef)
            }
        })
    }

    /// [`resolve_ref`](Self::resolve_ref), then among decided approvals too: every approval is
    /// shown with its ref, so every approval answers to it (API-2).
    pub async fn resolve_any_ref(&self, reference: &str) -> Result<ApprovalId, EngineError> {
        match self.resolve_ref(reference) {
            Err(EngineError::NotFound) => {}
            other => return other,
        }
        let filter = assent_core::store::ApprovalFilter {
            id_prefix: Some(reference.to_ascii_lowercase()),
            limit: 2,
            ..Default::default()
        };
        match self.inner.store.approvals(&filter).await?.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(EngineError::NotFound),
            _ => Err(EngineError::Rejected(assent_core::lifecycle::Rejection::AmbiguousRef)),
        }
    }

    /// Live events. On `Lagged`, resume with [`EngineHandle::events_since`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.events.subscribe()
    }

    /// Whether the store takes reads and writes now (`/v1/ready`).
    pub async fn store_ready(&self) -> Result<(), EngineError> {
        Ok(self.inner.store.ready().await?)
    }

    /// The seq of the newest event, where a subscriber without a cursor starts.
    pub async fn latest_event_seq(&self) -> Result<u64, EngineError> {
        Ok(self.inner.store.latest_event_seq().await?)
    }

    /// Stored events after `seq` (LC-15 resume).
    pub async fn events_since(&self, seq: u64, limit: usize) -> Result<Vec<Event>, EngineError> {
        Ok(self.inner.store.events_since(seq, limit).await?)
    }

    /// The store, for read-only listings by the server.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Waits until the approval is terminal or `timeout` passes; returns the latest record.
    ///
    /// Each waiter sleeps on its approval's own [`Notify`], woken only by that approval's
    /// events, so ten thousand waiters cost one wake-up per decision, not ten thousand.
    pub async fn wait(&self, id: &ApprovalId, timeout: Duration) -> Result<Approval, EngineError> {
        let waiter = Waiter::register(self, id);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Armed before the read, so an event between the read and the sleep still wakes us.
            let woken = waiter.notify.notified();
            let mut woken = std::pin::pin!(woken);
            woken.as_mut().enable();
            // An idle waiter holds this future for minutes, so nothing large lives across the
            // sleep: the store's read is boxed, and the approval it read is dropped first.
            {
                let a = Box::pin(self.approval(id)).await?.ok_or(EngineError::NotFound)?;
                if a.status.is_terminal() {
                    return Ok(a);
                }
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Box::pin(self.approval(id)).await?.ok_or(EngineError::NotFound);
            }
        }
    }

    /// Wakes the waiters of the approvals these events are about.
    fn wake_waiters(&self, events: &[Arc<Event>]) {
        let mut map = self.inner.waiters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in events.iter().filter_map(|e| e.approval_id.as_ref()) {
            match map.get(id).map(std::sync::Weak::upgrade) {
                Some(Some(n)) => n.notify_waiters(),
                Some(None) => {
                    map.remove(id);
                }
                None => {}
            }
        }
    }

    /// Marks an `approve`-scope console session open while the guard lives (RT-11).
    pub fn console_session(&self) -> ConsoleSession {
        self.inner.console_sessions.fetch_add(1, Ordering::SeqCst);
        ConsoleSession { handle: self.clone() }
    }

    /// True if the console counts as a route now (RT-11).
    pub fn console_is_route(&self) -> bool {
        match self.config().console_route {
            ConsoleRoute::Always => true,
            ConsoleRoute::Connected => self.inner.console_sessions.load(Ordering::SeqCst) > 0,
            ConsoleRoute::Auto => {
                self.accounts_snapshot().is_empty() || self.inner.console_sessions.load(Ordering::SeqCst) > 0
            }
        }
    }

    fn accounts_snapshot(&self) -> Vec<(AccountKey, Arc<dyn DynApprovalCapability>)> {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.iter().map(|(k, a)| (k.clone(), a.capability.clone())).collect()
    }

    fn capability(&self, key: &AccountKey) -> Option<Arc<dyn DynApprovalCapability>> {
        let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).map(|a| a.capability.clone())
    }
}

/// An open console session; dropping it closes it.
#[derive(Debug)]
pub struct ConsoleSession {
    handle: EngineHandle,
}

impl Drop for ConsoleSession {
    fn drop(&mut self) {
        self.handle.inner.console_sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Exponential backoff: `base` doubling per attempt, capped at `max`.
pub(crate) fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(max)
}

/// Removes its key from the in-flight set when dropped, so a panic cannot wedge a key.
pub(crate) struct InflightGuard {
    handle: EngineHandle,
    key: String,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.handle
            .inner
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl EngineHandle {
    /// Claims `key` for one worker; `None` if another holds it (no double delivery or finalize).
    pub(crate) fn claim(&self, key: String) -> Option<InflightGuard> {
        let mut set = self.inner.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(key.clone()).then(|| InflightGuard { handle: self.clone(), key })
    }
}

/// Runs a channel hook, turning a panic into [`CapabilityError::Panicked`] (CAP-10).
pub(crate) async fn guarded<T, F>(fut: F) -> Result<T, assent_core::capability::CapabilityError>
where
    F: Future<Output = Result<T, assent_core::capability::CapabilityError>>,
{
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => {
            Err(assent_core::capability::CapabilityError::Panicked(assent_core::panic_message(&panic)))
        }
    }
}

/// Synchronous variant of [`guarded`].
pub(crate) fn guarded_sync<T>(
    f: impl FnOnce() -> Result<T, assent_core::capability::CapabilityError>,
) -> Result<T, assent_core::capability::CapabilityError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(assent_core::capability::CapabilityError::Panicked(assent_core::panic_message(&panic)))
    })
}
