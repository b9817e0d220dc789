//! The channel contract (CAP-11). Every channel crate implements [`ChannelHarness`] over its
//! platform fake (or a real server, for Matrix) and invokes [`channel_contract_tests!`](crate::channel_contract_tests).
//!
//! A press is either acknowledged by the platform at once (buttons: the ack text is checked) or
//! has no ack at all (Matrix reactions): then only its effect in the engine is checked, the
//! same way for both.

#![allow(clippy::unwrap_used)] // Contract cases are tests: a failed step must fail loudly.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    card::Phase,
    id::ApprovalId,
    lifecycle::Rejection,
    memory::MemoryStore,
    model::{Actor, AuditType, Decision, EntryState, Status},
    policy::PolicyRule,
    store::AuditFilter,
};
use assent_engine::{ApprovalRef, Authority, EngineConfig, EngineHandle, Interaction};
use async_trait::async_trait;

use crate::{ClickOutcome, FakeChannel, TestBed, exec_request, fake::token_decision, test_config};

/// A card as an approver sees it on the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedCard {
    /// Where the card is: chat, channel or room id.
    pub conversation: String,
    /// Platform message id.
    pub message: String,
    /// Visible text.
    pub text: String,
    /// Callback tokens of the live controls.
    pub tokens: Vec<String>,
    /// Decisions the live controls offer.
    pub decisions: Vec<Decision>,
    /// Deleted by the bot.
    pub deleted: bool,
}

impl ObservedCard {
    /// A card with buttons: the decisions its live controls offer are read from their `tokens`.
    pub fn with_buttons(
        conversation: String,
        message: String,
        text: String,
        tokens: Vec<String>,
        deleted: bool,
    ) -> Self {
        let decisions = tokens.iter().filter_map(|t| token_decision(t)).collect();
        Self { conversation, message, text, tokens, decisions, deleted }
    }

    /// The callback token of the control offering `decision`, if the card shows one.
    pub fn token_for(&self, decision: Decision) -> Option<&str> {
        self.tokens.iter().map(String::as_str).find(|t| token_decision(t) == Some(decision))
    }
}

