//! `assent-telegram`: approval cards on Telegram (CH-TG-1..7), with inline keyboards.
//!
//! A card is one HTML message in the approver's private chat (a DM's chat id is the user id),
//! or in the group or forum topic a request came from. Its buttons carry the 45-byte callback
//! tokens; a press is answered (`answerCallbackQuery`) with the precheck's text at once, then
//! decided. A decided card is edited to its final text with no keyboard. `/approve <ref>
//! <decision>` works in any chat the bot reads.
//!
//! It speaks the Bot API through teloxide's client (`teloxide-core`, rustls), pointed at
//! `api_url`; updates come by long polling, only on the replica that holds the account.

mod card;
mod error;
mod pace;
mod platform;
mod updates;
mod webhook;

use std::{path::PathBuf, sync::Arc};

use assent_core::{
    capability::{ApprovalCapability, Availability, PrepareOutcome, Prepared, Presentation, Transport},
    model::{AccountKey, Actor, Origin},
    routing::{PlannedTarget, TargetAddr},
};
use assent_platform::{AccountAvailability, Inbound};
use serde::{Deserialize, Serialize};
use teloxide_core::{
    Bot,
    payloads::setters::*,
    requests::Requester,
    types::{ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, ParseMode, ThreadId},
};
use tokio_util::task::AbortOnDropHandle;

pub use self::{
    card::{CALLBACK_DATA_LIMIT, MESSAGE_LIMIT, TelegramCard, TelegramCards, render},
    error::TelegramError,
    platform::{DEFAULT_API_URL, TelegramKeys, TelegramPlatform},
};

/// One Telegram bot account as configured in `[channels.telegram.accounts.<id>]`.
#[derive(Clone)]
pub struct TelegramAccount {
    /// Account id (`main`).
    pub id: String,
    /// The bot token from @BotFather.
    pub token: String,
    /// Bot API base URL, `https://api.telegram.org` or a self-hosted Bot API server.
    pub api_url: String,
    /// Where the account keeps the last update it handled.
    pub state_dir: PathBuf,
    /// In webhook mode, the public URL of the account's hook; `None` polls.
    pub webhook: Option<String>,
}

impl TelegramAccount {
    /// A polling account (set `webhook` for webhook mode).
    pub fn new(id: &str, token: &str, api_url: &str, state_dir: PathBuf) -> Self {
        Self {
            id: id.to_owned(),
            token: token.to_owned(),
            api_url: api_url.to_owned(),
            state_dir,
            webhook: None,
        }
    }
}

impl std::fmt::Debug for TelegramAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs and panics.
        f.debug_struct("TelegramAccount")
            .field("id", &self.id)
            .field("api_url", &self.api_url)
            .field("webhook", &self.webhook)
            .finish_non_exhaustive()
    }
}

/// A delivered card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramEntry {
    /// Chat id.
    pub chat_id: i64,
    /// Message id in the chat.
    pub message_id: i32,
}

/// Where a card goes: a chat, and a forum topic in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramTarget {
    /// Chat id.
    pub chat_id: i64,
    /// Forum topic (`message_thread_id`); `None` for the General topic and other chats.
    pub thread: Option<i32>,
}

pub(crate) struct Shared {
    pub(crate) bot: Bot,
    pub(crate) token: String,
    pub(crate) key: AccountKey,
    /// The bot's @username, from `getMe`, for `/approve@username`.
    username: tokio::sync::OnceCell<String>,
    pub(crate) availability: AccountAvailability,
    pub(crate) inbound: Inbound,
    pub(crate) pacer: pace::Pacer,
    pub(crate) state_dir: PathBuf,
    /// Updates come by webhook: every replica answers the ones it receives.
    pub(crate) pushed: bool,
}

