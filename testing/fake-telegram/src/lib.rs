//! A fake Telegram Bot API server for tests, on loopback and a free port.
//!
//! A bot under test talks to it through its real client; only the base URL differs
//! (`{url}/bot<token>/<method>`, as the Bot API documents under "Making requests"). It answers
//! the methods an approval bot uses with the documented shapes, limits and errors, and it has a
//! user side: people who start the bot, press its buttons and type, in a private chat, a group or
//! a forum topic. Faults can be injected per method.
//!
//! Each behaviour cites the section of <https://core.telegram.org/bots/api> it follows.

mod api;
mod html;
mod state;
mod wire;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use axum::{Router, routing::any};
use serde_json::{Value, json};

use self::state::{Bot, Chat, ChatKind, Person, Query, State, StoredMessage};
pub use self::state::{CallbackAnswer, Fault};

/// Shared between the handlers and the test's handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    webhook_wake: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn wake_webhook(&self, _token: &str) {
        self.webhook_wake.notify_waiters();
    }
}

/// A message as the fake stores it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// Message id in its chat.
    pub id: i64,
    /// Chat id.
    pub chat: i64,
    /// The sender: `None` for the bot.
    pub from: Option<i64>,
    /// Visible text, markup taken out.
    pub text: String,
    /// The text as sent, with its HTML markup.
    pub html: String,
    /// The forum topic.
    pub thread: Option<i64>,
    /// Inline buttons, row by row: (label, callback data).
    pub buttons: Vec<Vec<(String, String)>>,
    /// Earlier versions of the text, oldest first.
    pub edits: Vec<String>,
    /// Deleted by the bot.
    pub deleted: bool,
}

/// A running fake; it stops when the handle is dropped.
pub struct FakeTelegram {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _server: tokio::task::JoinHandle<()>,
    _webhooks: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTelegram").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self._server.abort();
        self._webhooks.abort();
    }
}

/// The default bot's token.
pub const TOKEN: &str = "123456789:AAHfake-telegram-test-token_0123456789";

