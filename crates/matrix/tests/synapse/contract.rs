//! CAP-11: the Matrix channel passes the channel contract against the real Synapse. Cards are
//! observed the way the approver's client sees them (the card, its latest edit, the bot's
//! reactions that are not redacted); a press is a reaction, which has no ack, so the harness
//! returns once the bot has answered a message sent after it (the bot handles a room's events in
//! order).

use std::{path::PathBuf, sync::Arc};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    id::ApprovalId,
    model::{AccountKey, Channel, Decision},
    routing::AccountRouting,
};
use assent_engine::{EngineConfig, EngineHandle, Inbound};
use assent_matrix::{MatrixAccount, MatrixChannel, MatrixPlatform, reaction_decision};
use assent_testing::{
    channel_contract::{ChannelHarness, ObservedCard, Pressed},
    channel_contract_tests,
    synapse::{MatrixUser, SynapseServer},
};
use matrix_sdk::{
    Client, Room, RoomState,
    room::MessagesOptions,
    ruma::{
        EventId, RoomId, UserId, events::reaction::ReactionEventContent, events::relation::Annotation,
        events::room::message::RoomMessageEventContent, uint,
    },
};
use serde_json::Value;

use super::{client_of, matrix_config, store_dir, until};

struct MatrixHarness {
    hs: &'static SynapseServer,
    bot: MatrixUser,
    bot_store: PathBuf,
    approver: (MatrixUser, Client),
    outsider: (MatrixUser, Client),
    /// The channel in use; replaced (and so stopped) by the next `capability` call.
    channel: tokio::sync::Mutex<Option<MatrixChannel>>,
}

impl MatrixHarness {
    async fn shared() -> Arc<dyn ChannelHarness> {
        let hs = tokio::task::spawn_blocking(SynapseServer::shared).await.unwrap();
        let (approver, outsider) = (hs.register("approver"), hs.register("outsider"));
        let approver_client = client_of(&hs.url(), &approver).await;
        let outsider_client = client_of(&hs.url(), &outsider).await;
        Arc::new(Self {
            hs,
            bot: hs.register("bot"),
            bot_store: store_dir("contract"),
            approver: (approver, approver_client),
            outsider: (outsider, outsider_client),
            channel: tokio::sync::Mutex::new(None),
        })
    }

    fn client_of(&self, user: &str) -> &Client {
        if user == self.outsider.0.user_id { &self.outsider.1 } else { &self.approver.1 }
    }

    /// `user`'s view of `room_id`, joining it first (invited by the approver) if needed.
    async fn joined(&self, user: &str, room_id: &str) -> Room {
        let room_id = RoomId::parse(room_id).unwrap();
        let client = self.client_of(user);
        let joined = |c: &Client| c.get_room(&room_id).is_some_and(|r| r.state() == RoomState::Joined);
        if !joined(client) {
            let host = self.approver.1.get_room(&room_id).unwrap();
            host.invite_user_by_id(&UserId::parse(user).unwrap()).await.unwrap();
            until("the user joins the card's room", || joined(client)).await;
        }
        client.get_room(&room_id).unwrap()
    }
}

/// The newest events of `room` (up to 100), oldest first, as JSON.
async fn events(room: &Room) -> Vec<Value> {
    let mut options = MessagesOptions::backward();
    options.limit = uint!(100);
    let Ok(page) = room.messages(options).await else { return Vec::new() };
    let mut events: Vec<Value> =
        page.chunk.iter().filter_map(|e| serde_json::from_str(e.raw().json().get()).ok()).collect();
    events.reverse();
    events
}

/// `(room, event)` of every card of `id` that `client` can see.
pub(super) async fn card_events(client: &Client, id: &ApprovalId) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for room in client.joined_rooms() {
        for card in observe(&events(&room).await, id, "", room.room_id().as_str()) {
            found.push((card.conversation, card.message));
        }
    }
    found
}

