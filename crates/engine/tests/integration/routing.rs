use std::{sync::Arc, time::Duration};

use assent_core::{
    memory::MemoryStore,
    model::*,
    routing::TargetMode,
    store::{Commit, StoreError},
};
use assent_engine::ConsoleRoute;
use assent_testing::{FakeChannel, Fault, HookedStore, Op, StoreHook, TestBed, exec_request, test_config};

use crate::{audit_of, audit_types, card, status_becomes, telegram, until};

fn with_origin(argv: &[&str], origin: Origin) -> NewApproval {
    let mut r = exec_request(argv);
    r.origin = Some(origin);
    r
}

async fn notice_posted(origin_account: &FakeChannel) {
    until("the notice is posted", || {
        let f = origin_account.clone();
        async move { !f.notices().is_empty() }
    })
    .await;
}

fn tg_origin(conversation: &str) -> Origin {
    Origin {
        channel: Channel::Telegram,
        account: "main".into(),
        conversation: conversation.into(),
        parent: None,
        thread: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_4_ambiguous_accounts_are_audited_and_skipped() {
    let a1 = FakeChannel::new(Channel::Telegram, "one", &["1"]);
    let a2 = FakeChannel::new(Channel::Telegram, "two", &["2"]);
    let discord = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let bed = TestBed::new(&[a1.clone(), a2.clone(), discord.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&discord, &a.id).await;
    assert!(a1.messages().is_empty() && a2.messages().is_empty());
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::RoutingAmbiguous));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_5_target_channel_posts_in_the_origin_and_sends_no_notice() {
    let fake = telegram().with_routing(|r| r.target = TargetMode::Channel);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("-100"))).await.unwrap();
    let msg = card(&fake, &a.id).await;
    assert_eq!(msg.conversation, "-100");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fake.notices().is_empty());
    assert_eq!(fake.messages_for(&a.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_8_a_dm_equal_to_the_origin_chat_gets_one_card() {
    // Telegram: a private chat's id is the user's id, so origin "42" and approver 42's DM coincide.
    let fake =
        FakeChannel::new(Channel::Telegram, "main", &["42"]).with_routing(|r| r.target = TargetMode::Both);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("42"))).await.unwrap();
    card(&fake, &a.id).await;
    until("the duplicate is reported", || {
        let fake = fake.clone();
        async move { fake.duplicates() == ["42"] }
    })
    .await;
    assert_eq!(fake.messages_for(&a.id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_9_routed_elsewhere_notice_is_posted_once() {
    let origin_account = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let discord = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let bed = TestBed::new(&[origin_account.clone(), discord.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("-100"))).await.unwrap();
    card(&discord, &a.id).await;
    notice_posted(&origin_account).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let notices = origin_account.notices();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].0.conversation, "-100");
    assert_eq!(notices[0].1, format!("Approval {} is waiting in Discord DMs.", a.short_ref()));
    assert!(!notices[0].1.contains("ls"), "never shows the command");
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::NoticeSent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_10_failed_deliveries_are_audited_evented_and_not_replaced() {
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42", "43"]);
    fake.fail_next(Op::Deliver, Fault::Permanent, 1);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("-100"))).await.unwrap();
    until("one card delivered", || {
        let f = fake.clone();
        let id = a.id.clone();
        async move { f.messages_for(&id).len() == 1 }
    })
    .await;
    until("the failure is audited", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { audit_types(&store, &id).await.contains(&AuditType::DeliveryFailed) }
    })
    .await;
    let failed =
        audit_of(&bed.store, &a.id).await.into_iter().find(|e| e.kind == AuditType::DeliveryFailed).unwrap();
    assert_eq!(failed.details["class"], "permanent");
    let events = bed.handle.events_since(0, 100).await.unwrap();
    assert!(events.iter().any(|e| e.kind == EventType::DeliveryFailed));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        fake.messages_for(&a.id).iter().all(|m| m.conversation != "-100"),
        "never replaced by the requester's chat"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_11_the_console_is_a_route_only_while_a_session_is_open() {
    let mut config = test_config();
    config.console_route = ConsoleRoute::Connected;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[]).await;
    assert_eq!(bed.handle.create(exec_request(&["ls"])).await.unwrap().reason, Some(Reason::NoRoute));
    let session = bed.handle.console_session();
    assert_eq!(bed.handle.create(exec_request(&["ls"])).await.unwrap().status, Status::Pending);
    drop(session);
    let auto = TestBed::new(&[]).await;
    assert_eq!(
        auto.handle.create(exec_request(&["ls"])).await.unwrap().status,
        Status::Pending,
        "auto = always without accounts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_12_transient_errors_are_retried() {
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    fake.fail_next(Op::Deliver, Fault::Transient, 2);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    assert_eq!(fake.messages_for(&a.id).len(), 1);
    assert!(!audit_types(&bed.store, &a.id).await.contains(&AuditType::DeliveryFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_1_an_account_with_approvals_off_delivers_nothing_and_says_so() {
    let off = telegram().with_routing(|r| r.enabled = assent_core::routing::Enablement::Off);
    let mut config = test_config();
    config.console_route = ConsoleRoute::Always;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[off.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(off.messages().is_empty());
    let reply = off.type_message(&bed.handle, &format!("/approve {} once", a.short_ref()), "42").await;
    assert_eq!(reply.as_deref(), Some("Approvals are off for this bot."));
    status_becomes(&bed, &a.id, Status::Pending).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_9_the_notice_never_waits_on_a_delivery_holding_the_writer() {
    // Ledger commits take 1 s behind one writer lock and the notice is due after 300 ms: the
    // notice's own commit must not wait on a delivery commit that its task suspended (that was a
    // deadlock before deliveries ran in their own task).
    let store = Arc::new(crate::interactions::switchable(Some(Duration::from_secs(1))));
    let origin_account = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let discord = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let mut config = test_config();
    config.route_wait = Duration::from_secs(30);
    let bed = TestBed::with(store, config, &[origin_account.clone(), discord.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("-100"))).await.unwrap();
    notice_posted(&origin_account).await;
    card(&discord, &a.id).await;
}

/// Panics on every ledger write, as a bug in the engine's own delivery code would: channel code
/// is behind `guarded`, the engine's is not.
struct PanicOnLedgerWrite;

#[async_trait::async_trait]
impl StoreHook for PanicOnLedgerWrite {
    async fn on_commit(&self, c: &Commit) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        assert!(c.entries.is_empty(), "injected: a ledger write panics");
        Ok(None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_9_a_panicking_delivery_does_not_silence_the_notice() {
    // The card reaches the approver's DM and the ledger write after it panics. The deliveries'
    // watch shares their task, and must still see them end and tell the origin where the card
    // went. Both timers are far off, so only the deliveries' end can send the notice.
    let store = Arc::new(HookedStore::new(Arc::new(MemoryStore::new()), PanicOnLedgerWrite));
    let origin_account = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let discord = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let mut config = test_config();
    config.route_wait = Duration::from_secs(60);
    config.notice_wait = Duration::from_secs(60);
    let bed = TestBed::with(store, config, &[origin_account.clone(), discord.clone()]).await;
    let a = bed.handle.create(with_origin(&["ls"], tg_origin("-100"))).await.unwrap();
    card(&discord, &a.id).await;
    notice_posted(&origin_account).await;
}
