//! API-4 events over Server-Sent Events, resumable with `Last-Event-ID` (or `?since=`).
//!
//! A subscriber first replays stored events after its cursor, then follows the live feed. A
//! subscriber that falls behind the live feed re-reads from the store, so it never misses one.

use std::{collections::HashMap, convert::Infallible, time::Duration};

use assent_core::model::Event;
use axum::{
    extract::State,
    http::HeaderMap,
    response::sse::{Event as SseEvent, KeepAlive, Sse},
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::{
    AppState,
    auth::Scope,
    error::ApiError,
    http::{Caller, Params},
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

/// `GET /v1/events`.
pub(crate) async fn sse(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Params(params): Params<SinceParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let since = last_id.or(params.since);
    let own = (!caller.0.has(Scope::Approve)).then(|| caller.0.id());
    // RT-11: an approver watching the console counts as connected while the stream is open.
    let guard = caller.0.has(Scope::Approve).then(|| state.engine.console_session());
    let (tx, rx) = mpsc::channel::<SseEvent>(BUFFER);
    let live = state.engine.subscribe();
    let cursor = match since {
        Some(s) => s,
        None => latest_seq(&state).await?,
    };
    tokio::spawn(async move {
        let _guard = guard;
        let _ = pump(&state, live, cursor, own, &tx).await;
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn latest_seq(state: &AppState) -> Result<u64, ApiError> {
    let mut cursor = 0;
    loop {
        let page = state.engine.events_since(cursor, REPLAY_PAGE).await?;
        match page.last() {
            Some(e) if page.len() == REPLAY_PAGE => cursor = e.seq,
            Some(e) => return Ok(e.seq),
            None => return Ok(cursor),
        }
    }
}

/// Sends stored events after `cursor`, then live ones, until the client goes away.
async fn pump(
    state: &AppState,
    mut live: broadcast::Receiver<Event>,
    mut cursor: u64,
    own: Option<String>,
    tx: &mpsc::Sender<SseEvent>,
) -> Result<(), ()> {
    let mut owners: HashMap<String, bool> = HashMap::new();
    loop {
        // Replay everything stored after the cursor.
        loop {
            let page = state.engine.events_since(cursor, REPLAY_PAGE).await.map_err(|_| ())?;
            for e in &page {
                cursor = e.seq;
                send(state, e, own.as_deref(), &mut owners, tx).await?;
            }
            if page.len() < REPLAY_PAGE {
                break;
            }
        }
        // Then follow the live feed until it lags.
        loop {
            tokio::select! {
                () = tx.closed() => return Err(()),
                received = live.recv() => match received {
                    Ok(e) if e.seq <= cursor => {}
                    Ok(e) => {
                        cursor = e.seq;
                        send(state, &e, own.as_deref(), &mut owners, tx).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return Err(()),
                },
            }
        }
    }
}

async fn send(
    state: &AppState,
    e: &Event,
    own: Option<&str>,
    owners: &mut HashMap<String, bool>,
    tx: &mpsc::Sender<SseEvent>,
) -> Result<(), ()> {
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
    let data = serde_json::to_string(e).map_err(|_| ())?;
    let event = SseEvent::default().id(e.seq.to_string()).event(event_name(e)).data(data);
    tx.send(event).await.map_err(|_| ())
}

fn event_name(e: &Event) -> String {
    serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}
