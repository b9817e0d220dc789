//! `cargo xtask bench matrix`: one approval round trip on a real Synapse — request, card visible
//! to the approver, approver's reaction, decision recorded — through assent, next to a bare
//! matrix-sdk bot doing the same sends and syncs (a message, three seeded reactions, wait for
//! the approver's reaction) in the same run. In both, the approver reacts as soon as the card
//! shows up, while the seeds may still be on their way. Prints both and the ratio.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    memory::MemoryStore,
    model::{AccountKey, Channel, Status},
    routing::AccountRouting,
};
use assent_engine::{Engine, Inbound};
use assent_matrix::{MatrixAccount, MatrixChannel, MatrixPlatform};
use assent_testing::{
    exec_request,
    synapse::{MatrixUser, SynapseServer},
    test_config,
};
use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    ruma::{
        OwnedEventId, OwnedRoomId, RoomId,
        events::{
            reaction::{OriginalSyncReactionEvent, ReactionEventContent},
            relation::Annotation,
            room::message::{OriginalSyncRoomMessageEvent, Relation},
        },
    },
};
use tokio::sync::mpsc;

/// A logged-in client that syncs continuously, joins every invite and reports the new
/// messages (not edits) and the reactions others send.
struct Peer {
    client: Client,
    messages: mpsc::UnboundedReceiver<(OwnedRoomId, OwnedEventId)>,
    reactions: mpsc::UnboundedReceiver<OwnedEventId>,
}

async fn peer(url: &str, user: &MatrixUser) -> Peer {
    let client = Client::builder().homeserver_url(url).build().await.unwrap_or_else(|e| panic!("{e}"));
    client
        .matrix_auth()
        .login_username(&user.user_id, &user.password)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.sync_once(SyncSettings::default()).await.unwrap_or_else(|e| panic!("{e}"));
    let (mtx, messages) = mpsc::unbounded_channel();
    let (rtx, reactions) = mpsc::unbounded_channel();
    let me = client.user_id().map(ToOwned::to_owned);
    let me2 = me.clone();
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let (tx, me) = (mtx.clone(), me.clone());
        async move {
            let edit = matches!(ev.content.relates_to, Some(Relation::Replacement(_)));
            if Some(&ev.sender) != me.as_ref() && !edit {
                let _ = tx.send((room.room_id().to_owned(), ev.event_id));
            }
        }
    });
    client.add_event_handler(move |ev: OriginalSyncReactionEvent| {
        let (tx, me) = (rtx.clone(), me2.clone());
        async move {
            if Some(&ev.sender) != me.as_ref() {
                let _ = tx.send(ev.content.relates_to.event_id);
            }
        }
    });
    let syncing = client.clone();
    tokio::spawn(async move {
        loop {
            let _ = syncing.sync_once(SyncSettings::default().timeout(Duration::from_secs(5))).await;
            for room in syncing.invited_rooms() {
                let _ = room.join().await;
            }
        }
    });
    Peer { client, messages, reactions }
}

async fn seen<T>(rx: &mut mpsc::UnboundedReceiver<T>, wanted: impl Fn(&T) -> bool) {
    while let Some(got) = rx.recv().await {
        if wanted(&got) {
            return;
        }
    }
}

