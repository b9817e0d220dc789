//! The gateway ("Gateway" → "Connection Lifecycle"): Hello, Identify → READY, heartbeats and
//! their ACKs, Resume → the missed dispatches and RESUMED, and dispatches as they happen. JSON
//! text frames, no compression.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{
        State as AxumState, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket},
    },
    response::Response,
};
use serde_json::{Value, json};

use crate::{
    APPLICATION_ID, Shared, TOKEN,
    state::{DIRECT_MESSAGES, GUILD_MESSAGES, MESSAGE_CONTENT},
    wire,
};

/// "Hello": how often the client must heartbeat.
const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

/// "Gateway Close Event Codes".
const AUTHENTICATION_FAILED: u16 = 4004;
const INVALID_SEQ: u16 = 4007;
const DISALLOWED_INTENTS: u16 = 4014;

pub(crate) async fn upgrade(AxumState(shared): AxumState<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session(shared, socket))
}

async fn send(socket: &mut WebSocket, payload: &Value) -> bool {
    socket.send(Message::Text(payload.to_string().into())).await.is_ok()
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame { code, reason: reason.to_owned().into() };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The first payload the client sends (Identify or Resume), as JSON.
async fn first(socket: &mut WebSocket) -> Option<Value> {
    let wait = tokio::time::timeout(Duration::from_secs(30), socket.recv()).await.ok()??;
    match wait.ok()? {
        Message::Text(t) => serde_json::from_str(&t).ok(),
        _ => None,
    }
}

fn token_ok(d: &Value) -> bool {
    let given = d["token"].as_str().unwrap_or_default();
    given.strip_prefix("Bot ").unwrap_or(given) == TOKEN
}

async fn session(shared: Arc<Shared>, mut socket: WebSocket) {
    let hello =
        json!({ "op": 10, "s": null, "t": null, "d": { "heartbeat_interval": HEARTBEAT_INTERVAL_MS } });
    if !send(&mut socket, &hello).await {
        return;
    }
    let Some(start) = first(&mut socket).await else { return };
    let d = &start["d"];
    if !token_ok(d) {
        return close(socket, AUTHENTICATION_FAILED, "Authentication failed.").await;
    }
    let (mut sent, kick) = match start["op"].as_u64() {
        Some(2) => match identify(&shared, d) {
            Ok(v) => v,
            Err(code) => return close(socket, code, "Disallowed intent(s).").await,
        },
        Some(6) => match resume(&shared, d) {
            Some(v) => v,
            None => {
                // "Invalid Session", not resumable: the client must identify anew.
                let _ = send(&mut socket, &json!({ "op": 9, "s": null, "t": null, "d": false })).await;
                return close(socket, INVALID_SEQ, "Invalid seq.").await;
            }
        },
        _ => return close(socket, 4003, "Not authenticated.").await,
    };
    let mut ticks = shared.ticks.subscribe();
    loop {
        // A kick first: what was dispatched after it belongs to the next connection (a Resume
        // replays it), as on a real outage.
        let (backlog, kicked) = {
            let s = shared.lock();
            let kicked = (s.gateway.kick.0 != kick).then_some(s.gateway.kick.1);
            let backlog: Vec<Value> =
                s.gateway.log.iter().filter(|(seq, _)| *seq > sent).map(|(_, p)| p.clone()).collect();
            (backlog, kicked)
        };
        if let Some(code) = kicked {
            gone(&shared);
            // A close code (4000 "Unknown error": reconnect and resume), or the TCP connection
            // just ends.
            if let Some(code) = code {
                close(socket, code, "Forced disconnect.").await;
            }
            return;
        }
        for payload in backlog {
            sent = payload["s"].as_u64().unwrap_or(sent);
            if !send(&mut socket, &payload).await {
                return gone(&shared);
            }
        }
        tokio::select! {
            _ = ticks.changed() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let payload: Value = serde_json::from_str(&t).unwrap_or_default();
                    if payload["op"] == 1 {
                        // "Sending Heartbeats": the ACK, op 11.
                        if !send(&mut socket, &json!({ "op": 11, "s": null, "t": null, "d": null })).await {
                            return gone(&shared);
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return gone(&shared),
            },
        }
    }
}

fn gone(shared: &Shared) {
    let g = &mut shared.lock().gateway;
    g.connections = g.connections.saturating_sub(1);
    g.live = g.connections > 0;
}

/// Identify: a new session, READY as its first dispatch. Returns (last seq sent, kick generation).
fn identify(shared: &Shared, d: &Value) -> Result<(u64, u64), u16> {
    let intents = d["intents"].as_u64().unwrap_or(0);
    let mut s = shared.lock();
    if intents & MESSAGE_CONTENT != 0 && !s.message_content {
        // A privileged intent the application was not granted in the developer portal.
        return Err(DISALLOWED_INTENTS);
    }
    let session = format!("fake-session-{}", s.id());
    s.session_starts = s.session_starts.saturating_sub(1);
    s.gateway.session = Some(session.clone());
    s.gateway.intents = intents;
    s.gateway.identifies += 1;
    s.gateway.connected();
    let sent = s.gateway.seq;
    let ready = json!({
        "v": 10,
        "user": wire::bot_user(),
        "guilds": [{ "id": crate::GUILD_ID.to_string(), "unavailable": true }],
        "session_id": session,
        "resume_gateway_url": shared.gateway_url(),
        "shard": [0, 1],
        "application": { "id": APPLICATION_ID.to_string(), "flags": if s.message_content { 1 << 19 } else { 0 } },
    });
    s.dispatch("READY", ready);
    let kick = s.gateway.kick.0;
    Ok((sent, kick))
}

/// Resume: replays what the session missed after `seq`, then RESUMED.
fn resume(shared: &Shared, d: &Value) -> Option<(u64, u64)> {
    let mut s = shared.lock();
    let same = s.gateway.session.as_deref() == d["session_id"].as_str();
    let seq = d["seq"].as_u64()?;
    let oldest = s.gateway.log.front().map_or(0, |(first, _)| *first);
    if !same || seq + 1 < oldest || seq > s.gateway.seq {
        return None;
    }
    s.gateway.resumes += 1;
    s.gateway.connected();
    // RESUMED comes after the replay: queue it now, and the loop sends the backlog in order.
    s.dispatch("RESUMED", json!({}));
    Some((seq, s.gateway.kick.0))
}

/// Whether the session receives a MESSAGE_CREATE in a DM or a guild, and with its content
/// ("Message Content Intent": content is empty without it, except in DMs and mentions).
pub(crate) fn message_visibility(intents: u64, dm: bool, granted: bool) -> (bool, bool) {
    let subscribed = intents & if dm { DIRECT_MESSAGES } else { GUILD_MESSAGES } != 0;
    let content = dm || (granted && intents & MESSAGE_CONTENT != 0);
    (subscribed, content)
}
