//! A fake Slack for tests, on loopback and a free port.
//!
//! An app under test talks to it through its real client; only the base URL differs (`api_url`,
//! `{url}/api/<method>`). It answers the Web API methods an approval app uses with Slack's
//! shapes, limits and errors, runs Socket Mode (`apps.connections.open` gives a `ws://` URL), or
//! signs HTTP deliveries to the app's Request URL, and has a user side: people who click
//! buttons, run `/approve` and type, in a DM or a channel. Faults can be injected per method,
//! and the socket can be told to disconnect.
//!
//! Each behaviour cites the page of <https://api.slack.com> it follows.

mod socket;
mod state;
mod validate;
mod web;
mod wire;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    routing::{any, post},
};
use serde_json::{Value, json};

pub use self::state::Fault;
use self::{
    socket::HttpBody,
    state::{State, StoredMessage},
};

/// The bot token (`xoxb-`).
pub const BOT_TOKEN: &str = "xoxb-1111111111-2222222222-fakeslackbottoken0123";
/// The app-level token for Socket Mode (`xapp-`).
pub const APP_TOKEN: &str = "xapp-1-A0FAKEAPP01-3333333333-fakeslackapptoken0123456789";
/// The app's signing secret (HTTP mode).
pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// The workspace.
pub const TEAM_ID: &str = "T0FAKETEAM";
/// The app.
pub const APP_ID: &str = "A0FAKEAPP01";
/// The app's bot user and bot id.
pub const BOT_USER: &str = "U0FAKEBOT1";
/// The bot id.
pub const BOT_ID: &str = "B0FAKEBOT1";

/// Shared between the handlers and the test's handle.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped when the outbox or the kick changes.
    ticks: tokio::sync::watch::Sender<u64>,
    addr: SocketAddr,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tick(&self) {
        self.ticks.send_modify(|n| *n += 1);
    }

    pub(crate) fn socket_url(&self) -> String {
        format!("ws://{}/socket", self.addr)
    }
}

/// A message as the fake stores it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// Conversation id.
    pub channel: String,
    /// Its `ts`.
    pub ts: String,
    /// The thread it is in.
    pub thread_ts: Option<String>,
    /// The `text` fallback.
    pub text: String,
    /// Its blocks.
    pub blocks: Vec<Value>,
    /// Every text in its blocks, joined (header, sections, context, button labels).
    pub shown: String,
    /// Buttons: (label, action_id, value).
    pub buttons: Vec<(String, String, String)>,
    /// Edits so far.
    pub edits: usize,
    /// Deleted by the app.
    pub deleted: bool,
    /// Shown only to this person.
    pub ephemeral_to: Option<String>,
}

/// What became of one delivery (an envelope or an HTTP request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Acknowledged, and how long after it was sent.
    pub acked: Option<Duration>,
    /// Not acknowledged within 3 s: Slack showed the person an error.
    pub failed: bool,
}

/// A running fake; it stops when the handle is dropped.
pub struct FakeSlack {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    _server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeSlack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSlack").field("addr", &self.shared.addr).finish_non_exhaustive()
    }
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self._server.abort();
    }
}

