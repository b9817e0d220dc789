//! A Slack app on the fake Slack, attached to a test engine, in Socket Mode or HTTP mode.

use std::{
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    id::ApprovalId,
    memory::MemoryStore,
    model::{AccountKey, Channel, Decision},
    routing::AccountRouting,
};
use assent_engine::{EngineHandle, Inbound};
use assent_fake_slack::{APP_TOKEN, BOT_TOKEN, Delivery, FakeSlack, SIGNING_SECRET, SentMessage};
use assent_platform::{Hook, HookRequest, Platform};
use assent_slack::{SlackAccount, SlackChannel, SlackPlatform};
use assent_testing::{
    TestBed,
    channel_contract::{ChannelHarness, ObservedCard, Pressed, effect_of_press},
    test_config, token_decision,
};
use async_trait::async_trait;
use tokio::sync::Mutex;

/// The approver's member id.
pub(crate) const APPROVER: &str = "U0APPROVER";
/// A second approver, for quorum.
pub(crate) const SECOND: &str = "U0SECOND01";
/// Someone who is not an approver.
pub(crate) const OUTSIDER: &str = "U0OUTSIDER";

/// How long a test waits for the fake: bounds a broken test, asserts no speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// How events reach the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Socket,
    Http,
}

/// The fake with its people.
pub(crate) async fn fake() -> FakeSlack {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let fake = FakeSlack::start().await;
    fake.person(APPROVER, "kim");
    fake.person(SECOND, "lee");
    fake.person(OUTSIDER, "eve");
    fake
}

pub(crate) fn key() -> AccountKey {
    AccountKey::new(Channel::Slack, "main")
}

pub(crate) fn account(fake: &FakeSlack, mode: Mode) -> SlackAccount {
    match mode {
        Mode::Socket => SlackAccount::socket_mode("main", BOT_TOKEN, APP_TOKEN, &fake.api_url()),
        Mode::Http => SlackAccount::http_mode("main", BOT_TOKEN, SIGNING_SECRET, &fake.api_url()),
    }
}

pub(crate) fn routing(approvers: &[&str]) -> AccountRouting {
    AccountRouting::new(key(), approvers.iter().map(|a| (*a).to_owned()).collect())
}

/// Connects `account` for `engine`.
pub(crate) async fn connect(
    account: SlackAccount,
    engine: &EngineHandle,
    routing: AccountRouting,
) -> SlackChannel {
    let availability = SlackPlatform::availability(routing);
    SlackChannel::connect(account, availability, Inbound::new(engine.clone(), key())).await.unwrap()
}

/// The account's Request URL on loopback, its hook swappable (a restart makes a new one).
#[derive(Clone, Default)]
pub(crate) struct Endpoint {
    hook: Arc<StdMutex<Option<Arc<dyn Hook>>>>,
}