impl Shared {
    /// The account's client and settings; no call is made.
    pub(crate) fn new(
        account: &TelegramAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Self {
        let bot = match url::Url::parse(&account.api_url) {
            Ok(url) => Bot::new(&account.token).set_api_url(url),
            // `account` checked the URL; this only keeps a bad one from panicking.
            Err(_) => Bot::new(&account.token),
        };
        Self {
            bot,
            token: account.token.clone(),
            key: inbound.account().clone(),
            username: tokio::sync::OnceCell::new(),
            availability,
            inbound,
            pacer: pace::Pacer::default(),
            state_dir: account.state_dir.clone(),
            pushed: account.webhook.is_some(),
        }
    }

    /// The bot's @username, asked once.
    pub(crate) async fn username(&self) -> Result<&str, TelegramError> {
        let name = self
            .username
            .get_or_try_init(|| async {
                let me = self.bot.get_me().await.map_err(|e| TelegramError::new(&e, &self.token))?;
                Ok::<_, TelegramError>(me.username.clone().unwrap_or_default())
            })
            .await?;
        Ok(name)
    }
}

/// The Telegram channel of one bot account.
#[derive(Clone)]
pub struct TelegramChannel {
    shared: Arc<Shared>,
    /// The update loop (polling mode); it stops when the last clone of the channel goes.
    _updates: Option<Arc<AbortOnDropHandle<()>>>,
}

impl std::fmt::Debug for TelegramChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramChannel").field("account", &self.shared.key).finish_non_exhaustive()
    }
}

