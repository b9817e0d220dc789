//! [`FakeChannel`]: an in-process chat platform implementing [`ApprovalCapability`]. It records
//! every delivery, edit and delete, can fail (transiently or for good), be slow or panic, and
//! injects button clicks, reactions and typed commands as a given user through the same engine
//! calls a real channel makes (precheck → ack → resolve).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use assent_core::{
    capability::{
        ApprovalCapability, Availability, ClassifyError, FinalAction, Handle, Interactions, Observe,
        PrepareOutcome, Prepared, Presentation, RetryKind, Transport,
    },
    card::{CardView, Phase},
    command::TypedMessage,
    id::ApprovalId,
    lifecycle::Rejection,
    model::{AccountKey, Actor, Channel, Decision, Kind, Origin, Surface},
    routing::{AccountRouting, PlannedTarget, TargetAddr},
};
use assent_engine::{Accepted, ApprovalRef, EngineHandle, Inbound, Resolution, ResolveError, TypedOutcome};
use serde::{Deserialize, Serialize};

/// A hook of the fake that can be made to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `prepare`.
    Prepare,
    /// `deliver`.
    Deliver,
    /// `update`.
    Update,
    /// `delete`.
    Delete,
    /// `send_notice`.
    Notice,
    /// `bind`.
    Bind,
}

/// How a hook misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fail with a retryable error (like a 429 or 503).
    Transient,
    /// Fail for good (like a 403 "cannot message user").
    Permanent,
    /// Panic inside the hook.
    Panic,
}

/// The fake platform's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fake {op:?} failed: {fault:?}")]
pub struct FakeError {
    op: Op,
    fault: Fault,
}

impl ClassifyError for FakeError {
    fn retry_kind(&self) -> RetryKind {
        match self.fault {
            Fault::Transient => RetryKind::Transient { retry_after: Some(Duration::from_millis(5)) },
            Fault::Permanent | Fault::Panic => RetryKind::Permanent,
        }
    }
}

/// A rendered card as the fake platform stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FakePayload {
    /// The approval shown.
    pub approval: ApprovalId,
    /// Its kind.
    pub kind: Kind,
    /// Title line.
    pub title: String,
    /// Body text (first block fitted to the budget, then the other blocks).
    pub body: String,
    /// Footer.
    pub footer: String,
    /// Final line, once terminal.
    pub outcome: Option<String>,
    /// Buttons: label and callback token.
    pub buttons: Vec<(String, String)>,
    /// Phase.
    pub phase: Phase,
}

/// A message on the fake platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMessage {
    /// Message id.
    pub id: u64,
    /// Conversation it is in.
    pub conversation: String,
    /// Approval it shows.
    pub approval: ApprovalId,
    /// Kind of that approval.
    pub kind: Kind,
    /// Current content.
    pub payload: FakePayload,
    /// Earlier contents, oldest first.
    pub edits: Vec<FakePayload>,
    /// Deleted by the bot.
    pub deleted: bool,
}

/// The fake's native message reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeEntry {
    /// Message id.
    pub message_id: u64,
    /// Conversation.
    pub conversation: String,
}

/// The fake's reaction anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FakeAnchor {
    /// Message id.
    pub message_id: u64,
}

/// What the fake platform's user saw after a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickOutcome {
    /// The immediate ack text (IX-2).
    pub ack: String,
    /// The durable result; `None` when the precheck already refused.
    pub resolution: Option<Result<Resolution, ResolveError>>,
}

