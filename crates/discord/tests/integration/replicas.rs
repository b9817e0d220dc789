//! Two replicas on one PostgreSQL database, each configured with the same Discord bot: only the
//! lease holder opens the gateway, and an HTTP interaction that lands on the other replica is
//! still answered in time and decided.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::IntoDynCapability,
    clock::ManualClock,
    model::{Decision, Status},
    store::Store,
};
use assent_discord::{DiscordAccount, DiscordChannel, DiscordPlatform};
use assent_engine::{Engine, EngineHandle, Inbound};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{T0, exec_request, postgres::PgServer, test_config};

use crate::harness::{self, APPROVER, Rig, acked, key, routing, until};

async fn replica(url: &str, clock: &ManualClock) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url, OpenOptions::default()).await.unwrap());
    Engine::builder(store, test_config()).clock(Arc::new(clock.clone())).start().await.unwrap()
}

/// Connects the account on replica `h` and runs it while `h` holds the lease.
async fn run(h: &EngineHandle, account: DiscordAccount) -> assent_engine::AccountRun {
    let availability = DiscordPlatform::availability(routing(&[APPROVER]));
    let channel =
        DiscordChannel::connect(account, availability, Inbound::new(h.clone(), key())).await.unwrap();
    h.attach_when_leased(channel.erase())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_one_gateway_per_bot_and_an_http_click_on_the_other_replica_is_decided() {
    let url = PgServer::shared().fresh_database();
    let clock = ManualClock::new(T0);
    let fake = harness::fake().await;
    let account = DiscordAccount { public_key: Some(fake.public_key()), ..harness::account(&fake) };
    let (a, b) = (replica(&url, &clock).await, replica(&url, &clock).await);
    let _run_a = run(&a.handle(), account.clone()).await;
    let _run_b = run(&b.handle(), account.clone()).await;
    until("one replica takes the lease", || {
        (a.handle().is_serving(&key()) || b.handle().is_serving(&key())).then_some(())
    })
    .await;
    let other = if a.handle().is_serving(&key()) { b.handle() } else { a.handle() };
    until("the gateway", || (fake.gateway_sessions().0).then_some(())).await;

    // Interactions go to the endpoint of the replica that does not hold the account.
    let endpoint = harness::serve_endpoint(&account, &other, routing(&[APPROVER])).await;
    fake.set_interactions_endpoint(&endpoint);
    let created = other.create(exec_request(&["deploy"])).await.unwrap();
    let card = until("the card", || {
        let dm = fake.dm_of(APPROVER)?;
        harness::cards_in(&fake, dm, &created.id).pop()
    })
    .await;
    let click = fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowOnce));
    assert_eq!(acked(&fake, click).await.ack, Some(6));
    let decided = other.wait(&created.id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(decided.status, Status::Approved);
    assert_eq!(fake.failed_interactions(), 0);
    let (_, identifies, _) = fake.gateway_sessions();
    assert_eq!((fake.gateway_peak(), identifies), (1, 1), "one gateway connection per bot");
}
