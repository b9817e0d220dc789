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
mod platform;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use assent_core::{
    capability::{
        ApprovalCapability, Availability, ClassifyError, Interactions, PrepareOutcome, Prepared,
        Presentation, RetryKind, Transport,
    },
    command::TypedMessage,
    id::ApprovalId,
    model::{AccountKey, Actor, Channel, Kind, Origin, Surface},
    routing::{PlannedTarget, TargetAddr},
};
use assent_engine::{ApprovalRef, TypedOutcome};
use assent_platform::{AccountAvailability, Inbound};
use matrix_sdk::{
    Client, Room, RoomMemberships, RoomState,
    authentication::matrix::MatrixSession,
    config::{RequestConfig, SyncSettings},
    event_handler::EventHandlerHandle,
    room::{IncludeRelations, RelationsOptions},
    ruma::{
        EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId,
        api::{
            Direction,
            error::{ErrorKind, RetryAfter},
        },
        events::{
            reaction::{OriginalSyncReactionEvent, ReactionEventContent},
            relation::{Annotation, RelationType},
            room::{
                member::{MembershipState, StrippedRoomMemberEvent},
                message::{MessageType, OriginalSyncRoomMessageEvent, Relation},
            },
        },
    },
    store::RoomLoadSettings,
};
use serde::{Deserialize, Serialize};
use tokio_util::task::AbortOnDropHandle;

pub use self::{
    card::{ApprovalTag, MatrixCard, MatrixCards, reaction_decision},
    platform::MatrixPlatform,
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

/// Follows reactions, invitations and typed commands.
fn add_handlers(client: &Client, shared: &Arc<Shared>) -> Vec<EventHandlerHandle> {
    let (reacted, invited, typed) = (shared.clone(), shared.clone(), shared.clone());
    vec![
        client.add_event_handler(move |ev: OriginalSyncReactionEvent, room: Room| {
            let shared = reacted.clone();
            async move { on_reaction(&shared, &room, ev) }
        }),
        client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
            let shared = invited.clone();
            async move { on_invite(&shared, &room, ev) }
        }),
        client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
            let shared = typed.clone();
            async move { on_message(&shared, &room, ev) }
        }),
    ]
}

/// How cards, seeds and edits are sent. CH-MX-7: the SDK waits out `M_LIMIT_EXCEEDED` for the
/// `retry_after_ms` the homeserver names, a few times; after that the error reaches the engine,
/// which schedules the next attempt from the same `retry_after` (see [`ClassifyError`]) instead
/// of the SDK blocking a delivery for up to 15 minutes.
fn sending() -> RequestConfig {
    RequestConfig::new().retry_limit(3)
}

