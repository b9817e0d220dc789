//! Deliveries (RT-5..RT-12, LC-7, LC-12): accounts in parallel, targets in plan order, transient
//! errors retried, failures visible, the routed-elsewhere notice, and no-route detection.

use std::{
    collections::BTreeMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::Duration,
};

use assent_core::{
    capability::{CapabilityError, DynApprovalCapability, Erased, Handle, PrepareOutcome, RetryKind},
    card::{CardContext, CardView},
    id::IdGenExt,
    lifecycle::{ExpiryCause, expire},
    model::{AccountKey, Approval, AuditEntry, AuditType, Channel, Entry, EntryState, EventType, Surface},
    routing::{Delivered, PlannedTarget, RouteRequest, Selection, notice_text, plan},
    store::{Commit, EntryWrite, StoreError},
};
use futures::{FutureExt, future::join_all};
use serde_json::json;

use crate::{
    EngineHandle, backoff, guarded, guarded_sync,
    index::Lookup,
    transition::{event, event_data, event_with},
};

/// Longest time a transient delivery failure is retried (RT-12).
const RETRY_WINDOW: Duration = Duration::from_secs(300);

impl EngineHandle {
    /// RT-4..RT-7 for one approval over the attached accounts, plus a `delivery_skipped` audit
    /// entry for each account whose channel declined it (`should_handle`).
    pub(crate) fn plan_for(&self, a: &Approval) -> (Vec<PlannedTarget>, Selection, Vec<AuditEntry>) {
        // BD-2: a binding is decided by the approvers of the conversation's own account.
        let binding_account =
            a.binding().map(|b| AccountKey::new(b.conversation.channel, b.conversation.account.clone()));
        let mut skipped = Vec::new();
        let accounts: Vec<_> = {
            let map = self.inner.accounts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let standby = self.inner.standby.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.values()
                .chain(standby.values().filter(|s| !map.contains_key(&s.routing.key)))
                .filter(|x| binding_account.as_ref().is_none_or(|k| *k == x.routing.key))
                .filter(|x| match x.capability.availability().should_handle(a) {
                    Handle::Yes => true,
                    Handle::Skip(why) => {
                        skipped.push(self.skipped(a, x.routing.key.clone(), None, why));
                        false
                    }
                })
                .map(|x| x.routing.clone())
                .collect()
        };

        let session_accounts: Vec<AccountKey> = a.origin.iter().map(|o| o.account_key()).collect();
        let req = RouteRequest {
            kind: a.kind(),
            agent_id: a.agent_id.as_deref(),
            session_key: a.session_key.as_deref(),
            origin: a.origin.as_ref(),
            session_accounts: &session_accounts,
        };
        let (targets, selection) = plan(&req, &accounts, &self.config().forwards);
        (targets, selection, skipped)
    }

    /// Starts deliveries in the background (LC-3). `fresh` is true for a new approval, which
    /// gets no-route detection and the routed-elsewhere notice; re-deliveries at attach do not.
    pub(crate) fn spawn_deliveries(&self, a: Approval, targets: Vec<PlannedTarget>, fresh: bool) {
        let h = self.clone();
        self.spawn(async move { h.deliver_all(a, targets, fresh).await });
    }

