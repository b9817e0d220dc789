//! Card edits in order: one queue per delivered card, so a stale progress edit never revives a
//! decided card, and a failed progress edit is retried while the approval is pending.

use std::{sync::Arc, time::Duration};

use assent_core::{card::Phase, id::ApprovalId, memory::MemoryStore, model::*, policy::PolicyRule};
use assent_testing::{FakeChannel, FakeMessage, Fault, Op, TestBed, eventually, exec_request, test_config};

use crate::{card, telegram, until};

/// Two approvals needed, so the first vote edits the cards to "Approvals 1/2".
fn quorum_two() -> assent_engine::EngineConfig {
    let mut config = test_config();
    config.policy.rules = vec![PolicyRule { quorum: 2, ..PolicyRule::implicit() }];
    config
}

/// Asserts the card of `id` as its last edit left it: `phase`, and no controls.
fn assert_final(fake: &FakeChannel, id: &ApprovalId, phase: Phase) {
    let last: FakeMessage = fake.messages_for(id).remove(0);
    let (shown, buttons) = (last.payload.phase, &last.payload.buttons);
    assert!(
        buttons.is_empty() && shown == phase,
        "{id}: the last edit must be {phase:?}, not {shown:?} with {buttons:?}"
    );
}

/// Waits until the engine has recorded `id`'s card. A card is clickable once it is bound,
/// just before its ledger entry is written, and a vote in between has no card to show its
/// progress on.
async fn recorded(bed: &TestBed, id: &ApprovalId) {
    until("the card is recorded", || {
        let (store, id) = (bed.store.clone(), id.clone());
        async move { !store.entries(&id).await.unwrap().is_empty() }
    })
    .await;
}

/// Waits until every card of `ids` on `fake` is finalized and no edit is still on its way.
async fn settled(fake: &FakeChannel, ids: &[ApprovalId]) {
    eventually("every card is finalized and no edit is in flight", &mut || {
        let finalized = fake.finalized();
        ids.iter().all(|id| finalized.contains(id)) && fake.busy(Op::Update) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_edit_held_while_the_deciding_vote_lands_leaves_the_final_card() {
    let fake = telegram();
    let bed = TestBed::with(Arc::new(MemoryStore::new()), quorum_two(), &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    recorded(&bed, &a.id).await;
    // The platform holds the progress edit (a slow API, a rate-limit wait) for 2 s.
    fake.slow_next(Op::Update, Duration::from_secs(2), 1);
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await.resolution.unwrap().unwrap();
    eventually("the progress edit is on its way", &mut || fake.busy(Op::Update) == 1).await;
    let second = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "43").await;
    assert_eq!(second.resolution.unwrap().unwrap().approval.status, Status::Approved);
    settled(&fake, std::slice::from_ref(&a.id)).await;
    assert_final(&fake, &a.id, Phase::ApprovedOnce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_quorum_votes_racing_the_sweepers_expiry_end_on_expired_cards() {
    let fake = telegram();
    let bed = TestBed::with(Arc::new(MemoryStore::new()), quorum_two(), &[fake.clone()]).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap().id);
    }
    let mut cards = Vec::new();
    for id in &ids {
        cards.push(card(&fake, id).await);
        recorded(&bed, id).await;
    }
    // Every progress edit is held long enough for the expiry to overtake it.
    fake.slow_next(Op::Update, Duration::from_millis(500), 50);
    for m in &cards {
        let vote = fake.click(&bed.handle, m.id, Decision::AllowOnce, "42").await;
        assert!(matches!(vote.resolution, Some(Ok(_))), "{vote:?}");
    }
    eventually("the progress edits are on their way", &mut || fake.busy(Op::Update) == 50).await;
    bed.clock.advance(Duration::from_secs(3600));
    for id in &ids {
        until("the sweeper expires it", || {
            let (store, id) = (bed.store.clone(), id.clone());
            async move { store.approval(&id).await.unwrap().is_some_and(|a| a.status == Status::Expired) }
        })
        .await;
    }
    settled(&fake, &ids).await;
    for id in &ids {
        assert_final(&fake, id, Phase::Expired);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_progress_edit_is_retried_while_the_approval_is_pending() {
    let fake = telegram();
    let bed = TestBed::with(Arc::new(MemoryStore::new()), quorum_two(), &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    // A 429 with a retry-after on the first attempt.
    fake.fail_next(Op::Update, Fault::Transient, 1);
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await.resolution.unwrap().unwrap();
    eventually("the card shows the vote after a retry", &mut || {
        let m = fake.messages_for(&a.id).remove(0);
        m.payload.footer.ends_with("Approvals 1/2") && m.payload.buttons.len() == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_edit_renders_once_for_all_of_an_accounts_cards() {
    let fake = FakeChannel::new(Channel::Telegram, "main", &["42", "43", "44"]);
    let bed = TestBed::with(Arc::new(MemoryStore::new()), quorum_two(), &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    until("all three cards are recorded", || {
        let (store, id) = (bed.store.clone(), a.id.clone());
        async move { store.entries(&id).await.unwrap().len() == 3 }
    })
    .await;
    let before = fake.renders();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await.resolution.unwrap().unwrap();
    eventually("every card shows the vote", &mut || {
        fake.messages_for(&a.id).iter().all(|m| m.payload.footer.ends_with("Approvals 1/2"))
    })
    .await;
    assert_eq!(fake.renders() - before, 1, "one progress render shared by the account's three cards");
}
