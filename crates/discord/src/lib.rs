//! `assent-discord`: approval cards on Discord (CH-DC-1..7), as embeds with buttons.
//!
//! A card is one embed and one row of buttons, in the approver's DM (opened with
//! `POST /users/@me/channels`) or in the guild channel a request came from. A click is answered
//! with a deferred update (type 6) before anything else, then decided; refusals and the full
//! command reach the clicker as ephemeral follow-ups. A decided card is edited to its final
//! embed with no buttons, or deleted with `cleanup_after_resolve`. `/approve` is an application
//! command everywhere, and typed text where the Message Content intent is granted.
//!
//! Events come over the gateway (serenity's client, on the replica that holds the account) or,
//! with `public_key`, interactions are POSTed to `/hooks/discord/<id>` on any replica.
//!
//! REST goes through serenity's routes and request builder, with this crate's own rate limiting:
//! serenity's ratelimiter ignores `HttpBuilder::proxy`, so it cannot reach an `api_url` other
//! than discord.com, and every account turns it off so that the code tested is the code run.
//! Requests in one bucket (serenity's route and major id) go one at a time; a bucket whose
//! `X-RateLimit-Remaining` reached 0 waits `X-RateLimit-Reset-After`; a 429 waits its
//! `retry_after` (on every route when `global`) for up to three quick attempts, then the
//! engine's retry schedule takes over with the wait Discord named.

mod card;
mod endpoint;
mod error;
mod gateway;
mod interactions;
mod platform;
mod rest;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use assent_core::{
    capability::{ApprovalCapability, Availability, PrepareOutcome, Prepared, Presentation, Transport},
    model::{AccountKey, Actor, Origin},
    routing::{PlannedTarget, TargetAddr},
};
use assent_platform::{AccountAvailability, Inbound};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use serenity::{
    http::{LightMethod, Route},
    model::id::{ChannelId, MessageId},
};

pub use self::{
    card::{CUSTOM_ID_LIMIT, DiscordCard, DiscordCards, render},
    error::DiscordError,
    platform::{DiscordKeys, DiscordPlatform},
    rest::DEFAULT_API_URL,
};

/// One Discord bot account as configured in `[channels.discord.accounts.<id>]`.
#[derive(Clone)]
pub struct DiscordAccount {
    /// Account id (`main`).
    pub id: String,
    /// The bot token from the developer portal.
    pub token: String,
    /// The application id, when configured (checked against the token's application).
    pub application_id: Option<u64>,
    /// The application's public key (hex): interactions come to `/hooks/discord/<id>`.
    pub public_key: Option<String>,
    /// REST base URL, `https://discord.com/api/v10` or a proxy.
    pub api_url: String,
    /// The gateway URL; `None` asks `GET /gateway/bot`.
    pub gateway_url: Option<String>,
    /// Approved and denied cards are deleted once final.
    pub cleanup_after_resolve: bool,
}

impl DiscordAccount {
    /// A gateway account on `api_url`.
    pub fn new(id: &str, token: &str, api_url: &str) -> Self {
        Self {
            id: id.to_owned(),
            token: token.to_owned(),
            application_id: None,
            public_key: None,
            api_url: api_url.to_owned(),
            gateway_url: None,
            cleanup_after_resolve: false,
        }
    }
}

impl std::fmt::Debug for DiscordAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panics.
        f.debug_struct("DiscordAccount")
            .field("id", &self.id)
            .field("application_id", &self.application_id)
            .field("api_url", &self.api_url)
            .field("gateway_url", &self.gateway_url)
            .field("http_interactions", &self.public_key.is_some())
            .finish_non_exhaustive()
    }
}

/// A delivered card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordEntry {
    /// Channel id.
    pub channel_id: u64,
    /// Message id.
    pub message_id: u64,
}

/// Where a card goes: a channel (a DM channel, a guild text channel or a thread).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordTarget {
    /// Channel id.
    pub channel_id: u64,
}

pub(crate) struct Shared {
    pub(crate) rest: rest::Rest,
    pub(crate) key: AccountKey,
    pub(crate) availability: AccountAvailability,
    pub(crate) inbound: Inbound,
    /// DM channels opened so far: user id → channel id.
    dms: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    pub(crate) fn new(
        account: &DiscordAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, DiscordError> {
        let proxy = rest::proxy_of(&account.api_url).map_err(DiscordError::invalid)?;
        Ok(Self {
            rest: rest::Rest::new(&account.token, proxy),
            key: inbound.account().clone(),
            availability,
            inbound,
            dms: Mutex::new(HashMap::new()),
        })
    }

    /// The DM channel with `user`, opened once (CH-DC-4).
    pub(crate) async fn dm(&self, user: u64) -> Result<u64, DiscordError> {
        if let Some(c) = self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&user) {
            return Ok(*c);
        }
        let body = json!({ "recipient_id": user.to_string() });
        let channel: Value = self.rest.json(Route::UserMeDmChannels, LightMethod::Post, Some(&body)).await?;
        let id = snowflake(&channel["id"])
            .ok_or_else(|| DiscordError::invalid("Discord opened a DM with no id"))?;
        self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(user, id);
        Ok(id)
    }

    /// Posts a message; returns its id.
    pub(crate) async fn post(&self, channel: u64, body: &Value) -> Result<u64, DiscordError> {
        let route = Route::ChannelMessages { channel_id: ChannelId::new(channel) };
        let message: Value = self.rest.json(route, LightMethod::Post, Some(body)).await?;
        snowflake(&message["id"]).ok_or_else(|| DiscordError::invalid("Discord created a message with no id"))
    }

