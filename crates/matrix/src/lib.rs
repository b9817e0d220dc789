//! `assent-matrix`: approval cards on Matrix (CH-MX-1..7), on matrix-sdk with end-to-end
//! encryption and a SQLite state store.
//!
//! A card is an `m.room.message` (text, HTML and an `io.assent.approval` block) in the
//! approver's direct room, seeded with one reaction per allowed decision; an approver decides by
//! reacting. The bot's own reactions never decide, and only reactions on bound cards count.
//! A decided card is edited (`m.replace`) to its final text.

// matrix-sdk futures are deeply nested; the default limit is too small to prove them `Send`.
#![recursion_limit = "256"]

mod card;
mod events;
mod platform;
mod session;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use assent_core::{
    capability::{
        ApprovalCapability, Availability, ClassifyError, Interactions, PrepareOutcome, Prepared,
        Presentation, RetryKind, Transport,
    },
    id::ApprovalId,
    model::{AccountKey, Actor, Kind, Origin},
    routing::{PlannedTarget, TargetAddr},
};
use assent_platform::{AccountAvailability, Inbound};
use matrix_sdk::{
    Client, Room, RoomMemberships, RoomState,
    config::RequestConfig,
    event_handler::EventHandlerHandle,
    ruma::{
        EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
        api::error::{ErrorKind, RetryAfter},
        events::{reaction::ReactionEventContent, relation::Annotation},
    },
};
use serde::{Deserialize, Serialize};
use tokio_util::task::AbortOnDropHandle;

pub use self::{
    card::{ApprovalTag, MatrixCard, MatrixCards, reaction_decision},
    platform::MatrixPlatform,
};
use self::{
    events::{add_handlers, catch_up},
    session::{SESSION_FILE, follow, retire_store, signed_in},
};

/// One Matrix bot account as configured in `[channels.matrix.accounts.<id>]` (its routing
/// settings travel separately, as its [`AccountAvailability`]).
#[derive(Clone)]
pub struct MatrixAccount {
    /// Account id (`main`).
    pub id: String,
    /// Homeserver base URL.
    pub homeserver: String,
    /// The bot's user id.
    pub user_id: String,
    /// The bot's password.
    pub password: String,
    /// Where matrix-sdk keeps its state and crypto store.
    pub store_dir: PathBuf,
}

impl std::fmt::Debug for MatrixAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs and panics.
        f.debug_struct("MatrixAccount")
            .field("id", &self.id)
            .field("homeserver", &self.homeserver)
            .field("user_id", &self.user_id)
            .field("store_dir", &self.store_dir)
            .finish_non_exhaustive()
    }
}

/// Why a Matrix call failed.
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    /// The SDK or the homeserver refused.
    #[error("matrix: {0}")]
    Sdk(#[from] matrix_sdk::Error),
    /// An HTTP error from the homeserver.
    #[error("matrix: {0}")]
    Http(#[from] matrix_sdk::HttpError),
    /// A stored id or a target is not valid.
    #[error("matrix: {0}")]
    Invalid(String),
}

impl MatrixError {
    /// The homeserver no longer accepts the access token (`M_UNKNOWN_TOKEN`): the device was
    /// logged out.
    fn is_refused_login(&self) -> bool {
        let kind = match self {
            MatrixError::Sdk(e) => e.client_api_error_kind(),
            MatrixError::Http(e) => e.client_api_error_kind(),
            MatrixError::Invalid(_) => None,
        };
        matches!(kind, Some(ErrorKind::UnknownToken(_)))
    }
}

impl ClassifyError for MatrixError {
    fn retry_kind(&self) -> RetryKind {
        let kind = match self {
            MatrixError::Sdk(e) => e.client_api_error_kind(),
            MatrixError::Http(e) => e.client_api_error_kind(),
            MatrixError::Invalid(_) => return RetryKind::Permanent,
        };
        match kind {
            // CH-MX-7: honour the homeserver's `retry_after_ms`.
            Some(ErrorKind::LimitExceeded(limit)) => RetryKind::Transient {
                retry_after: match limit.retry_after {
                    Some(RetryAfter::Delay(d)) => Some(d),
                    _ => None,
                },
            },
            Some(_) => RetryKind::Permanent,
            // Not an answer from the homeserver: the connection failed; try again.
            None => RetryKind::Transient { retry_after: None },
        }
    }
}

/// A delivered card: where it is and what it is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixEntry {
    /// Room id.
    pub room_id: String,
    /// The card's event id.
    pub event_id: String,
    /// The approval.
    pub approval: String,
    /// Its kind.
    pub kind: Kind,
    /// Event ids of the bot's seeded reactions.
    #[serde(default)]
    pub seeded: Vec<String>,
}

