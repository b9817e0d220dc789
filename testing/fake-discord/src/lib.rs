//! A fake Discord for tests, on loopback and a free port.
//!
//! A bot under test talks to it through its real client; only the base URLs differ: REST at
//! `{url}/api/v10` and the gateway at the `ws://` URL that `GET /gateway/bot` gives. It answers
//! the routes an approval bot uses with Discord's documented shapes, limits and errors, runs a
//! gateway session (Hello, Identify, READY, heartbeats, Resume, dispatches), enforces the
//! 3-second interaction deadline, and has a user side: people who click buttons, run slash
//! commands and type, in a DM or a guild channel. Faults can be injected per route, and the
//! gateway connection can be closed or dropped.
//!
//! Each behaviour cites the section of <https://discord.com/developers/docs> it follows.

mod gateway;
mod interactions;
mod rest;
mod state;
mod validate;
mod wire;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{Router, routing::any};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

pub use self::state::Fault;
use self::{
    interactions::{APPLICATION_COMMAND, MESSAGE_COMPONENT, PING},
    state::{ChannelState, Person, Place, State, StoredMessage},
};

/// The bot's token (`Authorization: Bot <token>`).
pub const TOKEN: &str = "MTA1ODk5MjYzMDEyMzQ1Njc4OQ.GfAkEx.fake-discord-test-token_0123456789abcdef";
/// The application's id (and its bot user's).
pub const APPLICATION_ID: u64 = 1_058_992_630_123_456_789;
/// The bot user's id.
pub const BOT_ID: u64 = APPLICATION_ID;
/// The bot's username.
pub const BOT_NAME: &str = "assent-test";
/// The one guild the bot is in.
pub const GUILD_ID: u64 = 1_100_000_000_000_000_001;

/// Shared between the handlers and the test's handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped whenever the gateway session has something new (a dispatch or a kick).
    ticks: tokio::sync::watch::Sender<u64>,
    addr: SocketAddr,
    key: SigningKey,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tick(&self) {
        self.ticks.send_modify(|n| *n += 1);
    }

    pub(crate) fn gateway_url(&self) -> String {
        format!("ws://{}/gateway", self.addr)
    }

    /// The application's public key, hex, as the developer portal shows it.
    pub(crate) fn public_key(&self) -> String {
        hex(self.key.verifying_key().as_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A message as the fake stores it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// Message id.
    pub id: u64,
    /// Channel id.
    pub channel: u64,
    /// The author: `None` for the bot.
    pub author: Option<u64>,
    /// `content`.
    pub content: String,
    /// `embeds`, as sent.
    pub embeds: Vec<Value>,
    /// The custom ids of its buttons, and their labels: (label, custom id).
    pub buttons: Vec<(String, String)>,
    /// `allowed_mentions`, as sent.
    pub allowed_mentions: Option<Value>,
    /// Message flags (64: ephemeral).
    pub flags: u64,
    /// How many times it was edited.
    pub edits: usize,
    /// Deleted by the bot.
    pub deleted: bool,
}

impl SentMessage {
    /// Shown only to the person who acted (flag 64).
    pub fn is_ephemeral(&self) -> bool {
        self.flags & interactions::EPHEMERAL != 0
    }

    /// The first embed's title, description, fields and footer, as one text.
    pub fn text(&self) -> String {
        let Some(e) = self.embeds.first() else { return self.content.clone() };
        let fields: Vec<String> = e["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("{}: {}", f["name"].as_str().unwrap_or(""), f["value"].as_str().unwrap_or("")))
            .collect();
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.content,
            e["title"].as_str().unwrap_or(""),
            e["description"].as_str().unwrap_or(""),
            fields.join("\n"),
            e["footer"]["text"].as_str().unwrap_or("")
        )
    }
}

/// What became of an interaction.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRecord {
    /// The first response's type (6: deferred update), if any arrived in time.
    pub ack: Option<u8>,
    /// How long after the person acted the first response arrived.
    pub ack_delay: Option<Duration>,
    /// The person saw "This interaction failed": no response within 3 s.
    pub failed: bool,
    /// Responses after the first, each refused.
    pub extra_acks: usize,
    /// Follow-up messages, in order.
    pub followups: Vec<SentMessage>,
    /// The original response (a deferred one once edited), if any.
    pub original: Option<SentMessage>,
}

/// A running fake; it stops when the handle is dropped.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    /// The runtime the fake started on: endpoint deliveries run there, whichever thread a
    /// test acts from.
    runtime: tokio::runtime::Handle,
    _server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDiscord").field("addr", &self.shared.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self._server.abort();
    }
}

