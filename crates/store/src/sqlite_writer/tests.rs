use std::sync::atomic::{AtomicUsize, Ordering};

use assent_core::{
    model::{AuditEntry, AuditType, Channel, EntryState, Event, EventType, Origin},
    store::{ApprovalWrite, AuditFilter, CallbackWrite, EntryWrite, IdempotencyRecord, Store},
};
use assent_testing::{
    T0,
    store_contract::{callback_job, entry, sample},
};

use super::*;
use crate::{OpenOptions, SqlStore};

/// A fresh store, and a write connection of the test's own for running batches directly.
async fn store() -> (SqlStore, Connection) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "assent-sqlite-writer-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("a.db");
    let store = SqlStore::open_sqlite(&path, OpenOptions::default()).await.unwrap();
    (store, open(&path, Durability::Normal).unwrap())
}

fn queued(commit: Commit) -> (Queued, oneshot::Receiver<Result<Committed, StoreError>>) {
    let (answer, answered) = oneshot::channel();
    (Queued { commit, now: T0, answer }, answered)
}

/// One approval update with an event and an audit entry; `expected` is the version it
/// compares against (1 is right for a fresh sample).
fn vote(bits: u128, expected: u64) -> Commit {
    let mut next = sample(bits);
    next.version = 2;
    let event = Event {
        seq: 0,
        kind: EventType::Vote,
        at: T0,
        approval_kind: Some(next.kind()),
        approval_id: Some(next.id.clone()),
        data: serde_json::Value::Null,
    };
    Commit {
        audit: vec![AuditEntry::new(AuditType::Vote, T0).approval(&next.id)],
        events: vec![event],
        approval: Some(ApprovalWrite::Update { approval: next, expected_version: expected }),
        ..Commit::default()
    }
}

/// Issue 15: in one shared transaction, a commit that fails its own check is rolled back
/// alone (what it wrote before the check too), the others are kept, and the sequences have
/// no gap where it was. Both when the batch found it without savepoints and ran again with
/// them, and when it started with them.
#[tokio::test]
async fn a_failed_commit_in_a_batch_fails_alone_and_leaves_no_gap() {
    for careful in [false, true] {
        a_failed_commit_fails_alone(careful).await;
    }
}

async fn a_failed_commit_fails_alone(careful: bool) {
    let (store, conn) = store().await;
    for bits in 1..=3 {
        let insert = ApprovalWrite::Insert { approval: sample(bits), idempotency: None };
        store.commit(Commit { approval: Some(insert), ..Commit::default() }, T0).await.unwrap();
    }
    let notice = Commit { notice_key: Some("notice:x".to_owned()), ..Commit::default() };
    store.commit(notice, T0).await.unwrap();
    // The second updates its approval first, then fails on a notice key already taken.
    let mut late_failure = vote(2, 1);
    late_failure.notice_key = Some("notice:x".to_owned());
    let (first, first_answer) = queued(vote(1, 1));
    let (second, second_answer) = queued(late_failure);
    let (third, third_answer) = queued(vote(3, 1));
    assert!(commit_batch(&conn, &mut vec![first, second, third], None, careful), "a commit failed");
    let first = first_answer.await.unwrap().unwrap();
    assert_eq!(second_answer.await.unwrap(), Err(StoreError::Conflict("notice already sent")));
    let third = third_answer.await.unwrap().unwrap();
    assert_eq!((first.events[0].seq, third.events[0].seq), (1, 2), "no gap where the failed one was");
    assert_eq!(store_version(&store, 2).await, 1, "the failed commit's own update was rolled back");
    assert_eq!((store_version(&store, 1).await, store_version(&store, 3).await), (2, 2));
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
}

/// Issue 15: in one batch, each commit gets the answer it would have had alone (a moved version,
/// a used idempotency key), and the numbering carries on after a failed one without a gap.
#[tokio::test]
async fn each_commit_of_a_batch_gets_the_answer_it_would_have_had_alone() {
    for careful in [false, true] {
        each_commit_gets_its_own_answer(careful).await;
    }
}