#[derive(Debug)]
struct State {
    routing: AccountRouting,
    configured: bool,
    messages: BTreeMap<u64, FakeMessage>,
    faults: BTreeMap<Op, Vec<Fault>>,
    sticky: BTreeMap<Op, Fault>,
    delays: BTreeMap<Op, Duration>,
    /// Calls in progress, per hook.
    busy: BTreeMap<Op, usize>,
    /// One-shot delays, used before the sticky one.
    next_delays: BTreeMap<Op, Vec<Duration>>,
    notices: Vec<(Origin, String)>,
    private_replies: Vec<(String, String)>,
    /// A set: a bench binds hundreds of thousands of cards.
    anchors: BTreeSet<u64>,
    duplicates: Vec<String>,
    delivery_errors: Vec<String>,
    finalized: Vec<ApprovalId>,
    /// `should_handle` declines every approval with this reason.
    veto: Option<String>,
    /// `prepare` skips every target with this reason.
    skip: Option<String>,
}

/// The fake platform's presentation: its command budget and final action.
#[derive(Debug, Clone, Copy)]
pub struct FakeCards {
    /// Characters of command text a card shows.
    pub budget: usize,
    /// What a decided card becomes.
    pub final_mode: FinalMode,
}

impl Default for FakeCards {
    fn default() -> Self {
        Self { budget: 3000, final_mode: FinalMode::Update }
    }
}

/// Which final action the fake asks for (CAP-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalMode {
    /// Edit to the final card (default).
    Update,
    /// Delete the card.
    Delete,
    /// Strip buttons only.
    ClearActions,
    /// Leave as is.
    Leave,
}

/// An in-process fake chat platform for one account. Clones share state.
#[derive(Debug, Clone)]
pub struct FakeChannel {
    account: AccountKey,
    state: Arc<Mutex<State>>,
    next_id: Arc<AtomicU64>,
    interactions: bool,
    cards: FakeCards,
    /// Accept edits of messages this instance never saw (a fresh fake after a process restart).
    lenient: bool,
}

