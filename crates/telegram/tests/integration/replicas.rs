//! Two replicas on one PostgreSQL database, each with the same Telegram account: only the lease
//! holder polls, and in webhook mode a press delivered to the other replica is still answered
//! and decided.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use assent_core::{
    capability::IntoDynCapability,
    clock::ManualClock,
    model::{AccountKey, Channel, Status},
    routing::AccountRouting,
    store::Store,
};
use assent_engine::{Engine, EngineHandle, Inbound};
use assent_fake_telegram::{FakeTelegram, TOKEN};
use assent_platform::{Hook, HookRequest, Platform};
use assent_store::{OpenOptions, SqlStore};
use assent_telegram::{TelegramAccount, TelegramChannel, TelegramPlatform};
use assent_testing::{T0, exec_request, postgres::PgServer, test_config};

const KIM: i64 = 1001;

fn key() -> AccountKey {
    AccountKey::new(Channel::Telegram, "main")
}

async fn replica(url: &str, clock: &ManualClock) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url, OpenOptions::default()).await.unwrap());
    Engine::builder(store, test_config()).clock(Arc::new(clock.clone())).start().await.unwrap()
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn account(fake: &FakeTelegram, state: PathBuf, webhook: Option<String>) -> TelegramAccount {
    TelegramAccount { webhook, ..TelegramAccount::new("main", TOKEN, &fake.url(), state) }
}

/// Connects the account on replica `h` and runs it while `h` holds the lease.
async fn run(h: &EngineHandle, account: TelegramAccount) -> assent_engine::AccountRun {
    let availability = TelegramPlatform::availability(AccountRouting::new(key(), vec![KIM.to_string()]));
    let channel =
        TelegramChannel::connect(account, availability, Inbound::new(h.clone(), key())).await.unwrap();
    h.attach_when_leased(channel.erase())
}

async fn fake() -> FakeTelegram {
    let fake = FakeTelegram::start().await;
    fake.person(KIM, "Kim", Some("kim"));
    fake.start_bot(KIM);
    fake
}

fn state(name: &str) -> PathBuf {
    assent_testing::process_scratch(&std::env::temp_dir(), "assent-telegram-replicas").join(name)
}

/// Both replicas and which one holds the account.
async fn holder_and_other(a: &EngineHandle, b: &EngineHandle) -> (EngineHandle, EngineHandle) {
    until("one replica takes the lease", || a.is_serving(&key()) || b.is_serving(&key())).await;
    if a.is_serving(&key()) { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_only_the_lease_holder_polls_and_its_cards_decide() {
    let url = PgServer::shared().fresh_database();
    let clock = ManualClock::new(T0);
    let tg = fake().await;
    let (a, b) = (replica(&url, &clock).await, replica(&url, &clock).await);
    let _run_a = run(&a.handle(), account(&tg, state("poll-a"), None)).await;
    let _run_b = run(&b.handle(), account(&tg, state("poll-b"), None)).await;
    let (holder, other) = holder_and_other(&a.handle(), &b.handle()).await;

    let created = other.create(exec_request(&["deploy"])).await.unwrap();
    until("the card", || tg.bot_messages(KIM).iter().any(|m| m.text.contains(created.short_ref()))).await;
    let card = tg.bot_messages(KIM).into_iter().find(|m| m.text.contains(created.short_ref())).unwrap();
    let data = card.buttons[0][0].1.clone();
    let query = tg.press(KIM, KIM, card.id, &data);
    until("the press is answered", || !tg.answers(&query).is_empty()).await;
    let decided = holder.wait(&created.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert!(tg.calls("getUpdates") > 0);
    assert_eq!(tg.poll_conflicts(), 0, "two replicas polling would end each other's getUpdates with 409");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_a_webhook_press_on_the_replica_without_the_account_is_answered_and_decided() {
    let url = PgServer::shared().fresh_database();
    let clock = ManualClock::new(T0);
    let tg = fake().await;
    // The webhook's address: a front that hands each update to the replica the test picks.
    let target: Arc<Mutex<Option<Arc<dyn Hook>>>> = Arc::default();
    let hook_url = front(target.clone()).await;
    let (a, b) = (replica(&url, &clock).await, replica(&url, &clock).await);
    let mut hooks = Vec::new();
    let mut runs = Vec::new();
    for (engine, name) in [(&a, "hook-a"), (&b, "hook-b")] {
        let h = engine.handle();
        let acc = account(&tg, state(name), Some(hook_url.clone()));
        let availability = TelegramPlatform::availability(AccountRouting::new(key(), vec![KIM.to_string()]));
        hooks.push((
            h.clone(),
            TelegramPlatform.hook(&acc, &availability, Inbound::new(h.clone(), key())).unwrap(),
        ));
        runs.push(run(&h, acc).await);
    }
    let (holder, other) = holder_and_other(&a.handle(), &b.handle()).await;
    let other_hook = hooks.iter().find(|(h, _)| !h.is_serving(&key())).unwrap().1.clone();
    *target.lock().unwrap() = Some(other_hook);

    let created = holder.create(exec_request(&["deploy"])).await.unwrap();
    until("the card", || tg.bot_messages(KIM).iter().any(|m| m.text.contains(created.short_ref()))).await;
    let card = tg.bot_messages(KIM).into_iter().find(|m| m.text.contains(created.short_ref())).unwrap();
    let query = tg.press(KIM, KIM, card.id, &card.buttons[0][0].1);
    until("the press is answered", || !tg.answers(&query).is_empty()).await;
    assert_eq!(tg.answers(&query)[0].text.as_deref(), Some("Recording: allow once"));
    assert_eq!(other.wait(&created.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    until("the holder finalizes the card", || {
        tg.bot_messages(KIM).iter().any(|m| m.id == card.id && m.buttons.iter().all(Vec::is_empty))
    })
    .await;
}

/// An HTTP front at `/hooks/telegram/main` that passes each request to `target`'s hook.
async fn front(target: Arc<Mutex<Option<Arc<dyn Hook>>>>) -> String {
    let app = axum::Router::new().route(
        "/hooks/telegram/main",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let hook = target.lock().unwrap().clone();
            async move {
                let Some(hook) = hook else {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                };
                let answer = hook.handle(HookRequest { headers, body: body.to_vec() }).await;
                (answer.status, answer.body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks/telegram/main")
}
