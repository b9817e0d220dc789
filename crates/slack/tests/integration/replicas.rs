//! Two replicas on one PostgreSQL database, each configured with the same Slack app: only the
//! lease holder opens Socket Mode, and in HTTP mode a click that lands on the other replica is
//! still acknowledged and decided.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    clock::ManualClock,
    model::{Decision, Status},
    store::Store,
};
use assent_engine::{Engine, EngineHandle, Inbound};
use assent_fake_slack::{APP_TOKEN, BOT_TOKEN, SIGNING_SECRET};
use assent_slack::{SlackAccount, SlackChannel, SlackPlatform};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{T0, exec_request, postgres::PgServer, test_config};

use crate::harness::{self, APPROVER, Endpoint, OUTSIDER, acked, key, label, routing, until};

async fn replica(url: &str, clock: &ManualClock) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url, OpenOptions::default()).await.unwrap());
    Engine::builder(store, test_config()).clock(Arc::new(clock.clone())).start().await.unwrap()
}

/// Connects the account on replica `h` and runs it while `h` holds the lease.
async fn run(h: &EngineHandle, account: SlackAccount) -> assent_engine::AccountRun {
    let availability = SlackPlatform::availability(routing(&[APPROVER]));
    let channel = SlackChannel::connect(account, availability, Inbound::new(h.clone(), key())).await.unwrap();
    h.attach_when_leased(channel.erase())
}

/// Both replicas run the account; returns them, the lease holder first.
async fn two_replicas(url: &str, account: &SlackAccount) -> (Engine, Engine, Vec<assent_engine::AccountRun>) {
    let clock = ManualClock::new(T0);
    let (a, b) = (replica(url, &clock).await, replica(url, &clock).await);
    let runs = vec![run(&a.handle(), account.clone()).await, run(&b.handle(), account.clone()).await];
    until("one replica takes the lease", || {
        (a.handle().is_serving(&key()) || b.handle().is_serving(&key())).then_some(())
    })
    .await;
    if a.handle().is_serving(&key()) { (a, b, runs) } else { (b, a, runs) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_one_socket_mode_connection_per_app() {
    let url = PgServer::shared().fresh_database();
    let fake = harness::fake().await;
    let account = SlackAccount::socket_mode("main", BOT_TOKEN, APP_TOKEN, &fake.api_url());
    let (holder, _other, _runs) = two_replicas(&url, &account).await;
    until("the socket", || (fake.sockets().0 == 1).then_some(())).await;
    let created = holder.handle().create(exec_request(&["deploy"])).await.unwrap();
    let card = until("the card", || {
        let dm = fake.dm_of(APPROVER)?;
        harness::cards_in(&fake, &dm, &created.id).pop()
    })
    .await;
    let click = fake.click(APPROVER, &card.channel, &card.ts, &label(&card, Decision::AllowOnce));
    assert!(acked(&fake, &click).await.acked.is_some());
    let decided = holder.handle().wait(&created.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert_eq!(fake.sockets(), (1, 1, 1), "one Socket Mode connection per app, on the lease holder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_an_http_click_on_the_replica_without_the_account_is_acknowledged_and_decided() {
    let url = PgServer::shared().fresh_database();
    let fake = harness::fake().await;
    let account = SlackAccount::http_mode("main", BOT_TOKEN, SIGNING_SECRET, &fake.api_url());
    let (_holder, other, _runs) = two_replicas(&url, &account).await;
    // Slack reaches the replica that does not hold the account.
    let endpoint = Endpoint::serve(&fake).await;
    endpoint.attach(&account, &other.handle(), routing(&[APPROVER]));
    let created = other.handle().create(exec_request(&["deploy"])).await.unwrap();
    let card = until("the card", || {
        let dm = fake.dm_of(APPROVER)?;
        harness::cards_in(&fake, &dm, &created.id).pop()
    })
    .await;
    // An outsider's click there is refused, and they are told so, though that replica has no
    // capability of the account to reply through.
    let eve = fake.click(OUTSIDER, &card.channel, &card.ts, &label(&card, Decision::AllowOnce));
    assert!(acked(&fake, &eve).await.acked.is_some());
    let told = until("the outsider is told", || harness::answers(&fake, &card.channel, OUTSIDER).pop()).await;
    assert_eq!(told.text, "You can't decide this approval.");
    let click = fake.click(APPROVER, &card.channel, &card.ts, &label(&card, Decision::AllowOnce));
    let d = acked(&fake, &click).await;
    assert!(d.acked.is_some() && !d.failed, "{d:?}");
    let decided = other.handle().wait(&created.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert_eq!(fake.failed_deliveries(), 0);
    assert_eq!(fake.sockets().1, 0, "HTTP mode opens no socket");
}
