//! `assent-slack`: approval cards on Slack (CH-SL-1..8), as Block Kit messages with buttons.
//!
//! A card is a message in the approver's DM with the app (opened with `conversations.open`), or
//! in the channel or thread a request came from. A click is acknowledged before anything else,
//! then decided; refusals and the full command reach the clicker with `chat.postEphemeral`. A
//! decided card is edited with `chat.update` to its final blocks, with no buttons. `/approve`
//! (the app's slash command) and plain `approve <ref> <decision>` messages decide too.
//!
//! Events come over Socket Mode (with `app_token`, on the replica that holds the account) or,
//! with `signing_secret`, are POSTed to `/hooks/slack/<id>` on any replica (HTTP mode).
//!
//! slack-morphism provides the Web API client (pointed at `api_url`), the Block Kit models every
//! card is checked against, and request signature verification. Two parts are this crate's own,
//! on purpose:
//! - **the Socket Mode connection** (`socket.rs`): slack-morphism's listener acknowledges an
//!   envelope whose payload it cannot parse, which would show a click as accepted while nothing
//!   is recorded (the defect CH-SL-6 forbids), and always sends a slash command's ack with a
//!   response payload. Ours acknowledges only what it will carry to the engine;
//! - **reading payloads** (`payload.rs`): only the fields assent uses are required, so a payload
//!   that differs elsewhere still decides.

mod card;
mod endpoint;
mod error;
mod events;
mod payload;
mod platform;
mod socket;
mod web;

use std::{collections::HashMap, sync::Arc};

use assent_core::{
    capability::{ApprovalCapability, Availability, PrepareOutcome, Prepared, Presentation, Transport},
    model::{AccountKey, Actor, Origin},
    routing::{PlannedTarget, TargetAddr},
};
use assent_platform::{AccountAvailability, Inbound};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use self::{
    card::{DECIDE_ACTION, FULL_TEXT_ACTION, SlackCard, SlackCards, VALUE_LIMIT, render},
    error::SlackError,
    platform::{SlackKeys, SlackPlatform},
    web::DEFAULT_API_URL,
};

/// One Slack app installation as configured in `[channels.slack.accounts.<id>]`.
#[derive(Clone)]
pub struct SlackAccount {
    /// Account id (`main`).
    pub id: String,
    /// The Bot User OAuth Token (`xoxb-…`).
    pub bot_token: String,
    /// The app-level token (`xapp-…`): events come over Socket Mode.
    pub app_token: Option<String>,
    /// The signing secret: events are POSTed to `/hooks/slack/<id>` (HTTP mode).
    pub signing_secret: Option<String>,
    /// The Web API base URL, `https://slack.com/api` (or a GovSlack or test one).
    pub api_url: String,
}

impl SlackAccount {
    /// A Socket Mode account on `api_url`.
    pub fn socket_mode(id: &str, bot_token: &str, app_token: &str, api_url: &str) -> Self {
        Self {
            id: id.to_owned(),
            bot_token: bot_token.to_owned(),
            app_token: Some(app_token.to_owned()),
            signing_secret: None,
            api_url: api_url.to_owned(),
        }
    }

    /// An HTTP-mode account on `api_url`.
    pub fn http_mode(id: &str, bot_token: &str, signing_secret: &str, api_url: &str) -> Self {
        Self {
            id: id.to_owned(),
            bot_token: bot_token.to_owned(),
            app_token: None,
            signing_secret: Some(signing_secret.to_owned()),
            api_url: api_url.to_owned(),
        }
    }

    fn mode(&self) -> &'static str {
        match (&self.app_token, &self.signing_secret) {
            (Some(_), Some(_)) => "Socket Mode, and HTTP at /hooks/slack",
            (Some(_), None) => "Socket Mode",
            _ => "HTTP mode",
        }
    }
}

impl std::fmt::Debug for SlackAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens and the signing secret stay out of logs and panics.
        f.debug_struct("SlackAccount")
            .field("id", &self.id)
            .field("api_url", &self.api_url)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

/// A delivered card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackEntry {
    /// Conversation id (`D…`, `C…`).
    pub channel: String,
    /// The message's `ts`.
    pub ts: String,
}

/// Where a card goes: a conversation, and a thread in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackTarget {
    /// Conversation id.
    pub channel: String,
    /// The thread's parent `ts`.
    pub thread_ts: Option<String>,
}

pub(crate) struct Shared {
    pub(crate) web: web::Web,
    pub(crate) key: AccountKey,
    pub(crate) availability: AccountAvailability,
    pub(crate) inbound: Inbound,
    /// The workspace, app and bot user, learned once.
    pub(crate) identity: tokio::sync::OnceCell<web::Identity>,
    pub(crate) seen: events::Seen,
    /// DMs opened so far: user id → conversation id.
    dms: tokio::sync::Mutex<HashMap<String, String>>,
}

