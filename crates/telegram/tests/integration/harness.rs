//! A Telegram bot account on the fake Bot API server, attached to a test engine.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    id::ApprovalId,
    memory::MemoryStore,
    model::{AccountKey, AuditEntry, AuditType, Channel, Decision},
    routing::AccountRouting,
    store::AuditFilter,
};
use assent_engine::{EngineHandle, Inbound};
use assent_fake_telegram::{CallbackAnswer, FakeTelegram, SentMessage, TOKEN};
use assent_telegram::{TelegramAccount, TelegramChannel, TelegramPlatform};
use assent_testing::{
    TestBed,
    channel_contract::{ChannelHarness, ObservedCard, Pressed},
    test_config, token_decision,
};
use async_trait::async_trait;
use tokio::sync::Mutex;

/// The approver's user id (and their private chat's id).
pub(crate) const APPROVER: i64 = 1001;
/// Someone who is not an approver.
pub(crate) const OUTSIDER: i64 = 6666;

/// How long a test waits for the fake: bounds a broken test, asserts no speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh state directory for one bot account.
fn state_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = assent_testing::process_scratch(&std::env::temp_dir(), "assent-telegram");
    base.join(NEXT.fetch_add(1, Ordering::SeqCst).to_string())
}

/// The fake with its people: the approver and an outsider, each having started the bot or not.
async fn fake(started: &[i64]) -> FakeTelegram {
    let fake = FakeTelegram::start().await;
    fake.person(APPROVER, "Kim", Some("kim"));
    fake.person(OUTSIDER, "Eve", None);
    for id in started {
        fake.start_bot(*id);
    }
    fake
}

/// Connects the bot account for `engine`, with [`APPROVER`] as its approver.
async fn connect(fake: &FakeTelegram, engine: &EngineHandle, state: PathBuf) -> TelegramChannel {
    let key = AccountKey::new(Channel::Telegram, "main");
    let account = TelegramAccount::new("main", TOKEN, &fake.url(), state);
    let availability =
        TelegramPlatform::availability(AccountRouting::new(key.clone(), vec![APPROVER.to_string()]));
    TelegramChannel::connect(account, availability, Inbound::new(engine.clone(), key)).await.unwrap()
}

/// The bot's cards of `id` in `chat`.
fn cards_of(fake: &FakeTelegram, chat: i64, id: &ApprovalId) -> Vec<SentMessage> {
    let marker = format!("Ref {}", id.short_ref());
    fake.bot_messages(chat).into_iter().filter(|m| m.text.contains(&marker)).collect()
}

async fn answered(fake: &FakeTelegram, query: &str) -> Vec<CallbackAnswer> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answers = fake.answers(query);
        if !answers.is_empty() {
            return answers;
        }
        assert!(tokio::time::Instant::now() < deadline, "callback query {query} was never answered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An engine with one Telegram account on the fake.
pub(crate) struct Rig {
    pub(crate) fake: FakeTelegram,
    pub(crate) bed: TestBed,
    channel: TelegramChannel,
}

impl Rig {
    /// The fake (with `started` having started the bot), an engine, the account attached.
    pub(crate) async fn start(started: &[i64]) -> Self {
        let fake = fake(started).await;
        // As in production, a card that needs retries still counts as a route: teloxide itself
        // waits 10 s after a 5xx before it reports the error.
        let mut config = test_config();
        config.route_wait = Duration::from_secs(30);
        let bed = TestBed::with_capabilities(Arc::new(MemoryStore::new()), config, Vec::new()).await;
        let channel = connect(&fake, &bed.handle, state_dir()).await;
        bed.handle.attach(channel.clone().erase()).await.unwrap();
        Self { fake, bed, channel }
    }

    /// The account's channel.
    pub(crate) fn channel(&self) -> &TelegramChannel {
        &self.channel
    }

    /// Polls `check` until it holds.
    pub(crate) async fn until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The approver's card of `id`, once delivered.
    pub(crate) async fn card(&self, id: &ApprovalId) -> SentMessage {
        self.until("the card is delivered", || !cards_of(&self.fake, APPROVER, id).is_empty()).await;
        cards_of(&self.fake, APPROVER, id).remove(0)
    }

    /// The callback data of `card`'s button for `decision`.
    pub(crate) fn token(&self, card: &SentMessage, decision: Decision) -> String {
        card.buttons.iter().flatten().find(|(_, d)| token_decision(d) == Some(decision)).unwrap().1.clone()
    }

    /// The answers to a callback query, once there is one.
    pub(crate) async fn answers(&self, query: &str) -> Vec<CallbackAnswer> {
        answered(&self.fake, query).await
    }

    /// The first audit entry of `kind` for `id`, once written.
    pub(crate) async fn audit_of(&self, id: &ApprovalId, kind: AuditType) -> AuditEntry {
        let filter = AuditFilter { approval_id: Some(id.clone()), ..AuditFilter::default() };
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(e) = self.bed.store.audit(&filter).await.unwrap().into_iter().find(|e| e.kind == kind)
            {
                return e;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {kind:?} audit entry for {id}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The channel contract's view of Telegram: cards in the approver's private chat, presses as
/// callback queries, acks as callback answers.
pub(crate) struct TelegramHarness {
    fake: FakeTelegram,
    state: PathBuf,
    channel: Mutex<Option<TelegramChannel>>,
}

impl TelegramHarness {
    pub(crate) async fn start() -> Self {
        Self { fake: fake(&[APPROVER]).await, state: state_dir(), channel: Mutex::new(None) }
    }
}

#[async_trait]
impl ChannelHarness for TelegramHarness {
    async fn capability(&self, engine: &EngineHandle) -> Arc<dyn DynApprovalCapability> {
        let mut current = self.channel.lock().await;
        // A restart: the old bot stops polling before the new one starts.
        drop(current.take());
        let channel = connect(&self.fake, engine, self.state.clone()).await;
        *current = Some(channel.clone());
        channel.erase()
    }

    fn approver(&self) -> String {
        APPROVER.to_string()
    }

    fn outsider(&self) -> String {
        OUTSIDER.to_string()
    }

    fn max_token_bytes(&self) -> usize {
        assent_telegram::CALLBACK_DATA_LIMIT
    }

    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard> {
        cards_of(&self.fake, APPROVER, id)
            .into_iter()
            .map(|m| {
                let tokens: Vec<String> = m.buttons.iter().flatten().map(|(_, d)| d.clone()).collect();
                ObservedCard::with_buttons(
                    m.chat.to_string(),
                    m.id.to_string(),
                    m.text.clone(),
                    tokens,
                    m.deleted,
                )
            })
            .collect()
    }

    async fn press(
        &self,
        _engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed {
        let token = card.token_for(decision).unwrap();
        let (chat, message) = (card.conversation.parse().unwrap(), card.message.parse().unwrap());
        let query = self.fake.press(user.parse().unwrap(), chat, message, token);
        let answers = answered(&self.fake, &query).await;
        Pressed::Answered(answers[0].text.clone().unwrap_or_default())
    }
}