impl FakeChannel {
    /// A fake account (`channel/account`) with these approvers, DM target, all kinds.
    pub fn new(channel: Channel, account: &str, approvers: &[&str]) -> Self {
        let key = AccountKey::new(channel, account);
        let routing = AccountRouting::new(key.clone(), approvers.iter().map(|s| (*s).to_owned()).collect());
        Self {
            account: key,
            state: Arc::new(Mutex::new(State {
                routing,
                configured: true,
                messages: BTreeMap::new(),
                faults: BTreeMap::new(),
                sticky: BTreeMap::new(),
                delays: BTreeMap::new(),
                next_delays: BTreeMap::new(),
                busy: BTreeMap::new(),
                notices: Vec::new(),
                private_replies: Vec::new(),
                anchors: BTreeSet::new(),
                duplicates: Vec::new(),
                delivery_errors: Vec::new(),
                finalized: Vec::new(),
                veto: None,
                skip: None,
            })),
            next_id: Arc::new(AtomicU64::new(1)),
            interactions: true,
            cards: FakeCards::default(),
            lenient: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The account key.
    pub fn key(&self) -> AccountKey {
        self.account.clone()
    }

    /// Changes the routing settings (before attaching).
    pub fn with_routing(self, f: impl FnOnce(&mut AccountRouting)) -> Self {
        f(&mut self.lock().routing);
        self
    }

    /// Marks the account unconfigured (it stays idle when attached).
    pub fn unconfigured(self) -> Self {
        self.lock().configured = false;
        self
    }

    /// Chooses the final action.
    pub fn final_mode(mut self, mode: FinalMode) -> Self {
        self.cards.final_mode = mode;
        self
    }

    /// Sets the command budget in characters.
    pub fn budget(mut self, chars: usize) -> Self {
        self.cards.budget = chars;
        self
    }

    /// Edits and deletes of unknown messages succeed, as after a process restart where the
    /// platform still has the message but this fake's memory is new.
    pub fn lenient(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// Declines every approval in `should_handle`, with `reason`.
    pub fn vetoing(self, reason: &str) -> Self {
        self.lock().veto = Some(reason.to_owned());
        self
    }

    /// Skips every target in `prepare`, with `reason`.
    pub fn skipping(self, reason: &str) -> Self {
        self.lock().skip = Some(reason.to_owned());
        self
    }

    /// A fake without the interactions seam (no anchors).
    pub fn without_interactions(mut self) -> Self {
        self.interactions = false;
        self
    }

    /// The next `n` calls of `op` fail with `fault`.
    pub fn fail_next(&self, op: Op, fault: Fault, n: usize) {
        self.lock().faults.entry(op).or_default().extend(std::iter::repeat_n(fault, n));
    }

    /// Every call of `op` fails with `fault` until [`FakeChannel::heal`].
    pub fn fail_always(&self, op: Op, fault: Fault) {
        self.lock().sticky.insert(op, fault);
    }

    /// Clears every fault.
    pub fn heal(&self) {
        let mut s = self.lock();
        s.faults.clear();
        s.sticky.clear();
    }

    /// Every call of `op` takes `delay` first.
    pub fn slow(&self, op: Op, delay: Duration) {
        self.lock().delays.insert(op, delay);
    }

    /// The next `n` calls of `op` each take `delay` first (a slow platform, a rate-limit wait).
    pub fn slow_next(&self, op: Op, delay: Duration, n: usize) {
        self.lock().next_delays.entry(op).or_default().extend(std::iter::repeat_n(delay, n));
    }

    /// Calls of `op` in progress now (held by a delay, say).
    pub fn busy(&self, op: Op) -> usize {
        self.lock().busy.get(&op).copied().unwrap_or(0)
    }

    /// All messages, in delivery order.
    pub fn messages(&self) -> Vec<FakeMessage> {
        self.lock().messages.values().cloned().collect()
    }

    /// Messages showing one approval.
    pub fn messages_for(&self, id: &ApprovalId) -> Vec<FakeMessage> {
        self.messages().into_iter().filter(|m| &m.approval == id).collect()
    }

    /// Number of messages delivered so far (cheap; for benchmarks).
    pub fn message_count(&self) -> usize {
        self.lock().messages.len()
    }

    /// Number of `on_finalized` reports so far (cheap; for benchmarks).
    pub fn finalized_count(&self) -> usize {
        self.lock().finalized.len()
    }

    /// Routed-elsewhere notices posted.
    pub fn notices(&self) -> Vec<(Origin, String)> {
        self.lock().notices.clone()
    }

    /// Private replies as (user id, text).
    pub fn private_replies(&self) -> Vec<(String, String)> {
        self.lock().private_replies.clone()
    }

    /// Message ids with a live anchor.
    pub fn anchors(&self) -> Vec<u64> {
        self.lock().anchors.iter().copied().collect()
    }

    /// Dedupe keys reported by `on_duplicate_skipped`.
    pub fn duplicates(&self) -> Vec<String> {
        self.lock().duplicates.clone()
    }

    /// Errors reported by `on_delivery_error`.
    pub fn delivery_errors(&self) -> Vec<String> {
        self.lock().delivery_errors.clone()
    }

    /// Approvals reported by `on_finalized`.
    pub fn finalized(&self) -> Vec<ApprovalId> {
        self.lock().finalized.clone()
    }

    /// A verified actor of this platform.
    pub fn actor(&self, user_id: &str) -> Actor {
        Actor::platform(self.account.channel, user_id, format!("@{user_id}"), Surface::ApproverDm)
    }

    /// Counts a call of `op` as in progress until the guard drops.
    fn enter(&self, op: Op) -> Busy<'_> {
        *self.lock().busy.entry(op).or_default() += 1;
        Busy { fake: self, op }
    }

    async fn misbehave(&self, op: Op) -> Result<(), FakeError> {
        let (delay, fault) = {
            let mut s = self.lock();
            let queued = s.faults.get_mut(&op).and_then(|q| (!q.is_empty()).then(|| q.remove(0)));
            let once = s.next_delays.get_mut(&op).and_then(|q| (!q.is_empty()).then(|| q.remove(0)));
            (once.or_else(|| s.delays.get(&op).copied()), queued.or_else(|| s.sticky.get(&op).copied()))
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        match fault {
            None => Ok(()),
            Some(Fault::Panic) => panic!("fake {op:?} panicked on purpose"),
            Some(fault) => Err(FakeError { op, fault }),
        }
    }

    /// Presses the button for `decision` on message `message_id` as `user_id`, the way a
    /// platform runtime does: verify token and precheck, ack at once, then resolve.
    pub async fn click(
        &self,
        engine: &EngineHandle,
        message_id: u64,
        decision: Decision,
        user_id: &str,
    ) -> ClickOutcome {
        let token = {
            let s = self.lock();
            let label_matches = |(_, t): &&(String, String)| token_decision(t) == Some(decision);
            s.messages
                .get(&message_id)
                .and_then(|m| m.payload.buttons.iter().find(label_matches).map(|(_, t)| t.clone()))
        };
        let Some(token) = token else {
            return ClickOutcome { ack: "no such button".to_owned(), resolution: None };
        };
        self.click_token(engine, &token, user_id).await
    }

    fn inbound(&self, engine: &EngineHandle) -> Inbound {
        Inbound::new(engine.clone(), self.account.clone())
    }

    /// Presses a button with a raw callback token (forged, stale or copied tokens included).
    pub async fn click_token(&self, engine: &EngineHandle, token: &str, user_id: &str) -> ClickOutcome {
        let inbound = self.inbound(engine);
        let actor = self.actor(user_id);
        ack_then_settle(&inbound, &actor, inbound.precheck_token(token, actor.clone())).await
    }

    /// Reacts to a card with a decision (anchor-based, like Matrix reactions). Only bound
    /// messages count.
    pub async fn react(
        &self,
        engine: &EngineHandle,
        message_id: u64,
        decision: Decision,
        user_id: &str,
    ) -> ClickOutcome {
        let target = {
            let s = self.lock();
            let bound = s.anchors.contains(&message_id);
            s.messages.get(&message_id).filter(|_| bound).map(|m| (m.approval.clone(), m.kind))
        };
        let Some((id, kind)) = target else {
            return ClickOutcome { ack: "not an approval card".to_owned(), resolution: None };
        };
        let inbound = self.inbound(engine);
        let actor = self.actor(user_id);
        let precheck = inbound.precheck(ApprovalRef::Id(id), Some(kind), decision, actor.clone());
        ack_then_settle(&inbound, &actor, precheck).await
    }

    /// Types a message as `user_id`; returns the bot's reply, if any.
    pub async fn type_message(&self, engine: &EngineHandle, text: &str, user_id: &str) -> Option<String> {
        let msg = TypedMessage { text, is_edit: false, from_bot: false };
        let inbound = self.inbound(engine);
        match inbound.precheck_typed(self.actor(user_id), msg, Some("assentbot")) {
            TypedOutcome::Ignore => None,
            TypedOutcome::Reply(text) => Some(text),
            TypedOutcome::Rejected(r) => Some(r.to_string()),
            TypedOutcome::Accepted(acc) => Some(match inbound.resolve(acc).await {
                Ok(res) => res.reply,
                Err(ResolveError::Rejected(r)) => r.to_string(),
                Err(e) => e.to_string(),
            }),
        }
    }
}

/// A call in progress; see [`FakeChannel::busy`].
struct Busy<'a> {
    fake: &'a FakeChannel,
    op: Op,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.fake.lock().busy.get_mut(&self.op) {
            *n = n.saturating_sub(1);
        }
    }
}

/// What a platform runtime does with a precheck: ack with its text at once, then settle (a
/// refusal also reaches the clicker privately).
async fn ack_then_settle(
    inbound: &Inbound,
    actor: &Actor,
    precheck: Result<Accepted, Rejection>,
) -> ClickOutcome {
    let ack = match &precheck {
        Err(r) => r.to_string(),
        Ok(acc) => acc.ack_text().to_owned(),
    };
    let resolution = inbound.settle(actor, precheck, &serde_json::Value::Null).await;
    ClickOutcome { ack, resolution }
}

/// Reads the decision out of a token's `d` field without verifying it (test inspection only).
pub fn token_decision(token: &str) -> Option<Decision> {
    match token.split('.').nth(2) {
        Some("o") => Some(Decision::AllowOnce),
        Some("a") => Some(Decision::AllowAlways),
        Some("d") => Some(Decision::Deny),
        _ => None,
    }
}

impl Availability for FakeChannel {
    fn is_configured(&self) -> bool {
        self.lock().configured
    }

