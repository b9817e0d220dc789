use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use assent_core::{
    id::ApprovalId,
    lifecycle::Rejection,
    memory::MemoryStore,
    model::*,
    store::*,
    token::{Keyring, TokenAction, TokenKey},
};
use assent_engine::{ApprovalRef, Authority, Interaction, ResolveError};
use assent_testing::{Fault, HookedStore, Op, StoreHook, TestBed, exec_request, test_config};
use async_trait::async_trait;

use crate::{card, finalized, telegram, until};

fn console_ix(id: &ApprovalId, decision: Decision) -> Interaction {
    Interaction {
        approval: ApprovalRef::Id(id.clone()),
        kind: Some(Kind::Exec),
        decision,
        actor: Actor::console("kim"),
        authority: Authority::Approver,
        reason: Some("ok from the console".into()),
        grant_scope: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_1_buttons_reactions_typed_commands_and_console_all_resolve() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let ids: Vec<ApprovalId> = futures_ids(&bed, 4).await;
    let m0 = card(&fake, &ids[0]).await;
    assert!(fake.click(&bed.handle, m0.id, Decision::AllowOnce, "42").await.resolution.unwrap().is_ok());
    let m1 = card(&fake, &ids[1]).await;
    assert!(fake.react(&bed.handle, m1.id, Decision::Deny, "43").await.resolution.unwrap().is_ok());
    card(&fake, &ids[2]).await;
    let reply = fake.type_message(&bed.handle, &format!("/approve {} once", ids[2].short_ref()), "42").await;
    assert_eq!(reply.as_deref(), Some(&*format!("Recorded: allow once for {}.", ids[2].short_ref())));
    let acc = bed.handle.precheck(&console_ix(&ids[3], Decision::Deny)).unwrap();
    bed.handle.resolve(acc).await.unwrap();
    let statuses: Vec<Status> = futures::future::join_all(ids.iter().map(|id| {
        let store = bed.store.clone();
        async move { store.approval(id).await.unwrap().unwrap().status }
    }))
    .await;
    assert_eq!(statuses, [Status::Approved, Status::Denied, Status::Approved, Status::Denied]);
    let denied = bed.store.approval(&ids[3]).await.unwrap().unwrap();
    assert_eq!(denied.deny_reason.as_deref(), Some("ok from the console"));
}

async fn futures_ids(bed: &TestBed, n: usize) -> Vec<ApprovalId> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(bed.handle.create(exec_request(&["echo", &i.to_string()])).await.unwrap().id);
    }
    out
}