    async fn deliver_all(&self, a: Approval, targets: Vec<PlannedTarget>, fresh: bool) {
        let delivered = Mutex::new(Vec::new());
        if fresh && self.console_is_route() {
            lock(&delivered).push(Delivered {
                channel: Channel::Console,
                account: "console".to_owned(),
                surface: Surface::Console,
            });
        }
        let mut by_account: BTreeMap<AccountKey, Vec<PlannedTarget>> = BTreeMap::new();
        for t in targets {
            by_account.entry(t.account.clone()).or_default().push(t);
        }
        if by_account.is_empty() {
            // Nothing to send (the console alone, or no route at all): nothing to wait for, so
            // the outcome is known now.
            if fresh {
                self.settle(&a, &snapshot(&delivered)).await;
            }
            return;
        }
        let (finished, done) = tokio::sync::oneshot::channel::<()>();
        let work = async {
            let deliveries = join_all(by_account.into_iter().map(|(account, targets)| {
                let (a, delivered) = (&a, &delivered);
                async move { self.deliver_account(a, &account, targets, fresh, delivered).await }
            }));
            // Channel code is already `guarded`; this catches a bug in the engine's own, which
            // would otherwise end the watch below with it, silencing the notice and no-route.
            if let Err(panic) = AssertUnwindSafe(deliveries).catch_unwind().await {
                tracing::error!(approval = %a.id, panic = %assent_core::panic_message(&panic), "delivery panicked");
            }
            let _ = finished.send(());
        };
        if !fresh {
            return work.await;
        }
        // The deliveries and their watch share this task but run side by side: the watch's
        // notice and no-route checks write to the store, and a delivery must keep moving while
        // they wait (one holding SQLite's single writer would otherwise wait on its own watch).
        tokio::join!(work, self.watch_deliveries(&a, &delivered, done));
    }

    /// LC-7 and RT-9 while a new approval's deliveries run: the notice goes out after
    /// `notice_wait` or once every delivery is over, and an approval nobody can see by
    /// `route_wait` (or at the end) expires as no-route.
    async fn watch_deliveries(
        &self,
        a: &Approval,
        delivered: &Mutex<Vec<Delivered>>,
        mut done: tokio::sync::oneshot::Receiver<()>,
    ) {
        let notice_timer = tokio::time::sleep(self.config().notice_wait);
        let route_timer = tokio::time::sleep(self.config().route_wait);
        tokio::pin!(notice_timer, route_timer);
        let (mut noticed, mut route_checked, mut finished) = (false, false, false);
        while !finished {
            tokio::select! {
                // Shutdown: stop waiting; the approval stays pending and restarts pick it up.
                () = self.inner.shutdown.cancelled() => return,
                _ = &mut done => finished = true,
                () = &mut notice_timer, if !noticed => {
                    noticed = true;
                    self.send_notice(a, &snapshot(delivered)).await;
                }
                () = &mut route_timer, if !route_checked => {
                    route_checked = true;
                    if snapshot(delivered).is_empty() {
                        self.expire_no_route(a).await;
                    }
                }
            }
        }
        if !noticed {
            self.settle(a, &snapshot(delivered)).await;
        } else if snapshot(delivered).is_empty() {
            self.expire_no_route(a).await;
        }
    }

    /// Once every delivery is over: no route means expiry (LC-7), else the origin hears where
    /// the card went (RT-9).
    async fn settle(&self, a: &Approval, delivered: &[Delivered]) {
        if delivered.is_empty() {
            self.expire_no_route(a).await;
        } else {
            self.send_notice(a, delivered).await;
        }
    }

    async fn expire_no_route(&self, a: &Approval) {
        let Ok(Some(current)) = self.inner.store.approval(&a.id).await else { return };
        if let Some(next) = expire(&current, ExpiryCause::NoRoute, self.now()) {
            // Losing the race to a decision is fine: that decision stands.
            let _ = self.apply_transition(&current, next, None, None).await;
        }
    }

    /// RT-9: tells the origin once where the card went. Best-effort, never shows the command.
    async fn send_notice(&self, a: &Approval, delivered: &[Delivered]) {
        let Some(origin) = &a.origin else { return };
        let key = origin.account_key();
        let (Some(cap), Some(routing)) = (self.capability(&key), self.routing_of(&key)) else { return };
        let Some(text) = notice_text(a.short_ref(), origin, delivered, routing.notify_origin_when_dm_only)
        else {
            return;
        };
        let audit = AuditEntry::new(AuditType::NoticeSent, self.now())
            .approval(&a.id)
            .account(key.clone())
            .details(json!({ "text": text }));
        let commit =
            Commit { notice_key: Some(format!("notice:{}", a.id)), audit: vec![audit], ..Commit::default() };
        if self.commit(commit).await.is_err() {
            return; // Already sent (RT-8 layer 6) or the store is down: skip, it is best-effort.
        }
        if let Err(e) = guarded(cap.transport().send_notice(origin, &text)).await {
            tracing::warn!(approval = %a.id, error = %e, "routed-elsewhere notice failed");
        }
    }