    fn routing(&self) -> AccountRouting {
        self.lock().routing.clone()
    }

    fn should_handle(&self, _approval: &assent_core::model::Approval) -> Handle {
        self.lock().veto.clone().map_or(Handle::Yes, Handle::Skip)
    }
}

impl Observe for FakeChannel {
    fn on_duplicate_skipped(&self, _target: &PlannedTarget, dedupe_key: &str) {
        self.lock().duplicates.push(dedupe_key.to_owned());
    }

    fn on_delivery_error(&self, _target: &PlannedTarget, error: &str) {
        self.lock().delivery_errors.push(error.to_owned());
    }

    fn on_finalized(&self, approval: &ApprovalId) {
        self.lock().finalized.push(approval.clone());
    }
}

/// Rendering rules of the fake platform: pure and deterministic (CAP-2).
pub fn render_card(view: &CardView, budget: usize) -> FakePayload {
    let mut body = String::new();
    let mut buttons: Vec<(String, String)> =
        view.controls.iter().map(|c| (c.label.clone(), c.token.clone())).collect();
    if let Some(first) = view.blocks.first() {
        let fitted = first.text.fit(budget);
        body.push_str(&format!("{}:\n{}\n", first.label, fitted.shown));
        if let Some(n) = fitted.notice {
            body.push_str(&format!("{n}\n"));
            // The fake cannot send private text; with no console link only deny stays (PO-11).
            if view.full_text_url.is_none() {
                buttons.retain(|(label, _)| label == "Deny");
            }
        }
    }
    for b in view.blocks.iter().skip(1) {
        body.push_str(&format!("{}:\n{}\n", b.label, b.text.full));
    }
    for f in &view.fields {
        body.push_str(&format!("{}: {}\n", f.label, f.value));
    }
    FakePayload {
        approval: view.id.clone(),
        kind: view.kind,
        title: view.title.clone(),
        body,
        footer: view.footer.clone(),
        outcome: view.outcome.clone(),
        buttons,
        phase: view.phase,
    }
}

impl Presentation<FakeChannel> for FakeCards {
    fn render(&self, view: &CardView) -> Result<FakePayload, FakeError> {
        Ok(render_card(view, self.budget))
    }