/// Where a card goes: a room, and a thread in it when the request came from one (CH-MX-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixTarget {
    /// Room id (case-sensitive).
    pub room_id: String,
    /// The thread's root event id.
    pub thread: Option<String>,
}

/// An `m.thread` relation to `root`; clients without threads show it as a reply to the root.
fn in_thread(root: &str) -> serde_json::Value {
    serde_json::json!({
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": true,
        "m.in_reply_to": { "event_id": root },
    })
}

/// A bound card: reactions on it decide.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixAnchor {
    /// Room id.
    pub room_id: String,
    /// The card's event id.
    pub event_id: String,
}

/// What a reaction on an anchor is about.
#[derive(Debug, Clone)]
struct Bound {
    approval: ApprovalId,
    kind: Kind,
}

struct Shared {
    client: Client,
    key: AccountKey,
    bot: OwnedUserId,
    availability: AccountAvailability,
    inbound: Inbound,
    anchors: Mutex<HashMap<(String, String), Bound>>,
    /// Cards this instance delivered and has not bound yet. Any other card it binds was
    /// delivered before a restart (or by another replica): reactions may have come in while
    /// nobody was listening.
    delivered_here: Mutex<std::collections::HashSet<String>>,
    /// Direct rooms in use, one slot per approver (ST-2's DM cache).
    dms: Mutex<HashMap<OwnedUserId, DmSlot>>,
}

/// One approver's direct room, once known; locked while it is being looked up or created.
type DmSlot = Arc<tokio::sync::Mutex<Option<OwnedRoomId>>>;

/// The Matrix channel of one bot account.
#[derive(Clone)]
pub struct MatrixChannel {
    shared: Arc<Shared>,
    /// The sync loop and event handlers; they stop when the last clone of the channel goes.
    _running: Arc<Running>,
}

/// What keeps an account live. The event handlers hold [`Shared`], which holds the client, which
/// holds the handlers: dropping this removes them, so a reconnect frees the old client.
struct Running {
    client: Client,
    handlers: Vec<EventHandlerHandle>,
    _sync: AbortOnDropHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for handler in self.handlers.drain(..) {
            self.client.remove_event_handler(handler);
        }
    }
}

impl std::fmt::Debug for MatrixChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixChannel").field("account", &self.shared.key).finish_non_exhaustive()
    }
}

