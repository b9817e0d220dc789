//! The Matrix channel against a real Synapse (CH-MX-1..7): the bot delivers cards into the
//! approvers' encrypted DMs, approvers react or type `/approve`, decisions are recorded and the
//! cards are edited. Every test registers fresh users on the process's own homeserver.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]
#![recursion_limit = "256"]

#[path = "synapse/contract.rs"]
mod contract;

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    id::ApprovalId,
    memory::MemoryStore,
    model::AccountKey,
    model::{AuditType, BindingRequest, Channel, Conversation, EntryState, Origin, PluginRef, Status},
    policy::PolicyRule,
    routing::{AccountRouting, TargetMode},
    store::AuditFilter,
};
use assent_engine::{BindingOutcome, EngineConfig, Inbound};
use assent_matrix::{MatrixAccount, MatrixChannel, MatrixEntry, MatrixPlatform};
use assent_testing::{
    TestBed, exec_request,
    synapse::{MatrixUser, SynapseServer},
    test_config,
};
use matrix_sdk::{
    Client, Room, RoomMemberships, RoomState,
    authentication::matrix::MatrixSession,
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        EventId, RoomId, UserId,
        api::client::room::create_room,
        events::{
            reaction::ReactionEventContent, relation::Annotation, room::message::RoomMessageEventContent,
        },
    },
};

/// A homeserver, a bot wired to an engine, and approvers with their own clients.
struct Rig {
    hs: &'static SynapseServer,
    bed: TestBed,
    bot: MatrixUser,
    bot_store: std::path::PathBuf,
    channel: MatrixChannel,
    approvers: Vec<(MatrixUser, Client)>,
}

fn store_dir(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let base = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    assent_testing::process_scratch(base, "matrix").join(format!("{tag}-{n}"))
}

/// An approver's own client: logs in, joins the rooms it is invited to, keeps syncing.
async fn client_of(url: &str, user: &MatrixUser) -> Client {
    let client = Client::builder().homeserver_url(url).build().await.unwrap();
    client.matrix_auth().login_username(&user.user_id, &user.password).send().await.unwrap();
    client.sync_once(SyncSettings::default()).await.unwrap();
    let syncing = client.clone();
    tokio::spawn(async move {
        loop {
            let _ = syncing.sync_once(SyncSettings::default().timeout(Duration::from_millis(300))).await;
            for room in syncing.invited_rooms() {
                let _ = room.join().await;
            }
        }
    });
    client
}