impl FakeTelegram {
    /// Starts the fake with one bot, `@assent_test_bot`, whose token is [`TOKEN`].
    pub async fn start() -> Self {
        let shared = Arc::new(Shared { state: Mutex::default(), webhook_wake: tokio::sync::Notify::new() });
        {
            let mut s = shared.lock();
            s.bots.push(Bot::new(123_456_789, TOKEN.to_owned(), "assent_test_bot".to_owned()));
            s.next_group = -1_001_000_000_000;
        }
        let app = Router::new().route("/{bot}/{method}", any(api::call)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the fake: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let webhooks = tokio::spawn(deliver_webhooks(shared.clone()));
        Self { shared, addr, _server: server, _webhooks: webhooks }
    }

    /// The base URL to give the bot (`api_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Adds a person.
    pub fn person(&self, id: i64, first_name: &str, username: Option<&str>) {
        let mut s = self.lock();
        s.people.retain(|p| p.id != id);
        s.people.push(Person {
            id,
            first_name: first_name.to_owned(),
            username: username.map(str::to_owned),
        });
    }

    /// `id` opens a private chat with the bot and sends `/start`; before that, the bot cannot
    /// message them (403).
    pub fn start_bot(&self, id: i64) {
        let mut s = self.lock();
        let person = s.person(id).cloned().unwrap_or_else(|| panic!("no person {id}; add them first"));
        let bot = &mut s.bots[0];
        bot.blocked_by.remove(&id);
        bot.chats.entry(id).or_insert_with(|| Chat::new(id, ChatKind::Private(person)));
        drop(s);
        self.type_text(id, id, None, "/start");
    }

    /// `id` blocks the bot: sending to them fails with 403 "bot was blocked by the user".
    pub fn block_bot(&self, id: i64) {
        self.lock().bots[0].blocked_by.insert(id);
    }

    /// A supergroup the bot is a member of; a forum when `forum` is true. Returns its chat id.
    pub fn group(&self, title: &str, forum: bool) -> i64 {
        let mut s = self.lock();
        let id = s.next_group;
        s.next_group -= 1;
        s.bots[0].chats.insert(id, Chat::new(id, ChatKind::Group { title: title.to_owned(), forum }));
        id
    }

    /// A topic in forum `chat`; returns its `message_thread_id` (the id of the message that made it).
    pub fn topic(&self, chat: i64, name: &str) -> i64 {
        let mut s = self.lock();
        let c = s.bots[0].chats.get_mut(&chat).unwrap_or_else(|| panic!("no chat {chat}"));
        let id = c.add(StoredMessage::new(None, name.to_owned(), name.to_owned(), None, None));
        c.topics.insert(id, name.to_owned());
        id
    }

    /// `user` types `text` in `chat` (in forum topic `thread`, if given). Returns the message id.
    pub fn type_text(&self, user: i64, chat: i64, thread: Option<i64>, text: &str) -> i64 {
        let mut s = self.lock();
        let people = s.people.clone();
        let bot = &mut s.bots[0];
        let c = bot.chats.get_mut(&chat).unwrap_or_else(|| panic!("the bot is not in chat {chat}"));
        let id = c.add(StoredMessage::new(Some(user), text.to_owned(), text.to_owned(), thread, None));
        let message = wire::message(bot, &bot.chats[&chat], &bot.chats[&chat].messages[&id], &people);
        bot.push_update("message", message);
        id
    }

    /// `user` presses the button carrying `data` on the bot's message `message` in `chat`.
    /// Returns the callback query id. Panics if no such button is shown: people can only press
    /// what they see.
    pub fn press(&self, user: i64, chat: i64, message: i64, data: &str) -> String {
        self.callback(user, chat, message, data, true)
    }

    /// Like [`press`](Self::press), but the update carries no `message`, as for a message too old
    /// for Telegram to include ("CallbackQuery": `message` is optional).
    pub fn press_without_message(&self, user: i64, chat: i64, message: i64, data: &str) -> String {
        self.callback(user, chat, message, data, false)
    }

    fn callback(&self, user: i64, chat: i64, message: i64, data: &str, with_message: bool) -> String {
        let mut s = self.lock();
        s.next_query += 1;
        let id = format!("{}{:010}", 4_200_000_000u64, s.next_query);
        let people = s.people.clone();
        let from =
            people.iter().find(|p| p.id == user).map_or_else(|| panic!("no person {user}"), wire::user);
        let bot = &mut s.bots[0];
        let c = bot.chats.get(&chat).unwrap_or_else(|| panic!("the bot is not in chat {chat}"));
        let m =
            c.messages.get(&message).filter(|m| !m.deleted).unwrap_or_else(|| panic!("no message {message}"));
        // A client may still show a keyboard the bot has since edited away: any version counts.
        let versions = std::iter::once(m.markup.as_ref()).chain(m.edits.iter().map(|(_, k)| k.as_ref()));
        let shown = versions.flat_map(|k| buttons(k).into_iter().flatten()).any(|(_, d)| d == data);
        assert!(shown, "message {message} never showed a button with data {data}");
        let mut query = json!({ "id": id, "from": from, "chat_instance": format!("{}", chat.unsigned_abs() * 7), "data": data });
        if with_message {
            query["message"] = wire::message(bot, c, m, &people);
        }
        let token = bot.token.clone();
        bot.push_update("callback_query", query);
        s.queries.insert(
            id.clone(),
            Query { bot: token, created: Instant::now(), answers: Vec::new(), answered: None },
        );
        id
    }

    /// What the bot answered to a callback query, in order (more than one is a bug).
    pub fn answers(&self, query: &str) -> Vec<CallbackAnswer> {
        self.lock().queries.get(query).map(|q| q.answers.clone()).unwrap_or_default()
    }

    /// How long after the press the bot's first answer to `query` arrived, if it did.
    pub fn answer_delay(&self, query: &str) -> Option<Duration> {
        let s = self.lock();
        let q = s.queries.get(query)?;
        q.answered.map(|at| at.duration_since(q.created))
    }

    /// The bot's messages and people's messages in `chat`, in order.
    pub fn messages(&self, chat: i64) -> Vec<SentMessage> {
        let s = self.lock();
        let Some(c) = s.bots[0].chats.get(&chat) else { return Vec::new() };
        c.messages
            .values()
            .filter(|m| !c.topics.contains_key(&m.id))
            .map(|m| SentMessage {
                id: m.id,
                chat,
                from: m.from,
                text: m.text.clone(),
                html: m.html.clone(),
                thread: m.thread,
                buttons: buttons(m.markup.as_ref()),
                edits: m.edits.iter().map(|(t, _)| t.clone()).collect(),
                deleted: m.deleted,
            })
            .collect()
    }

    /// The bot's own messages in `chat`.
    pub fn bot_messages(&self, chat: i64) -> Vec<SentMessage> {
        self.messages(chat).into_iter().filter(|m| m.from.is_none()).collect()
    }

    /// The commands set with `setMyCommands`.
    pub fn commands(&self) -> Value {
        self.lock().bots[0].commands.clone()
    }

    /// The webhook URL, if one is set.
    pub fn webhook(&self) -> Option<String> {
        self.lock().bots[0].webhook.as_ref().map(|w| w.url.clone())
    }

    /// Updates not yet confirmed or delivered.
    pub fn pending_updates(&self) -> usize {
        self.lock().bots[0].updates.len()
    }

    /// `getUpdates` calls a newer call ended with 409: more than one poller at a time.
    pub fn poll_conflicts(&self) -> usize {
        self.lock().conflicts
    }

    /// Calls of `method` so far (case-insensitive), including refused ones.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().calls.get(&method.to_ascii_lowercase()).copied().unwrap_or(0)
    }