impl MatrixChannel {
    /// Logs in, syncs once, and starts following the account's rooms. Reactions and typed
    /// commands are decided through `inbound`.
    pub async fn connect(
        account: MatrixAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Self, MatrixError> {
        let client = match signed_in(&account).await {
            Err(e) if e.is_refused_login() => {
                // The device was logged out elsewhere (or by an admin). Its crypto store is of no
                // use to a new device, so it is kept aside, not deleted, and the bot logs in anew.
                let kept = retire_store(&account.store_dir)?;
                tracing::warn!(
                    account = %account.id,
                    kept = %kept.display(),
                    "the homeserver refused the saved Matrix login; logging in as a new device \
                     (messages encrypted for the old device only stay unreadable to the bot)"
                );
                signed_in(&account).await?
            }
            other => other?,
        };
        let bot = client
            .user_id()
            .map(ToOwned::to_owned)
            .ok_or_else(|| MatrixError::Invalid("no user id after login".to_owned()))?;
        let shared = Arc::new(Shared {
            client: client.clone(),
            key: inbound.account().clone(),
            bot,
            availability,
            inbound,
            anchors: Mutex::default(),
            delivered_here: Mutex::default(),
            dms: Default::default(),
        });
        let handlers = add_handlers(&client, &shared);
        let sync = tokio::spawn(follow(client.clone()));
        let running = Running { client, handlers, _sync: AbortOnDropHandle::new(sync) };
        Ok(Self { shared, _running: Arc::new(running) })
    }

    /// The bot's matrix-sdk client (for diagnostics and tests).
    pub fn client(&self) -> Client {
        self.shared.client.clone()
    }

    fn room(&self, room_id: &str) -> Result<Room, MatrixError> {
        let id = RoomId::parse(room_id).map_err(|e| MatrixError::Invalid(format!("room {room_id}: {e}")))?;
        self.shared.client.get_room(&id).ok_or_else(|| MatrixError::Invalid(format!("not in room {room_id}")))
    }

    /// CH-MX-5: the approver's direct room: an existing one whose only members (joined or
    /// invited) are the bot and the approver, else a new one with an invite.
    async fn dm_room(&self, user: &str) -> Result<Room, MatrixError> {
        let user = UserId::parse(user).map_err(|e| MatrixError::Invalid(format!("user {user}: {e}")))?;
        // The approver's slot is held across the lookup and the creation: a burst of cards for a
        // new approver makes one room, not one each (the new room's `m.direct` entry comes back
        // through a later sync). Other approvers' rooms are looked up or created meanwhile.
        let slot = lock(&self.shared.dms).entry(user.clone()).or_default().clone();
        let mut known = slot.lock().await;
        // A room the bot left or was removed from is no DM any more.
        let cached = known
            .as_ref()
            .and_then(|id| self.shared.client.get_room(id))
            .filter(|room| room.state() == RoomState::Joined);
        for room in cached.into_iter().chain(self.shared.client.get_dm_rooms(&user)) {
            if self.is_private(&room, &user).await? {
                *known = Some(room.room_id().to_owned());
                return Ok(room);
            }
        }
        let room = self.shared.client.create_dm(&user).await?;
        *known = Some(room.room_id().to_owned());
        Ok(room)
    }

    /// Whether the bot and `user` are the room's only members, joined or invited.
    async fn is_private(&self, room: &Room, user: &UserId) -> Result<bool, MatrixError> {
        let members = room.members(RoomMemberships::ACTIVE).await?;
        Ok(members.len() == 2
            && members.iter().all(|m| m.user_id() == user || m.user_id() == self.shared.bot))
    }
}

/// How cards, seeds and edits are sent. CH-MX-7: the SDK waits out `M_LIMIT_EXCEEDED` for the
/// `retry_after_ms` the homeserver names, a few times; after that the error reaches the engine,
/// which schedules the next attempt from the same `retry_after` (see [`ClassifyError`]) instead
/// of the SDK blocking a delivery for up to 15 minutes.
fn sending() -> RequestConfig {
    RequestConfig::new().retry_limit(3)
}

/// Removes the bot's seeded reactions, best effort: a leftover seed decides nothing.
async fn redact_seeds(room: &Room, entry: &MatrixEntry) {
    for seed in &entry.seeded {
        if let Ok(id) = EventId::parse(seed) {
            let _ = room.redact(&id, None, None).await;
        }
    }
}

impl Shared {
    fn is_approver(&self, user_id: &str) -> bool {
        self.availability.settings().approvers.iter().any(|a| a == user_id)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ApprovalCapability for MatrixChannel {
    type Payload = MatrixCard;
    type Prepared = MatrixTarget;
    type Entry = MatrixEntry;
    type Anchor = MatrixAnchor;
    type Error = MatrixError;

    fn account(&self) -> AccountKey {
        self.shared.key.clone()
    }

    fn availability(&self) -> &dyn Availability {
        &self.shared.availability
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &MatrixCards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }

    fn interactions(&self) -> Option<&impl Interactions<Self>> {
        Some(self)
    }
}

impl Transport<MatrixChannel> for MatrixChannel {
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<MatrixTarget>, MatrixError> {
        let (room, thread) = match &target.to {
            TargetAddr::User { user_id } => (self.dm_room(user_id).await?, None),
            TargetAddr::Conversation { conversation, thread } => (self.room(conversation)?, thread.clone()),
        };
        let room_id = room.room_id().to_string();
        let dedupe_key = match &thread {
            Some(t) => format!("{room_id}#{t}"),
            None => room_id.clone(),
        };
        let native = MatrixTarget { room_id, thread };
        Ok(PrepareOutcome::Ready(Prepared { planned: target.clone(), dedupe_key, native }))
    }

    async fn deliver(
        &self,
        target: &Prepared<MatrixTarget>,
        payload: &MatrixCard,
    ) -> Result<Option<MatrixEntry>, MatrixError> {
        let room = self.room(&target.native.room_id)?;
        let mut content = card::content(payload);
        if let Some(root) = &target.native.thread {
            content["m.relates_to"] = in_thread(root);
        }
        let sent = room.send_raw("m.room.message", content).with_request_config(sending()).await?;
        let event_id = sent.response.event_id;
        lock(&self.shared.delivered_here).insert(event_id.to_string());
        // The approver may react while the seeds are still being sent (each is a round trip,
        // more under rate limits): reactions count from the moment the card exists.
        let approval =
            ApprovalId::parse(&payload.approval.id).map_err(|e| MatrixError::Invalid(e.to_string()))?;
        let anchor = (target.native.room_id.clone(), event_id.to_string());
        lock(&self.shared.anchors).insert(anchor, Bound { approval, kind: payload.approval.kind });
        let mut seeded = Vec::new();
        for key in &payload.reactions {
            let reaction = ReactionEventContent::new(Annotation::new(event_id.clone(), (*key).to_owned()));
            // Best effort: a missing seed only costs the approver a tap.
            if let Ok(r) = room.send(reaction).with_request_config(sending()).await {
                seeded.push(r.response.event_id.to_string());
            }
        }
        Ok(Some(MatrixEntry {
            room_id: target.native.room_id.clone(),
            event_id: event_id.to_string(),
            approval: payload.approval.id.clone(),
            kind: payload.approval.kind,
            seeded,
        }))
    }

    async fn update(&self, entry: &MatrixEntry, payload: &MatrixCard) -> Result<(), MatrixError> {
        let room = self.room(&entry.room_id)?;
        room.send_raw("m.room.message", card::replacement(&entry.event_id, payload))
            .with_request_config(sending())
            .await?;
        // CH-MX-6: a card without reactions to offer (a final one) loses its seeds.
        if payload.reactions.is_empty() {
            redact_seeds(&room, entry).await;
        }
        Ok(())
    }

    async fn delete(&self, entry: &MatrixEntry) -> Result<(), MatrixError> {
        let room = self.room(&entry.room_id)?;
        let id: OwnedEventId =
            EventId::parse(&entry.event_id).map_err(|e| MatrixError::Invalid(e.to_string()))?;
        room.redact(&id, None, None).await?;
        Ok(())
    }

    async fn reply_private(
        &self,
        _actor: &Actor,
        _context: &serde_json::Value,
        _text: &str,
    ) -> Result<(), MatrixError> {
        // CH-MX-4: Matrix has no ephemeral messages; refusals are audited, not answered.
        Ok(())
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), MatrixError> {
        let room = self.room(&origin.conversation)?;
        let mut notice = serde_json::json!({ "msgtype": "m.notice", "body": text });
        if let Some(root) = &origin.thread {
            notice["m.relates_to"] = in_thread(root);
        }
        room.send_raw("m.room.message", notice).await?;
        Ok(())
    }
}

impl Interactions<MatrixChannel> for MatrixChannel {
    async fn bind(&self, entry: &MatrixEntry) -> Result<Option<MatrixAnchor>, MatrixError> {
        let approval = ApprovalId::parse(&entry.approval).map_err(|e| MatrixError::Invalid(e.to_string()))?;
        lock(&self.shared.anchors)
            .insert((entry.room_id.clone(), entry.event_id.clone()), Bound { approval, kind: entry.kind });
        // A card this instance just delivered has only its seeds; anything else may have missed
        // reactions.
        if !lock(&self.shared.delivered_here).remove(&entry.event_id) {
            let card = EventId::parse(&entry.event_id).map_err(|e| MatrixError::Invalid(e.to_string()))?;
            let room = self.room(&entry.room_id)?;
            tokio::spawn(catch_up(self.shared.clone(), room, card));
        }
        Ok(Some(MatrixAnchor { room_id: entry.room_id.clone(), event_id: entry.event_id.clone() }))
    }

    async fn unbind(&self, anchor: &MatrixAnchor) -> Result<(), MatrixError> {
        lock(&self.shared.anchors).remove(&(anchor.room_id.clone(), anchor.event_id.clone()));
        Ok(())
    }

    async fn clear_actions(&self, entry: &MatrixEntry) -> Result<(), MatrixError> {
        redact_seeds(&self.room(&entry.room_id)?, entry).await;
        Ok(())
    }

    async fn cancel_delivered(&self, _entry: &MatrixEntry) -> Result<(), MatrixError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use assent_core::capability::{ClassifyError, RetryKind};
    use matrix_sdk::{
        HttpError, RumaApiError,
        ruma::api::{EndpointError, error::FromHttpResponseError},
    };

    use super::MatrixError;

    fn answer(status: u16, body: &str) -> MatrixError {
        let response = http::Response::builder().status(status).body(body.as_bytes().to_vec()).unwrap();
        let error = RumaApiError::from_http_response(response);
        MatrixError::Http(HttpError::from(FromHttpResponseError::Server(error)))
    }

    #[test]
    fn ch_mx_7_limit_exceeded_is_retried_after_the_servers_delay() {
        let e = answer(
            429,
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1500}"#,
        );
        assert_eq!(e.retry_kind(), RetryKind::Transient { retry_after: Some(Duration::from_millis(1500)) });
    }

    #[test]
    fn other_refusals_are_permanent() {
        let e = answer(403, r#"{"errcode":"M_FORBIDDEN","error":"You are not in this room"}"#);
        assert_eq!(e.retry_kind(), RetryKind::Permanent);
    }
}
