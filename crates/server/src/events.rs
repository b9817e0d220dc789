//! API-4 events over Server-Sent Events (resumable with `Last-Event-ID` or `?since=`) and a
//! WebSocket (`?since=`).
//!
//! A subscriber first replays stored events after its cursor, then follows the live feed. A
//! subscriber that falls behind the live feed re-reads from the store, so it never misses one.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use assent_core::model::Event;
use axum::{
    extract::{
        State,
        ws::{Message, WebSocketUpgrade},
    },
    http::HeaderMap,
    response::{
        Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::{
    AppState,
    auth::Scope,
    error::ApiError,
    error::ErrorBody,
    extract::{Caller, Params},
};

/// API-4: per-subscriber buffer.
const BUFFER: usize = 1024;
/// Page size when replaying from the store.
const REPLAY_PAGE: usize = 500;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SinceParams {
    since: Option<u64>,
}

/// What a subscriber receives: events in seq order, then `Lagged` if it fell 1,024 behind.
enum Item {
    Event(Arc<Event>),
    Lagged,
}

/// Starts the pump for one subscriber and returns its receiving end. The stream ends with
/// `Item::Lagged` when the subscriber's buffer overflowed (API-4: `lagged` + close).
async fn subscribe(
    state: AppState,
    caller: &Caller,
    since: Option<u64>,
) -> Result<mpsc::Receiver<Item>, ApiError> {
    caller.require_reader()?;
    let own = (!caller.0.has(Scope::Approve)).then(|| caller.0.id());
    // RT-11: an approver watching live counts as a connected console session while subscribed.
    let guard = caller.0.has(Scope::Approve).then(|| state.engine.console_session());
    let (tx, rx) = mpsc::channel::<Item>(BUFFER + 1);
    let live = state.engine.subscribe();
    // A cursor past the newest event would wait in silence for events that may never come
    // (issue 9, finding 16): say so instead.
    let latest = state.engine.latest_event_seq().await?;
    let cursor = match since {
        Some(s) if s > latest => {
            return Err(ApiError::invalid(format!(
                "the event cursor {s} is past the newest event ({latest}): resume from the seq of an event you received, or omit it"
            )));
        }
        Some(s) => s,
        None => latest,
    };
    tokio::spawn(async move {
        let _guard = guard;
        if let Err(Overflow) = pump(&state, live, cursor, own, &tx).await {
            // The one slot kept free for this.
            let _ = tx.try_send(Item::Lagged);
        }
    });
    Ok(rx)
}

/// `GET /v1/events`: SSE, `id:` = seq, resume with `Last-Event-ID` or `?since=`.
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("since" = Option<u64>, Query, description = "Resume after this seq"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq (SSE reconnects)")),
    responses((status = 200, description = "`text/event-stream` of events (`id:` = seq); a request token sees its own approvals' events", body = assent_core::model::Event),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn sse(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Params(params): Params<SinceParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::invalid("Last-Event-ID must be the numeric `id:` of an event this stream sent")
        })?),
    };
    let rx = subscribe(state, &caller, last_id.or(params.since)).await?;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let frame = match rx.recv().await? {
            Item::Event(e) => {
                let data = serde_json::to_string(&*e).unwrap_or_default();
                SseEvent::default().id(e.seq.to_string()).event(event_name(&e)).data(data)
            }
            Item::Lagged => SseEvent::default().event("lagged").data("{}"),
        };
        Some((Ok(frame), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `GET /v1/events/ws?since=`: the same events as JSON text messages over a WebSocket.
#[utoipa::path(get, path = "/v1/events/ws", tag = "events",
    params(("since" = Option<u64>, Query, description = "Resume after this seq")),
    responses((status = 101, description = "WebSocket of events as JSON text messages; `{\"type\":\"lagged\"}` then close if the client falls behind"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn ws(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<SinceParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let mut rx = subscribe(state, &caller, params.since).await?;
    Ok(upgrade.on_upgrade(move |mut socket| async move {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(15));
        loop {
            let message = tokio::select! {
                item = rx.recv() => match item {
                    Some(Item::Event(e)) => Message::Text(serde_json::to_string(&*e).unwrap_or_default().into()),
                    Some(Item::Lagged) => Message::Text(r#"{"type":"lagged"}"#.into()),
                    None => break,
                },
                _ = heartbeat.tick() => Message::Ping(Default::default()),
                incoming = socket.recv() => match incoming {
                    Some(Ok(_)) => continue,
                    _ => return,
                },
            };
            let lagged = matches!(&message, Message::Text(t) if t.as_str() == r#"{"type":"lagged"}"#);
            if socket.send(message).await.is_err() || lagged {
                break;
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}

/// Sends stored events after `cursor`, then live ones, until the client goes away.
async fn pump(
    state: &AppState,
    mut live: broadcast::Receiver<Arc<Event>>,
    mut cursor: u64,
    own: Option<String>,
    tx: &mpsc::Sender<Item>,
) -> Result<(), Overflow> {
    let mut owners: HashMap<String, bool> = HashMap::new();
    loop {
        // Replay everything stored after the cursor.
        loop {
            let Ok(page) = state.engine.events_since(cursor, REPLAY_PAGE).await else { return Ok(()) };
            let full = page.len() == REPLAY_PAGE;
            for e in page {
                cursor = e.seq;
                send(state, Arc::new(e), own.as_deref(), &mut owners, tx).await?;
            }
            if !full {
                break;
            }
        }
        // Then follow the live feed until it lags.
        loop {
            tokio::select! {
                () = tx.closed() => return Ok(()),
                received = live.recv() => match received {
                    Ok(e) if e.seq <= cursor => {}
                    Ok(e) => {
                        cursor = e.seq;
                        send(state, e, own.as_deref(), &mut owners, tx).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

/// The subscriber's buffer is full: it cannot keep up.
struct Overflow;

async fn send(
    state: &AppState,
    e: Arc<Event>,
    own: Option<&str>,
    owners: &mut HashMap<String, bool>,
    tx: &mpsc::Sender<Item>,
) -> Result<(), Overflow> {
    if let Some(principal) = own {
        let Some(id) = &e.approval_id else { return Ok(()) };
        let mine = match owners.get(id.as_str()) {
            Some(m) => *m,
            None => {
                let a = state.engine.approval(id).await.ok().flatten();
                let m = a.is_some_and(|a| a.requester.principal == principal);
                owners.insert(id.to_string(), m);
                m
            }
        };
        if !mine {
            return Ok(());
        }
    }
    // One slot stays free for the final `Lagged`.
    if tx.capacity() <= 1 {
        return Err(Overflow);
    }
    tx.try_send(Item::Event(e)).map_err(|_| Overflow)
}

fn event_name(e: &Event) -> String {
    serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
