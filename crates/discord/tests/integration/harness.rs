//! A Discord bot account on the fake Discord, attached to a test engine.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    id::ApprovalId,
    memory::MemoryStore,
    model::{AccountKey, AuditEntry, AuditType, Channel, Decision},
    routing::AccountRouting,
    store::AuditFilter,
};
use assent_discord::{DiscordAccount, DiscordChannel, DiscordPlatform};
use assent_engine::{EngineHandle, Inbound};
use assent_fake_discord::{FakeDiscord, InteractionRecord, SentMessage, TOKEN};
use assent_platform::Platform;
use assent_testing::{
    TestBed,
    channel_contract::{ChannelHarness, ObservedCard, Pressed, effect_of_press},
    test_config, token_decision,
};
use async_trait::async_trait;
use tokio::sync::Mutex;

/// The approver's user id.
pub(crate) const APPROVER: u64 = 222_222_222_222_222_222;
/// A second approver, for quorum.
pub(crate) const SECOND: u64 = 333_333_333_333_333_333;
/// Someone who is not an approver.
pub(crate) const OUTSIDER: u64 = 666_666_666_666_666_666;

/// How long a test waits for the fake: bounds a broken test, asserts no speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// The fake with its people.
pub(crate) async fn fake() -> FakeDiscord {
    let fake = FakeDiscord::start().await;
    fake.person(APPROVER, "kim");
    fake.person(SECOND, "lee");
    fake.person(OUTSIDER, "eve");
    fake
}

pub(crate) fn key() -> AccountKey {
    AccountKey::new(Channel::Discord, "main")
}

pub(crate) fn account(fake: &FakeDiscord) -> DiscordAccount {
    DiscordAccount::new("main", TOKEN, &fake.api_url())
}

pub(crate) fn routing(approvers: &[u64]) -> AccountRouting {
    AccountRouting::new(key(), approvers.iter().map(u64::to_string).collect())
}

/// Connects `account` for `engine`.
pub(crate) async fn connect(
    account: DiscordAccount,
    engine: &EngineHandle,
    routing: AccountRouting,
) -> DiscordChannel {
    let availability = DiscordPlatform::availability(routing);
    DiscordChannel::connect(account, availability, Inbound::new(engine.clone(), key())).await.unwrap()
}