impl FakeDiscord {
    /// Starts the fake: one application and bot ([`TOKEN`]), one guild, nobody else yet. The app
    /// is granted the Message Content intent unless [`deny_message_content`](Self::deny_message_content).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the fake: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let state = State { message_content: true, session_starts: 1000, ..State::default() };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            ticks: tokio::sync::watch::channel(0).0,
            addr,
            key: SigningKey::from_bytes(&[7; 32]),
        });
        let app = Router::new()
            .route("/api/v10/{*path}", any(rest::call))
            .route("/gateway", any(gateway::upgrade))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, runtime: tokio::runtime::Handle::current(), _server: server }
    }

    /// The REST base URL to give the bot (`api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api/v10", self.shared.addr)
    }

    /// The gateway URL `GET /gateway/bot` gives.
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url()
    }

    /// The application's public key (hex), for verifying interaction deliveries.
    pub fn public_key(&self) -> String {
        self.shared.public_key()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Adds a person; their DMs are open.
    pub fn person(&self, id: u64, name: &str) {
        self.lock().people.insert(id, Person { name: name.to_owned(), dms_open: true });
    }

    /// `id` turns off DMs from the bot: sending to them fails with 50007.
    pub fn close_dms(&self, id: u64) {
        if let Some(p) = self.lock().people.get_mut(&id) {
            p.dms_open = false;
        }
    }

    /// A text channel in the guild; returns its id.
    pub fn guild_channel(&self) -> u64 {
        let mut s = self.lock();
        let id = s.id();
        s.channels
            .insert(id, ChannelState { place: Place::Guild { guild: GUILD_ID }, sends: VecDeque::new() });
        id
    }

    /// The DM channel between the bot and `user`, if one was opened.
    pub fn dm_of(&self, user: u64) -> Option<u64> {
        let s = self.lock();
        s.channels.iter().find(|(_, c)| c.place == Place::Dm { recipient: user }).map(|(id, _)| *id)
    }

    /// The application is not granted the Message Content intent: an Identify asking for it is
    /// closed with 4014, and guild messages arrive without content.
    pub fn deny_message_content(&self) {
        self.lock().message_content = false;
    }

    /// Interactions are POSTed to `url` (signed), not sent over the gateway, as when an
    /// "Interactions Endpoint URL" is set in the developer portal.
    pub fn set_interactions_endpoint(&self, url: &str) {
        self.lock().endpoint = Some(url.to_owned());
    }

    /// `user` clicks the button with `custom_id` on message `message`. Returns the interaction
    /// id. Panics if the message never showed such a button: people click what they see.
    pub fn click(&self, user: u64, message: u64, custom_id: &str) -> u64 {
        let mut s = self.lock();
        let m =
            s.messages.get(&message).filter(|m| !m.deleted).unwrap_or_else(|| panic!("no message {message}"));
        let versions = std::iter::once(&m.components).chain(m.edits.iter().map(|(_, c)| c));
        let shown = versions.flat_map(|c| wire::custom_ids(c)).any(|id| id == custom_id);
        assert!(shown, "message {message} never showed a button {custom_id}");
        let channel = m.channel;
        let (id, payload) = interactions::create(
            &mut s,
            MESSAGE_COMPONENT,
            user,
            channel,
            interactions::component_data(custom_id),
            Some(message),
        );
        drop(s);
        self.deliver(id, payload);
        id
    }

    /// `user` runs the registered slash command `name` in `channel` with string options.
    /// Returns the interaction id. Panics if the bot never registered the command.
    pub fn slash(&self, user: u64, channel: u64, name: &str, options: &[(&str, &str)]) -> u64 {
        let mut s = self.lock();
        let command = s.commands.iter().find(|c| c["name"] == name).cloned();
        let command = command.unwrap_or_else(|| panic!("the bot registered no /{name}"));
        let data = interactions::command_data(&command, options);
        let (id, payload) = interactions::create(&mut s, APPLICATION_COMMAND, user, channel, data, None);
        drop(s);
        self.deliver(id, payload);
        id
    }

    /// Discord checks the endpoint with a PING; returns the interaction id.
    pub fn ping(&self) -> u64 {
        let (id, payload) = interactions::create(&mut self.lock(), PING, 0, 0, Value::Null, None);
        self.deliver(id, payload);
        id
    }

    /// `user` types `text` in `channel`; returns the message id.
    pub fn type_text(&self, user: u64, channel: u64, text: &str) -> u64 {
        let mut s = self.lock();
        let id = s.id();
        let body = json!({ "content": text });
        let mut m: StoredMessage = rest::new_message(id, channel, &body, None);
        m.author = Some(user);
        s.messages.insert(id, m);
        let dm = matches!(s.channels.get(&channel).map(|c| &c.place), Some(Place::Dm { .. }));
        let (subscribed, content) = gateway::message_visibility(s.gateway.intents, dm, s.message_content);
        if subscribed {
            let mut payload = wire::message(&s, &s.messages[&id]);
            if !content {
                payload["content"] = json!("");
            }
            s.dispatch("MESSAGE_CREATE", payload);
        }
        drop(s);
        self.shared.tick();
        id
    }

    /// Sends an interaction over the gateway, or signed to the endpoint.
    fn deliver(&self, id: u64, payload: Value) {
        let endpoint = self.lock().endpoint.clone();
        match endpoint {
            None => {
                self.lock().dispatch("INTERACTION_CREATE", payload);
                self.shared.tick();
            }
            Some(url) => {
                let shared = self.shared.clone();
                self.runtime.spawn(async move { post_interaction(shared, url, id, payload).await });
            }
        }
    }

    /// What became of interaction `id` (deadline applied).
    pub fn interaction(&self, id: u64) -> Option<InteractionRecord> {
        let mut s = self.lock();
        s.expire();
        let i = s.interactions.get(&id)?.clone();
        let message = |m: u64| s.messages.get(&m).map(sent);
        Some(InteractionRecord {
            ack: i.acked.map(|(_, k)| k),
            ack_delay: i.acked.map(|(at, _)| at.duration_since(i.created)),
            failed: i.failed,
            extra_acks: i.extra_acks,
            followups: i.followups.iter().filter_map(|m| message(*m)).collect(),
            original: i.original.filter(|_| i.kind != MESSAGE_COMPONENT).and_then(message),
        })
    }

    /// Interactions people saw fail ("This interaction failed"), deadline applied.
    pub fn failed_interactions(&self) -> usize {
        let mut s = self.lock();
        s.expire();
        s.interactions.values().filter(|i| i.failed).count()
    }

    /// The bot's messages in `channel` (not interaction responses), in order.
    pub fn bot_messages(&self, channel: u64) -> Vec<SentMessage> {
        let s = self.lock();
        s.messages
            .values()
            .filter(|m| m.channel == channel && m.author.is_none() && m.interaction.is_none())
            .map(sent)
            .collect()
    }

    /// One message.
    pub fn message(&self, id: u64) -> Option<SentMessage> {
        self.lock().messages.get(&id).map(sent)
    }

    /// The application's commands, as the last bulk overwrite left them.
    pub fn commands(&self) -> Vec<Value> {
        self.lock().commands.clone()
    }

    /// Calls of `route` so far (`create_message`, `interaction_callback`, …), refused ones
    /// included.
    pub fn calls(&self, route: &str) -> usize {
        self.lock().calls.get(route).copied().unwrap_or(0)
    }

    /// 429s the rate limits gave (injected ones not counted).
    pub fn rate_limited(&self) -> usize {
        self.lock().rate_limited
    }

    /// The next call of `route` misbehaves as `fault` (faults queue up per route).
    pub fn fail_next(&self, route: &str, fault: Fault) {
        self.lock().faults.entry(route.to_owned()).or_default().push_back(fault);
    }

    /// Closes the gateway connection with `code` (4000: "Unknown error", the client resumes),
    /// or drops it without a close frame when `None`.
    pub fn disconnect_gateway(&self, code: Option<u16>) {
        let mut s = self.lock();
        s.gateway.kick = (s.gateway.kick.0 + 1, code);
        drop(s);
        self.shared.tick();
    }

    /// Whether a gateway connection is live, and the Identifies and Resumes so far.
    pub fn gateway_sessions(&self) -> (bool, usize, usize) {
        let s = self.lock();
        (s.gateway.live, s.gateway.identifies, s.gateway.resumes)
    }

    /// The most gateway connections the bot ever had open at once (more than one: two
    /// processes answer the same events).
    pub fn gateway_peak(&self) -> usize {
        self.lock().gateway.peak
    }

    /// Endpoint deliveries not answered with 200: (interaction id, status; 0 when the
    /// connection failed).
    pub fn endpoint_refusals(&self) -> Vec<(u64, u16)> {
        self.lock().endpoint_refusals.clone()
    }

    /// The intents of the last Identify.
    pub fn intents(&self) -> u64 {
        self.lock().gateway.intents
    }
}