    /// Plain text to a channel, pinging nobody.
    pub(crate) async fn say(&self, channel: u64, text: &str) -> Result<u64, DiscordError> {
        self.post(channel, &json!({ "content": cut(text), "allowed_mentions": { "parse": [] } })).await
    }
}

/// "Create Message": content is at most 2,000 characters.
pub(crate) const CONTENT_LIMIT: usize = 2000;

pub(crate) fn cut(text: &str) -> String {
    if text.chars().count() <= CONTENT_LIMIT {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(CONTENT_LIMIT - 1).collect();
    out.push('…');
    out
}

/// A snowflake, which Discord sends as a string.
pub(crate) fn snowflake(v: &Value) -> Option<u64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64())
}

fn id(what: &str, s: &str) -> Result<u64, DiscordError> {
    s.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        DiscordError::invalid(format!(
            "{what} `{s}` is not a Discord id (a snowflake such as 111111111111111111)"
        ))
    })
}

/// The Discord channel of one bot account.
#[derive(Clone)]
pub struct DiscordChannel {
    shared: Arc<Shared>,
    cards: DiscordCards,
    /// The gateway connection; it closes when the last clone of the channel goes.
    gateway: Arc<gateway::Connection>,
}

impl std::fmt::Debug for DiscordChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscordChannel").field("account", &self.shared.key).finish_non_exhaustive()
    }
}

impl DiscordChannel {
    /// Checks the token and application and registers `/approve`; the gateway opens while this
    /// replica holds the account ([`gateway_ready`](Self::gateway_ready) waits for it). Clicks,
    /// commands and typed messages are decided through `inbound`.
    pub async fn connect(
        account: DiscordAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, DiscordError> {
        let shared = Arc::new(Shared::new(&account, availability, inbound)?);
        let app = gateway::application(&shared, account.application_id).await?;
        interactions::register_commands(&shared, app.id).await?;
        let settings = gateway::Settings::new(&shared, &account, &app).await?;
        let connection = gateway::Connection::start(shared.clone(), settings);
        let cards = DiscordCards { cleanup_after_resolve: account.cleanup_after_resolve };
        Ok(Self { shared, cards, gateway: Arc::new(connection) })
    }
}

impl DiscordChannel {
    /// Waits until the gateway is connected: before that, Discord cannot deliver clicks.
    pub async fn gateway_ready(&self) {
        self.gateway.ready().await;
    }
}

impl ApprovalCapability for DiscordChannel {
    type Payload = DiscordCard;
    type Prepared = DiscordTarget;
    type Entry = DiscordEntry;
    type Anchor = ();
    type Error = DiscordError;

    fn account(&self) -> AccountKey {
        self.shared.key.clone()
    }

    fn availability(&self) -> &dyn Availability {
        &self.shared.availability
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &self.cards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }
}

impl Transport<DiscordChannel> for DiscordChannel {
    /// A user's card goes to their DM channel, which is also the dedupe key (CH-DC-4); an origin
    /// card to the channel or thread itself (a thread is a channel).
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<DiscordTarget>, DiscordError> {
        let channel_id = match &target.to {
            TargetAddr::User { user_id } => self.shared.dm(id("user", user_id)?).await?,
            TargetAddr::Conversation { conversation, thread } => match thread {
                Some(t) => id("thread", t)?,
                None => id("channel", conversation)?,
            },
        };
        let native = DiscordTarget { channel_id };
        Ok(PrepareOutcome::Ready(Prepared {
            planned: target.clone(),
            dedupe_key: channel_id.to_string(),
            native,
        }))
    }

    async fn deliver(
        &self,
        target: &Prepared<DiscordTarget>,
        card: &DiscordCard,
    ) -> Result<Option<DiscordEntry>, DiscordError> {
        let channel_id = target.native.channel_id;
        let message_id = self.shared.post(channel_id, &card.body).await?;
        Ok(Some(DiscordEntry { channel_id, message_id }))
    }

    async fn update(&self, entry: &DiscordEntry, card: &DiscordCard) -> Result<(), DiscordError> {
        let route = Route::ChannelMessage {
            channel_id: ChannelId::new(entry.channel_id),
            message_id: MessageId::new(entry.message_id),
        };
        self.shared.rest.call(route, LightMethod::Patch, Some(&card.body)).await
    }

    async fn delete(&self, entry: &DiscordEntry) -> Result<(), DiscordError> {
        let route = Route::ChannelMessage {
            channel_id: ChannelId::new(entry.channel_id),
            message_id: MessageId::new(entry.message_id),
        };
        match self.shared.rest.call(route, LightMethod::Delete, None).await {
            Err(e) if e.code() == Some(error::code::UNKNOWN_MESSAGE) => Ok(()),
            other => other,
        }
    }

    /// An ephemeral follow-up on the click's interaction token (CH-DC-3); without one, a DM.
    async fn reply_private(&self, actor: &Actor, context: &Value, text: &str) -> Result<(), DiscordError> {
        if let Some(reply) = interactions::Reply::from_context(context) {
            return reply.ephemeral(&self.shared, text).await;
        }
        let channel = self.shared.dm(id("user", &actor.user_id)?).await?;
        self.shared.say(channel, text).await.map(|_| ())
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), DiscordError> {
        let channel = match &origin.thread {
            Some(t) => id("thread", t)?,
            None => id("channel", &origin.conversation)?,
        };
        self.shared.say(channel, text).await.map(|_| ())
    }
}