    fn finish(&self, view: &CardView, _entry: &FakeEntry) -> FinalAction<FakePayload> {
        match self.final_mode {
            FinalMode::Update => FinalAction::Update(render_card(view, usize::MAX)),
            FinalMode::Delete => FinalAction::Delete,
            FinalMode::ClearActions => FinalAction::ClearActions,
            FinalMode::Leave => FinalAction::Leave,
        }
    }
}

impl ApprovalCapability for FakeChannel {
    type Payload = FakePayload;
    type Prepared = String;
    type Entry = FakeEntry;
    type Anchor = FakeAnchor;
    type Error = FakeError;

    fn account(&self) -> AccountKey {
        self.account.clone()
    }

    fn availability(&self) -> &dyn Availability {
        self
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &self.cards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }

    fn interactions(&self) -> Option<&impl Interactions<Self>> {
        self.interactions.then_some(self)
    }

    fn observe(&self) -> Option<&dyn Observe> {
        Some(self)
    }
}

impl Transport<FakeChannel> for FakeChannel {
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<String>, FakeError> {
        self.misbehave(Op::Prepare).await?;
        if let Some(reason) = self.lock().skip.clone() {
            return Ok(PrepareOutcome::Skip(reason));
        }
        // Like Telegram: a DM's chat id equals the user id, so DM and conversation can coincide.
        let conversation = match &target.to {
            TargetAddr::User { user_id } => user_id.clone(),
            TargetAddr::Conversation { conversation, thread: Some(t) } => format!("{conversation}#{t}"),
            TargetAddr::Conversation { conversation, thread: None } => conversation.clone(),
        };
        Ok(PrepareOutcome::Ready(Prepared {
            planned: target.clone(),
            dedupe_key: conversation.clone(),
            native: conversation,
        }))
    }

