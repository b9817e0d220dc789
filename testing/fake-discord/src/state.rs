//! What the fake Discord knows: people, channels, messages, interactions, the gateway session,
//! the application's commands, rate-limit windows and injected faults.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// "Snowflakes": milliseconds since the first second of 2015 in the top bits.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// "Receiving and Responding": an interaction must be answered within 3 seconds.
pub(crate) const ACK_DEADLINE: Duration = Duration::from_secs(3);
/// The interaction token stays valid for follow-ups for 15 minutes.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A Discord user.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub(crate) name: String,
    /// Accepts direct messages from the bot ("Allow direct messages from server members").
    pub(crate) dms_open: bool,
}

/// Where a channel is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// A DM channel between the bot and one person.
    Dm { recipient: u64 },
    /// A text channel in a guild the bot is in.
    Guild { guild: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct ChannelState {
    pub(crate) place: Place,
    /// When the bot's recent messages were created here (the per-channel bucket).
    pub(crate) sends: VecDeque<Instant>,
}

/// A message as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) id: u64,
    pub(crate) channel: u64,
    /// `None`: the bot (or its interaction webhook) sent it.
    pub(crate) author: Option<u64>,
    pub(crate) content: String,
    pub(crate) embeds: Vec<Value>,
    pub(crate) components: Vec<Value>,
    pub(crate) flags: u64,
    pub(crate) allowed_mentions: Option<Value>,
    /// Earlier (embeds, components), oldest first.
    pub(crate) edits: Vec<(Vec<Value>, Vec<Value>)>,
    pub(crate) deleted: bool,
    /// Sent on an interaction's token (a response or follow-up).
    pub(crate) interaction: Option<u64>,
    pub(crate) timestamp: String,
}

/// An interaction a person started.
#[derive(Debug, Clone)]
pub(crate) struct StoredInteraction {
    pub(crate) token: String,
    pub(crate) kind: u8,
    pub(crate) channel: u64,
    pub(crate) created: Instant,
    /// The first response: when, and its type.
    pub(crate) acked: Option<(Instant, u8)>,
    /// Answered too late or never: the person saw "This interaction failed".
    pub(crate) failed: bool,
    /// Responses after the first (each refused with 40060).
    pub(crate) extra_acks: usize,
    /// The original response's message, once there is one (type 4, or an edit of a deferral).
    pub(crate) original: Option<u64>,
    /// The message whose component was used (type 3).
    pub(crate) message: Option<u64>,
    pub(crate) followups: Vec<u64>,
}

impl StoredInteraction {
    /// Past its 3 s without a response.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.acked.is_none() && now.duration_since(self.created) > ACK_DEADLINE
    }
}

/// The bot's gateway session: every dispatch it was sent, so a Resume can replay what a
/// dropped connection missed ("Resuming").
#[derive(Debug, Default)]
pub(crate) struct Gateway {
    pub(crate) session: Option<String>,
    /// The last sequence number used.
    pub(crate) seq: u64,
    pub(crate) log: VecDeque<(u64, Value)>,
    /// The intents of the last Identify.
    pub(crate) intents: u64,
    /// Bumped to close the live connection: (generation, close code or `None` to drop it).
    pub(crate) kick: (u64, Option<u16>),
    pub(crate) identifies: usize,
    pub(crate) resumes: usize,
    pub(crate) live: bool,
    /// Connections past Identify or Resume right now, and the most there ever were at once.
    pub(crate) connections: usize,
    pub(crate) peak: usize,
}

impl Gateway {
    pub(crate) fn connected(&mut self) {
        self.live = true;
        self.connections += 1;
        self.peak = self.peak.max(self.connections);
    }
}

/// "Gateway Intents".
pub(crate) const GUILD_MESSAGES: u64 = 1 << 9;
pub(crate) const DIRECT_MESSAGES: u64 = 1 << 12;
pub(crate) const MESSAGE_CONTENT: u64 = 1 << 15;

/// What a call does wrong, injected per route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// `429` with `retry_after` (seconds) in the body and `Retry-After`.
    TooManyRequests {
        /// Seconds.
        retry_after: f64,
    },
    /// A 5xx page from Discord's edge (not JSON).
    ServerError(u16),
    /// The answer comes after this delay (the call itself is carried out).
    Slow(Duration),
    /// The connection is closed without an answer; the call is not carried out.
    Drop,
}

/// Everything.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) people: BTreeMap<u64, Person>,
    pub(crate) channels: BTreeMap<u64, ChannelState>,
    pub(crate) messages: BTreeMap<u64, StoredMessage>,
    pub(crate) interactions: HashMap<u64, StoredInteraction>,
    /// Interaction token → interaction id.
    pub(crate) tokens: HashMap<String, u64>,
    /// The application's global commands, as the last bulk overwrite left them.
    pub(crate) commands: Vec<Value>,
    pub(crate) faults: HashMap<String, VecDeque<Fault>>,
    pub(crate) calls: HashMap<String, usize>,
    /// 429s the bucket limits gave (not injected ones).
    pub(crate) rate_limited: usize,
    pub(crate) gateway: Gateway,
    /// The app is granted the Message Content intent (the developer portal's switch).
    pub(crate) message_content: bool,
    /// The Interactions Endpoint URL: interactions are POSTed there instead of the gateway.
    pub(crate) endpoint: Option<String>,
    /// Endpoint deliveries answered with something other than 200: (interaction, status; 0 when
    /// the connection failed).
    pub(crate) endpoint_refusals: Vec<(u64, u16)>,
    /// Identifies left today (`session_start_limit.remaining`).
    pub(crate) session_starts: u64,
    pub(crate) next: u64,
}

impl State {
    /// A new snowflake: its time is now.
    pub(crate) fn id(&mut self) -> u64 {
        self.next += 1;
        let ms = unix_ms().saturating_sub(DISCORD_EPOCH_MS);
        (ms << 22) | (self.next & 0x3F_FFFF)
    }

    /// The next call of `route` misbehaves, if a fault is queued; the call is counted.
    pub(crate) fn call(&mut self, route: &str) -> Option<Fault> {
        *self.calls.entry(route.to_owned()).or_default() += 1;
        self.faults.get_mut(route).and_then(VecDeque::pop_front)
    }

    /// The DM channel between the bot and `user`, made on first use.
    pub(crate) fn dm_channel(&mut self, user: u64) -> u64 {
        let existing = self.channels.iter().find(|(_, c)| c.place == Place::Dm { recipient: user });
        if let Some((id, _)) = existing {
            return *id;
        }
        let id = self.id();
        self.channels
            .insert(id, ChannelState { place: Place::Dm { recipient: user }, sends: VecDeque::new() });
        id
    }

    /// Queues a dispatch for the bot's session.
    pub(crate) fn dispatch(&mut self, event: &str, data: Value) {
        let g = &mut self.gateway;
        g.seq += 1;
        let payload = serde_json::json!({ "op": 0, "t": event, "s": g.seq, "d": data });
        g.log.push_back((g.seq, payload));
        if g.log.len() > 50_000 {
            g.log.pop_front();
        }
    }

    /// Marks interactions past their deadline as failed.
    pub(crate) fn expire(&mut self) {
        let now = Instant::now();
        for i in self.interactions.values_mut() {
            if i.expired(now) {
                i.failed = true;
            }
        }
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

/// An ISO 8601 timestamp for now, as Discord writes them.
pub(crate) fn iso_now() -> String {
    let ms = unix_ms();
    let (secs, millis) = (ms / 1000, ms % 1000);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}000+00:00",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
