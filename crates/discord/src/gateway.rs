//! The gateway (CH-DC-1): serenity's client and shard runner, on the replica that holds the
//! account (a supervisor opens it when the lease is taken and closes it when it is lost). serenity heartbeats, and after a dropped connection it resumes the session, so
//! Discord replays what was missed ("Resuming"); a click that waited too long meanwhile is
//! refused by Discord (10062) and its clicker told so, never decided silently.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use assent_core::{
    command::TypedMessage,
    model::{Actor, Channel, Surface},
};
use serde_json::{Value, json};
use serenity::{
    all::{Context, EventHandler, GatewayIntents, HttpBuilder, Ready, ShardManager},
    async_trait,
    client::ClientBuilder,
    http::{LightMethod, Route},
    model::{application::Interaction, channel::Message, id::InteractionId},
};
use tokio_util::task::AbortOnDropHandle;

use crate::{
    DiscordAccount, Shared,
    error::{DiscordError, code},
    interactions, rest, snowflake,
};

/// How long `connect` waits for READY.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// "Application Flags": the Message Content intent is granted (or granted while unverified).
const GATEWAY_MESSAGE_CONTENT: u64 = 1 << 19;
const GATEWAY_MESSAGE_CONTENT_LIMITED: u64 = 1 << 18;

/// The bot's application.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub(crate) id: u64,
    /// Typed `/approve` can be read in servers.
    pub(crate) message_content: bool,
}

/// Flags to [`App`]: whether the Message Content intent is granted.
pub(crate) fn message_content(flags: u64) -> bool {
    flags & (GATEWAY_MESSAGE_CONTENT | GATEWAY_MESSAGE_CONTENT_LIMITED) != 0
}

/// `GET /oauth2/applications/@me`: the token's application, checked against `configured`.
pub(crate) async fn application(shared: &Shared, configured: Option<u64>) -> Result<App, DiscordError> {
    let app: Value = shared.rest.json(Route::Oauth2ApplicationCurrent, LightMethod::Get, None).await?;
    let id = snowflake(&app["id"])
        .ok_or_else(|| DiscordError::invalid("Discord described the application without an id"))?;
    if let Some(c) = configured.filter(|c| *c != id) {
        return Err(DiscordError::invalid(format!(
            "application_id = \"{c}\", but the token belongs to application {id}: use that bot's token, or fix the id"
        )));
    }
    Ok(App { id, message_content: message_content(app["flags"].as_u64().unwrap_or(0)) })
}

/// `gateway_url`, or `GET /gateway/bot`, which also says how many session starts are left.
async fn gateway_url(shared: &Shared, account: &DiscordAccount) -> Result<String, DiscordError> {
    if let Some(url) = &account.gateway_url {
        return Ok(url.clone());
    }
    let g: Value = shared.rest.json(Route::GatewayBot, LightMethod::Get, None).await?;
    let limit = &g["session_start_limit"];
    if limit["remaining"].as_u64() == Some(0) {
        let reset = Duration::from_millis(limit["reset_after"].as_u64().unwrap_or(60_000));
        return Err(DiscordError::api(
            429,
            None,
            "the bot used up today's gateway session starts",
            Some(reset),
        ));
    }
    g["url"].as_str().map(str::to_owned).ok_or_else(|| DiscordError::invalid("GET /gateway/bot gave no url"))
}

/// What a gateway session needs, fixed at connect.
#[derive(Clone)]
pub(crate) struct Settings {
    token: String,
    proxy: Option<String>,
    application_id: u64,
    url: String,
    intents: GatewayIntents,
}

impl Settings {
    /// Asks for the gateway URL (unless configured) and works out the intents.
    pub(crate) async fn new(
        shared: &Shared,
        account: &DiscordAccount,
        app: &App,
    ) -> Result<Self, DiscordError> {
        let mut intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
        if app.message_content {
            intents |= GatewayIntents::MESSAGE_CONTENT;
        }
        Ok(Self {
            token: account.token.clone(),
            proxy: rest::proxy_of(&account.api_url).map_err(DiscordError::invalid)?,
            application_id: app.id,
            url: gateway_url(shared, account).await?,
            intents,
        })
    }
}

/// How often the supervisor checks that this replica still holds the account (ST-7: a lost
/// lease stops the handler within 1 s).
const LEASE_CHECK: Duration = Duration::from_millis(250);
/// Longest pause between failed connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The account's gateway: one connection per bot, open only while this replica holds the
/// account, so two replicas never both receive (and answer) the same events.
pub(crate) struct Connection {
    ready: tokio::sync::watch::Receiver<bool>,
    _supervisor: AbortOnDropHandle<()>,
}

impl Connection {
    pub(crate) fn start(shared: Arc<Shared>, settings: Settings) -> Self {
        let (tx, ready) = tokio::sync::watch::channel(false);
        let supervisor = tokio::spawn(supervise(shared, settings, tx));
        Self { ready, _supervisor: AbortOnDropHandle::new(supervisor) }
    }

    /// Waits until the gateway is connected (READY or resumed).
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }
}