    /// One account's targets, in plan order, deduplicated by the channel's `dedupe_key`. Each
    /// success is reported into `delivered` at once, so no-route and notice checks see it.
    /// `fresh`: the approval was just created here, so it has no cards yet to look up.
    async fn deliver_account(
        &self,
        a: &Approval,
        account: &AccountKey,
        targets: Vec<PlannedTarget>,
        fresh: bool,
        delivered: &Mutex<Vec<Delivered>>,
    ) {
        let Some(cap) = self.capability(account) else {
            // ST-7: another replica holds this account and delivers its cards when it sees the
            // approval; count it as a route so this replica does not call it no-route.
            if let Some(standby) = self.standby_routing(account) {
                let surface = targets.first().map_or(Surface::ApproverDm, |t| t.surface);
                lock(delivered).push(Delivered {
                    channel: standby.key.channel,
                    account: standby.key.account,
                    surface,
                });
            }
            return;
        };
        // A re-delivery (restart, re-attach, replication) skips targets that already have a
        // card. A new approval has none, so it skips the read (a reader round trip on SQLite).
        let existing: Vec<String> = if fresh {
            Vec::new()
        } else {
            let entries = self.inner.store.entries(&a.id).await.unwrap_or_default();
            entries.into_iter().filter(|e| &e.account_key() == account).map(|e| e.target_key).collect()
        };
        let mut seen_keys: Vec<String> = Vec::new();
        let mut rendered = Rendered::default();
        for target in targets {
            let target_key = target.to.key();
            if existing.contains(&target_key) {
                continue; // Already has a card (restart or re-attach).
            }
            let Some(_claim) = self.claim(format!("dlv:{}:{account}:{target_key}", a.id)) else { continue };
            let done = self.deliver_target(a, &cap, &target, &mut seen_keys, &mut rendered, delivered).await;
            if let Err(e) = done {
                self.delivery_failed(a, &cap, &target, &e).await;
            }
        }
    }

    async fn deliver_target(
        &self,
        a: &Approval,
        cap: &Arc<dyn DynApprovalCapability>,
        target: &PlannedTarget,
        seen_keys: &mut Vec<String>,
        rendered: &mut Rendered,
        delivered: &Mutex<Vec<Delivered>>,
    ) -> Result<(), CapabilityError> {
        let prepared = match guarded(cap.transport().prepare(target)).await? {
            PrepareOutcome::Ready(p) => p,
            PrepareOutcome::Skip(why) => {
                self.audit_quietly(vec![self.skipped(a, target.account.clone(), Some(target.to.key()), why)])
                    .await;
                return Ok(());
            }
        };
        if seen_keys.contains(&prepared.dedupe_key) {
            if let Some(o) = cap.observe() {
                o.on_duplicate_skipped(target, &prepared.dedupe_key);
            }
            return Ok(());
        }
        seen_keys.push(prepared.dedupe_key.clone());
        let payload = rendered.payload(self, a, cap, target.buttons)?;
        let deadline = self.now() + RETRY_WINDOW.min(self.now().until(a.expires_at));
        let mut attempt = 0;
        let native = loop {
            match guarded(cap.transport().deliver(&prepared, payload)).await {
                Ok(native) => break native,
                Err(e) => {
                    let RetryKind::Transient { retry_after } = e.retry_kind() else { return Err(e) };
                    let wait = retry_after
                        .unwrap_or_else(|| backoff(attempt, Duration::from_secs(1), Duration::from_secs(30)));
                    if self.now() + wait >= deadline || !self.is_pending(&a.id) {
                        return Err(e);
                    }
                    attempt += 1;
                    tokio::time::sleep(wait).await;
                }
            }
        };
        if let Some(o) = cap.observe() {
            o.on_delivered(target);
        }
        // The approver can see the card now: it counts as a route before the ledger write.
        let account = &target.account;
        lock(delivered).push(Delivered {
            channel: account.channel,
            account: account.account.clone(),
            surface: target.surface,
        });
        if let Some(native_ref) = native {
            let data = rendered.event_data(self, a).clone();
            self.record_entry(a, cap, target, native_ref, data).await;
        }
        Ok(())
    }