/// Long-polls the homeserver for as long as the account runs. `Client::sync` pauses a second
/// after any sync that came back within a second of the previous one, which is exactly when
/// approvers are reacting to a fresh card; this loop only pauses after errors.
async fn follow(client: Client) {
    let settings = SyncSettings::default().timeout(Duration::from_secs(30));
    let mut backoff = Duration::from_secs(1);
    loop {
        match client.sync_once(settings.clone()).await {
            Ok(_) => backoff = Duration::from_secs(1),
            Err(e) => {
                let e = MatrixError::from(e);
                if e.is_refused_login() {
                    tracing::error!(
                        error = %e,
                        "the homeserver logged this device out; restart assent serve to log in as a new device"
                    );
                } else {
                    tracing::warn!(error = %e, retry_in = ?backoff, "matrix sync failed");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// A client logged in as the account's device and caught up on its rooms.
async fn signed_in(account: &MatrixAccount) -> Result<Client, MatrixError> {
    std::fs::create_dir_all(&account.store_dir)
        .map_err(|e| MatrixError::Invalid(format!("{}: {e}", account.store_dir.display())))?;
    let client = Client::builder()
        .homeserver_url(&account.homeserver)
        .sqlite_store(&account.store_dir, None)
        .build()
        .await
        .map_err(|e| MatrixError::Invalid(format!("cannot reach {}: {e}", account.homeserver)))?;
    restore_or_login(&client, account).await?;
    // Catch up on rooms at once (a restored session is only checked here); a long poll would
    // hold the start for up to 30 s when nothing is new.
    client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await?;
    Ok(client)
}

/// Moves a store whose login the homeserver refused to `<dir>.revoked-<unix seconds>`.
fn retire_store(dir: &std::path::Path) -> Result<std::path::PathBuf, MatrixError> {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut kept = dir.as_os_str().to_owned();
    kept.push(format!(".revoked-{}", since_epoch.as_secs()));
    let kept = std::path::PathBuf::from(kept);
    std::fs::rename(dir, &kept)
        .map_err(|e| MatrixError::Invalid(format!("moving {} aside: {e}", dir.display())))?;
    Ok(kept)
}

/// The login saved beside the crypto store (the SDK's `MatrixSession`, as JSON).
const SESSION_FILE: &str = "session.json";

/// Uses the device this account already has (its session is kept beside the crypto store), so
/// restarts keep one device and its keys; logs in once otherwise.
async fn restore_or_login(client: &Client, account: &MatrixAccount) -> Result<(), MatrixError> {
    let path = account.store_dir.join(SESSION_FILE);
    if let Some(session) =
        std::fs::read_to_string(&path).ok().and_then(|s| serde_json::from_str::<MatrixSession>(&s).ok())
    {
        client.matrix_auth().restore_session(session, RoomLoadSettings::default()).await?;
        return Ok(());
    }
    client
        .matrix_auth()
        .login_username(&account.user_id, &account.password)
        .initial_device_display_name("assent")
        .send()
        .await?;
    if let Some(session) = client.matrix_auth().session() {
        let text = serde_json::to_string(&session).map_err(|e| MatrixError::Invalid(e.to_string()))?;
        write_private(&path, text.as_bytes())
            .map_err(|e| MatrixError::Invalid(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Writes a file only its owner can read (it holds the bot's access token).
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, bytes)
}

/// IX-5 / CH-MX-4: `/approve <ref> <decision>` typed in a room; answered in a threaded notice.
fn on_message(shared: &Shared, room: &Room, ev: OriginalSyncRoomMessageEvent) {
    let inbound = &shared.inbound;
    // Every replica's device sees the command; the one holding the account answers it.
    if ev.sender == shared.bot || !inbound.is_serving() {
        return;
    }
    let MessageType::Text(text) = &ev.content.msgtype else { return };
    let actor =
        Actor::platform(Channel::Matrix, ev.sender.to_string(), ev.sender.to_string(), Surface::Origin);
    let is_edit = matches!(ev.content.relates_to, Some(Relation::Replacement(_)));
    let msg = TypedMessage { text: &text.body, is_edit, from_bot: false };
    // `/approve@<bot's user id>` is for this bot; any other addressee is another bot's.
    let me = shared.bot.as_str().trim_start_matches('@');
    let outcome = inbound.precheck_typed(actor, msg, Some(me));
    if matches!(outcome, TypedOutcome::Ignore) {
        return;
    }
    // In the command's thread if it was typed in one, else a new thread under the command.
    let root = match &ev.content.relates_to {
        Some(Relation::Thread(thread)) => thread.event_id.to_string(),
        _ => ev.event_id.to_string(),
    };
    // The sync loop waits for its event handlers: recording and answering (a send that may wait
    // out a rate limit) run beside it, so later reactions are not held up.
    let (inbound, room) = (inbound.clone(), room.clone());
    tokio::spawn(async move {
        let reply = match outcome {
            TypedOutcome::Ignore => return,
            TypedOutcome::Reply(text) => text,
            TypedOutcome::Rejected(r) => r.to_string(),
            TypedOutcome::Accepted(accepted) => match inbound.resolve(accepted).await {
                Ok(resolution) => resolution.reply,
                Err(e) => e.to_string(),
            },
        };
        let notice =
            serde_json::json!({ "msgtype": "m.notice", "body": reply, "m.relates_to": in_thread(&root) });
        if let Err(e) = room.send_raw("m.room.message", notice).with_request_config(sending()).await {
            tracing::warn!(error = %e, "could not answer a typed /approve");
        }
    });
}

/// The bot joins a room when an approver invites it (to post cards there with
/// `target = "channel"`); invitations from anybody else are left alone.
fn on_invite(shared: &Shared, room: &Room, ev: StrippedRoomMemberEvent) {
    let for_bot = ev.state_key == shared.bot && ev.content.membership == MembershipState::Invite;
    let from_approver = shared.is_approver(ev.sender.as_str());
    if for_bot && from_approver {
        let room = room.clone();
        tokio::spawn(async move {
            if let Err(e) = room.join().await {
                tracing::warn!(room = %room.room_id(), error = %e, "could not join a room an approver invited the bot to");
            }
        });
    }
}

/// A reaction on a bound card from an approver decides; anything else is ignored.
fn on_reaction(shared: &Shared, room: &Room, ev: OriginalSyncReactionEvent) {
    if ev.sender == shared.bot {
        return; // The seeded reactions never decide.
    }
    let Some(decision) = card::reaction_decision(&ev.content.relates_to.key) else { return };
    let anchor = (room.room_id().to_string(), ev.content.relates_to.event_id.to_string());
    let Some(bound) = lock(&shared.anchors).get(&anchor).cloned() else { return };
    let actor =
        Actor::platform(Channel::Matrix, ev.sender.to_string(), ev.sender.to_string(), Surface::ApproverDm);
    let precheck =
        shared.inbound.precheck(ApprovalRef::Id(bound.approval), Some(bound.kind), decision, actor.clone());
    // A reaction has no ack to send: settle at once, beside the sync loop. Matrix has no
    // private replies (CH-MX-4); refusals are audited by the engine.
    let inbound = shared.inbound.clone();
    tokio::spawn(async move {
        if let Some(Err(e)) = inbound.settle(&actor, precheck, &serde_json::Value::Null).await {
            tracing::warn!(error = %e, "matrix reaction could not be recorded");
        }
    });
}

/// Replays the approvers' reactions on `card` that no instance saw live (made while assent was
/// down, or while the account's lease moved between replicas). Reactions already counted come
/// back as "already recorded" and change nothing; outsiders' reactions are not replayed, so
/// their refusals are audited once.
async fn catch_up(shared: Arc<Shared>, room: Room, card: OwnedEventId) {
    let options = RelationsOptions {
        dir: Direction::Forward,
        limit: Some(matrix_sdk::ruma::uint!(100)),
        include_relations: IncludeRelations::RelationsOfType(RelationType::Annotation),
        ..RelationsOptions::default()
    };
    let relations = match room.relations(card, options).await {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "could not read reactions made while assent was away"),
    };
    for event in relations.chunk {
        let Ok(reaction) = serde_json::from_str::<OriginalSyncReactionEvent>(event.raw().json().get()) else {
            continue; // Redacted, or not a reaction.
        };
        if shared.is_approver(reaction.sender.as_str()) {
            on_reaction(&shared, &room, reaction);
        }
    }
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
    use assent_core::capability::{ClassifyError, RetryKind};
    use matrix_sdk::{
        HttpError, RumaApiError,
        ruma::api::{EndpointError, error::FromHttpResponseError},
    };

    use super::{Duration, MatrixError};

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