/// The test defaults, but with the spec's 30 s for deliveries to count: creating a DM, sending
/// an encrypted card and seeding its reactions takes longer than the fake channel's 0.5 s.
fn matrix_config() -> EngineConfig {
    let mut c = test_config();
    c.route_wait = Duration::from_secs(30);
    c.notice_wait = Duration::from_secs(10);
    c
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

impl Rig {
    async fn new(approvers: usize, config: EngineConfig) -> Self {
        Self::with_target(approvers, config, TargetMode::Dm).await
    }

    async fn with_target(approvers: usize, config: EngineConfig, target: TargetMode) -> Self {
        let hs = tokio::task::spawn_blocking(SynapseServer::shared).await.unwrap();
        let bot = hs.register("bot");
        let mut people = Vec::new();
        for _ in 0..approvers {
            let user = hs.register("approver");
            let client = client_of(&hs.url(), &user).await;
            people.push((user, client));
        }
        let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[]).await;
        let bot_store = store_dir("bot");
        let channel = Self::connect(hs, &bot, &bot_store, &people, &bed, target).await;
        Rig { hs, bed, bot, bot_store, channel, approvers: people }
    }

    async fn connect(
        hs: &SynapseServer,
        bot: &MatrixUser,
        store: &std::path::Path,
        people: &[(MatrixUser, Client)],
        bed: &TestBed,
        target: TargetMode,
    ) -> MatrixChannel {
        let account = MatrixAccount {
            id: "main".to_owned(),
            homeserver: hs.url(),
            user_id: bot.user_id.clone(),
            password: bot.password.clone(),
            store_dir: store.to_path_buf(),
        };
        let key = AccountKey::new(Channel::Matrix, "main");
        let mut routing =
            AccountRouting::new(key.clone(), people.iter().map(|(u, _)| u.user_id.clone()).collect());
        routing.target = target;
        // RT-9: the DM-only case is the one these tests check the notice for.
        routing.notify_origin_when_dm_only = true;
        let inbound = Inbound::new(bed.handle.clone(), key);
        let channel =
            MatrixChannel::connect(account, MatrixPlatform::availability(routing), inbound).await.unwrap();
        bed.handle.attach(channel.clone().erase()).await.unwrap();
        channel
    }

    /// The cards of `id`, once `n` are delivered.
    async fn cards(&self, id: &ApprovalId, n: usize) -> Vec<MatrixEntry> {
        for _ in 0..600 {
            let entries = self.bed.store.entries(id).await.unwrap();
            if entries.len() >= n {
                // Stored as `{"v": N, "data": <MatrixEntry>}` (CAP-1).
                return entries
                    .iter()
                    .map(|e| serde_json::from_value(e.native_ref["data"].clone()).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} card(s) were not delivered");
    }

    /// `client`'s view of the card's room, once joined.
    async fn room(client: &Client, card: &MatrixEntry) -> Room {
        let room_id = RoomId::parse(&card.room_id).unwrap();
        until("the approver joins the room", || {
            client.get_room(&room_id).is_some_and(|r| r.state() == RoomState::Joined)
        })
        .await;
        client.get_room(&room_id).unwrap()
    }

    async fn react(client: &Client, card: &MatrixEntry, key: &str) {
        let room = Self::room(client, card).await;
        let event_id = EventId::parse(&card.event_id).unwrap();
        room.send(ReactionEventContent::new(Annotation::new(event_id, key.to_owned()))).await.unwrap();
    }

    async fn status(&self, id: &ApprovalId) -> Status {
        self.bed.handle.approval(id).await.unwrap().unwrap().status
    }

    async fn finalized(&self, id: &ApprovalId) {
        for _ in 0..600 {
            let entries = self.bed.store.entries(id).await.unwrap();
            if !entries.is_empty() && entries.iter().all(|e| e.state == EntryState::Finalized) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the cards were not edited to their final text");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_allow_once_by_reaction_in_the_encrypted_dm_edits_the_card() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["deploy", "--prod"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    assert_eq!(card.seeded.len(), 3, "one seeded reaction per allowed decision");
    let room_id = RoomId::parse(&card.room_id).unwrap();
    let bot_room = rig.channel_client().get_room(&room_id).unwrap();
    assert!(bot_room.latest_encryption_state().await.unwrap().is_encrypted(), "CH-MX-5: the DM is encrypted");
    // The bot's own seeded reactions come back through sync and must not decide.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.status(&a.id).await, Status::Pending);
    let (kim, client) = &rig.approvers[0];
    Rig::react(client, &card, "✅").await;
    let decided = rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved, "the approver's ✅ allows once");
    assert_eq!(decided.decided_by.unwrap().user_id, kim.user_id);
    rig.finalized(&a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_always_allow_makes_a_grant_and_deny_denies() {
    let rig = Rig::new(1, matrix_config()).await;
    let client = &rig.approvers[0].1;
    let a = rig.bed.handle.create(exec_request(&["make", "release"])).await.unwrap();
    Rig::react(client, &rig.cards(&a.id, 1).await[0], "♾️").await;
    let a = rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(a.status, Status::Approved);
    assert_eq!(rig.bed.handle.grants().await.unwrap().len(), 1, "allow-always created a grant");
    let first_room = rig.cards(&a.id, 1).await[0].room_id.clone();
    let b = rig.bed.handle.create(exec_request(&["rm", "-rf", "/srv"])).await.unwrap();
    let card = rig.cards(&b.id, 1).await.remove(0);
    assert_eq!(card.room_id, first_room, "CH-MX-5: the existing DM is reused");
    Rig::react(client, &card, "❌").await;
    assert_eq!(rig.bed.handle.wait(&b.id, Duration::from_secs(30)).await.unwrap().status, Status::Denied);
    rig.finalized(&b.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_a_non_approvers_reaction_changes_nothing_and_is_audited() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["shutdown", "now"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    // The approver brings somebody else into the DM; their ✅ must not count.
    let eve = rig.hs.register("eve");
    let eve_client = client_of(&rig.hs.url(), &eve).await;
    let kim_room = Rig::room(&rig.approvers[0].1, &card).await;
    kim_room.invite_user_by_id(&UserId::parse(&eve.user_id).unwrap()).await.unwrap();
    Rig::react(&eve_client, &card, "✅").await;
    let mut audited = false;
    for _ in 0..600 {
        let audit =
            rig.bed.store.audit(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.unwrap();
        audited = audit.iter().any(|e| {
            e.kind == AuditType::InteractionRejected
                && e.actor.as_ref().is_some_and(|a| a.user_id == eve.user_id)
        });
        if audited {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(audited, "the refused reaction is audited");
    assert_eq!(rig.status(&a.id).await, Status::Pending, "and decided nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_typed_approve_deny_in_the_room_decides() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["drop", "database"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    let room = Rig::room(&rig.approvers[0].1, &card).await;
    let command = format!("/approve {} deny", a.short_ref());
    room.send(RoomMessageEventContent::text_plain(command)).await.unwrap();
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Denied);
    rig.finalized(&a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_quorum_two_needs_both_approvers() {
    let mut config = matrix_config();
    config.policy.rules.push(PolicyRule {
        name: "two-person".to_owned(),
        quorum: 2,
        ..PolicyRule::implicit()
    });
    let rig = Rig::new(2, config).await;
    let a = rig.bed.handle.create(exec_request(&["terraform", "destroy"])).await.unwrap();
    let cards = rig.cards(&a.id, 2).await;
    // Each approver has their own DM: find the card in it.
    let card_of = |client: &Client| {
        cards.iter().find(|c| client.get_room(&RoomId::parse(&c.room_id).unwrap()).is_some()).cloned()
    };
    until("both approvers see their card", || rig.approvers.iter().all(|(_, c)| card_of(c).is_some())).await;
    let (first, second) = (&rig.approvers[0].1, &rig.approvers[1].1);
    Rig::react(first, &card_of(first).unwrap(), "✅").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.status(&a.id).await, Status::Pending, "one vote of two");
    Rig::react(second, &card_of(second).unwrap(), "✅").await;
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    rig.finalized(&a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_expiry_edits_the_card() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["sleep", "1"])).await.unwrap();
    rig.cards(&a.id, 1).await;
    rig.bed.clock.advance(Duration::from_secs(3600));
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Expired);
    rig.finalized(&a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_a_reaction_after_a_restart_still_decides() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["reboot"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    let Rig { hs, bed, bot, bot_store, channel, approvers } = rig;
    drop(channel);
    let bed = bed.restart_with(Vec::new()).await;
    // The same device comes back (session kept beside the crypto store) and re-binds its cards.
    let channel = Rig::connect(hs, &bot, &bot_store, &approvers, &bed, TargetMode::Dm).await;
    Rig::react(&approvers[0].1, &card, "✅").await;
    assert_eq!(bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    drop(channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_3_a_reaction_made_while_assent_was_down_decides_at_start() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["reboot"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    let Rig { hs, bed, bot, bot_store, channel, approvers } = rig;
    drop(channel);
    let bed = bed.restart_with(Vec::new()).await;
    // Nobody follows the room now; the approver reacts anyway.
    Rig::react(&approvers[0].1, &card, "❌").await;
    let channel = Rig::connect(hs, &bot, &bot_store, &approvers, &bed, TargetMode::Dm).await;
    let decided = bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Denied, "the reaction counts once the card is re-bound");
    drop(channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_a_bot_logged_out_elsewhere_logs_in_anew_and_its_pending_card_still_decides() {
    let rig = Rig::new(1, matrix_config()).await;
    let a = rig.bed.handle.create(exec_request(&["reboot"])).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    let Rig { hs, bed, bot, bot_store, channel, approvers } = rig;
    let old_device = channel.client().device_id().unwrap().to_owned();
    drop(channel);
    // Someone logs the bot's device out from another client while assent is down.
    let session: MatrixSession =
        serde_json::from_str(&std::fs::read_to_string(bot_store.join("session.json")).unwrap()).unwrap();
    let elsewhere = Client::builder().homeserver_url(hs.url()).build().await.unwrap();
    elsewhere.matrix_auth().restore_session(session, Default::default()).await.unwrap();
    elsewhere.matrix_auth().logout().await.unwrap();

    let bed = bed.restart_with(Vec::new()).await;
    let channel = Rig::connect(hs, &bot, &bot_store, &approvers, &bed, TargetMode::Dm).await;
    let new_device = channel.client().device_id().unwrap().to_owned();
    assert_ne!(new_device, old_device, "a new device, since the old one is gone");
    let kept_prefix = format!("{}.revoked-", bot_store.file_name().unwrap().to_string_lossy());
    let kept = std::fs::read_dir(bot_store.parent().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&kept_prefix))
        .count();
    assert_eq!(kept, 1, "the old store is kept aside, not deleted");

    // The approver's client encrypts its reaction for the devices it knows of: wait until it
    // has seen the bot's new one (as a real client does within a sync or two).
    let approver = &approvers[0].1;
    let bot_id = UserId::parse(&bot.user_id).unwrap();
    let mut attempts = 0;
    while approver.encryption().get_user_devices(&bot_id).await.unwrap().get(&new_device).is_none() {
        attempts += 1;
        assert!(attempts < 600, "the approver's client never saw the bot's new device");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Rig::react(approver, &card, "✅").await;
    let decided = bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved, "the card from before the new login still decides");
    drop(channel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_7_a_rate_limited_bot_delivers_and_a_reaction_during_seeding_decides() {
    let rig = Rig::new(1, matrix_config()).await;
    // One event a second: the card goes through, each seed meets M_LIMIT_EXCEEDED first.
    rig.hs.limit_messages(&rig.bot.user_id, 1, 1);
    let a = rig.bed.handle.create(exec_request(&["deploy", "--canary"])).await.unwrap();
    // The approver reacts as soon as the card shows up, while the bot is still seeding.
    let kim = &rig.approvers[0].1;
    let mut card = None;
    for _ in 0..600 {
        card = contract::card_events(kim, &a.id).await.into_iter().next();
        if card.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (room_id, event_id) = card.expect("the card reaches the approver");
    assert!(rig.bed.store.entries(&a.id).await.unwrap().is_empty(), "the bot is still seeding");
    let room = kim.get_room(&RoomId::parse(&room_id).unwrap()).unwrap();
    let reaction = Annotation::new(EventId::parse(&event_id).unwrap(), "✅".to_owned());
    room.send(ReactionEventContent::new(reaction)).await.unwrap();
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    let card = rig.cards(&a.id, 1).await.remove(0);
    assert_eq!(card.seeded.len(), 3, "every seed got through once the server let it");
    rig.finalized(&a.id).await;
}

impl Rig {
    fn channel_client(&self) -> Client {
        self.channel.client()
    }

    /// Waits until the bot's view of the card's room has `n` members (joined or invited).
    async fn bot_sees_members(&self, card: &MatrixEntry, n: usize, what: &str) {
        let room = self.channel_client().get_room(&RoomId::parse(&card.room_id).unwrap()).unwrap();
        let mut members = 0;
        for _ in 0..600 {
            members = room.members(RoomMemberships::ACTIVE).await.unwrap().len();
            if members == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the bot never saw {what}: {members} member(s), not {n}");
    }

    /// A group room the first approver makes and invites the bot to; returns it once the bot is in.
    async fn group_room(&self) -> String {
        let client = &self.approvers[0].1;
        let mut request = create_room::v3::Request::new();
        request.invite = vec![UserId::parse(&self.bot.user_id).unwrap()];
        request.name = Some("ops".to_owned());
        let room = client.create_room(request).await.unwrap();
        let room_id = room.room_id().to_owned();
        let bot = self.channel_client();
        until("the bot joins the approver's room", || {
            bot.get_room(&room_id).is_some_and(|r| r.state() == RoomState::Joined)
        })
        .await;
        room_id.to_string()
    }

    /// The `m.notice` messages the bot sent into `room_id`, as the approver sees them.
    async fn notices(&self, room_id: &str) -> Vec<serde_json::Value> {
        let client = &self.approvers[0].1;
        let room = client.get_room(&RoomId::parse(room_id).unwrap()).unwrap();
        let page = room.messages(MessagesOptions::backward()).await.unwrap();
        page.chunk
            .iter()
            .filter_map(|e| serde_json::from_str::<serde_json::Value>(e.raw().json().get()).ok())
            .filter(|e| e["sender"] == self.bot.user_id.as_str() && e["content"]["msgtype"] == "m.notice")
            .map(|e| e["content"].clone())
            .collect()
    }

    /// A message from the first approver in `room_id` that starts a thread; its event id.
    async fn thread_root(&self, room_id: &str) -> String {
        let room = self.approvers[0].1.get_room(&RoomId::parse(room_id).unwrap()).unwrap();
        let sent = room.send(RoomMessageEventContent::text_plain("deploying the API")).await.unwrap();
        sent.response.event_id.to_string()
    }
}

fn from_room(room_id: &str) -> Origin {
    Origin {
        channel: Channel::Matrix,
        account: "main".to_owned(),
        conversation: room_id.to_owned(),
        parent: None,
        thread: None,
    }
}

fn from_thread(room_id: &str, root: &str) -> Origin {
    Origin { thread: Some(root.to_owned()), ..from_room(room_id) }
}

/// The `m.thread` root an event's content is in, if any.
fn thread_of(content: &serde_json::Value) -> Option<&str> {
    let relation = &content["m.relates_to"];
    (relation["rel_type"] == "m.thread").then(|| relation["event_id"].as_str()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_target_channel_posts_in_the_origin_room_and_sends_no_notice() {
    let rig = Rig::with_target(1, matrix_config(), TargetMode::Channel).await;
    let room_id = rig.group_room().await;
    let mut request = exec_request(&["kubectl", "rollout", "restart", "deploy/api"]);
    request.origin = Some(from_room(&room_id));
    let a = rig.bed.handle.create(request).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    assert_eq!(card.room_id, room_id, "the card is in the room the request came from");
    Rig::react(&rig.approvers[0].1, &card, "✅").await;
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        rig.notices(&room_id).await.is_empty(),
        "no routed-elsewhere notice when the card is right there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_target_dm_sends_the_routed_elsewhere_notice_into_the_origin_room() {
    let rig = Rig::new(1, matrix_config()).await;
    let room_id = rig.group_room().await;
    let root = rig.thread_root(&room_id).await;
    let mut request = exec_request(&["kubectl", "delete", "pod", "api-0"]);
    request.origin = Some(from_thread(&room_id, &root));
    let a = rig.bed.handle.create(request).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    assert_ne!(card.room_id, room_id, "the card went to the approver's DM");
    let mut notices = Vec::new();
    for _ in 0..200 {
        notices = rig.notices(&room_id).await;
        if !notices.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(notices.len(), 1, "{notices:?}");
    let body = notices[0]["body"].as_str().unwrap();
    assert!(body.contains(a.short_ref()), "the notice names the ref: {body}");
    assert!(!body.contains("kubectl"), "and never the command: {body}");
    assert_eq!(thread_of(&notices[0]), Some(root.as_str()), "CH-MX-5: in the request's thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_5_a_request_from_a_thread_gets_its_card_in_that_thread() {
    let rig = Rig::with_target(1, matrix_config(), TargetMode::Channel).await;
    let room_id = rig.group_room().await;
    let root = rig.thread_root(&room_id).await;
    let mut request = exec_request(&["kubectl", "scale", "deploy/api", "--replicas=0"]);
    request.origin = Some(from_thread(&room_id, &root));
    let a = rig.bed.handle.create(request).await.unwrap();
    let card = rig.cards(&a.id, 1).await.remove(0);
    let room = Rig::room(&rig.approvers[0].1, &card).await;
    let event = room.event(&EventId::parse(&card.event_id).unwrap(), None).await.unwrap();
    let content: serde_json::Value = serde_json::from_str(event.raw().json().get()).unwrap();
    assert_eq!(thread_of(&content["content"]), Some(root.as_str()), "{content}");
    Rig::react(&rig.approvers[0].1, &card, "✅").await;
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    rig.finalized(&a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_mx_5_a_direct_room_is_reused_only_while_it_holds_just_the_bot_and_the_approver() {
    let rig = Rig::new(1, matrix_config()).await;
    let kim = &rig.approvers[0].1;
    let a = rig.bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let first = rig.cards(&a.id, 1).await.remove(0);
    // Somebody else is invited into the direct room: it is not private any more.
    let eve = rig.hs.register("eve");
    Rig::room(kim, &first).await.invite_user_by_id(&UserId::parse(&eve.user_id).unwrap()).await.unwrap();
    rig.bot_sees_members(&first, 3, "eve invited").await;
    let b = rig.bed.handle.create(exec_request(&["pwd"])).await.unwrap();
    let second = rig.cards(&b.id, 1).await.remove(0);
    assert_ne!(second.room_id, first.room_id, "a room with a third member is not a DM");
    // And the new one is used from then on.
    let c = rig.bed.handle.create(exec_request(&["id"])).await.unwrap();
    assert_eq!(rig.cards(&c.id, 1).await[0].room_id, second.room_id);
    // Until the approver leaves it: a card there would reach nobody.
    Rig::room(kim, &second).await.leave().await.unwrap();
    rig.bot_sees_members(&second, 1, "the approver gone").await;
    let d = rig.bed.handle.create(exec_request(&["uptime"])).await.unwrap();
    let third = rig.cards(&d.id, 1).await.remove(0);
    assert!(third.room_id != first.room_id && third.room_id != second.room_id, "a new DM");
}

/// Records `binding.resolved` callbacks (BD-8).
#[derive(Default)]
struct Recorder {
    calls: std::sync::Mutex<Vec<serde_json::Value>>,
}

#[async_trait::async_trait]
impl assent_engine::BindingHandler for Recorder {
    async fn on_binding_resolved(&self, payload: &serde_json::Value) -> Result<(), String> {
        self.calls.lock().unwrap().push(payload.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_a_binding_of_a_matrix_room_is_approved_by_reaction_and_calls_back() {
    let rig = Rig::new(1, matrix_config()).await;
    let room_id = rig.group_room().await;
    let handler = Arc::new(Recorder::default());
    rig.bed.handle.register_binding_handler("standup", "/opt/standup@1", handler.clone());
    let request = BindingRequest {
        plugin: PluginRef { id: "standup".into(), name: "Standup bot".into(), root: "/opt/standup@1".into() },
        conversation: Conversation {
            channel: Channel::Matrix,
            account: "main".into(),
            conversation: room_id.clone(),
            parent: None,
            thread: None,
        },
        summary: "Runs the daily standup here".into(),
        detach_hint: String::new(),
        requested_by: None,
    };
    let BindingOutcome::Pending(a) = rig.bed.handle.request_binding(request, "plugin:standup").await.unwrap()
    else {
        panic!("a new binding needs approval");
    };
    // BD-2: the conversation's own account asks its approvers.
    let card = rig.cards(&a.id, 1).await.remove(0);
    Rig::react(&rig.approvers[0].1, &card, "✅").await;
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    let conversation = Conversation {
        channel: Channel::Matrix,
        account: "main".into(),
        conversation: room_id,
        parent: None,
        thread: None,
    };
    assert!(rig.bed.handle.binding_for(&conversation).await.unwrap().is_some(), "BD-3: the room is bound");
    until("the plugin's callback", || !handler.calls.lock().unwrap().is_empty()).await;
    let call = handler.calls.lock().unwrap()[0].clone();
    assert_eq!(call["status"], "approved");
    assert_eq!(call["binding"]["plugin_root"], "/opt/standup@1", "{call}");
}