    async fn record_entry(
        &self,
        a: &Approval,
        cap: &Arc<dyn DynApprovalCapability>,
        target: &PlannedTarget,
        native_ref: serde_json::Value,
        mut data: serde_json::Value,
    ) {
        let now = self.now();
        let mut entry = Entry {
            entry_id: self.inner.ids.entry_id(),
            approval_id: a.id.clone(),
            channel: target.account.channel,
            account: target.account.account.clone(),
            surface: target.surface,
            target_key: target.to.key(),
            native_ref,
            anchor: None,
            state: EntryState::Delivered,
            final_action: None,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            delivered_at: now,
        };
        if let Some(ix) = cap.interactions() {
            match guarded(ix.bind(&entry.native_ref)).await {
                Ok(anchor) => entry.anchor = anchor,
                Err(e) => self.report_hook_error(&target.account, &a.id, "bind", &e.to_string()).await,
            }
        }
        let audit = AuditEntry::new(AuditType::Delivered, now)
            .approval(&a.id)
            .account(target.account.clone())
            .details(json!({ "surface": target.surface, "target": target.to.key() }));
        data["account"] = json!(target.account.to_string());
        data["surface"] = json!(target.surface);
        let ev = event_with(self, EventType::Delivered, a, data);
        let commit = Commit {
            entries: vec![EntryWrite::Insert(entry.clone())],
            audit: vec![audit],
            events: vec![ev],
            ..Commit::default()
        };
        match self.commit(commit).await {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) => return,
            Err(e) => {
                tracing::error!(approval = %a.id, error = %e, "could not record a delivered card");
                return;
            }
        }
        self.index().add_handler(&a.id, &target.account);
        // The card was clickable once bound, before this commit: a quorum vote in between found
        // no card to show its progress on, so show it now (LC-6).
        let voted = matches!(self.index().lookup(&a.id), Lookup::Pending(p) if !p.voters.is_empty());
        if voted {
            self.spawn_progress_update(a);
        }
        // CAP-9: an account detached while this card was in flight missed it when it unbound its
        // anchors; unbind here. The commit came first, so either detach saw the entry or we see
        // the detach (or both, and the second unbind is harmless).
        if let Some(anchor) = &entry.anchor
            && !self.is_attached(cap)
            && let Some(ix) = cap.interactions()
            && let Err(e) = guarded(ix.unbind(anchor)).await
        {
            self.report_hook_error(&target.account, &a.id, "unbind", &e.to_string()).await;
        }
        // A card that lands after the terminal commit is finalized at once (LC-12).
        if !self.is_pending(&a.id) {
            self.spawn_finalize_late(a.id.clone(), entry);
        }
    }

    async fn delivery_failed(
        &self,
        a: &Approval,
        cap: &Arc<dyn DynApprovalCapability>,
        target: &PlannedTarget,
        e: &CapabilityError,
    ) {
        if let Some(o) = cap.observe() {
            o.on_delivery_error(target, &e.to_string());
        }
        let class = match e.retry_kind() {
            RetryKind::Transient { .. } => "transient",
            RetryKind::Permanent => "permanent",
        };
        tracing::warn!(approval = %a.id, account = %target.account, error = %e, class, "delivery failed");
        let details = json!({ "target": target.to.key(), "error": e.to_string(), "class": class });
        let audit = AuditEntry::new(AuditType::DeliveryFailed, self.now())
            .approval(&a.id)
            .account(target.account.clone())
            .details(details.clone());
        let mut ev = event(self, EventType::DeliveryFailed, a);
        ev.data["account"] = json!(target.account.to_string());
        ev.data["error"] = details;
        let _ = self.commit(Commit { audit: vec![audit], events: vec![ev], ..Commit::default() }).await;
    }

    /// An account or target a channel declined (`should_handle`, `prepare`), with its reason,
    /// so an operator can see why a card never came.
    fn skipped(
        &self,
        a: &Approval,
        account: AccountKey,
        target: Option<String>,
        reason: String,
    ) -> AuditEntry {
        tracing::info!(approval = %a.id, %account, reason, "a channel skipped a delivery");
        AuditEntry::new(AuditType::DeliverySkipped, self.now())
            .approval(&a.id)
            .account(account)
            .details(json!({ "target": target, "reason": reason }))
    }

    /// Writes audit entries whose loss only costs diagnostics.
    pub(crate) async fn audit_quietly(&self, audit: Vec<AuditEntry>) {
        if !audit.is_empty() {
            let _ = self.commit(Commit { audit, ..Commit::default() }).await;
        }
    }

    /// The card of `a` as `account` shows it.
    pub(crate) fn card(&self, a: &Approval, account: &AccountKey, buttons: bool) -> CardView {
        let ctx = CardContext {
            account,
            now: self.now(),
            keyring: &self.config().keyring,
            redactor: &self.config().policy.redactor,
            public_url: self.config().public_url.as_deref(),
        };
        CardView::build(a, &ctx, buttons)
    }

    /// Whether a delivered card carries controls: all but forwards without approvers (RT-7).
    pub(crate) fn entry_has_buttons(&self, e: &Entry) -> bool {
        if e.surface != Surface::Forward {
            return true;
        }
        let account = e.account_key();
        let has_approvers = self.routing_of(&account).is_some_and(|r| r.is_active());
        self.config().forwards.iter().any(|f| {
            let key = assent_core::routing::TargetAddr::Conversation {
                conversation: f.to.clone(),
                thread: f.thread.clone(),
            }
            .key();
            f.account == account && key == e.target_key && f.buttons && has_approvers
        })
    }

    pub(crate) fn is_pending(&self, id: &assent_core::id::ApprovalId) -> bool {
        matches!(self.index().lookup(id), crate::index::Lookup::Pending(_))
    }
}