    async fn deliver(
        &self,
        target: &Prepared<String>,
        payload: &FakePayload,
    ) -> Result<Option<FakeEntry>, FakeError> {
        self.misbehave(Op::Deliver).await?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (approval, kind) = (payload.approval.clone(), payload.kind);
        self.lock().messages.insert(
            id,
            FakeMessage {
                id,
                conversation: target.native.clone(),
                approval,
                kind,
                payload: payload.clone(),
                edits: Vec::new(),
                deleted: false,
            },
        );
        Ok(Some(FakeEntry { message_id: id, conversation: target.native.clone() }))
    }

    async fn update(&self, entry: &FakeEntry, payload: &FakePayload) -> Result<(), FakeError> {
        let _busy = self.enter(Op::Update);
        self.misbehave(Op::Update).await?;
        let mut s = self.lock();
        let Some(m) = s.messages.get_mut(&entry.message_id) else {
            return if self.lenient {
                Ok(())
            } else {
                Err(FakeError { op: Op::Update, fault: Fault::Permanent })
            };
        };
        let old = std::mem::replace(&mut m.payload, payload.clone());
        m.edits.push(old);
        Ok(())
    }

    async fn delete(&self, entry: &FakeEntry) -> Result<(), FakeError> {
        self.misbehave(Op::Delete).await?;
        let mut s = self.lock();
        let Some(m) = s.messages.get_mut(&entry.message_id) else {
            return if self.lenient {
                Ok(())
            } else {
                Err(FakeError { op: Op::Delete, fault: Fault::Permanent })
            };
        };
        m.deleted = true;
        Ok(())
    }

    async fn reply_private(
        &self,
        actor: &Actor,
        _context: &serde_json::Value,
        text: &str,
    ) -> Result<(), FakeError> {
        self.lock().private_replies.push((actor.user_id.clone(), text.to_owned()));
        Ok(())
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), FakeError> {
        self.misbehave(Op::Notice).await?;
        self.lock().notices.push((origin.clone(), text.to_owned()));
        Ok(())
    }
}

impl Interactions<FakeChannel> for FakeChannel {
    async fn bind(&self, entry: &FakeEntry) -> Result<Option<FakeAnchor>, FakeError> {
        self.misbehave(Op::Bind).await?;
        let mut s = self.lock();
        s.anchors.insert(entry.message_id);
        Ok(Some(FakeAnchor { message_id: entry.message_id }))
    }

    async fn unbind(&self, anchor: &FakeAnchor) -> Result<(), FakeError> {
        self.lock().anchors.remove(&anchor.message_id);
        Ok(())
    }

    async fn clear_actions(&self, entry: &FakeEntry) -> Result<(), FakeError> {
        let mut s = self.lock();
        if let Some(m) = s.messages.get_mut(&entry.message_id) {
            let mut stripped = m.payload.clone();
            stripped.buttons.clear();
            let old = std::mem::replace(&mut m.payload, stripped);
            m.edits.push(old);
        }
        Ok(())
    }

    async fn cancel_delivered(&self, _entry: &FakeEntry) -> Result<(), FakeError> {
        Ok(())
    }
}