async fn supervise(shared: Arc<Shared>, settings: Settings, ready: tokio::sync::watch::Sender<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        while !shared.inbound.is_serving() {
            tokio::time::sleep(LEASE_CHECK).await;
        }
        match Session::open(shared.clone(), &settings).await {
            Ok(mut session) => {
                backoff = Duration::from_secs(1);
                ready.send_replace(true);
                let why = loop {
                    tokio::select! {
                        () = tokio::time::sleep(LEASE_CHECK) => if !shared.inbound.is_serving() {
                            break "this replica no longer holds the account".to_owned();
                        },
                        ended = &mut session.ended => break ended.unwrap_or_else(|_| "the gateway task ended".to_owned()),
                    }
                };
                ready.send_replace(false);
                tracing::info!(account = %shared.key, reason = %why, "Discord gateway closed");
            }
            Err(e) => {
                tracing::warn!(account = %shared.key, error = %e, retry_in = ?backoff, "cannot open the Discord gateway");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One gateway session: serenity's client and its shard; dropping it shuts the shard down.
struct Session {
    shards: Arc<ShardManager>,
    /// Why the client stopped, once it has.
    ended: tokio::sync::oneshot::Receiver<String>,
    _client: AbortOnDropHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let shards = self.shards.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { shards.shutdown_all().await });
        }
    }
}

impl Session {
    /// Connects and waits for READY.
    async fn open(shared: Arc<Shared>, settings: &Settings) -> Result<Self, DiscordError> {
        let mut http = HttpBuilder::new(&settings.token)
            .ratelimiter_disabled(true)
            .application_id(settings.application_id.into());
        if let Some(proxy) = &settings.proxy {
            http = http.proxy(proxy);
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let ready = Arc::new(Mutex::new(Some(ready_tx)));
        let handler = Handler { shared: shared.clone(), ready: ready.clone() };
        let token = settings.token.clone();
        let mut client = ClientBuilder::new_with_http(http.build(), settings.intents)
            .event_handler(handler)
            .await
            .map_err(|e| DiscordError::network(crate::error::scrub(&e.to_string(), &[&token])))?;
        *client.ws_url.lock().await = settings.url.clone();
        let shards = client.shard_manager.clone();
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let why = match client.start().await {
                Ok(()) => "the gateway connection ended".to_owned(),
                Err(e) => crate::error::scrub(&e.to_string(), &[&token]),
            };
            if let Some(tx) = ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                let _ = tx.send(Err(why.clone()));
            }
            let _ = ended_tx.send(why);
        });
        let session = Self { shards, ended, _client: AbortOnDropHandle::new(task) };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(session),
            Ok(Ok(Err(why))) => Err(DiscordError::invalid(format!("the gateway refused the bot: {why}"))),
            Ok(Err(_)) | Err(_) => {
                Err(DiscordError::network("no READY from the Discord gateway within 30 s".to_owned()))
            }
        }
    }
}

/// Told once: READY arrived, or why the gateway refused the bot.
type ReadySignal = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Result<(), String>>>>>;

struct Handler {
    shared: Arc<Shared>,
    ready: ReadySignal,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        tracing::info!(account = %self.shared.key, bot = %ready.user.name, "Discord gateway ready");
        if let Some(tx) = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            let _ = tx.send(Ok(()));
        }
    }

    /// CH-DC-3: the first response goes out before anything else.
    async fn interaction_create(&self, _ctx: Context, interaction: Interaction) {
        let Some(begun) = interactions::begin(&self.shared, &interaction) else { return };
        let (id, token) = match &interaction {
            Interaction::Component(c) => (c.id, c.token.as_str()),
            Interaction::Command(c) => (c.id, c.token.as_str()),
            _ => return,
        };
        let acked = respond(&self.shared, id, token, &begun.response).await;
        let Some(after) = begun.after else { return };
        match acked {
            Err(e) if e.code() == Some(code::UNKNOWN_INTERACTION) => {
                interactions::expired(self.shared.clone(), after).await;
            }
            acked => {
                if let Err(e) = acked {
                    // The click is real even if its answer failed: it is still decided.
                    tracing::warn!(account = %self.shared.key, error = %e, "a Discord interaction response failed");
                }
                interactions::finish(self.shared.clone(), after).await;
            }
        }
    }

    /// CH-DC-6: typed `/approve` (content arrives in servers only with the Message Content
    /// intent).
    async fn message(&self, _ctx: Context, message: Message) {
        typed(&self.shared, &message).await;
    }
}

/// `POST /interactions/{id}/{token}/callback`.
async fn respond(shared: &Shared, id: InteractionId, token: &str, body: &Value) -> Result<(), DiscordError> {
    let route = Route::InteractionResponse { interaction_id: id, token };
    shared.rest.call(route, LightMethod::Post, Some(body)).await
}

async fn typed(shared: &Shared, m: &Message) {
    if m.author.bot {
        return;
    }
    let in_guild = m.guild_id.is_some();
    let display = m.author.global_name.clone().unwrap_or_else(|| m.author.name.clone());
    let surface = if in_guild { Surface::Origin } else { Surface::ApproverDm };
    let actor = Actor::platform(Channel::Discord, m.author.id.get().to_string(), display, surface);
    let msg = TypedMessage { text: &m.content, is_edit: false, from_bot: false };
    let outcome = shared.inbound.precheck_typed(actor, msg, None);
    let Some(reply) = shared.inbound.answer_typed(outcome).await else { return };
    let body = json!({
        "content": crate::cut(&reply),
        "allowed_mentions": { "parse": [] },
        "message_reference": { "message_id": m.id.get().to_string(), "fail_if_not_exists": false },
    });
    if let Err(e) = shared.post(m.channel_id.get(), &body).await {
        tracing::warn!(account = %shared.key, error = %e, "could not answer a typed /approve");
    }
}
