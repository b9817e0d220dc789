//! [`FakeChannel`]: an in-process chat platform implementing
//! [`ApprovalCapability`](assent_core::capability::ApprovalCapability). It records
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
    capability::{ClassifyError, RetryKind},
    card::Phase,
    id::ApprovalId,
    model::{AccountKey, Channel, Kind, Origin},
    routing::AccountRouting,
};
use assent_engine::{Resolution, ResolveError};
use serde::{Deserialize, Serialize};

pub use self::{capability::render_card, user::token_decision};

mod capability;
mod user;

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
#[derive(Debug, Clone)]
pub struct FakeCards {
    /// Characters of command text a card shows.
    pub budget: usize,
    /// What a decided card becomes.
    pub final_mode: FinalMode,
    /// Cards rendered so far (shared by clones), so tests can see what rendering is shared.
    renders: Arc<AtomicU64>,
}

impl Default for FakeCards {
    fn default() -> Self {
        Self { budget: 3000, final_mode: FinalMode::Update, renders: Arc::default() }
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

    /// Cards this account has rendered with `Presentation::render` (deliveries and progress
    /// edits; a final card is `finish`'s).
    pub fn renders(&self) -> u64 {
        self.cards.renders.load(Ordering::Relaxed)
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