fn sent(m: &StoredMessage) -> SentMessage {
    let mut shown = Vec::new();
    let mut buttons = Vec::new();
    for b in &m.blocks {
        for t in [&b["text"]["text"]] {
            if let Some(t) = t.as_str() {
                shown.push(t.to_owned());
            }
        }
        for f in
            b["fields"].as_array().into_iter().flatten().chain(b["elements"].as_array().into_iter().flatten())
        {
            if let Some(t) = f["text"].as_str() {
                shown.push(t.to_owned());
            }
            if f["type"] == "button" {
                let label = f["text"]["text"].as_str().unwrap_or_default().to_owned();
                shown.push(label.clone());
                let action = f["action_id"].as_str().unwrap_or_default().to_owned();
                buttons.push((label, action, f["value"].as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    SentMessage {
        channel: m.channel.clone(),
        ts: m.ts.clone(),
        thread_ts: m.thread_ts.clone(),
        text: m.text.clone(),
        blocks: m.blocks.clone(),
        shown: shown.join("\n"),
        buttons,
        edits: m.edits.len(),
        deleted: m.deleted,
        ephemeral_to: m.ephemeral_to.clone(),
    }
}

impl FakeSlack {
    /// Starts the fake: one workspace and app, nobody in it yet. Events go over Socket Mode
    /// unless [`set_request_url`](Self::set_request_url).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("binding the fake: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let shared =
            Arc::new(Shared { state: Mutex::default(), ticks: tokio::sync::watch::channel(0).0, addr });
        let app = Router::new()
            .route("/api/{method}", post(web::call).get(web::call))
            .route("/socket", any(socket::upgrade))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, runtime: tokio::runtime::Handle::current(), _server: server }
    }

    /// The Web API base URL to give the app (`api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.shared.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Adds a person (`U…`).
    pub fn person(&self, id: &str, name: &str) {
        self.lock().people.insert(id.to_owned(), name.to_owned());
    }

    /// A channel the app is in; returns its id (`C…`).
    pub fn channel(&self) -> String {
        web::new_channel(&mut self.lock())
    }

    /// The DM between the app and `user`, if one was opened.
    pub fn dm_of(&self, user: &str) -> Option<String> {
        let s = self.lock();
        s.conversations.iter().find(|(_, c)| c.dm_with.as_deref() == Some(user)).map(|(id, _)| id.clone())
    }

    /// HTTP mode: interactivity, slash commands and events are POSTed to `url`, signed.
    pub fn set_request_url(&self, url: &str) {
        self.lock().http = Some(url.to_owned());
    }

    fn name_of(&self, user: &str) -> String {
        self.lock().people.get(user).cloned().unwrap_or_else(|| panic!("no person {user}"))
    }

    /// `user` clicks the button showing `label` on message `ts` in `channel`. Returns the
    /// delivery id. Panics if no such button is shown: people click what they see.
    pub fn click(&self, user: &str, channel: &str, ts: &str, label: &str) -> String {
        self.press(user, channel, ts, label, false)
    }

    /// Like [`click`](Self::click), on the message as it was first posted: the person's Slack
    /// client has not caught up with an edit yet and still shows the old buttons.
    pub fn click_stale(&self, user: &str, channel: &str, ts: &str, label: &str) -> String {
        self.press(user, channel, ts, label, true)
    }

    fn press(&self, user: &str, channel: &str, ts: &str, label: &str, stale: bool) -> String {
        let name = self.name_of(user);
        let mut s = self.lock();
        let m = s.messages.iter().find(|m| m.channel == channel && m.ts == ts && !m.deleted).cloned();
        let m = m.unwrap_or_else(|| panic!("no message {ts} in {channel}"));
        let shown = if stale { m.edits.first().unwrap_or(&m.blocks) } else { &m.blocks };
        let found = shown.iter().find_map(|b| {
            let buttons = b["elements"].as_array()?;
            let button = buttons.iter().find(|e| e["type"] == "button" && e["text"]["text"] == label)?;
            Some((b["block_id"].as_str().unwrap_or_default().to_owned(), button.clone()))
        });
        let (block_id, button) = found.unwrap_or_else(|| panic!("message {ts} shows no button {label:?}"));
        let trigger = s.id("trigger.");
        let payload = wire::block_actions(&m, &block_id, &button, (user, &name), &trigger);
        drop(s);
        self.deliver(
            "interactive",
            payload.clone(),
            HttpBody::Form(vec![("payload".to_owned(), payload.to_string())]),
        )
    }

    /// `user` runs `/approve {text}` in `channel`; returns the delivery id.
    pub fn slash(&self, user: &str, channel: &str, text: &str) -> String {
        let name = self.name_of(user);
        let trigger = self.lock().id("trigger.");
        let fields = wire::command(channel, (user, &name), text, &trigger);
        let object: serde_json::Map<String, Value> =
            fields.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        self.deliver("slash_commands", Value::Object(object), HttpBody::Form(fields))
    }

    /// `user` types `text` in `channel` (in the thread of `thread_ts`); returns the delivery id.
    pub fn type_text(&self, user: &str, channel: &str, text: &str, thread_ts: Option<&str>) -> String {
        let mut s = self.lock();
        let ts = s.ts();
        let m = StoredMessage {
            channel: channel.to_owned(),
            ts,
            thread_ts: thread_ts.map(str::to_owned),
            user: Some(user.to_owned()),
            text: text.to_owned(),
            blocks: Vec::new(),
            edits: Vec::new(),
            deleted: false,
            ephemeral_to: None,
        };
        let event_id = s.id("Ev");
        let kind = if channel.starts_with('D') { "im" } else { "channel" };
        let payload = wire::message_event(&m, &event_id, kind);
        s.messages.push(m);
        drop(s);
        self.deliver("events_api", payload.clone(), HttpBody::Json(payload))
    }

    /// Delivers `payload` as it is, for tests of what an app does with a payload Slack would not
    /// normally send (a field missing, another workspace's team id). `kind` is the Socket Mode
    /// envelope type: `interactive`, `slash_commands` or `events_api`. Returns the delivery id.
    pub fn deliver_payload(&self, kind: &str, payload: Value) -> String {
        let http = match kind {
            "interactive" => HttpBody::Form(vec![("payload".to_owned(), payload.to_string())]),
            "slash_commands" => HttpBody::Form(
                payload
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect(),
            ),
            _ => HttpBody::Json(payload.clone()),
        };
        self.deliver(kind, payload, http)
    }

    /// Sends a payload over Socket Mode, or signed to the Request URL.
    fn deliver(&self, kind: &str, payload: Value, http: HttpBody) -> String {
        let id = self.lock().id("env-");
        self.lock().sent.insert(id.clone(), (kind.to_owned(), payload.clone(), http.clone()));
        self.send(&id, kind, payload, http, 0);
        id
    }

    fn send(&self, id: &str, kind: &str, payload: Value, http: HttpBody, retry: u32) {
        let mut s = self.lock();
        match s.http.clone() {
            Some(url) => {
                drop(s);
                let shared = self.shared.clone();
                let delivery = id.to_owned();
                self.runtime.spawn(async move { socket::post(shared, url, delivery, http, retry).await });
            }
            None => {
                let accepts = kind == "interactive" || kind == "slash_commands";
                let reason = if retry > 0 { "timeout" } else { "" };
                s.outbox.push_back(json!({
                    "envelope_id": id, "type": kind, "payload": payload,
                    "accepts_response_payload": accepts, "retry_attempt": retry, "retry_reason": reason,
                }));
                drop(s);
                self.shared.tick();
            }
        }
    }

    /// Sends delivery `id` again, as Slack does when it saw no ack in time ("Events API":
    /// retries carry `X-Slack-Retry-Num`, or `retry_attempt` in Socket Mode); returns the new
    /// delivery's id. The payload, and so its `event_id`, is the same.
    pub fn redeliver(&self, id: &str) -> String {
        let (kind, payload, http) =
            self.lock().sent.get(id).cloned().unwrap_or_else(|| panic!("no delivery {id}"));
        let again = self.lock().id("env-");
        self.send(&again, &kind, payload, http, 1);
        again
    }

    /// What became of delivery `id` (deadline applied).
    pub fn delivery(&self, id: &str) -> Option<Delivery> {
        let mut s = self.lock();
        s.expire();
        let e = s.envelopes.get(id)?;
        Some(Delivery { acked: e.acked.map(|a| a.duration_since(e.sent)), failed: e.failed })
    }

    /// Deliveries Slack showed as failed (no ack within 3 s), deadline applied.
    pub fn failed_deliveries(&self) -> usize {
        let mut s = self.lock();
        s.expire();
        s.envelopes.values().filter(|e| e.failed).count() + s.http_failures.len()
    }

    /// Every message in `channel`, people's and the app's, in order.
    pub fn messages(&self, channel: &str) -> Vec<SentMessage> {
        self.lock().messages.iter().filter(|m| m.channel == channel).map(sent).collect()
    }

    /// The app's messages in `channel`, ephemeral ones included, in order.
    pub fn bot_messages(&self, channel: &str) -> Vec<SentMessage> {
        let s = self.lock();
        s.messages.iter().filter(|m| m.channel == channel && m.user.is_none()).map(sent).collect()
    }

    /// Calls of `method` so far, refused ones included.
    pub fn calls(&self, method: &str) -> usize {
        self.lock().calls.get(method).copied().unwrap_or(0)
    }

    /// 429s the per-channel limit gave.
    pub fn rate_limited(&self) -> usize {
        self.lock().rate_limited
    }

    /// The next call of `method` misbehaves as `fault`.
    pub fn fail_next(&self, method: &str, fault: Fault) {
        self.lock().faults.entry(method.to_owned()).or_default().push_back(fault);
    }

    /// The live socket gets `disconnect` ("refresh_requested") and is closed.
    pub fn disconnect_socket(&self) {
        self.lock().kick += 1;
        self.shared.tick();
    }

    /// The live socket ends with no `disconnect` and no close frame (a network failure).
    pub fn drop_socket(&self) {
        self.lock().drop_socket += 1;
        self.shared.tick();
    }

    /// Socket Mode connections: (open now, opened so far, most at once).
    pub fn sockets(&self) -> (usize, usize, usize) {
        self.lock().sockets
    }
}