async fn joined(client: &Client, room: &RoomId) -> Room {
    loop {
        if let Some(r) = client.get_room(room).filter(|r| r.state() == matrix_sdk::RoomState::Joined) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn react(room: &Room, event: &OwnedEventId, key: &str) {
    room.send(ReactionEventContent::new(Annotation::new(event.clone(), key.to_owned())))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub(crate) async fn run(quick: bool) {
    let rounds = if quick { 5 } else { 20 };
    let hs = tokio::task::spawn_blocking(SynapseServer::shared).await.unwrap_or_else(|e| panic!("{e}"));
    let (bot, bare_bot, kim) = (hs.register("bot"), hs.register("barebot"), hs.register("kim"));
    let mut config = test_config();
    config.route_wait = Duration::from_secs(30);
    let engine =
        Engine::builder(Arc::new(MemoryStore::new()), config).start().await.unwrap_or_else(|e| panic!("{e}"));
    let h = engine.handle();
    let store_dir = std::env::temp_dir().join(format!("assent-bench-matrix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&store_dir);
    let account = MatrixAccount {
        id: "main".to_owned(),
        homeserver: hs.url(),
        user_id: bot.user_id.clone(),
        password: bot.password.clone(),
        store_dir: store_dir.clone(),
    };
    let key = AccountKey::new(Channel::Matrix, "main");
    let availability =
        MatrixPlatform::availability(AccountRouting::new(key.clone(), vec![kim.user_id.clone()]));
    let channel = MatrixChannel::connect(account, availability, Inbound::new(h.clone(), key))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    h.attach(channel.clone().erase()).await.unwrap_or_else(|e| panic!("{e}"));
    let mut kim = peer(&hs.url(), &kim).await;

    // assent: request → card visible to the approver → ✅ → decision recorded.
    let mut through_assent = Vec::new();
    let (mut to_seen, mut to_decided) = (Vec::new(), Vec::new());
    for i in 0..=rounds {
        let started = std::time::Instant::now();
        let a = h.create(exec_request(&["deploy", &i.to_string()])).await.unwrap_or_else(|e| panic!("{e}"));
        let (room_id, event) = kim.messages.recv().await.unwrap_or_else(|| panic!("kim stopped syncing"));
        let seen_at = started.elapsed();
        let room = joined(&kim.client, &room_id).await;
        react(&room, &event, "✅").await;
        let reacted = started.elapsed();
        let done = h.wait(&a.id, Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.status, Status::Approved);
        if i > 0 {
            // Round 0 creates and joins the DM.
            through_assent.push(started.elapsed());
            to_seen.push(seen_at);
            to_decided.push(started.elapsed() - reacted);
        }
        // The next round starts once this card is final (edited, seeds removed).
        while h
            .store()
            .entries(&a.id)
            .await
            .map_or(true, |e| e.is_empty() || e.iter().any(|e| e.needs_finalizing()))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    // A bare matrix-sdk bot: the same message and seeds, the same wait for the reaction.
    let mut bare = peer(&hs.url(), &bare_bot).await;
    let kim_id =
        matrix_sdk::ruma::UserId::parse(kim.client.user_id().map(|u| u.as_str()).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    let dm = bare.client.create_dm(&kim_id).await.unwrap_or_else(|e| panic!("{e}"));
    let kim_room = joined(&kim.client, dm.room_id()).await;
    let mut bare_sdk = Vec::new();
    for i in 0..=rounds {
        let started = std::time::Instant::now();
        let body = serde_json::json!({ "msgtype": "m.text", "body": format!("Approval needed: deploy {i}") });
        let sent =
            dm.send_raw("m.room.message", body).await.unwrap_or_else(|e| panic!("{e}")).response.event_id;
        let (seeding_room, card) = (dm.clone(), sent.clone());
        let seeding = tokio::spawn(async move {
            for key in ["✅", "♾️", "❌"] {
                react(&seeding_room, &card, key).await;
            }
        });
        seen(&mut kim.messages, |(_, id)| *id == sent).await;
        react(&kim_room, &sent, "✅").await;
        seen(&mut bare.reactions, |id| *id == sent).await;
        if i > 0 {
            bare_sdk.push(started.elapsed());
        }
        seeding.await.unwrap_or_else(|e| panic!("{e}"));
    }
    let (a, b) = (p50(through_assent), p50(bare_sdk));
    println!(
        "Matrix round trip on Synapse (request → card seen by the approver → ✅ → decided), {rounds} rounds:"
    );
    println!("  through assent:   p50 {:.1} ms", a.as_secs_f64() * 1e3);
    println!(
        "  bare matrix-sdk:  p50 {:.1} ms (same message, 3 seeded reactions, wait for the reaction)",
        b.as_secs_f64() * 1e3
    );
    println!("  ratio assent / bare: {:.2}", a.as_secs_f64() / b.as_secs_f64());
    let ms = |v: Vec<Duration>| p50(v).as_secs_f64() * 1e3;
    println!(
        "  assent, p50 of each step: card seen by the approver {:.1} ms · reaction sent → decided {:.1} ms",
        ms(to_seen),
        ms(to_decided)
    );
    drop(channel);
    engine.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&store_dir);
}
