//! How events reach the app: Socket Mode ("Using Socket Mode": `hello`, envelopes with an
//! `envelope_id` to acknowledge within 3 s, `disconnect` before Slack closes the socket), or
//! signed HTTP requests in HTTP mode ("Verifying requests from Slack": `v0=` HMAC-SHA256 of
//! `v0:{timestamp}:{body}` with the signing secret).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{
        State as AxumState, WebSocketUpgrade,
        ws::{Message, WebSocket},
    },
    response::Response,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::{APP_ID, SIGNING_SECRET, Shared, state::Envelope};

pub(crate) async fn upgrade(AxumState(shared): AxumState<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| connection(shared, socket))
}

async fn send(socket: &mut WebSocket, v: &Value) -> bool {
    socket.send(Message::Text(v.to_string().into())).await.is_ok()
}

async fn connection(shared: Arc<Shared>, mut socket: WebSocket) {
    let kick = {
        let mut s = shared.lock();
        s.sockets.0 += 1;
        s.sockets.1 += 1;
        s.sockets.2 = s.sockets.2.max(s.sockets.0);
        (s.kick, s.drop_socket)
    };
    let hello = json!({
        "type": "hello",
        "num_connections": shared.lock().sockets.0,
        "debug_info": { "host": "fake-slack", "build_number": 1, "approximate_connection_time": 3600 },
        "connection_info": { "app_id": APP_ID },
    });
    let mut ticks = shared.ticks.subscribe();
    if send(&mut socket, &hello).await {
        serve(&shared, &mut socket, &mut ticks, kick).await;
    }
    shared.lock().sockets.0 -= 1;
}

async fn serve(
    shared: &Shared,
    socket: &mut WebSocket,
    ticks: &mut tokio::sync::watch::Receiver<u64>,
    (kick, drop): (u64, u64),
) {
    loop {
        let (next, kicked, dropped) = {
            let mut s = shared.lock();
            let kicked = s.kick != kick;
            let dropped = s.drop_socket != drop;
            (if kicked || dropped { None } else { s.outbox.pop_front() }, kicked, dropped)
        };
        if dropped {
            // No `disconnect`, no close frame: the connection just ends.
            return;
        }
        if kicked {
            let bye = json!({ "type": "disconnect", "reason": "refresh_requested", "debug_info": { "host": "fake-slack" } });
            let _ = send(socket, &bye).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
        if let Some(envelope) = next {
            let id = envelope["envelope_id"].as_str().unwrap_or_default().to_owned();
            shared.lock().envelopes.insert(id, Envelope { sent: Instant::now(), acked: None, failed: false });
            if !send(socket, &envelope).await {
                // Not delivered: back to the front, for the next connection.
                shared.lock().outbox.push_front(envelope);
                return;
            }
            continue;
        }
        tokio::select! {
            _ = ticks.changed() => {}
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => acknowledge(shared, &t),
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// `{"envelope_id": "…", "payload": …}`: the first ack counts.
fn acknowledge(shared: &Shared, text: &str) {
    let Ok(ack) = serde_json::from_str::<Value>(text) else { return };
    let Some(id) = ack["envelope_id"].as_str() else { return };
    let mut s = shared.lock();
    if let Some(e) = s.envelopes.get_mut(id)
        && e.acked.is_none()
    {
        e.acked = Some(Instant::now());
    }
}

/// The `X-Slack-Signature` of `body` sent at `timestamp`.
pub(crate) fn signature(timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SIGNING_SECRET.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!("v0={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// What an HTTP-mode delivery carries.
#[derive(Debug, Clone)]
pub(crate) enum HttpBody {
    /// `application/x-www-form-urlencoded` (interactivity's `payload=…`, slash commands).
    Form(Vec<(String, String)>),
    /// `application/json` (the Events API).
    Json(Value),
}

/// POSTs one delivery to the app, signed; records it as an envelope (acked by a 200 within 3 s).
pub(crate) async fn post(shared: Arc<Shared>, url: String, id: String, body: HttpBody, retry: u32) {
    let (content_type, text) = match body {
        HttpBody::Form(fields) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &fields {
                form.append_pair(k, v);
            }
            ("application/x-www-form-urlencoded", form.finish())
        }
        HttpBody::Json(v) => ("application/json", v.to_string()),
    };
    let timestamp = crate::state::unix_secs().to_string();
    let signature = signature(&timestamp, &text);
    shared.lock().envelopes.insert(id.clone(), Envelope { sent: Instant::now(), acked: None, failed: false });
    let answer = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut request = agent
            .post(&url)
            .header("content-type", content_type)
            .header("x-slack-request-timestamp", &timestamp)
            .header("x-slack-signature", &signature);
        if retry > 0 {
            request = request
                .header("x-slack-retry-num", &retry.to_string())
                .header("x-slack-retry-reason", "http_timeout");
        }
        request.send(text.as_str()).map(|r| r.status().as_u16()).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let mut s = shared.lock();
    match answer {
        Ok(200) => {
            if let Some(e) = s.envelopes.get_mut(&id) {
                e.acked = Some(Instant::now());
            }
        }
        other => s.http_failures.push((id, other.unwrap_or(0))),
    }
}
