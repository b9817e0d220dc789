use std::{sync::Arc, time::Duration};

use assent_core::{
    clock::ManualClock,
    lifecycle::{Rejection, RequesterError},
    memory::MemoryStore,
    model::*,
    policy::{PolicyRule, RuleMatch},
    store::{CallbackJob, CallbackState, Commit, Store},
    token::TokenAction,
};
use assent_engine::{CallbackSink, ConsoleRoute, EngineError, ResolveError};
use assent_testing::{FakeChannel, Fault, Op, T0, TestBed, exec_request, test_config, test_keyring};

use crate::{audit_types, card, finalized, status_becomes, telegram, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_1_durable_before_visible() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let mut events = bed.handle.subscribe();
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let stored = bed.store.approval(&a.id).await.unwrap().expect("committed before create returned");
    assert_eq!(stored.status, Status::Pending);
    assert_eq!(audit_types(&bed.store, &a.id).await.first(), Some(&AuditType::Requested));
    let first = events.recv().await.unwrap();
    assert_eq!((first.kind, first.seq), (EventType::Requested, 1));
    card(&fake, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_1_grant_match_approves_with_no_cards() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["make", "test"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowAlways, "42").await;
    let b = bed.handle.create(exec_request(&["make", "test"])).await.unwrap();
    assert_eq!((b.status, b.reason, b.mode), (Status::Approved, Some(Reason::Grant), Some(Mode::Once)));
    assert_eq!(b.grant_id, bed.store.approval(&a.id).await.unwrap().unwrap().grant_id);
    assert_eq!(
        audit_types(&bed.store, &b.id).await,
        [AuditType::Requested, AuditType::GrantUsed, AuditType::AutoApproved]
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(fake.messages_for(&b.id).is_empty(), "no cards for a grant match");
    let grant = bed.store.grant(b.grant_id.as_ref().unwrap()).await.unwrap().unwrap();
    assert_eq!(grant.use_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_2_idempotent_create() {
    let bed = TestBed::new(&[telegram()]).await;
    let mut req = exec_request(&["ls"]);
    req.idempotency_key = Some("job-7".into());
    let a = bed.handle.create(req.clone()).await.unwrap();
    let again = bed.handle.create(req.clone()).await.unwrap();
    assert_eq!(again.id, a.id);
    let mut different = req;
    different.action = exec_request(&["rm", "-rf", "/"]).action;
    assert!(matches!(bed.handle.create(different).await, Err(EngineError::IdempotencyConflict)));
    assert_eq!(bed.handle.pending_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_3_slow_deliveries_never_block_create() {
    let fake = telegram();
    fake.slow(Op::Deliver, Duration::from_secs(30));
    let bed = TestBed::new(&[fake.clone()]).await;
    // A hang guard, not a timing assertion: create must not wait for a 30 s delivery at all.
    let a = tokio::time::timeout(Duration::from_secs(5), bed.handle.create(exec_request(&["ls"])))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, Status::Pending);
    assert!(fake.messages_for(&a.id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_4_first_answer_wins_under_concurrency() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let (h1, h2) = (bed.handle.clone(), bed.handle.clone());
    let (f1, f2) = (fake.clone(), fake.clone());
    let (id1, id2) = (msg.id, msg.id);
    let x = tokio::spawn(async move { f1.click(&h1, id1, Decision::AllowOnce, "42").await });
    let y = tokio::spawn(async move { f2.click(&h2, id2, Decision::Deny, "43").await });
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let wins = [&x, &y].iter().filter(|o| matches!(o.resolution, Some(Ok(ref r)) if !r.idempotent)).count();
    assert_eq!(wins, 1, "{x:?} {y:?}");
    let terminal =
        audit_types(&bed.store, &a.id).await.into_iter().filter(|t| *t == AuditType::Decided).count();
    assert_eq!(terminal, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_5_winner_retry_is_idempotent_with_no_new_audit() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let before = audit_types(&bed.store, &a.id).await.len();
    let token = msg.payload.buttons[0].1.clone();
    let again = fake.click_token(&bed.handle, &token, "42").await;
    assert_eq!(again.ack, "Already recorded.");
    assert!(again.resolution.unwrap().unwrap().idempotent);
    let late = fake.click_token(&bed.handle, &msg.payload.buttons[2].1, "43").await;
    assert_eq!(late.ack, "Already approved once by @42.");
    let after: Vec<_> = audit_types(&bed.store, &a.id).await;
    assert!(!after[before..].contains(&AuditType::Decided), "nothing re-tagged or re-audited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_6_quorum_progress_updates_cards_and_keeps_controls() {
    let fake = telegram();
    let mut config = test_config();
    config.policy.rules = vec![PolicyRule { quorum: 2, ..PolicyRule::implicit() }];
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let first = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await.resolution.unwrap().unwrap();
    assert_eq!(first.progress, Some((1, 2)));
    assert_eq!(first.reply, format!("Recorded your approval for {} (1/2).", a.short_ref()));
    until("cards show 1/2", || {
        let fake = fake.clone();
        let id = a.id.clone();
        async move {
            fake.messages_for(&id)
                .iter()
                .all(|m| m.payload.footer.ends_with("Approvals 1/2") && m.payload.buttons.len() == 3)
        }
    })
    .await;
    let second =
        fake.click(&bed.handle, msg.id, Decision::AllowOnce, "43").await.resolution.unwrap().unwrap();
    assert_eq!(second.approval.status, Status::Approved);
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::Vote));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_7_no_route_expires_before_create_returns() {
    let mut config = test_config();
    config.console_route = ConsoleRoute::Connected;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    assert_eq!((a.status, a.reason), (Status::Expired, Some(Reason::NoRoute)));
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Expired);
    assert_eq!(assent_core::lifecycle::requester_outcome(&a).exit_code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_7_all_deliveries_failing_permanently_is_no_route() {
    let fake = telegram();
    fake.fail_always(Op::Deliver, Fault::Permanent);
    let mut config = test_config();
    config.console_route = ConsoleRoute::Connected;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    assert_eq!(a.status, Status::Pending, "targets were planned");
    status_becomes(&bed, &a.id, Status::Expired).await;
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().reason, Some(Reason::NoRoute));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_8_sweeper_expires_due_approvals_and_late_clicks_are_expired() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let b = bed.handle.create(exec_request(&["pwd"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    bed.clock.advance(Duration::from_secs(1800));
    let late = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert_eq!(late.ack, Rejection::Expired.to_string());
    status_becomes(&bed, &a.id, Status::Expired).await;
    status_becomes(&bed, &b.id, Status::Expired).await;
    let expired = bed.store.approval(&b.id).await.unwrap().unwrap();
    assert_eq!(expired.reason, Some(Reason::Timeout));
    finalized(&fake, &b.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_8_resolve_at_the_deadline_performs_the_expiry_itself() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let accepted =
        bed.handle.precheck_token(&fake.key(), &msg.payload.buttons[0].1, fake.actor("42")).unwrap();
    bed.clock.advance(Duration::from_secs(1800));
    assert_eq!(bed.handle.resolve(accepted).await, Err(ResolveError::Rejected(Rejection::Expired)));
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Expired);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_8_start_up_sweep_runs_before_decisions_are_accepted() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0);
    let bed = TestBed::with_clock(store.clone(), test_config(), &[telegram()], clock.clone()).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    bed.engine.shutdown(Duration::from_millis(50)).await;
    clock.advance(Duration::from_secs(3600));
    let bed = TestBed::with_clock(store, test_config(), &[], clock).await;
    assert_eq!(
        bed.store.approval(&a.id).await.unwrap().unwrap().status,
        Status::Expired,
        "expired during start"
    );
    assert_eq!(bed.handle.pending_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_9_unsafe_timeout_fallback_approves_once_and_is_flagged() {
    let mut config = test_config();
    config.policy.rules = vec![PolicyRule {
        on_timeout: TimeoutAction::ApproveUnsafe,
        ..PolicyRule { name: "yolo".into(), matcher: RuleMatch::default(), ..PolicyRule::implicit() }
    }];
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[telegram()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    bed.clock.advance(Duration::from_secs(1800));
    status_becomes(&bed, &a.id, Status::Approved).await;
    let done = bed.store.approval(&a.id).await.unwrap().unwrap();
    assert_eq!((done.mode, done.reason), (Some(Mode::Once), Some(Reason::TimeoutFallback)));
    let audit = crate::audit_of(&bed.store, &a.id).await;
    assert!(audit.iter().any(|e| e.details["unsafe_timeout_fallback"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_10_cancel_by_requester_or_admin_finalizes_cards() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    let stranger = Actor::token("other");
    assert!(matches!(
        bed.handle.cancel(&a.id, &stranger, false).await,
        Err(EngineError::Requester(RequesterError::Forbidden))
    ));
    let c = bed.handle.cancel(&a.id, &Actor::token("ci"), false).await.unwrap();
    assert_eq!((c.status, c.reason), (Status::Cancelled, Some(Reason::Requester)));
    let ms = finalized(&fake, &a.id).await;
    assert!(ms.iter().all(
        |m| m.payload.outcome.as_deref() == Some("Cancelled by token:ci") && m.payload.buttons.is_empty()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_11_consume_once() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    assert!(matches!(
        bed.handle.consume(&a.id, "token:ci").await,
        Err(EngineError::Requester(RequesterError::NotApproved(_)))
    ));
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert!(matches!(
        bed.handle.consume(&a.id, "token:x").await,
        Err(EngineError::Requester(RequesterError::Forbidden))
    ));
    let used = bed.handle.consume(&a.id, "token:ci").await.unwrap();
    assert!(used.consumed_at.is_some());
    assert!(matches!(
        bed.handle.consume(&a.id, "token:ci").await,
        Err(EngineError::Requester(RequesterError::AlreadyConsumed))
    ));
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::Consumed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_12_failed_final_actions_are_retried_until_they_succeed() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.fail_next(Op::Update, Fault::Transient, 2);
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    until("an entry records a failed attempt", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { store.entries(&id).await.unwrap().iter().any(|e| e.attempts > 0) }
    })
    .await;
    // Retries back off on the engine clock (1 s, 2 s, …): move it along.
    for _ in 0..10 {
        bed.clock.advance(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    finalized(&fake, &a.id).await;
    let entries = bed.store.entries(&a.id).await.unwrap();
    assert!(entries.iter().all(|e| e.state == EntryState::Finalized), "{entries:?}");
    assert_eq!(entries.iter().map(|e| e.attempts).sum::<u32>(), 2, "both failures were recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_12_gives_up_after_the_retry_window_and_audits() {
    let fake = telegram();
    let mut config = test_config();
    config.finalize_give_up = Duration::from_secs(60);
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.fail_always(Op::Update, Fault::Transient);
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    until("the entry is abandoned", || {
        bed.clock.advance(Duration::from_secs(30));
        let store = bed.store.clone();
        let id = a.id.clone();
        async move {
            let entries = store.entries(&id).await.unwrap();
            entries.len() == 2 && entries.iter().all(|e| e.state == EntryState::Abandoned)
        }
    })
    .await;
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::FinalizeFailed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_12_a_card_landing_after_the_decision_is_finalized_at_once() {
    let fake = telegram();
    fake.slow(Op::Deliver, Duration::from_millis(300));
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    bed.handle.cancel(&a.id, &Actor::token("ci"), false).await.unwrap();
    let ms = finalized(&fake, &a.id).await;
    assert!(ms.iter().all(|m| m.payload.phase == assent_core::card::Phase::Cancelled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_13_restart_keeps_pending_approvals_and_delivers_missing_cards() {
    let fake = telegram();
    let late_account = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let bed = bed.restart(&[fake.clone(), late_account.clone()]).await;
    assert_eq!(bed.handle.pending_count(), 1, "nothing cancelled by shutdown");
    assert_eq!(bed.handle.resolve_ref(a.short_ref()).unwrap(), a.id, "its ref resolves after a restart");
    card(&late_account, &a.id).await;
    assert_eq!(fake.messages_for(&a.id).len(), 2, "existing cards are not sent again");
    let res = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await.resolution.unwrap().unwrap();
    assert_eq!(res.approval.status, Status::Approved);
    finalized(&late_account, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_15_events_have_gap_free_seq_and_resume() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    // The card's `delivered` event commits with its ledger entry, which may land after the
    // click; once the card is finalized, that entry (and its event) is stored.
    finalized(&fake, &a.id).await;
    let all = bed.handle.events_since(0, 100).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=all.len() as u64).collect::<Vec<_>>());
    assert!(all.iter().any(|e| e.kind == EventType::Approved));
    let resumed = bed.handle.events_since(2, 100).await.unwrap();
    assert_eq!(resumed.first().map(|e| e.seq), Some(3));
    let json = serde_json::to_string(&all).unwrap();
    assert!(!json.contains("\"argv\""), "events carry display fields, never raw argv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_17_a_token_of_another_kind_is_not_found() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    let wrong_kind =
        test_keyring().sign(Kind::Plugin, TokenAction::Decide(Decision::AllowOnce), &a.id, &fake.key());
    let out = fake.click_token(&bed.handle, &wrong_kind, "42").await;
    assert_eq!(out.ack, Rejection::NotFound.to_string());
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_11_audit_is_append_only_and_complete_for_one_approval() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowAlways, "42").await;
    finalized(&fake, &a.id).await;
    until("finalized is audited", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { audit_types(&store, &id).await.contains(&AuditType::Finalized) }
    })
    .await;
    let types = audit_types(&bed.store, &a.id).await;
    for t in [
        AuditType::Requested,
        AuditType::Delivered,
        AuditType::Decided,
        AuditType::GrantCreated,
        AuditType::Finalized,
    ] {
        assert!(types.contains(&t), "{t:?} missing from {types:?}");
    }
    let seqs: Vec<u64> = crate::audit_of(&bed.store, &a.id).await.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_9_a_stored_entry_that_no_longer_decodes_is_abandoned_not_a_panic() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    let mut e = bed.store.entries(&a.id).await.unwrap().remove(0);
    e.native_ref = serde_json::json!({ "v": 99, "data": "from the future" });
    bed.store
        .commit(Commit { entries: vec![assent_core::store::EntryWrite::Update(e)], ..Commit::default() }, T0)
        .await
        .unwrap();
    bed.handle.cancel(&a.id, &Actor::token("ci"), false).await.unwrap();
    until("the entry is abandoned", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { store.entries(&id).await.unwrap().iter().any(|e| e.state == EntryState::Abandoned) }
    })
    .await;
}

/// A webhook receiver that records calls and fails the first `fail` of them.
struct Hook {
    calls: std::sync::Mutex<Vec<CallbackJob>>,
    fail: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CallbackSink for Hook {
    async fn send(&self, job: &CallbackJob) -> Result<(), String> {
        self.calls.lock().unwrap().push(job.clone());
        let left = self.fail.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            self.fail.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            return Err("HTTP 503".into());
        }
        Ok(())
    }
}

async fn bed_with_hook(fail: usize) -> (TestBed, FakeChannel, Arc<Hook>) {
    let fake = telegram();
    let hook = Arc::new(Hook { calls: Default::default(), fail: std::sync::atomic::AtomicUsize::new(fail) });
    let bed = TestBed::with_webhook(&[fake.clone()], hook.clone()).await;
    (bed, fake, hook)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_14_callbacks_are_sent_at_least_once_and_retried() {
    let (bed, fake, hook) = bed_with_hook(1).await;
    let mut req = exec_request(&["ls"]);
    req.callback = Some("https://hooks.example.org/assent".into());
    let a = bed.handle.create(req).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    until("the callback is delivered after one failure", || {
        bed.clock.advance(Duration::from_secs(2));
        let store = bed.store.clone();
        let key = format!("{}:on_resolved", a.id);
        async move { store.callback(&key).await.unwrap().is_some_and(|j| j.state == CallbackState::Done) }
    })
    .await;
    let calls = hook.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2, "one failure, one success");
    assert_eq!(calls[1].payload["status"], "approved");
    assert_eq!(calls[1].payload["decision"], "allow-once");
    assert_eq!(calls[1].key, format!("{}:on_resolved", a.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_14_callbacks_give_up_after_eight_attempts_and_audit() {
    let (bed, fake, hook) = bed_with_hook(usize::MAX).await;
    let mut req = exec_request(&["ls"]);
    req.callback = Some("https://hooks.example.org/assent".into());
    let a = bed.handle.create(req).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    until("the callback is given up", || {
        bed.clock.advance(Duration::from_secs(600));
        let store = bed.store.clone();
        let key = format!("{}:on_resolved", a.id);
        async move { store.callback(&key).await.unwrap().is_some_and(|j| j.state == CallbackState::Failed) }
    })
    .await;
    assert_eq!(hook.calls.lock().unwrap().len(), 8);
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::CallbackFailed));
    assert_eq!(
        bed.store.approval(&a.id).await.unwrap().unwrap().status,
        Status::Denied,
        "the decision stands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn po_12_grants_are_listed_and_revocation_is_audited() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["make", "test"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowAlways, "42").await;
    let grants = bed.handle.grants().await.unwrap();
    assert_eq!(grants.len(), 1);
    assert_eq!((grants[0].source, grants[0].created_by.as_str()), (GrantSource::AllowAlways, "telegram:42"));
    let revoked = bed.handle.revoke_grant(&grants[0].id, &Actor::console("admin")).await.unwrap();
    assert_eq!(revoked.revoked_by.as_deref(), Some("console:admin"));
    let b = bed.handle.create(exec_request(&["make", "test"])).await.unwrap();
    assert_eq!(b.status, Status::Pending, "a revoked grant never matches");
    assert!(audit_types(&bed.store, &a.id).await.contains(&AuditType::GrantRevoked));
}