/// Serves the account's interactions endpoint on loopback; returns its URL.
pub(crate) async fn serve_endpoint(
    account: &DiscordAccount,
    engine: &EngineHandle,
    routing: AccountRouting,
) -> String {
    let availability = DiscordPlatform::availability(routing);
    let hook = DiscordPlatform
        .hook(account, &availability, Inbound::new(engine.clone(), key()))
        .expect("a public key");
    let app = axum::Router::new().route(
        "/hooks/discord/main",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let hook = hook.clone();
            async move {
                let answer = hook.handle(assent_platform::HookRequest { headers, body: body.to_vec() }).await;
                (answer.status, [(axum::http::header::CONTENT_TYPE, answer.content_type)], answer.body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/discord/main", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The bot's cards of `id` in `channel`.
pub(crate) fn cards_in(fake: &FakeDiscord, channel: u64, id: &ApprovalId) -> Vec<SentMessage> {
    let marker = format!("Ref {}", id.short_ref());
    fake.bot_messages(channel).into_iter().filter(|m| m.text().contains(&marker)).collect()
}

/// Polls `check` until it gives a value.
pub(crate) async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The interaction once it was answered (or failed).
pub(crate) async fn acked(fake: &FakeDiscord, id: u64) -> InteractionRecord {
    until("the interaction is answered", || fake.interaction(id).filter(|i| i.ack.is_some() || i.failed))
        .await
}

/// An engine with one Discord account on the fake.
pub(crate) struct Rig {
    pub(crate) fake: FakeDiscord,
    pub(crate) bed: TestBed,
    pub(crate) channel: DiscordChannel,
}

impl Rig {
    /// The fake, an engine, the account attached with `approvers`.
    pub(crate) async fn start(approvers: &[u64]) -> Self {
        let fake = fake().await;
        Self::with(fake, account, routing(approvers)).await
    }

    /// Like [`start`](Self::start), with the account and routing adjusted.
    pub(crate) async fn with(
        fake: FakeDiscord,
        make: fn(&FakeDiscord) -> DiscordAccount,
        routing: AccountRouting,
    ) -> Self {
        let mut config = test_config();
        config.route_wait = Duration::from_secs(30);
        Self::with_config(fake, make, routing, config).await
    }

    /// Like [`with`](Self::with), with an engine configuration.
    pub(crate) async fn with_config(
        fake: FakeDiscord,
        make: fn(&FakeDiscord) -> DiscordAccount,
        routing: AccountRouting,
        config: assent_engine::EngineConfig,
    ) -> Self {
        let bed = TestBed::with_capabilities(Arc::new(MemoryStore::new()), config, Vec::new()).await;
        let channel = connect(make(&fake), &bed.handle, routing).await;
        bed.handle.attach(channel.clone().erase()).await.unwrap();
        channel.gateway_ready().await;
        Self { fake, bed, channel }
    }

    /// The card of `id` in `user`'s DM, once delivered.
    pub(crate) async fn dm_card(&self, user: u64, id: &ApprovalId) -> SentMessage {
        until("the card is delivered", || {
            let dm = self.fake.dm_of(user)?;
            cards_in(&self.fake, dm, id).into_iter().next()
        })
        .await
    }

    /// The custom id of `card`'s button for `decision`.
    pub(crate) fn token(card: &SentMessage, decision: Decision) -> String {
        card.buttons.iter().find(|(_, id)| token_decision(id) == Some(decision)).unwrap().1.clone()
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

/// The channel contract's view of Discord: cards in the approver's DM, presses as button
/// interactions over the gateway, refusals as ephemeral follow-ups.
pub(crate) struct DiscordHarness {
    fake: FakeDiscord,
    channel: Mutex<Option<DiscordChannel>>,
}

impl DiscordHarness {
    pub(crate) async fn start() -> Self {
        Self { fake: fake().await, channel: Mutex::new(None) }
    }
}

#[async_trait]
impl ChannelHarness for DiscordHarness {
    async fn capability(&self, engine: &EngineHandle) -> Arc<dyn DynApprovalCapability> {
        let mut current = self.channel.lock().await;
        // A restart: the old gateway connection closes before the new one opens.
        drop(current.take());
        let channel = connect(account(&self.fake), engine, routing(&[APPROVER])).await;
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
        assent_discord::CUSTOM_ID_LIMIT
    }

    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard> {
        let Some(dm) = self.fake.dm_of(APPROVER) else { return Vec::new() };
        cards_in(&self.fake, dm, id)
            .into_iter()
            .map(|m| {
                let tokens: Vec<String> = m.buttons.iter().map(|(_, t)| t.clone()).collect();
                ObservedCard::with_buttons(
                    m.channel.to_string(),
                    m.id.to_string(),
                    m.text(),
                    tokens,
                    m.deleted,
                )
            })
            .collect()
    }

    /// A click is acked with a deferred update; what the clicker then sees is an ephemeral
    /// refusal, or the card changing. The press returns once either happened.
    async fn press(
        &self,
        engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed {
        // Discord delivers clicks only to a connected bot.
        let channel = self.channel.lock().await.clone().expect("connected");
        channel.gateway_ready().await;
        let token = card.token_for(decision).unwrap();
        let id = assent_testing::test_keyring().verify(token, &key()).unwrap().id;
        let before = engine.approval(&id).await.unwrap().unwrap();
        let interaction = self.fake.click(user.parse().unwrap(), card.message.parse().unwrap(), token);
        let record = acked(&self.fake, interaction).await;
        assert_eq!(record.ack, Some(6), "a click is acked with a deferred update first");
        effect_of_press(engine, &before, PATIENCE, || {
            let record = self.fake.interaction(interaction).unwrap();
            let followup = record.followups.first()?;
            assert!(followup.is_ephemeral(), "refusals are ephemeral");
            Some(followup.content.clone())
        })
        .await
    }
}