impl Endpoint {
    /// Serves `/hooks/slack/main` on a free port and points the fake at it.
    pub(crate) async fn serve(fake: &FakeSlack) -> Self {
        let endpoint = Self::default();
        let current = endpoint.hook.clone();
        let app = axum::Router::new().route(
            "/hooks/slack/main",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let hook = current.lock().unwrap().clone();
                async move {
                    let Some(hook) = hook else {
                        return (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            [(axum::http::header::CONTENT_TYPE, "text/plain")],
                            String::new(),
                        );
                    };
                    let answer = hook.handle(HookRequest { headers, body: body.to_vec() }).await;
                    (answer.status, [(axum::http::header::CONTENT_TYPE, answer.content_type)], answer.body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/slack/main", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake.set_request_url(&url);
        endpoint
    }

    /// Makes the hook for `engine`, as the server does on every replica.
    pub(crate) fn attach(&self, account: &SlackAccount, engine: &EngineHandle, routing: AccountRouting) {
        let availability = SlackPlatform::availability(routing);
        let hook = SlackPlatform
            .hook(account, &availability, Inbound::new(engine.clone(), key()))
            .expect("a signing secret");
        *self.hook.lock().unwrap() = Some(hook);
    }
}

/// The bot's cards of `id` in `channel` (ephemeral messages left out).
pub(crate) fn cards_in(fake: &FakeSlack, channel: &str, id: &ApprovalId) -> Vec<SentMessage> {
    let marker = format!("Ref {}", id.short_ref());
    fake.bot_messages(channel)
        .into_iter()
        .filter(|m| m.ephemeral_to.is_none() && m.shown.contains(&marker))
        .collect()
}

/// Ephemeral messages shown to `user` in `channel`.
pub(crate) fn ephemerals(fake: &FakeSlack, channel: &str, user: &str) -> Vec<SentMessage> {
    fake.bot_messages(channel).into_iter().filter(|m| m.ephemeral_to.as_deref() == Some(user)).collect()
}

/// What `user` was told privately: ephemeral messages in `channel`, then messages in their DM.
pub(crate) fn answers(fake: &FakeSlack, channel: &str, user: &str) -> Vec<SentMessage> {
    let mut all = ephemerals(fake, channel, user);
    if let Some(dm) = fake.dm_of(user).filter(|dm| dm != channel) {
        all.extend(fake.bot_messages(&dm).into_iter().filter(|m| m.buttons.is_empty()));
    }
    all
}

/// The label the card gives `decision`'s button.
fn decision_label(decision: Decision) -> String {
    match decision {
        Decision::AllowOnce => "Allow once",
        Decision::AllowAlways => "Always allow: this exact command",
        Decision::Deny => "Deny",
    }
    .to_owned()
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

/// Delivery `id` once it was acknowledged (or failed).
pub(crate) async fn acked(fake: &FakeSlack, id: &str) -> Delivery {
    until("the delivery is acknowledged", || fake.delivery(id).filter(|d| d.acked.is_some() || d.failed))
        .await
}

/// The label of `card`'s button for `decision`.
pub(crate) fn label(card: &SentMessage, decision: Decision) -> String {
    card.buttons.iter().find(|(_, _, value)| token_decision(value) == Some(decision)).unwrap().0.clone()
}

/// An engine with one Slack app on the fake.
pub(crate) struct Rig {
    pub(crate) fake: FakeSlack,
    pub(crate) bed: TestBed,
    /// Held for the rig's lifetime: the attached app, and in HTTP mode the endpoint serving it.
    _channel: SlackChannel,
    _endpoint: Option<Endpoint>,
}

impl Rig {
    /// The fake, an engine, the app attached in `mode` with `approvers`.
    pub(crate) async fn start(mode: Mode, approvers: &[&str]) -> Self {
        Self::with(fake().await, mode, routing(approvers)).await
    }

    /// Like [`start`](Self::start), with the fake and routing given.
    pub(crate) async fn with(fake: FakeSlack, mode: Mode, routing: AccountRouting) -> Self {
        let mut config = test_config();
        config.route_wait = Duration::from_secs(30);
        let bed = TestBed::with_capabilities(Arc::new(MemoryStore::new()), config, Vec::new()).await;
        let account = account(&fake, mode);
        let endpoint = match mode {
            Mode::Http => {
                let e = Endpoint::serve(&fake).await;
                e.attach(&account, &bed.handle, routing.clone());
                Some(e)
            }
            Mode::Socket => None,
        };
        let channel = connect(account, &bed.handle, routing).await;
        bed.handle.attach(channel.clone().erase()).await.unwrap();
        channel.socket_ready().await;
        Self { fake, bed, _channel: channel, _endpoint: endpoint }
    }

    /// The card of `id` in `user`'s DM, once delivered.
    pub(crate) async fn dm_card(&self, user: &str, id: &ApprovalId) -> SentMessage {
        until("the card is delivered", || {
            let dm = self.fake.dm_of(user)?;
            cards_in(&self.fake, &dm, id).into_iter().next()
        })
        .await
    }

    /// The message `ts` in `channel`, as it is now.
    pub(crate) fn message(&self, channel: &str, ts: &str) -> SentMessage {
        self.fake.bot_messages(channel).into_iter().find(|m| m.ts == ts).unwrap()
    }
}

/// The channel contract's view of Slack: cards in the approver's DM, presses as `block_actions`
/// over Socket Mode or signed HTTP, refusals as ephemeral messages.
pub(crate) struct SlackHarness {
    fake: FakeSlack,
    mode: Mode,
    endpoint: Option<Endpoint>,
    channel: Mutex<Option<SlackChannel>>,
}

impl SlackHarness {
    pub(crate) async fn start(mode: Mode) -> Self {
        let fake = fake().await;
        let endpoint = match mode {
            Mode::Http => Some(Endpoint::serve(&fake).await),
            Mode::Socket => None,
        };
        Self { fake, mode, endpoint, channel: Mutex::new(None) }
    }
}

#[async_trait]
impl ChannelHarness for SlackHarness {
    async fn capability(&self, engine: &EngineHandle) -> Arc<dyn DynApprovalCapability> {
        let mut current = self.channel.lock().await;
        // A restart: the old connection closes before the new one opens.
        drop(current.take());
        let account = account(&self.fake, self.mode);
        if let Some(e) = &self.endpoint {
            e.attach(&account, engine, routing(&[APPROVER]));
        }
        let channel = connect(account, engine, routing(&[APPROVER])).await;
        *current = Some(channel.clone());
        channel.erase()
    }

    fn approver(&self) -> String {
        APPROVER.to_owned()
    }

    fn outsider(&self) -> String {
        OUTSIDER.to_owned()
    }

    fn max_token_bytes(&self) -> usize {
        assent_slack::VALUE_LIMIT
    }

    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard> {
        let Some(dm) = self.fake.dm_of(APPROVER) else { return Vec::new() };
        cards_in(&self.fake, &dm, id)
            .into_iter()
            .map(|m| {
                let tokens: Vec<String> = m.buttons.iter().map(|(_, _, t)| t.clone()).collect();
                ObservedCard::with_buttons(
                    m.channel.clone(),
                    m.ts.clone(),
                    m.shown.clone(),
                    tokens,
                    m.deleted,
                )
            })
            .collect()
    }

    /// A click is acknowledged first; what the clicker then sees is an ephemeral refusal, or
    /// the card changing. The press returns once either happened.
    async fn press(
        &self,
        engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed {
        // Slack delivers clicks over Socket Mode only to a connected app.
        let channel = self.channel.lock().await.clone().expect("connected");
        channel.socket_ready().await;
        let token = card.token_for(decision).unwrap();
        let id = assent_testing::test_keyring().verify(token, &key()).unwrap().id;
        let before = engine.approval(&id).await.unwrap().unwrap();
        let message =
            self.fake.bot_messages(&card.conversation).into_iter().find(|m| m.ts == card.message).unwrap();
        let shown = message.buttons.iter().find(|(_, _, v)| v == token).map(|b| b.0.clone());
        let seen = answers(&self.fake, &card.conversation, user).len();
        let delivery = match shown {
            Some(label) => self.fake.click(user, &card.conversation, &card.message, &label),
            // A client that still shows the buttons of the card as first posted.
            None => self.fake.click_stale(user, &card.conversation, &card.message, &decision_label(decision)),
        };
        let d = acked(&self.fake, &delivery).await;
        assert!(d.acked.is_some() && !d.failed, "a click is acknowledged within 3 s: {d:?}");
        effect_of_press(engine, &before, PATIENCE, || {
            answers(&self.fake, &card.conversation, user).get(seen).map(|m| m.text.clone())
        })
        .await
    }
}