async fn each_commit_gets_its_own_answer(careful: bool) {
    let (store, conn) = store().await;
    let keyed = |bits| ApprovalWrite::Insert {
        approval: sample(bits),
        idempotency: Some(IdempotencyRecord {
            principal: "agent".to_owned(),
            key: "k".to_owned(),
            digest: "d".to_owned(),
        }),
    };
    let first = sample(1).id;
    let mut created = vote(1, 1);
    created.approval = Some(keyed(1));
    created.entries = vec![EntryWrite::Insert(entry(&first, 1, "dm"))];
    let mut replayed = vote(2, 1);
    replayed.approval = Some(keyed(2));
    let mut later = vote(3, 1);
    later.approval = Some(ApprovalWrite::Insert { approval: sample(3), idempotency: None });
    let (mut jobs, answers): (Vec<_>, Vec<_>) =
        [created, vote(1, 1), vote(1, 1), replayed, later].into_iter().map(queued).unzip();
    assert!(commit_batch(&conn, &mut jobs, None, careful));
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer.await.unwrap().map(|c| c.events.iter().map(|e| e.seq).collect::<Vec<_>>()));
    }
    assert_eq!(
        results,
        vec![
            Ok(vec![1]),
            Ok(vec![2]),
            Err(StoreError::Conflict("approval version")),
            Err(StoreError::IdempotentReplay(first.clone())),
            Ok(vec![3]),
        ]
    );
    assert_eq!(store_version(&store, 1).await, 2);
    assert!(store.approval(&sample(2).id).await.unwrap().is_none(), "the replay wrote nothing");
    assert_eq!(
        store.entry(&entry(&first, 1, "dm").entry_id).await.unwrap().map(|e| e.target_key),
        Some("dm".to_owned())
    );
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
}

/// Every kind of write a commit can hold runs in place, its values bound to the right
/// parameters (the ledger update names `$5` before `$4`).
#[tokio::test]
async fn a_batch_keeps_every_kind_of_write() {
    let (store, conn) = store().await;
    let first = sample(1).id;
    let card = entry(&first, 1, "dm");
    let mut created = vote(1, 1);
    created.approval = Some(ApprovalWrite::Insert { approval: sample(1), idempotency: None });
    created.entries = vec![EntryWrite::Insert(card.clone())];
    created.callbacks = vec![CallbackWrite::Insert(callback_job(&first))];
    let origin = Origin {
        channel: Channel::Telegram,
        account: "main".into(),
        conversation: "42".into(),
        parent: None,
        thread: None,
    };
    created.session_origin = Some(("session".to_owned(), origin.clone()));
    let mut decided = vote(1, 1);
    let mut finalized = card.clone();
    finalized.state = EntryState::Finalized;
    decided.entries = vec![EntryWrite::Update(finalized)];
    decided.notice_key = Some(format!("notice:{first}"));
    let (mut jobs, answers): (Vec<_>, Vec<_>) = [created, decided].into_iter().map(queued).unzip();
    assert!(!commit_batch(&conn, &mut jobs, None, false), "no commit failed");
    for answer in answers {
        answer.await.unwrap().unwrap();
    }
    assert_eq!(store_version(&store, 1).await, 2);
    let stored = store.entry(&card.entry_id).await.unwrap().unwrap();
    assert_eq!(stored.state, EntryState::Finalized);
    assert_eq!(store.session_origin("session").await.unwrap(), Some(origin));
    assert!(store.callback(&format!("{first}:on_resolved")).await.unwrap().is_some());
    let audit = store.audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![1, 2]);
}

async fn store_version(store: &SqlStore, bits: u128) -> u64 {
    store.approval(&sample(bits).id).await.unwrap().unwrap().version
}

/// A bug that kills the writer thread leaves a store that says so: not ready, and every write
/// refused as unavailable, never taken and lost.
#[tokio::test]
async fn a_dead_writer_thread_makes_the_store_not_ready_and_refuses_writes() {
    let (store, _conn) = store().await;
    store.ready().await.unwrap();
    let writer = store.sqlite_writer.as_ref().unwrap();
    writer.queue.send(Job::Panic).unwrap_or_else(|_| panic!("the writer is not running"));
    for _ in 0..1_000 {
        if !writer.running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        matches!(store.ready().await, Err(StoreError::Unavailable(ref why)) if why.contains("writer has stopped")),
        "a store that cannot write must not call itself ready"
    );
    let insert = Commit {
        approval: Some(ApprovalWrite::Insert { approval: sample(1), idempotency: None }),
        ..Commit::default()
    };
    assert!(matches!(store.commit(insert, T0).await, Err(StoreError::Unavailable(_))));
    // Reads still answer: the approvals stored so far stay visible.
    assert!(store.approval(&sample(1).id).await.unwrap().is_none());
}
