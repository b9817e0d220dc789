//! The engine on a durable store: an approval and its cards survive closing and reopening the
//! SQLite file (LC-13), and a decision after the reopen resolves the pre-restart card.

use std::{sync::Arc, time::Duration};

use assent_core::{
    clock::ManualClock,
    model::{Channel, Decision, Status},
    store::Store,
};
use assent_store::{OpenOptions, SqlStore};
use assent_testing::{FakeChannel, T0, TestBed, eventually, exec_request, test_config};

use crate::temp_db;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_13_pending_approvals_and_cards_survive_a_reopen() {
    let path = temp_db();
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let clock = ManualClock::new(T0);
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    let bed = TestBed::with_clock(store, test_config(), &[fake.clone()], clock.clone()).await;
    let a = bed.handle.create(exec_request(&["deploy", "--prod"])).await.unwrap();
    let mut msg = None;
    eventually("a card", &mut || {
        msg = fake.messages_for(&a.id).into_iter().next();
        msg.is_some()
    })
    .await;
    let msg = msg.unwrap();
    let TestBed { engine, store, handle, .. } = bed;
    drop(handle);
    engine.shutdown(Duration::from_secs(5)).await;
    drop(store);

    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    let bed = TestBed::with_clock(store, test_config(), &[fake.clone()], clock).await;
    assert_eq!(bed.handle.pending_count(), 1);
    assert_eq!(fake.messages_for(&a.id).len(), 1, "the stored card is reused, not sent again");
    let out = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert_eq!(out.resolution.unwrap().unwrap().approval.status, Status::Approved);
    eventually("the card is finalized", &mut || {
        fake.messages_for(&a.id)
            .iter()
            .all(|m| m.payload.outcome.as_deref() == Some("Approved once by @42 (Telegram)"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rt_5_every_approver_gets_a_card_on_sqlite() {
    let fake = FakeChannel::new(Channel::Telegram, "main", &["41", "42", "43"]);
    let store: Arc<dyn Store> =
        Arc::new(SqlStore::open_sqlite(&temp_db(), OpenOptions::default()).await.unwrap());
    let bed = TestBed::with(store, test_config(), &[fake.clone()]).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(bed.handle.create(exec_request(&["echo", &i.to_string()])).await.unwrap().id);
    }
    eventually("three cards each", &mut || ids.iter().all(|id| fake.messages_for(id).len() == 3)).await;
}

/// An engine that has shut down lets go of its store, so an embedder that drops its own handle
/// closes the database (and SQLite deletes the WAL) without ending the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_engine_releases_its_store() {
    let path = temp_db();
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42"]);
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap());
    let bed = TestBed::with(store, test_config(), &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["deploy", "--prod"])).await.unwrap();
    eventually("a card", &mut || !fake.messages_for(&a.id).is_empty()).await;
    let TestBed { engine, store, handle, .. } = bed;
    drop(handle);
    engine.shutdown(Duration::from_secs(5)).await;
    let weak = Arc::downgrade(&store);
    drop(store);
    eventually("the engine to drop its store", &mut || weak.strong_count() == 0).await;
    eventually("the WAL to be deleted", &mut || !wal.exists()).await;
}
