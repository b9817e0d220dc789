//! The Matrix channel against a real Synapse: the bot delivers the card to the approver's
//! encrypted DM, the approver reacts, the decision is recorded and the card is edited.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]
#![recursion_limit = "256"]

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    memory::MemoryStore,
    model::{EntryState, Status},
};
use assent_matrix::{MatrixAccount, MatrixChannel, MatrixEntry};
use assent_testing::{TestBed, exec_request, synapse::SynapseServer, test_config};
use matrix_sdk::{
    Client,
    config::SyncSettings,
    ruma::{
        EventId, RoomId,
        events::{reaction::ReactionEventContent, relation::Annotation},
    },
};

fn store_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("matrix-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The approver's own client: logs in, joins the rooms it is invited to, keeps syncing.
async fn approver(url: &str, user: &assent_testing::synapse::MatrixUser) -> Client {
    let client = Client::builder().homeserver_url(url).build().await.unwrap();
    client.matrix_auth().login_username(&user.user_id, &user.password).send().await.unwrap();
    client.sync_once(SyncSettings::default()).await.unwrap();
    let syncing = client.clone();
    tokio::spawn(async move {
        loop {
            let _ = syncing.sync_once(SyncSettings::default().timeout(Duration::from_millis(500))).await;
            for room in syncing.invited_rooms() {
                let _ = room.join().await;
            }
        }
    });
    client
}

async fn until<F: FnMut() -> bool>(what: &str, mut f: F) {
    for _ in 0..600 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_a_reaction_in_the_approvers_dm_decides_and_the_card_is_edited() {
    let hs = tokio::task::spawn_blocking(SynapseServer::shared).await.unwrap();
    let (bot, kim) = (hs.register("bot"), hs.register("kim"));
    let bed = TestBed::with(Arc::new(MemoryStore::new()), test_config(), &[]).await;
    let account = MatrixAccount {
        id: "main".to_owned(),
        homeserver: hs.url(),
        user_id: bot.user_id.clone(),
        password: bot.password.clone(),
        approvers: vec![kim.user_id.clone()],
        store_dir: store_dir("bot"),
    };
    let channel = MatrixChannel::connect(account, bed.handle.clone()).await.unwrap();
    bed.handle.attach(channel.clone().erase()).await.unwrap();
    let kim_client = approver(&hs.url(), &kim).await;

    let a = bed.handle.create(exec_request(&["deploy", "--prod"])).await.unwrap();
    let mut entry: Option<MatrixEntry> = None;
    for _ in 0..600 {
        let entries = bed.store.entries(&a.id).await.unwrap();
        if let Some(e) = entries.first() {
            // Stored as `{"v": N, "data": <MatrixEntry>}` (CAP-1).
            entry = Some(serde_json::from_value(e.native_ref["data"].clone()).unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = entry.expect("the bot delivered a card");
    assert_eq!(entry.seeded.len(), 3, "one seeded reaction per allowed decision");
    // The bot's own seeded reactions come back through sync and must not decide.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bed.handle.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);

    let room_id = RoomId::parse(&entry.room_id).unwrap();
    until("the approver joins the DM", || {
        kim_client.get_room(&room_id).is_some_and(|r| r.state() == matrix_sdk::RoomState::Joined)
    })
    .await;
    let room = kim_client.get_room(&room_id).unwrap();
    let event_id = EventId::parse(&entry.event_id).unwrap();
    room.send(ReactionEventContent::new(Annotation::new(event_id, "✅".to_owned()))).await.unwrap();

    let decided = bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved, "the approver's ✅ allows once");
    assert_eq!(decided.decided_by.unwrap().user_id, kim.user_id);
    for _ in 0..600 {
        let entries = bed.store.entries(&a.id).await.unwrap();
        if entries.iter().all(|e| e.state == EntryState::Finalized) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the card was not edited to its final text");
}
