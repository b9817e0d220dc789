//! ST-7 / ST-8: two engines on one PostgreSQL database, like two replicas of `assent serve`.
//! One holds the account's lease and talks to the platform; both serve requests and decisions;
//! each sees the other's commits; the sweepers never expire one approval twice; when the
//! holder's database session dies, the survivor takes the account over.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use assent_core::{
    capability::IntoDynCapability,
    clock::ManualClock,
    model::{AccountKey, Channel, Decision, EventType, Status},
    store::Store,
};
use assent_engine::{Engine, EngineHandle};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{FakeChannel, T0, exec_request, postgres::PgServer, test_config};
use sqlx::{AnyConnection, Connection};

async fn replica(url: &str, clock: &ManualClock) -> Engine {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open(url, OpenOptions::default()).await.unwrap());
    Engine::builder(store, test_config()).clock(Arc::new(clock.clone())).start().await.unwrap()
}

async fn until<F: FnMut() -> bool>(what: &str, limit: Duration, mut f: F) -> Duration {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

fn holds(h: &EngineHandle) -> bool {
    h.is_serving(&AccountKey::new(Channel::Telegram, "main"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_st_8_two_replicas_share_one_database() {
    let url = PgServer::shared().fresh_database();
    let clock = ManualClock::new(T0);
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let (a, b) = (replica(&url, &clock).await, replica(&url, &clock).await);
    let (ha, hb) = (a.handle(), b.handle());
    let _run_a = ha.attach_when_leased(fake.clone().erase());
    let _run_b = hb.attach_when_leased(fake.clone().erase());
    until("one replica to take the lease", Duration::from_secs(10), || holds(&ha) || holds(&hb)).await;
    assert!(!(holds(&ha) && holds(&hb)), "ST-7: exactly one replica holds the account");
    assert_eq!(ha.accounts().len() + hb.accounts().len(), 1, "the other keeps it on standby only");
    let (holder, other) = if holds(&ha) { (ha.clone(), hb.clone()) } else { (hb.clone(), ha.clone()) };

    // Created on the replica without the account: planned there, delivered once by the holder.
    let first = other.create(exec_request(&["deploy", "one"])).await.unwrap();
    assert_eq!(first.status, Status::Pending, "an account held elsewhere is a route");
    until("the holder delivers the card", Duration::from_secs(5), || fake.messages_for(&first.id).len() == 1)
        .await;
    let card = fake.messages_for(&first.id)[0].id;
    // ST-8: a click the holder receives is decided there; the other replica's live event feed
    // (what its SSE clients and console follow) gets the decision from the commit notification.
    let mut feed = other.subscribe();
    let decided = Instant::now();
    let out = fake.click(&holder, card, Decision::AllowOnce, "42").await;
    let resolution = out.resolution.unwrap_or_else(|| panic!("the click was refused: {}", out.ack));
    assert_eq!(resolution.unwrap().approval.status, Status::Approved);
    let event = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = feed.recv().await.unwrap();
            if e.kind == EventType::Approved && e.approval_id.as_ref() == Some(&first.id) {
                return e;
            }
        }
    })
    .await
    .expect("the other replica publishes the decision");
    eprintln!(
        "ST-8 decision (seq {}) published on the other replica after {} ms",
        event.seq,
        decided.elapsed().as_millis()
    );
    assert_eq!(other.pending_count(), 0, "and dropped it from its pending index");

    // A decision taken on the replica without the account (a webhook may hit any replica).
    let second = holder.create(exec_request(&["deploy", "two"])).await.unwrap();
    until("a card", Duration::from_secs(5), || fake.messages_for(&second.id).len() == 1).await;
    let card = fake.messages_for(&second.id)[0].id;
    // The other replica learns of the approval and its card from the holder's commits.
    let started = Instant::now();
    let out = loop {
        let out = fake.click(&other, card, Decision::Deny, "42").await;
        if out.resolution.is_some() {
            break out;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the other replica never accepted: {}", out.ack);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(out.resolution.unwrap().unwrap().approval.status, Status::Denied);
    until("the holder finalizes its card", Duration::from_secs(5), || {
        fake.messages_for(&second.id).iter().all(|m| m.payload.outcome.is_some())
    })
    .await;

    // Both sweepers run; every approval expires exactly once.
    let mut doomed = Vec::new();
    for i in 0..6 {
        let on = if i % 2 == 0 { &holder } else { &other };
        doomed.push(on.create(exec_request(&["sleep", &i.to_string()])).await.unwrap().id);
    }
    clock.advance(Duration::from_secs(3600));
    let store = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    let mut expired = 0;
    for _ in 0..250 {
        let events = store.events_since(0, 10_000).await.unwrap();
        expired = events.iter().filter(|e| e.kind == EventType::Expired).count();
        if expired >= doomed.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // two more sweeps on each replica
    let events = store.events_since(0, 10_000).await.unwrap();
    for id in &doomed {
        let n = events
            .iter()
            .filter(|e| e.kind == EventType::Expired && e.approval_id.as_ref() == Some(id))
            .count();
        assert_eq!(n, 1, "ST-8: {id} expired exactly once");
    }
    assert_eq!(expired, doomed.len());

    // ST-7: the holder's database session dies; the survivor takes the account over.
    let mut admin = AnyConnection::connect(&url).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()")
        .execute(&mut admin)
        .await
        .unwrap();
    let lost = until("the holder to stop its handler", Duration::from_secs(5), || !holds(&holder)).await;
    let moved = until("the survivor to take the lease", Duration::from_secs(15), || holds(&other)).await;
    eprintln!(
        "ST-7 handler stopped after {} ms; lease moved after {} ms",
        lost.as_millis(),
        moved.as_millis()
    );
    let third = holder.create(exec_request(&["deploy", "three"])).await.unwrap();
    until("the new holder delivers", Duration::from_secs(5), || fake.messages_for(&third.id).len() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for id in [&first.id, &second.id, &third.id] {
        assert_eq!(fake.messages_for(id).len(), 1, "no card delivered twice ({id})");
    }
    assert!(fake.duplicates().is_empty(), "{:?}", fake.duplicates());
    b.shutdown(Duration::from_secs(5)).await;
    a.shutdown(Duration::from_secs(5)).await;
}

/// ST-8 with group commit on PostgreSQL: a batch's commits still reach the other replicas'
/// commit feeds, with the batch's last event sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_8_grouped_commits_still_notify_the_other_replicas() {
    use futures::StreamExt as _;
    let url = PgServer::shared().fresh_database();
    let options = OpenOptions { group_commit: Some(true), ..OpenOptions::default() };
    let writer = Arc::new(SqlStore::open(&url, options).await.unwrap());
    let reader = SqlStore::open(&url, OpenOptions::default()).await.unwrap();
    let mut feed = reader.commit_feed().await.unwrap().expect("PostgreSQL has a commit feed");
    let clock = ManualClock::new(T0);
    let engine = Engine::builder(writer.clone(), test_config()).clock(Arc::new(clock)).start().await.unwrap();
    let h = engine.handle();
    let creates: Vec<_> = (0..8)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.create(exec_request(&["echo", &i.to_string()])).await.unwrap() })
        })
        .collect();
    for c in creates {
        c.await.unwrap();
    }
    let last = writer.latest_event_seq().await.unwrap();
    let mut heard = 0;
    while heard < last {
        heard = tokio::time::timeout(Duration::from_secs(10), feed.next()).await.unwrap().unwrap();
    }
    assert_eq!(heard, last, "the feed names the last committed event");
}
