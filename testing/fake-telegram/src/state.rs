//! What the fake Telegram knows: bots, people, chats, messages, pending updates, callback
//! queries and injected faults.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use tokio::sync::Notify;

/// A person using Telegram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub(crate) id: i64,
    pub(crate) first_name: String,
    pub(crate) username: Option<String>,
}

/// A private chat with a person, or a supergroup (a forum when it has topics).
#[derive(Debug, Clone)]
pub(crate) enum ChatKind {
    Private(Person),
    Group { title: String, forum: bool },
}

/// One chat as one bot sees it.
#[derive(Debug)]
pub(crate) struct Chat {
    pub(crate) id: i64,
    pub(crate) kind: ChatKind,
    pub(crate) messages: BTreeMap<i64, StoredMessage>,
    pub(crate) next_message_id: i64,
    /// Forum topics: thread id → name.
    pub(crate) topics: BTreeMap<i64, String>,
    /// When the bot's recent messages were sent here, for the rate limits.
    pub(crate) sends: VecDeque<Instant>,
}

impl Chat {
    pub(crate) fn new(id: i64, kind: ChatKind) -> Self {
        Self {
            id,
            kind,
            messages: BTreeMap::new(),
            next_message_id: 1,
            topics: BTreeMap::new(),
            sends: VecDeque::new(),
        }
    }

    pub(crate) fn is_private(&self) -> bool {
        matches!(self.kind, ChatKind::Private(_))
    }

    pub(crate) fn add(&mut self, mut m: StoredMessage) -> i64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        m.id = id;
        self.messages.insert(id, m);
        id
    }
}

/// A message in a chat.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) id: i64,
    /// `None`: the bot sent it.
    pub(crate) from: Option<i64>,
    pub(crate) date: u64,
    pub(crate) edit_date: Option<u64>,
    /// Visible text (markup taken out).
    pub(crate) text: String,
    /// The text as sent, markup included.
    pub(crate) html: String,
    pub(crate) thread: Option<i64>,
    pub(crate) markup: Option<Value>,
    /// Earlier versions: (visible text, markup).
    pub(crate) edits: Vec<(String, Option<Value>)>,
    pub(crate) deleted: bool,
}

impl StoredMessage {
    pub(crate) fn new(
        from: Option<i64>,
        text: String,
        html: String,
        thread: Option<i64>,
        markup: Option<Value>,
    ) -> Self {
        Self {
            id: 0,
            from,
            date: unix_now(),
            edit_date: None,
            text,
            html,
            thread,
            markup,
            edits: Vec::new(),
            deleted: false,
        }
    }
}

/// A webhook set with `setWebhook`.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) secret: Option<String>,
    pub(crate) last_error: Option<(u64, String)>,
}

/// A bot account.
#[derive(Debug)]
pub(crate) struct Bot {
    pub(crate) id: i64,
    pub(crate) token: String,
    pub(crate) username: String,
    pub(crate) first_name: String,
    pub(crate) chats: HashMap<i64, Chat>,
    /// Updates not yet confirmed by `getUpdates` or delivered to the webhook.
    pub(crate) updates: VecDeque<Value>,
    pub(crate) next_update_id: i64,
    /// Counts `getUpdates` calls; a waiting call that sees a newer one gives way (409).
    pub(crate) poll_generation: u64,
    pub(crate) webhook: Option<Webhook>,
    pub(crate) commands: Value,
    /// People who blocked the bot.
    pub(crate) blocked_by: HashSet<i64>,
    pub(crate) arrived: Arc<Notify>,
}

impl Bot {
    pub(crate) fn new(id: i64, token: String, username: String) -> Self {
        Self {
            id,
            token,
            first_name: "Assent test bot".to_owned(),
            username,
            chats: HashMap::new(),
            updates: VecDeque::new(),
            next_update_id: 100_000,
            poll_generation: 0,
            webhook: None,
            commands: Value::Array(Vec::new()),
            blocked_by: HashSet::new(),
            arrived: Arc::new(Notify::new()),
        }
    }

    /// Queues an update (`kind` is `message`, `callback_query`, …) and wakes pollers.
    pub(crate) fn push_update(&mut self, kind: &str, payload: Value) {
        let mut update = serde_json::json!({ "update_id": self.next_update_id });
        update[kind] = payload;
        self.next_update_id += 1;
        self.updates.push_back(update);
        self.arrived.notify_waiters();
    }
}

/// A callback query and the answers it got.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) bot: String,
    pub(crate) created: Instant,
    pub(crate) answers: Vec<CallbackAnswer>,
    /// When the first answer arrived.
    pub(crate) answered: Option<Instant>,
}

/// What `answerCallbackQuery` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    /// The notification text, if any.
    pub text: Option<String>,
    /// An alert rather than a toast.
    pub show_alert: bool,
}

/// A misbehaviour injected into the next call of a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests: retry after N`, with `parameters.retry_after`.
    TooManyRequests {
        /// Seconds.
        retry_after: u32,
    },
    /// A 5xx answer (`502 Bad Gateway`, as Telegram's front end gives when the API is down).
    ServerError(u16),
    /// The answer comes after this delay (the call itself is carried out).
    Slow(Duration),
    /// The connection is closed without an answer, and the call is not carried out.
    Drop,
}

/// Everything, behind one lock.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) bots: Vec<Bot>,
    pub(crate) people: Vec<Person>,
    pub(crate) queries: HashMap<String, Query>,
    pub(crate) next_query: u64,
    pub(crate) next_group: i64,
    pub(crate) faults: HashMap<String, VecDeque<Fault>>,
    /// Calls per method (lower case), answered or not.
    pub(crate) calls: HashMap<String, usize>,
    /// `getUpdates` calls ended by a newer one (two pollers at once).
    pub(crate) conflicts: usize,
}

impl State {
    pub(crate) fn bot_mut(&mut self, token: &str) -> Option<&mut Bot> {
        self.bots.iter_mut().find(|b| b.token == token)
    }

    pub(crate) fn person(&self, id: i64) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