/// The cards of `id` in `events`, as the approver's client shows them.
fn observe(events: &[Value], id: &ApprovalId, bot: &str, room_id: &str) -> Vec<ObservedCard> {
    let relation = |e: &Value, rel: &str| {
        let r = &e["content"]["m.relates_to"];
        (r["rel_type"] == rel).then(|| r["event_id"].as_str().unwrap_or_default().to_owned())
    };
    let cards = events.iter().filter(|e| {
        e["content"]["io.assent.approval"]["id"] == id.to_string() && relation(e, "m.replace").is_none()
    });
    cards
        .map(|card| {
            let event_id = card["event_id"].as_str().unwrap_or_default().to_owned();
            let latest_edit = events
                .iter()
                .filter(|e| relation(e, "m.replace").as_deref() == Some(event_id.as_str()))
                .filter_map(|e| e["content"]["m.new_content"]["body"].as_str())
                .next_back();
            let text = latest_edit.or(card["content"]["body"].as_str()).unwrap_or_default().to_owned();
            // A redacted reaction has no content left, so it drops out here.
            let mut decisions = Vec::new();
            for e in events.iter().filter(|e| e["type"] == "m.reaction" && e["sender"] == bot) {
                let on_card = relation(e, "m.annotation").as_deref() == Some(event_id.as_str());
                let decision = e["content"]["m.relates_to"]["key"].as_str().and_then(reaction_decision);
                if let Some(d) = decision.filter(|d| on_card && !decisions.contains(d)) {
                    decisions.push(d);
                }
            }
            ObservedCard {
                conversation: room_id.to_owned(),
                message: event_id,
                text,
                tokens: Vec::new(),
                decisions,
                deleted: card["unsigned"]["redacted_because"].is_object(),
            }
        })
        .collect()
}

fn key_of(decision: Decision) -> &'static str {
    match decision {
        Decision::AllowOnce => "✅",
        Decision::AllowAlways => "♾️",
        Decision::Deny => "❌",
    }
}

#[async_trait::async_trait]
impl ChannelHarness for MatrixHarness {
    fn config(&self) -> EngineConfig {
        matrix_config()
    }

    async fn capability(&self, engine: &EngineHandle) -> Arc<dyn DynApprovalCapability> {
        let mut current = self.channel.lock().await;
        // A restart: the old channel stops before the new one (same device) starts.
        drop(current.take());
        let account = MatrixAccount {
            id: "main".to_owned(),
            homeserver: self.hs.url(),
            user_id: self.bot.user_id.clone(),
            password: self.bot.password.clone(),
            store_dir: self.bot_store.clone(),
        };
        let key = AccountKey::new(Channel::Matrix, "main");
        let routing = AccountRouting::new(key.clone(), vec![self.approver.0.user_id.clone()]);
        let inbound = Inbound::new(engine.clone(), key);
        let channel =
            MatrixChannel::connect(account, MatrixPlatform::availability(routing), inbound).await.unwrap();
        *current = Some(channel.clone());
        channel.erase()
    }

    fn approver(&self) -> String {
        self.approver.0.user_id.clone()
    }

    fn outsider(&self) -> String {
        self.outsider.0.user_id.clone()
    }

    fn max_token_bytes(&self) -> usize {
        0 // Reactions carry no callback data.
    }

    async fn cards(&self, id: &ApprovalId) -> Vec<ObservedCard> {
        let mut found = Vec::new();
        for room in self.approver.1.joined_rooms() {
            let events = events(&room).await;
            found.extend(observe(&events, id, &self.bot.user_id, room.room_id().as_str()));
        }
        found
    }

    async fn press(
        &self,
        _engine: &EngineHandle,
        card: &ObservedCard,
        decision: Decision,
        user: &str,
    ) -> Pressed {
        let room = self.joined(user, &card.conversation).await;
        let event_id = EventId::parse(&card.message).unwrap();
        let reaction = ReactionEventContent::new(Annotation::new(event_id, key_of(decision).to_owned()));
        room.send(reaction).await.unwrap();
        // A bare `/approve` gets a usage answer in a thread under it; the bot handles the room's
        // events in order, so once it answered, it has handled the reaction too.
        let barrier =
            room.send(RoomMessageEventContent::text_plain("/approve")).await.unwrap().response.event_id;
        let bot = self.bot.user_id.as_str();
        let mut answered = false;
        for _ in 0..600 {
            answered = events(&room)
                .await
                .iter()
                .any(|e| e["sender"] == bot && e["content"]["m.relates_to"]["event_id"] == barrier.as_str());
            if answered {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(answered, "the bot never answered the message after the reaction");
        Pressed::Handled
    }
}

channel_contract_tests!(MatrixHarness::shared());