    /// The next call of `method` misbehaves as `fault` (faults queue up per method).
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.lock().faults.entry(method.to_ascii_lowercase()).or_default().push_back(fault);
    }
}

/// Inline buttons of a markup: (label, callback data), row by row.
fn buttons(markup: Option<&Value>) -> Vec<Vec<(String, String)>> {
    let rows = markup.and_then(|m| m["inline_keyboard"].as_array()).cloned().unwrap_or_default();
    rows.iter()
        .map(|row| {
            row.as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    let label = b["text"].as_str().unwrap_or_default().to_owned();
                    (label, b["callback_data"].as_str().unwrap_or_default().to_owned())
                })
                .collect()
        })
        .collect()
}

/// "setWebhook": updates are POSTed as JSON to the URL, with the secret in
/// `X-Telegram-Bot-Api-Secret-Token`; an update is done when the answer is 2xx, else it is
/// retried and the error shows in `getWebhookInfo`.
async fn deliver_webhooks(shared: Arc<Shared>) {
    loop {
        let next = {
            let s = shared.lock();
            s.bots.iter().find_map(|b| {
                let w = b.webhook.as_ref()?;
                let u = b.updates.front()?;
                Some((b.token.clone(), w.url.clone(), w.secret.clone(), u.clone()))
            })
        };
        let Some((token, url, secret, update)) = next else {
            let woken = shared.webhook_wake.notified();
            let _ = tokio::time::timeout(Duration::from_millis(50), woken).await;
            continue;
        };
        let sent = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut request = agent.post(&url);
            if let Some(secret) = secret {
                request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
            }
            request.send_json(&update).map(|r| r.status().as_u16()).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let failed = {
            let mut s = shared.lock();
            let Some(bot) = s.bot_mut(&token) else { continue };
            match sent {
                Ok(status) if (200..300).contains(&status) => {
                    bot.updates.pop_front();
                    false
                }
                failed => {
                    let message = match failed {
                        Ok(status) => format!("Wrong response from the webhook: {status}"),
                        Err(e) => format!("Connection refused: {e}"),
                    };
                    if let Some(w) = bot.webhook.as_mut() {
                        w.last_error = Some((state::unix_now(), message));
                    }
                    true
                }
            }
        };
        if failed {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
