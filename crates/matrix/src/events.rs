//! What arrives from the account's rooms: reactions on cards (decisions), typed
//! `/approve` commands, and invitations from approvers.

use std::sync::Arc;

use assent_core::{
    command::TypedMessage,
    model::{Actor, Channel, Surface},
};
use assent_engine::{ApprovalRef, TypedOutcome};
use matrix_sdk::{
    Client, Room,
    event_handler::EventHandlerHandle,
    room::{IncludeRelations, RelationsOptions},
    ruma::{
        OwnedEventId,
        api::Direction,
        events::{
            reaction::OriginalSyncReactionEvent,
            relation::RelationType,
            room::{
                member::{MembershipState, StrippedRoomMemberEvent},
                message::{MessageType, OriginalSyncRoomMessageEvent, Relation},
            },
        },
    },
};

use crate::{Shared, card, in_thread, lock, sending};

/// Follows reactions, invitations and typed commands.
pub(crate) fn add_handlers(client: &Client, shared: &Arc<Shared>) -> Vec<EventHandlerHandle> {
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
pub(crate) async fn catch_up(shared: Arc<Shared>, room: Room, card: OwnedEventId) {
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
