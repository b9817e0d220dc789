//! Socket Mode (CH-SL-1, "Using Socket Mode"): `apps.connections.open` with the app-level token
//! gives a WebSocket URL; Slack says `hello`, then sends envelopes, each acknowledged with
//! `{"envelope_id": …}` within 3 seconds, and `disconnect` before it closes a connection.
//!
//! One connection per app, open only on the replica that holds the account (a supervisor opens
//! it when the lease is taken and closes it when it is lost), so two replicas never both
//! receive an envelope. After `disconnect`, a close or a dropped socket it reconnects at once:
//! envelopes Slack could not deliver meanwhile wait for the next connection, and one it
//! delivered but saw no ack for is retried and recognized (CH-SL-8).

use std::{sync::Arc, time::Duration};

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use slack_morphism::prelude::SlackApiToken;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::task::AbortOnDropHandle;

use crate::{
    Shared,
    error::SlackError,
    events::{self, Refused},
    payload::Incoming,
};

/// How often the supervisor checks that this replica still holds the account (ST-7: a lost
/// lease stops the handler within 1 s).
const LEASE_CHECK: Duration = Duration::from_millis(250);
/// Pings keep the connection (and proxies on the way) alive.
const PING_EVERY: Duration = Duration::from_secs(10);
/// Nothing heard for this long: the connection is dead, whatever TCP says.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// Longest pause between failed connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The account's Socket Mode connection.
pub(crate) struct Connection {
    ready: tokio::sync::watch::Receiver<bool>,
    _supervisor: AbortOnDropHandle<()>,
}

impl Connection {
    pub(crate) fn start(shared: Arc<Shared>, app_token: SlackApiToken) -> Self {
        let (tx, ready) = tokio::sync::watch::channel(false);
        let supervisor = tokio::spawn(supervise(shared, app_token, tx));
        Self { ready, _supervisor: AbortOnDropHandle::new(supervisor) }
    }

    /// Waits until Slack said `hello` on a live connection.
    pub(crate) async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn supervise(shared: Arc<Shared>, app_token: SlackApiToken, ready: tokio::sync::watch::Sender<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        while !shared.inbound.is_serving() {
            tokio::time::sleep(LEASE_CHECK).await;
        }
        match open(&shared, &app_token).await {
            Ok(socket) => {
                backoff = Duration::from_secs(1);
                let why = serve(&shared, socket, &ready).await;
                ready.send_replace(false);
                tracing::info!(account = %shared.key, reason = %why, "Slack Socket Mode connection closed");
            }
            Err(e) => {
                tracing::warn!(account = %shared.key, error = %e, retry_in = ?backoff, "cannot open a Slack Socket Mode connection");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn open(shared: &Shared, app_token: &SlackApiToken) -> Result<Socket, SlackError> {
    let url = shared.web.socket_url(app_token).await?;
    let connect = tokio_tungstenite::connect_async(url.as_str());
    let (socket, _) = tokio::time::timeout(CONNECT_LIMIT, connect)
        .await
        .map_err(|_| SlackError::timeout("the Socket Mode WebSocket", CONNECT_LIMIT))?
        // The URL carries a one-time ticket: the error names no URL.
        .map_err(|e| SlackError::network(format!("the Socket Mode WebSocket: {e}")))?;
    Ok(socket)
}

/// What to do with one frame.
enum Step {
    Nothing,
    /// Acknowledge the envelope, then run what follows.
    Ack(String, Option<Box<events::After>>),
    Reconnect(String),
}

/// Serves one connection until it ends; returns why.
async fn serve(shared: &Arc<Shared>, socket: Socket, ready: &tokio::sync::watch::Sender<bool>) -> String {
    let (mut sink, mut stream) = socket.split();
    let mut lease = tokio::time::interval(LEASE_CHECK);
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    None => return "the socket closed".to_owned(),
                    Some(Err(e)) => return format!("the socket failed: {e}"),
                    Some(Ok(Message::Close(_))) => return "Slack closed the socket".to_owned(),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => { heard = Instant::now(); continue }
                };
                heard = Instant::now();
                match step(shared, &text, ready) {
                    Step::Nothing => {}
                    Step::Reconnect(why) => {
                        let _ = sink.close().await;
                        return why;
                    }
                    Step::Ack(envelope_id, after) => {
                        // CH-SL-4: the ack goes out before any other work.
                        let ack = json!({ "envelope_id": envelope_id }).to_string();
                        if let Err(e) = sink.send(Message::Text(ack.into())).await {
                            // Unacknowledged: Slack sends it again on the next connection.
                            return format!("the ack could not be sent: {e}");
                        }
                        if let Some(after) = after.and_then(|a| events::acked(shared, *a)) {
                            tokio::spawn(events::finish(shared.clone(), after));
                        }
                    }
                }
            }
            _ = lease.tick() => if !shared.inbound.is_serving() {
                let _ = sink.close().await;
                return "this replica no longer holds the account".to_owned();
            },
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    return format!("nothing heard from Slack for {SILENCE_LIMIT:?}");
                }
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    return format!("the socket failed: {e}");
                }
            }
        }
    }
}

/// A Socket Mode frame; its payload is kept as text until its type is known.
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    envelope_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    reason: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

/// Reads one frame from Slack.
fn step(shared: &Shared, text: &str, ready: &tokio::sync::watch::Sender<bool>) -> Step {
    let frame: Frame<'_> = match serde_json::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(account = %shared.key, error = %e, "Slack sent a frame assent cannot read");
            return Step::Nothing;
        }
    };
    let kind = frame.kind.as_ref();
    let payload = frame.payload.map_or("null", RawValue::get);
    let incoming = match kind {
        "hello" => {
            ready.send_replace(true);
            return Step::Nothing;
        }
        "disconnect" => {
            let reason = frame.reason.as_deref().unwrap_or("no reason");
            return Step::Reconnect(format!("Slack asked for a new connection ({reason})"));
        }
        "interactive" => Incoming::interactive(payload),
        "slash_commands" => Incoming::command(payload),
        "events_api" => Incoming::event(payload),
        _ => return Step::Nothing,
    };
    let Some(envelope_id) = frame.envelope_id else {
        tracing::warn!(account = %shared.key, kind, "a Slack envelope without an envelope_id");
        return Step::Nothing;
    };
    // The identity is learned before the connection opens.
    let Some(me) = shared.identity.get() else { return Step::Nothing };
    match incoming.map_err(Refused::Malformed).and_then(|i| events::begin(shared, me, i)) {
        Ok(after) => Step::Ack(envelope_id.into_owned(), after.map(Box::new)),
        Err(refused) => {
            // Not acknowledged: Slack tells the person it failed, never a silent success.
            tracing::warn!(account = %shared.key, kind, reason = ?refused, "a Slack envelope was refused");
            Step::Nothing
        }
    }
}