/// What a press acknowledged with a bare ack led to: waits up to `patience` for the presser's
/// reply, which `reply` looks for on the platform, or for the approval's status or votes to move
/// away from `before` (read just before the press).
pub async fn effect_of_press(
    engine: &EngineHandle,
    before: &assent_core::model::Approval,
    patience: Duration,
    mut reply: impl FnMut() -> Option<String>,
) -> Pressed {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the press had no visible effect");
        if let Some(text) = reply() {
            return Pressed::Answered(text);
        }
        let now = engine.approval(&before.id).await.unwrap().unwrap();
        if now.status != before.status || now.quorum.votes.len() != before.quorum.votes.len() {
            return Pressed::Handled;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a press did on the platform.
#[derive(Debug)]
pub enum Pressed {
    /// The platform acknowledged it at once (a button): the ack and what followed.
    Acked(Box<ClickOutcome>),
    /// The platform showed the presser this ack (a callback answer); what followed is only
    /// visible in the engine, so the contract checks its effect there.
    Answered(String),
    /// It has no ack (a Matrix reaction). The harness returns once the channel has handled it
    /// (for Matrix: once the bot answered a message sent after the reaction).
    Handled,
}

/// One channel under contract test.
#[async_trait]
pub trait ChannelHarness: Send + Sync {
    /// The engine configuration to test with; a real server may need longer delivery waits
    /// than [`test_config`]'s.
    fn config(&self) -> EngineConfig {
        test_config()
    }
    /// A fresh capability for the account, routing what it receives into `engine`; called
    /// again after a simulated restart (the previous one is no longer used).
    async fn capability(&self, engine: &EngineHandle) -> Arc<dyn DynApprovalCapability>;
    /// An approver's platform user id.
    fn approver(&self) -> String;
    /// A user who is not an approver.
    fn outsider(&self) -> String;
    /// The platform's limit for a control's callback data, in bytes.
    fn max_token_bytes(&self) -> usize;
    /// Cards of one approval visible on the platform.
    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard>;
    /// Presses `decision` on `card` as `user` through the platform's own path.
    async fn press(
        &self,
        engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed;
}

/// Generates one test per contract case for the harness made by `$factory`, an async expression
/// yielding `Arc<dyn ChannelHarness>`.
#[macro_export]
macro_rules! channel_contract_tests {
    ($factory:expr) => {
        $crate::__channel_contract_cases!($factory;
            cap_11_card_is_delivered_with_fitting_tokens,
            cap_11_approver_press_acks_resolves_and_finalizes,
            cap_11_outsider_press_changes_nothing,
            cap_11_late_press_is_refused_quietly,
            cap_11_restart_keeps_cards_resolvable,
            cap_11_deny_finalizes_with_reason,
            cap_11_the_last_edit_matches_the_approval);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __channel_contract_cases {
    ($factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness: ::std::sync::Arc<dyn $crate::channel_contract::ChannelHarness> = $factory.await;
                $crate::channel_contract::$name(harness).await;
            }
        )*
    };
}

async fn bed(h: &dyn ChannelHarness) -> TestBed {
    bed_with(h, h.config()).await
}

async fn bed_with(h: &dyn ChannelHarness, config: EngineConfig) -> TestBed {
    let bed = TestBed::with_capabilities(Arc::new(MemoryStore::new()), config, Vec::new()).await;
    bed.handle.attach(h.capability(&bed.handle).await).await.unwrap();
    bed
}

/// How long a contract case waits for the platform: bounds a broken test, asserts no speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it yields something, for up to [`PATIENCE`] of real time.
async fn poll<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first card of `id` that satisfies `ready`.
async fn card_where(
    h: &dyn ChannelHarness,
    id: &ApprovalId,
    what: &str,
    ready: impl Fn(&ObservedCard) -> bool,
) -> ObservedCard {
    poll(&format!("the card of {id} {what}"), || async {
        h.cards(id).await.into_iter().next().filter(&ready)
    })
    .await
}

/// The card of `a`, once it offers every allowed decision (a platform may add its controls one
/// by one, like Matrix's seeded reactions).
async fn first_card(h: &dyn ChannelHarness, a: &assent_core::model::Approval) -> ObservedCard {
    card_where(h, &a.id, "offers the allowed decisions", |c| c.decisions == a.allowed_decisions).await
}

/// Presses; the platform's ack, if it has one.
async fn press(
    h: &dyn ChannelHarness,
    bed: &TestBed,
    card: &ObservedCard,
    decision: Decision,
    user: &str,
) -> Option<ClickOutcome> {
    match h.press(&bed.handle, card, decision, user).await {
        Pressed::Acked(outcome) => Some(*outcome),
        Pressed::Answered(ack) => Some(ClickOutcome { ack, resolution: None }),
        Pressed::Handled => None,
    }
}

/// The approval once it reached a terminal status.
async fn decided(bed: &TestBed, id: &ApprovalId) -> assent_core::model::Approval {
    let a = bed.handle.wait(id, PATIENCE).await.unwrap();
    assert!(a.status.is_terminal(), "{id} was not decided: {:?}", a.status);
    a
}

async fn settled(h: &dyn ChannelHarness, id: &ApprovalId) -> ObservedCard {
    card_where(h, id, "was finalized", |c| c.deleted || c.decisions.is_empty()).await
}

/// CAP-2, CH-CARD-2: one card per approver target, controls for exactly the allowed decisions,
/// tokens within the platform's limit.
pub async fn cap_11_card_is_delivered_with_fitting_tokens(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["deploy", "--prod"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    assert!(card.text.contains("deploy --prod"), "{}", card.text);
    assert!(card.text.contains(a.short_ref()), "the ref is shown: {}", card.text);
    assert!(card.tokens.iter().all(|t| t.len() <= h.max_token_bytes()));
    assert_eq!(h.cards(&a.id).await.len(), 1, "one approver, one card");
}

/// IX-2, CAP-3, LC-12: the ack comes from the precheck, the decision is durable, the card ends
/// without controls and shows who decided.
pub async fn cap_11_approver_press_acks_resolves_and_finalizes(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["make", "release"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    if let Some(pressed) = press(&*h, &bed, &card, Decision::AllowOnce, &h.approver()).await {
        assert_eq!(pressed.ack, "Recording: allow once");
        if let Some(res) = pressed.resolution {
            assert_eq!(res.expect("resolved").approval.status, Status::Approved);
        }
    }
    assert_eq!(decided(&bed, &a.id).await.status, Status::Approved);
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Approved);
    let done = settled(&*h, &a.id).await;
    assert!(done.deleted || done.text.contains("Approved once by"), "{}", done.text);
}

/// IX-4: a non-approver's press is refused before the ack, changes nothing and is audited.
pub async fn cap_11_outsider_press_changes_nothing(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["rm", "-rf", "/srv/data"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    if let Some(pressed) = press(&*h, &bed, &card, Decision::AllowOnce, &h.outsider()).await {
        assert_eq!(pressed.ack, Rejection::Unauthorized.to_string());
        assert!(pressed.resolution.is_none());
    }
    assert_eq!(bed.handle.stats().refused("unauthorized"), 1, "refused by the precheck");
    let filter = AuditFilter { approval_id: Some(a.id.clone()), ..AuditFilter::default() };
    poll("the refused press is audited", || async {
        let audit = bed.store.audit(&filter).await.unwrap();
        audit.iter().any(|e| e.kind == AuditType::InteractionRejected).then_some(())
    })
    .await;
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

/// IX-8, LC-5: a press after the decision gets the winner's rejection and nothing changes.
pub async fn cap_11_late_press_is_refused_quietly(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    press(&*h, &bed, &card, Decision::Deny, &h.approver()).await;
    assert_eq!(decided(&bed, &a.id).await.status, Status::Denied);
    // With no ack, a late press may also be ignored outright once the card is final.
    if let Some(late) = press(&*h, &bed, &card, Decision::AllowOnce, &h.approver()).await {
        assert!(late.ack.starts_with("Already denied by"), "{}", late.ack);
        assert_eq!(bed.handle.stats().refused("already_resolved"), 1, "the late press is counted");
    }
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Denied);
}

/// LC-13: after a restart the old card still resolves.
pub async fn cap_11_restart_keeps_cards_resolvable(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["systemctl", "restart", "web"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    let bed = bed.restart_with(Vec::new()).await;
    bed.handle.attach(h.capability(&bed.handle).await).await.unwrap();
    if let Some(pressed) = press(&*h, &bed, &card, Decision::AllowOnce, &h.approver()).await {
        assert_eq!(pressed.ack, "Recording: allow once");
        assert!(pressed.resolution.is_none_or(|r| r.is_ok()));
    }
    assert_eq!(decided(&bed, &a.id).await.status, Status::Approved);
    let done = settled(&*h, &a.id).await;
    assert!(done.deleted || done.text.contains("Approved once"), "{}", done.text);
}

/// CH-CARD-1: a denied card names the decider and has no controls left.
pub async fn cap_11_deny_finalizes_with_reason(h: Arc<dyn ChannelHarness>) {
    let bed = bed(&*h).await;
    let a = bed.handle.create(exec_request(&["drop", "table"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    press(&*h, &bed, &card, Decision::Deny, &h.approver()).await;
    assert_eq!(decided(&bed, &a.id).await.status, Status::Denied);
    let done = settled(&*h, &a.id).await;
    assert!(done.deleted || done.text.contains("Denied by"), "{}", done.text);
}

/// The card-state invariant: the last edit a card received matches its approval's state. A
/// quorum vote edits the card to its progress; the deciding vote (here from the console) lands
/// right after; once every card is finalized, the card is final and stays so.
pub async fn cap_11_the_last_edit_matches_the_approval(h: Arc<dyn ChannelHarness>) {
    let mut config = h.config();
    config.policy.rules = vec![PolicyRule { quorum: 2, ..PolicyRule::implicit() }];
    let bed = bed_with(&*h, config).await;
    let a = bed.handle.create(exec_request(&["deploy", "--canary"])).await.unwrap();
    let card = first_card(&*h, &a).await;
    let pressed = press(&*h, &bed, &card, Decision::AllowOnce, &h.approver()).await;
    if let Some(res) = pressed.and_then(|p| p.resolution) {
        assert_eq!(res.expect("resolved").progress, Some((1, 2)));
    }
    poll("the first vote is recorded", || async {
        let stored = bed.store.approval(&a.id).await.unwrap().unwrap();
        (stored.quorum.votes.len() == 1).then_some(())
    })
    .await;
    let ix = Interaction {
        approval: ApprovalRef::Id(a.id.clone()),
        kind: Some(a.kind()),
        decision: Decision::AllowOnce,
        actor: Actor::console("kim"),
        authority: Authority::Approver,
        reason: None,
        grant_scope: None,
    };
    let decided_now = bed.handle.resolve(bed.handle.precheck(&ix).unwrap()).await.unwrap();
    assert_eq!(decided_now.approval.status, Status::Approved);
    poll("every card is finalized", || async {
        let entries = bed.store.entries(&a.id).await.unwrap();
        entries.iter().all(|e| e.state == EntryState::Finalized).then_some(())
    })
    .await;
    let done = settled(&*h, &a.id).await;
    assert!(done.deleted || done.text.contains("Approved once by"), "{}", done.text);
    // Nothing edits it back afterwards.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = h.cards(&a.id).await.remove(0);
    assert!(still.deleted || still.decisions.is_empty(), "a decided card got its controls back: {still:?}");
    assert!(!still.text.contains("Approvals 1/2"), "a decided card shows progress again: {}", still.text);
}

/// The [`FakeChannel`] as a [`ChannelHarness`]: approver `42`, outsider `666`.
#[derive(Debug, Clone)]
pub struct FakeHarness {
    channel: FakeChannel,
}

impl FakeHarness {
    /// A Telegram-like fake with one approver.
    pub fn shared() -> Arc<dyn ChannelHarness> {
        Arc::new(Self { channel: FakeChannel::new(assent_core::model::Channel::Telegram, "main", &["42"]) })
    }
}

#[async_trait]
impl ChannelHarness for FakeHarness {
    async fn capability(&self, _engine: &EngineHandle) -> Arc<dyn DynApprovalCapability> {
        self.channel.clone().erase()
    }

    fn approver(&self) -> String {
        "42".to_owned()
    }

    fn outsider(&self) -> String {
        "666".to_owned()
    }

    fn max_token_bytes(&self) -> usize {
        64
    }

    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard> {
        self.channel
            .messages_for(id)
            .into_iter()
            .map(|m| {
                let p = &m.payload;
                let text = format!(
                    "{}\n{}\n{}\n{}",
                    p.title,
                    p.body,
                    p.footer,
                    p.outcome.clone().unwrap_or_default()
                );
                let open = matches!(p.phase, Phase::Pending | Phase::Progress);
                let tokens: Vec<String> =
                    if open { p.buttons.iter().map(|(_, t)| t.clone()).collect() } else { Vec::new() };
                ObservedCard::with_buttons(m.conversation.clone(), m.id.to_string(), text, tokens, m.deleted)
            })
            .collect()
    }

    async fn press(
        &self,
        engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed {
        // Press the control the user saw, even if the card changed since (IX-8 stale controls).
        let Some(token) = card.token_for(decision) else {
            return Pressed::Acked(Box::new(ClickOutcome {
                ack: "no such button".to_owned(),
                resolution: None,
            }));
        };
        Pressed::Acked(Box::new(self.channel.click_token(engine, token, user).await))
    }
}
