//! What the fake Slack knows: people, conversations, messages, ephemeral messages, Socket Mode
//! envelopes awaiting their ack, the app's HTTP endpoints, rate-limit windows and faults.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// "Socket Mode": an envelope must be acknowledged within 3 seconds.
pub(crate) const ACK_DEADLINE: Duration = Duration::from_secs(3);

/// A conversation: a DM with the app (`D…`) or a channel (`C…`).
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    /// The person of a DM.
    pub(crate) dm_with: Option<String>,
    /// When the app's recent messages were posted here (the per-channel limit).
    pub(crate) posts: VecDeque<Instant>,
}

/// A message.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) channel: String,
    pub(crate) ts: String,
    pub(crate) thread_ts: Option<String>,
    /// `None`: the app posted it.
    pub(crate) user: Option<String>,
    pub(crate) text: String,
    pub(crate) blocks: Vec<Value>,
    /// Earlier blocks, oldest first.
    pub(crate) edits: Vec<Vec<Value>>,
    pub(crate) deleted: bool,
    /// Shown only to this person (`chat.postEphemeral`).
    pub(crate) ephemeral_to: Option<String>,
}

/// An envelope sent over Socket Mode.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub(crate) sent: Instant,
    pub(crate) acked: Option<Instant>,
    /// Not acknowledged within 3 s: Slack showed the person an error.
    pub(crate) failed: bool,
}

/// What a call does wrong, injected per method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// `429 Too Many Requests` with `Retry-After` (seconds).
    TooManyRequests {
        /// Seconds.
        retry_after: u64,
    },
    /// A 5xx page (not JSON).
    ServerError(u16),
    /// The answer comes after this delay (the call itself is carried out).
    Slow(Duration),
    /// The connection is closed without an answer; the call is not carried out.
    Drop,
}

/// Everything.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// User id → display name.
    pub(crate) people: BTreeMap<String, String>,
    pub(crate) conversations: BTreeMap<String, Conversation>,
    pub(crate) messages: Vec<StoredMessage>,
    pub(crate) envelopes: HashMap<String, Envelope>,
    /// Envelopes waiting for a Socket Mode connection.
    pub(crate) outbox: VecDeque<Value>,
    pub(crate) faults: HashMap<String, VecDeque<Fault>>,
    pub(crate) calls: HashMap<String, usize>,
    /// 429s the per-channel limit gave (injected ones not counted).
    pub(crate) rate_limited: usize,
    /// Socket Mode connections: (live now, opened so far, most at once).
    pub(crate) sockets: (usize, usize, usize),
    /// Bumped to make the live socket send `disconnect`.
    pub(crate) kick: u64,
    /// Bumped to make the live socket end without a word.
    pub(crate) drop_socket: u64,
    /// Interactivity and slash-command Request URL, and the Events API Request URL (HTTP mode).
    pub(crate) http: Option<String>,
    /// HTTP deliveries not answered 200 within 3 s: (what, status or 0).
    pub(crate) http_failures: Vec<(String, u16)>,
    /// Every delivery made, to send again: id → (kind, payload, HTTP body).
    pub(crate) sent: HashMap<String, (String, Value, crate::socket::HttpBody)>,
    next: u64,
}

impl State {
    /// A fresh `ts`: seconds and a 6-digit counter, as Slack writes them.
    pub(crate) fn ts(&mut self) -> String {
        self.next += 1;
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("{secs}.{:06}", self.next % 1_000_000)
    }

    /// A fresh id with `prefix` (`D`, `C`, envelope ids…).
    pub(crate) fn id(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}0FAKE{:05}", self.next)
    }

    /// The next call of `method` misbehaves, if a fault is queued; the call is counted.
    pub(crate) fn call(&mut self, method: &str) -> Option<Fault> {
        *self.calls.entry(method.to_owned()).or_default() += 1;
        self.faults.get_mut(method).and_then(VecDeque::pop_front)
    }

    /// The DM between the app and `user`, made on first use.
    pub(crate) fn dm(&mut self, user: &str) -> String {
        let existing = self.conversations.iter().find(|(_, c)| c.dm_with.as_deref() == Some(user));
        if let Some((id, _)) = existing {
            return id.clone();
        }
        let id = self.id("D");
        self.conversations
            .insert(id.clone(), Conversation { dm_with: Some(user.to_owned()), posts: VecDeque::new() });
        id
    }

    /// Marks envelopes past their deadline as failed.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        for e in self.envelopes.values_mut() {
            let late = e.acked.map_or(now.duration_since(e.sent), |a| a.duration_since(e.sent));
            if late > ACK_DEADLINE {
                e.failed = true;
            }
        }
    }

    pub(crate) fn message_mut(&mut self, channel: &str, ts: &str) -> Option<&mut StoredMessage> {
        self.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts && !m.deleted)
    }
}

pub(crate) fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