impl TelegramChannel {
    /// Asks the Bot API who the bot is and lists `/approve` in its command menu. In polling
    /// mode it removes any webhook (a mode change) and starts following updates; in webhook
    /// mode it sets the webhook, with a secret only this account knows. Presses and typed
    /// commands are decided through `inbound`.
    pub async fn connect(
        account: TelegramAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, TelegramError> {
        url::Url::parse(&account.api_url)
            .map_err(|e| TelegramError::invalid(format!("api_url = \"{}\": {e}", account.api_url)))?;
        let shared = Arc::new(Shared::new(&account, availability, inbound));
        let wrap = |e: teloxide_core::RequestError| TelegramError::new(&e, &account.token);
        shared.username().await?;
        let approve = teloxide_core::types::BotCommand::new(
            "approve",
            "Decide an approval: /approve <ref> allow-once, allow-always or deny",
        );
        shared.bot.set_my_commands([approve]).await.map_err(wrap)?;
        let updates = match &account.webhook {
            Some(url) => {
                webhook::register(&shared, url).await?;
                None
            }
            None => {
                shared.bot.delete_webhook().await.map_err(wrap)?;
                Some(Arc::new(AbortOnDropHandle::new(tokio::spawn(updates::follow(shared.clone())))))
            }
        };
        Ok(Self { shared, _updates: updates })
    }

    fn error(&self, e: &teloxide_core::RequestError) -> TelegramError {
        TelegramError::new(e, &self.shared.token)
    }

    /// Sends `html` to a chat (and topic), paced; "message thread not found" retries without
    /// the topic (it was closed or deleted).
    pub(crate) async fn send(
        &self,
        chat: i64,
        thread: Option<i32>,
        html: &str,
        buttons: &[(String, String)],
    ) -> Result<i32, TelegramError> {
        send(&self.shared, chat, thread, html, buttons).await
    }
}

fn keyboard(buttons: &[(String, String)]) -> InlineKeyboardMarkup {
    let row: Vec<InlineKeyboardButton> = buttons
        .iter()
        .map(|(label, data)| InlineKeyboardButton::callback(label.clone(), data.clone()))
        .collect();
    InlineKeyboardMarkup::new(if row.is_empty() { Vec::new() } else { vec![row] })
}

pub(crate) async fn send(
    shared: &Shared,
    chat: i64,
    thread: Option<i32>,
    html: &str,
    buttons: &[(String, String)],
) -> Result<i32, TelegramError> {
    let mut thread = thread;
    loop {
        shared.pacer.turn(chat).await;
        let mut request = shared.bot.send_message(ChatId(chat), html).parse_mode(ParseMode::Html);
        if !buttons.is_empty() {
            request = request.reply_markup(keyboard(buttons));
        }
        if let Some(t) = thread {
            request = request.message_thread_id(ThreadId(MessageId(t)));
        }
        match request.await {
            Ok(m) => return Ok(m.id.0),
            Err(e) => {
                let e = TelegramError::new(&e, &shared.token);
                if thread.is_some() && e.says("message thread not found") {
                    thread = None;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

impl ApprovalCapability for TelegramChannel {
    type Payload = TelegramCard;
    type Prepared = TelegramTarget;
    type Entry = TelegramEntry;
    type Anchor = ();
    type Error = TelegramError;

    fn account(&self) -> AccountKey {
        self.shared.key.clone()
    }

    fn availability(&self) -> &dyn Availability {
        &self.shared.availability
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &TelegramCards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }
}

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, TelegramError> {
    s.parse().map_err(|_| TelegramError::invalid(format!("{what} `{s}` is not a Telegram id")))
}

impl Transport<TelegramChannel> for TelegramChannel {
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<TelegramTarget>, TelegramError> {
        // A private chat's id is the user's id (CH-TG-4).
        let native = match &target.to {
            TargetAddr::User { user_id } => {
                TelegramTarget { chat_id: number("user", user_id)?, thread: None }
            }
            TargetAddr::Conversation { conversation, thread } => TelegramTarget {
                chat_id: number("chat", conversation)?,
                thread: thread.as_deref().map(|t| number("topic", t)).transpose()?,
            },
        };
        let dedupe_key = match native.thread {
            Some(t) => format!("{}#{t}", native.chat_id),
            None => native.chat_id.to_string(),
        };
        Ok(PrepareOutcome::Ready(Prepared { planned: target.clone(), dedupe_key, native }))
    }

    async fn deliver(
        &self,
        target: &Prepared<TelegramTarget>,
        card: &TelegramCard,
    ) -> Result<Option<TelegramEntry>, TelegramError> {
        let t = &target.native;
        let message_id = self.send(t.chat_id, t.thread, &card.html, &card.buttons).await?;
        Ok(Some(TelegramEntry { chat_id: t.chat_id, message_id }))
    }

    /// `editMessageText`; an edit that changes nothing ("message is not modified") is done.
    async fn update(&self, entry: &TelegramEntry, card: &TelegramCard) -> Result<(), TelegramError> {
        let request = self
            .shared
            .bot
            .edit_message_text(ChatId(entry.chat_id), MessageId(entry.message_id), &card.html)
            .parse_mode(ParseMode::Html)
            .reply_markup(keyboard(&card.buttons));
        match request.await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.error(&e);
                if e.says("message is not modified") { Ok(()) } else { Err(e) }
            }
        }
    }

    async fn delete(&self, entry: &TelegramEntry) -> Result<(), TelegramError> {
        let request = self.shared.bot.delete_message(ChatId(entry.chat_id), MessageId(entry.message_id));
        request.await.map(|_| ()).map_err(|e| self.error(&e))
    }

    /// Telegram has no ephemeral messages. A press is answered in its callback answer; what
    /// comes after (a decision that could not be recorded) goes to the presser's private chat.
    async fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> Result<(), TelegramError> {
        if context["answered"].as_str() == Some(text) {
            return Ok(());
        }
        let chat = number::<i64>("user", &actor.user_id)?;
        self.send(chat, None, &card::esc(text), &[]).await.map(|_| ())
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), TelegramError> {
        let chat = number::<i64>("chat", &origin.conversation)?;
        let thread = origin.thread.as_deref().map(|t| number("topic", t)).transpose()?;
        self.send(chat, thread, &card::esc(text), &[]).await.map(|_| ())
    }
}