/// A hook that can switch the store off (proves precheck does no I/O) and make ledger commits
/// slow and exclusive, like SQLite's single writer.
pub(crate) struct Switch {
    down: AtomicBool,
    slow_commit: Option<Duration>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A MemoryStore behind a [`Switch`].
pub(crate) type SwitchableStore = HookedStore<Switch>;

pub(crate) fn switchable(slow_commit: Option<Duration>) -> SwitchableStore {
    let hook = Switch { down: AtomicBool::new(false), slow_commit, writer: Arc::default() };
    HookedStore::new(Arc::new(MemoryStore::new()), hook)
}

impl Switch {
    fn gate(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("switched off".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl StoreHook for Switch {
    async fn on_commit(&self, c: &Commit) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        self.gate()?;
        let writer = self.writer.clone().lock_owned().await;
        // Only ledger writes are slow: a delivery holds the writer while other work needs it.
        if let (Some(d), false) = (self.slow_commit, c.entries.is_empty()) {
            tokio::time::sleep(d).await;
        }
        Ok(Some(Box::new(writer)))
    }

    fn on_read(&self) -> Result<(), StoreError> {
        self.gate()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_2_precheck_answers_from_memory_even_with_the_store_down() {
    let fake = telegram();
    let store = Arc::new(switchable(None));
    let bed = TestBed::with(store.clone(), test_config(), &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    store.hook.down.store(true, Ordering::SeqCst);
    let acc = bed.handle.precheck_token(&fake.key(), &msg.payload.buttons[0].1, fake.actor("42")).unwrap();
    assert_eq!(acc.ack_text(), "Recording: allow once");
    // The durable step fails closed: nothing is recorded as approved.
    assert!(matches!(bed.handle.resolve(acc.clone()).await, Err(ResolveError::Store(_))));
    store.hook.down.store(false, Ordering::SeqCst);
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
    assert_eq!(bed.handle.resolve(acc).await.unwrap().approval.status, Status::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_3_unknown_ids_are_not_found() {
    let bed = TestBed::new(&[telegram()]).await;
    let ix = console_ix(&ApprovalId::from_bits(77), Decision::AllowOnce);
    assert_eq!(bed.handle.precheck(&ix), Err(Rejection::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_4_only_approvers_of_a_handling_account_decide() {
    let fake = telegram();
    let other = assent_testing::FakeChannel::new(Channel::Telegram, "other", &["99"])
        .with_routing(|r| r.agent_filter = vec!["nobody".into()]);
    let bed = TestBed::new(&[fake.clone(), other.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let outsider = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "666").await;
    assert_eq!(outsider.ack, "You can't decide this approval.");
    // An approver of another account that does not handle this approval, using a token minted
    // for that account, is refused too.
    let keyring = Keyring::new(TokenKey::new([42; 32]), vec![]);
    let foreign = keyring.sign(Kind::Exec, TokenAction::Decide(Decision::AllowOnce), &a.id, &other.key());
    assert_eq!(other.click_token(&bed.handle, &foreign, "99").await.ack, "You can't decide this approval.");
    // A token copied from one account to another fails its MAC.
    assert_eq!(
        other.click_token(&bed.handle, &msg.payload.buttons[0].1, "99").await.ack,
        Rejection::NotFound.to_string()
    );
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_4_empty_approver_list_fails_closed() {
    let nobody = assent_testing::FakeChannel::new(Channel::Telegram, "main", &[]);
    let mut config = test_config();
    config.console_route = assent_engine::ConsoleRoute::Always;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[nobody.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let keyring = Keyring::new(TokenKey::new([42; 32]), vec![]);
    let t = keyring.sign(Kind::Exec, TokenAction::Decide(Decision::AllowOnce), &a.id, &nobody.key());
    assert_eq!(nobody.click_token(&bed.handle, &t, "1").await.ack, "You can't decide this approval.");
    let reply =
        nobody.type_message(&bed.handle, &format!("/approve {} once", a.short_ref()), "1").await.unwrap();
    assert!(
        reply == Rejection::NotFound.to_string() || reply == "You can't decide this approval.",
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_5_typed_commands_usage_other_bots_and_bare_words() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    assert_eq!(fake.type_message(&bed.handle, "yes", "42").await, None);
    assert_eq!(
        fake.type_message(&bed.handle, &format!("/approve@otherbot {} once", a.short_ref()), "42").await,
        None
    );
    assert_eq!(
        fake.type_message(&bed.handle, "/approve abc once", "42").await.as_deref(),
        Some("Usage: /approve <ref> <once|always|deny>")
    );
    let reply = fake
        .type_message(&bed.handle, &format!("/approve@assentbot deny {} not today", a.short_ref()), "42")
        .await;
    assert_eq!(reply.as_deref(), Some(&*format!("Recorded: deny for {}.", a.short_ref())));
    let denied = bed.store.approval(&a.id).await.unwrap().unwrap();
    assert_eq!(denied.deny_reason.as_deref(), Some("not today"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_7_guessing_refs_gets_throttled() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    for i in 0..10 {
        let reply = fake.type_message(&bed.handle, &format!("/approve zzzzzzz{i} once"), "42").await.unwrap();
        assert_eq!(reply, Rejection::NotFound.to_string());
    }
    fake.type_message(&bed.handle, "/approve zzzzzzzz once", "42").await;
    let reply = fake.type_message(&bed.handle, "/approve zzzzzzzy once", "42").await.unwrap();
    assert_eq!(reply, "Too many attempts. Try again in 10 minutes.");
    let other = fake.type_message(&bed.handle, "/approve zzzzzzzy once", "43").await.unwrap();
    assert_eq!(other, Rejection::NotFound.to_string(), "only the guesser is throttled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_8_a_stale_click_requeues_finalization() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.fail_next(Op::Update, Fault::Transient, 1);
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    until("the first final action failed", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { store.entries(&id).await.unwrap().iter().any(|e| e.state == EntryState::FinalizeFailed) }
    })
    .await;
    // No clock movement: only the stale click can bring the retry forward.
    let stale = fake.click_token(&bed.handle, &msg.payload.buttons[0].1, "43").await;
    assert!(stale.ack.starts_with("Already denied by"), "{}", stale.ack);
    finalized(&fake, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_9_same_actor_same_decision_is_already_recorded() {
    let fake = telegram();
    let mut config = test_config();
    config.policy.rules =
        vec![assent_core::policy::PolicyRule { quorum: 2, ..assent_core::policy::PolicyRule::implicit() }];
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let again = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert_eq!(again.ack, "Already recorded.");
    let r = again.resolution.unwrap().unwrap();
    assert!(r.idempotent);
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().quorum.votes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ix_11_only_assent_tokens_count() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    let forged = Keyring::new(TokenKey::new([1; 32]), vec![]).sign(
        Kind::Exec,
        TokenAction::Decide(Decision::AllowOnce),
        &a.id,
        &fake.key(),
    );
    assert_eq!(fake.click_token(&bed.handle, &forged, "42").await.ack, Rejection::NotFound.to_string());
    let full_text =
        assent_testing::test_keyring().sign(Kind::Exec, TokenAction::FullText, &a.id, &fake.key());
    assert_eq!(
        fake.click_token(&bed.handle, &full_text, "42").await.ack,
        Rejection::DecisionNotAllowed.to_string()
    );
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_2_refs_resolve_to_one_pending_approval() {
    let bed = TestBed::new(&[telegram()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    assert_eq!(bed.handle.resolve_ref(a.id.as_str()).unwrap(), a.id);
    assert_eq!(bed.handle.resolve_ref(&a.short_ref().to_ascii_uppercase()).unwrap(), a.id);
    assert!(matches!(bed.handle.resolve_ref("abc"), Err(assent_engine::EngineError::Invalid(_))));
    assert!(matches!(bed.handle.resolve_ref("zzzzzzzzzz"), Err(assent_engine::EngineError::NotFound)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_16_a_waiting_requester_gets_the_decision_or_the_pending_record() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let still = bed.handle.wait(&a.id, Duration::from_millis(50)).await.unwrap();
    assert_eq!(still.status, Status::Pending);
    let waiter = {
        let h = bed.handle.clone();
        let id = a.id.clone();
        tokio::spawn(async move { h.wait(&id, Duration::from_secs(30)).await })
    };
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    let done = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap().unwrap();
    assert_eq!(done.status, Status::Denied);
}