fn sent(m: &StoredMessage) -> SentMessage {
    let buttons = m
        .components
        .iter()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|b| {
            let label = b["label"].as_str().unwrap_or_default().to_owned();
            (label, b["custom_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect();
    SentMessage {
        id: m.id,
        channel: m.channel,
        author: m.author,
        content: m.content.clone(),
        embeds: m.embeds.clone(),
        buttons,
        allowed_mentions: m.allowed_mentions.clone(),
        flags: m.flags,
        edits: m.edits.len(),
        deleted: m.deleted,
    }
}

/// "Receiving an Interaction" over HTTP: POSTed with `X-Signature-Ed25519` over
/// `X-Signature-Timestamp` + body; the answer's body is the interaction response.
async fn post_interaction(shared: Arc<Shared>, url: String, id: u64, payload: Value) {
    let body = payload.to_string();
    let timestamp = (state::unix_ms() / 1000).to_string();
    let signature = hex(&shared.key.sign(format!("{timestamp}{body}").as_bytes()).to_bytes());
    let token = payload["token"].as_str().unwrap_or_default().to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut r = agent
            .post(&url)
            .header("content-type", "application/json")
            .header("x-signature-ed25519", signature)
            .header("x-signature-timestamp", timestamp)
            .send(body)
            .map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok::<_, String>((status, text))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let mut s = shared.lock();
    match answer {
        Ok((200, text)) => {
            let response: Value = serde_json::from_str(&text).unwrap_or_default();
            if interactions::respond(&mut s, id, &token, &response).is_err() {
                tracing::warn!(id, "fake-discord: the endpoint's response was refused");
            }
        }
        other => {
            s.endpoint_refusals.push((id, other.map(|(status, _)| status).unwrap_or(0)));
        }
    }
}