impl Shared {
    pub(crate) fn new(
        account: &SlackAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, SlackError> {
        Ok(Self {
            web: web::Web::new(&account.api_url, &account.bot_token)?,
            key: inbound.account().clone(),
            availability,
            inbound,
            identity: tokio::sync::OnceCell::new(),
            seen: events::Seen::default(),
            dms: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Who the bot is (`auth.test`, `bots.info`), asked once.
    pub(crate) async fn identity(&self) -> Result<web::Identity, SlackError> {
        self.identity.get_or_try_init(|| self.web.identity()).await.cloned()
    }

    /// The DM with `user`, opened once (CH-SL-5). Cards for several approvals at once wait for
    /// the first `conversations.open` rather than each asking.
    pub(crate) async fn dm(&self, user: &str) -> Result<String, SlackError> {
        let mut dms = self.dms.lock().await;
        if let Some(c) = dms.get(user) {
            return Ok(c.clone());
        }
        let channel = self.web.open_dm(user).await?;
        dms.insert(user.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Plain text to a conversation, pinging nobody.
    pub(crate) async fn say(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
    ) -> Result<(), SlackError> {
        let content = slack_morphism::prelude::SlackMessageContent::new().with_text(card::plain(text));
        self.web.post(channel, thread_ts, &content).await.map(|_| ())
    }
}

/// The Slack channel of one app installation.
#[derive(Clone)]
pub struct SlackChannel {
    shared: Arc<Shared>,
    /// The Socket Mode connection; it closes when the last clone of the channel goes.
    socket: Option<Arc<socket::Connection>>,
}

impl std::fmt::Debug for SlackChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChannel").field("account", &self.shared.key).finish_non_exhaustive()
    }
}

impl SlackChannel {
    /// Checks the bot token (`auth.test`) and learns the app; with an app-level token, Socket
    /// Mode opens while this replica holds the account ([`socket_ready`](Self::socket_ready)
    /// waits for it). Clicks, commands and typed messages are decided through `inbound`.
    pub async fn connect(
        account: SlackAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, SlackError> {
        let shared = Arc::new(Shared::new(&account, availability, inbound)?);
        shared.identity().await?;
        let socket = account.app_token.as_ref().map(|t| {
            Arc::new(socket::Connection::start(
                shared.clone(),
                slack_morphism::prelude::SlackApiToken::new(t.clone().into()),
            ))
        });
        Ok(Self { shared, socket })
    }

    /// Waits until Slack said `hello` on the Socket Mode connection; before that, clicks wait
    /// at Slack. Returns at once in HTTP mode.
    pub async fn socket_ready(&self) {
        if let Some(socket) = &self.socket {
            socket.ready().await;
        }
    }
}

impl ApprovalCapability for SlackChannel {
    type Payload = SlackCard;
    type Prepared = SlackTarget;
    type Entry = SlackEntry;
    type Anchor = ();
    type Error = SlackError;

    fn account(&self) -> AccountKey {
        self.shared.key.clone()
    }

    fn availability(&self) -> &dyn Availability {
        &self.shared.availability
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &SlackCards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }
}

impl Transport<SlackChannel> for SlackChannel {
    /// A user's card goes to their DM with the app, which is also the dedupe key; an origin
    /// card to its conversation and thread, the thread compared as a Slack number (CH-SL-5).
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<SlackTarget>, SlackError> {
        let (native, dedupe_key) = match &target.to {
            TargetAddr::User { user_id } => {
                let channel = self.shared.dm(user_id).await?;
                (SlackTarget { channel: channel.clone(), thread_ts: None }, channel)
            }
            TargetAddr::Conversation { conversation, thread } => {
                let key = match thread {
                    Some(t) => format!("{conversation}:{}", payload::canonical_ts(t)),
                    None => conversation.clone(),
                };
                (SlackTarget { channel: conversation.clone(), thread_ts: thread.clone() }, key)
            }
        };
        Ok(PrepareOutcome::Ready(Prepared { planned: target.clone(), dedupe_key, native }))
    }

    async fn deliver(
        &self,
        target: &Prepared<SlackTarget>,
        card: &SlackCard,
    ) -> Result<Option<SlackEntry>, SlackError> {
        let SlackTarget { channel, thread_ts } = &target.native;
        let ts = self.shared.web.post(channel, thread_ts.as_deref(), &card.content()?).await?;
        Ok(Some(SlackEntry { channel: channel.clone(), ts }))
    }

    async fn update(&self, entry: &SlackEntry, card: &SlackCard) -> Result<(), SlackError> {
        self.shared.web.update(&entry.channel, &entry.ts, &card.content()?).await
    }

    async fn delete(&self, entry: &SlackEntry) -> Result<(), SlackError> {
        self.shared.web.delete(&entry.channel, &entry.ts).await
    }

    /// In the person's DM with the app. Clicks and commands are answered by the crate itself,
    /// ephemerally where the person acted (CH-SL-4); this is for what the engine tells them
    /// otherwise.
    async fn reply_private(&self, actor: &Actor, _context: &Value, text: &str) -> Result<(), SlackError> {
        let dm = self.shared.dm(&actor.user_id).await?;
        self.shared.say(&dm, None, text).await
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), SlackError> {
        self.shared.say(&origin.conversation, origin.thread.as_deref(), text).await
    }
}