/// What one account's deliveries of an approval share: the card, rendered once per button
/// setting rather than once per target, and the redacted event text.
#[derive(Default)]
struct Rendered {
    payloads: Vec<(bool, Erased)>,
    event_data: Option<serde_json::Value>,
}

impl Rendered {
    fn payload(
        &mut self,
        h: &EngineHandle,
        a: &Approval,
        cap: &Arc<dyn DynApprovalCapability>,
        buttons: bool,
    ) -> Result<&Erased, CapabilityError> {
        let at = match self.payloads.iter().position(|(b, _)| *b == buttons) {
            Some(at) => at,
            None => {
                let view = h.card(a, &cap.account(), buttons);
                self.payloads.push((buttons, guarded_sync(|| cap.presentation().render(&view))?));
                self.payloads.len() - 1
            }
        };
        Ok(&self.payloads[at].1)
    }

    fn event_data(&mut self, h: &EngineHandle, a: &Approval) -> &serde_json::Value {
        self.event_data.get_or_insert_with(|| event_data(h, a))
    }
}

fn lock(m: &Mutex<Vec<Delivered>>) -> std::sync::MutexGuard<'_, Vec<Delivered>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn snapshot(m: &Mutex<Vec<Delivered>>) -> Vec<Delivered> {
    lock(m).clone()
}
