//! The callback outbox dispatcher (LC-14, BD-8, BD-9). Rows are written in the terminal
//! transaction; this loop sends them at least once, each in its own task with a time limit, so a
//! handler that blocks or panics delays nothing but itself and never undoes a decision.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, atomic::Ordering},
    time::Duration,
};

use assent_core::{
    model::{AuditEntry, AuditType},
    store::{CallbackJob, CallbackState, CallbackTarget, CallbackWrite, Commit},
};
use async_trait::async_trait;
use futures::FutureExt;
use serde_json::json;

use crate::{EngineHandle, backoff};

/// Attempts before a callback is given up and audited.
const MAX_ATTEMPTS: u32 = 8;
const TICK: Duration = Duration::from_secs(1);

/// Sends URL callbacks (the server implements it with signed webhooks, API-5).
#[async_trait]
pub trait CallbackSink: Send + Sync {
    /// Sends one job; `Err` is retried.
    async fn send(&self, job: &CallbackJob) -> Result<(), String>;
}

/// An in-process handler of one plugin install's `binding.resolved` callbacks (BD-8).
#[async_trait]
pub trait BindingHandler: Send + Sync {
    /// Receives the BD-8 payload; `Err` is retried.
    async fn on_binding_resolved(&self, payload: &serde_json::Value) -> Result<(), String>;
}

pub(crate) struct Sinks {
    webhook: Option<Arc<dyn CallbackSink>>,
    plugins: RwLock<HashMap<(String, String), Arc<dyn BindingHandler>>>,
}

impl Sinks {
    pub(crate) fn new(webhook: Option<Arc<dyn CallbackSink>>) -> Self {
        Self { webhook, plugins: RwLock::default() }
    }
}

pub(crate) async fn run(h: EngineHandle) {
    loop {
        h.dispatch_callbacks().await;
        tokio::select! {
            () = h.inner.shutdown.cancelled() => return,
            () = h.inner.callback_wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

impl EngineHandle {
    /// Registers the handler of one plugin install (id and root must both match, BD-8).
    pub fn register_binding_handler(
        &self,
        plugin_id: &str,
        plugin_root: &str,
        handler: Arc<dyn BindingHandler>,
    ) {
        let mut map = self.inner.callbacks.plugins.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert((plugin_id.to_owned(), plugin_root.to_owned()), handler);
        self.inner.callback_wake.notify_one();
    }

    async fn dispatch_callbacks(&self) {
        // The lease outlives one attempt, so a job is never sent twice at once; after a crash it
        // is due again as soon as the lease runs out.
        let lease = self.config().callback_attempt_timeout * 2 + Duration::from_secs(5);
        let jobs = match self.inner.store.claim_callbacks(self.now(), lease, 64).await {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "callback outbox unavailable");
                return;
            }
        };
        for job in jobs {
            let h = self.clone();
            self.spawn(async move { h.send_callback(job).await });
        }
    }

    async fn send_callback(&self, mut job: CallbackJob) {
        let attempt = self.attempt_callback(&job);
        let limit = self.config().callback_attempt_timeout;
        let result =
            match tokio::time::timeout(limit, std::panic::AssertUnwindSafe(attempt).catch_unwind()).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err("callback handler panicked".to_owned()),
                Err(_) => Err(format!("callback did not answer within {limit:?}")),
            };
        let now = self.now();
        job.attempts += 1;
        let mut commit = Commit::default();
        match result {
            Ok(()) => job.state = CallbackState::Done,
            Err(e) if job.attempts >= MAX_ATTEMPTS => {
                self.inner.counters.callbacks_given_up.fetch_add(1, Ordering::Relaxed);
                job.state = CallbackState::Failed;
                commit.audit.push(
                    AuditEntry::new(AuditType::CallbackFailed, now)
                        .approval(&job.approval_id)
                        .details(json!({ "key": job.key, "error": e, "attempts": job.attempts })),
                );
                job.last_error = Some(e);
            }
            Err(e) => {
                self.inner.counters.callback_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %job.key, error = %e, "callback failed; will retry");
                job.next_attempt_at =
                    now + backoff(job.attempts - 1, Duration::from_secs(1), Duration::from_secs(600));
                job.last_error = Some(e);
            }
        }
        commit.callbacks.push(CallbackWrite::Update(job));
        if let Err(e) = self.commit(commit).await {
            tracing::error!(error = %e, "could not record a callback attempt; it will be sent again");
        }
    }

    async fn attempt_callback(&self, job: &CallbackJob) -> Result<(), String> {
        match &job.target {
            CallbackTarget::Url { .. } => match &self.inner.callbacks.webhook {
                Some(sink) => sink.send(job).await,
                None => Err("no webhook sender is configured".to_owned()),
            },
            CallbackTarget::Plugin { id, root } => {
                let handler = {
                    let map = self
                        .inner
                        .callbacks
                        .plugins
                        .read()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    map.get(&(id.clone(), root.clone())).cloned()
                };
                match handler {
                    Some(h) => h.on_binding_resolved(&job.payload).await,
                    None => Err(format!("no handler registered for plugin `{id}` at `{root}`")),
                }
            }
        }
    }
}
