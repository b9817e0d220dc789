use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use assent_core::{
    memory::MemoryStore,
    model::*,
    routing::Forward,
    store::{Commit, StoreError},
};
use assent_engine::{BindingHandler, BindingOutcome, EngineError, EngineHandle};
use assent_testing::{FakeChannel, HookedStore, StoreHook, TestBed, test_config};
use async_trait::async_trait;
use tokio::sync::watch;

use crate::{card, status_becomes, until};

fn conversation(id: &str) -> Conversation {
    Conversation {
        channel: Channel::Telegram,
        account: "main".into(),
        conversation: id.into(),
        parent: None,
        thread: None,
    }
}

fn request(root: &str, conv: &str) -> BindingRequest {
    BindingRequest {
        plugin: PluginRef { id: "codex".into(), name: "Codex".into(), root: root.into() },
        conversation: conversation(conv),
        summary: "Answer build questions".into(),
        detach_hint: "/detach".into(),
        requested_by: Some("7".into()),
    }
}

fn room() -> FakeChannel {
    FakeChannel::new(Channel::Telegram, "main", &["42"])
}

async fn pending(h: &EngineHandle, root: &str, conv: &str) -> Approval {
    match h.request_binding(request(root, conv), "plugin:codex").await.unwrap() {
        BindingOutcome::Pending(a) => *a,
        BindingOutcome::Bound(b) => panic!("bound without approval: {b:?}"),
    }
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<serde_json::Value>>,
    block: Option<Duration>,
    panic: bool,
}

#[async_trait]
impl BindingHandler for Recorder {
    async fn on_binding_resolved(&self, payload: &serde_json::Value) -> Result<(), String> {
        self.calls.lock().unwrap().push(payload.clone());
        if let Some(d) = self.block {
            tokio::time::sleep(d).await;
        }
        if self.panic {
            panic!("plugin handler crashed");
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_1_request_is_pending_then_same_root_refreshes_and_other_roots_are_refused() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = pending(&bed.handle, "/plugins/codex@1", "-100").await;
    assert_eq!(a.kind(), Kind::Binding);
    let msg = card(&fake, &a.id).await;
    assert_eq!(msg.conversation, "42", "the account's approver DMs");
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let mut refreshed = request("/plugins/codex@1", "-100");
    refreshed.summary = "New summary".into();
    let BindingOutcome::Bound(b) = bed.handle.request_binding(refreshed, "plugin:codex").await.unwrap()
    else {
        panic!()
    };
    assert_eq!(b.summary, "New summary");
    let mut rival = request("/plugins/other@1", "-100");
    rival.plugin.id = "other".into();
    assert!(
        matches!(bed.handle.request_binding(rival, "plugin:other").await, Err(EngineError::ConversationBound { owner }) if owner == "codex")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_1_conversations_assent_routes_into_cannot_be_bound() {
    let mut config = test_config();
    config.forwards = vec![Forward {
        account: AccountKey::new(Channel::Telegram, "main"),
        to: "-999".into(),
        thread: None,
        kinds: vec![Kind::Exec],
        buttons: true,
    }];
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[room()]).await;
    assert!(matches!(
        bed.handle.request_binding(request("/p@1", "-999"), "plugin:codex").await,
        Err(EngineError::ConversationOwnedByCore)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_2_only_the_conversation_accounts_approvers_decide() {
    let fake = room();
    let other_platform = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    let bed = TestBed::new(&[fake.clone(), other_platform.clone()]).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    card(&fake, &a.id).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(other_platform.messages_for(&a.id).is_empty(), "no binding card on another account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_2_the_requester_may_allow_once_when_configured() {
    let fake = room();
    let mut config = test_config();
    config.requester_may_approve_bindings = true;
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[fake.clone()]).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &a.id).await;
    assert_eq!(
        fake.click(&bed.handle, msg.id, Decision::AllowAlways, "7").await.ack,
        "You can't decide this approval."
    );
    let ok = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "7").await;
    assert_eq!(ok.resolution.unwrap().unwrap().approval.status, Status::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_3_allow_once_binds_only_this_conversation_until_detached() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert!(bed.handle.binding_for(&conversation("-100")).await.unwrap().is_some());
    pending(&bed.handle, "/p@1", "-200").await;
    assert!(
        bed.handle
            .detach_binding(&conversation("-100"), Some("/p@1"), &Actor::token("plugin"), false)
            .await
            .unwrap()
    );
    pending(&bed.handle, "/p@1", "-100").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_4_allow_always_trusts_the_root_on_this_account_only() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowAlways, "42").await;
    let BindingOutcome::Bound(b) =
        bed.handle.request_binding(request("/p@1", "-300"), "plugin:codex").await.unwrap()
    else {
        panic!("a BindingPlugin grant binds at once")
    };
    assert_eq!(b.conversation.conversation, "-300");
    pending(&bed.handle, "/p@2", "-400").await;
    let grant = bed.store.grants().await.unwrap().remove(0);
    bed.handle.revoke_grant(&grant.id, &Actor::console("admin")).await.unwrap();
    assert!(
        bed.handle.binding_for(&conversation("-300")).await.unwrap().is_some(),
        "revoking keeps existing bindings"
    );
    pending(&bed.handle, "/p@1", "-500").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_5_deny_expire_and_cancel_bind_nothing() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let denied = pending(&bed.handle, "/p@1", "-1").await;
    let msg = card(&fake, &denied.id).await;
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    let cancelled = pending(&bed.handle, "/p@1", "-2").await;
    bed.handle.cancel(&cancelled.id, &Actor::token("x"), true).await.unwrap();
    let expired = pending(&bed.handle, "/p@1", "-3").await;
    bed.clock.advance(Duration::from_secs(601));
    status_becomes(&bed, &expired.id, Status::Expired).await;
    for c in ["-1", "-2", "-3"] {
        assert!(bed.handle.binding_for(&conversation(c)).await.unwrap().is_none(), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_6_and_bd_7_lookup_and_idempotent_detach_by_owner_or_admin() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let mut spaced = conversation(" -100 ");
    spaced.account = " main ".into();
    let owner = bed.handle.binding_for(&spaced).await.unwrap().unwrap();
    assert_eq!(owner.plugin.root, "/p@1");
    assert!(matches!(
        bed.handle
            .detach_binding(&conversation("-100"), Some("/other"), &Actor::token("plugin"), false)
            .await,
        Err(EngineError::ConversationBound { .. })
    ));
    assert!(
        bed.handle.detach_binding(&conversation("-100"), None, &Actor::console("admin"), true).await.unwrap(),
        "admin"
    );
    assert!(
        !bed.handle
            .detach_binding(&conversation("-100"), None, &Actor::console("admin"), true)
            .await
            .unwrap(),
        "idempotent"
    );
    let types: Vec<AuditType> =
        bed.store.audit(&Default::default()).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(types.contains(&AuditType::BindingDetached));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_8_approved_callbacks_carry_status_decision_binding_and_request() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let handler = Arc::new(Recorder::default());
    bed.handle.register_binding_handler("codex", "/p@1", handler.clone());
    let other_root = Arc::new(Recorder::default());
    bed.handle.register_binding_handler("codex", "/p@2", other_root.clone());
    let ok = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &ok.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let no = pending(&bed.handle, "/p@1", "-200").await;
    let msg = card(&fake, &no.id).await;
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    until("both callbacks arrive", || {
        let h = handler.clone();
        async move { h.calls.lock().unwrap().len() >= 2 }
    })
    .await;
    let calls = handler.calls.lock().unwrap().clone();
    let approved = calls.iter().find(|c| c["approval_id"] == ok.id.as_str()).unwrap();
    assert_eq!(approved["event"], "binding.resolved");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decision"], "allow-once");
    assert_eq!(approved["binding"]["plugin_root"], "/p@1");
    assert_eq!(approved["request"]["summary"], "Answer build questions");
    let denied = calls.iter().find(|c| c["approval_id"] == no.id.as_str()).unwrap();
    assert_eq!(denied["status"], "denied");
    assert!(denied["binding"].is_null(), "denied gets no binding");
    assert!(other_root.calls.lock().unwrap().is_empty(), "only handlers of the same id and root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_9_callback_never_delays_ack_and_never_undoes_the_binding() {
    for (block, panic) in [(Some(Duration::from_secs(30)), false), (None, true)] {
        let fake = room();
        let bed = TestBed::new(&[fake.clone()]).await;
        let handler = Arc::new(Recorder { block, panic, ..Recorder::default() });
        bed.handle.register_binding_handler("codex", "/p@1", handler.clone());
        let a = pending(&bed.handle, "/p@1", "-100").await;
        let msg = card(&fake, &a.id).await;
        // Hang guard, not a timing assertion: a 30 s handler must not hold up the decision.
        let out = tokio::time::timeout(
            Duration::from_secs(5),
            fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42"),
        )
        .await
        .unwrap();
        assert_eq!(out.resolution.unwrap().unwrap().approval.status, Status::Approved);
        assert!(bed.handle.binding_for(&conversation("-100")).await.unwrap().is_some());
        until("the handler is called", || {
            let h = handler.clone();
            async move { !h.calls.lock().unwrap().is_empty() }
        })
        .await;
        // The attempt fails (a 500 ms attempt timeout, or the panic) and is recorded; waited
        // for rather than slept on, so a loaded machine cannot make it flaky.
        let key = format!("{}:binding.resolved", a.id);
        until("the failed attempt is recorded", || {
            let (store, key) = (bed.store.clone(), key.clone());
            async move {
                let job = store.callback(&key).await.unwrap().unwrap();
                job.attempts >= 1 && job.last_error.is_some()
            }
        })
        .await;
        assert!(
            bed.handle.binding_for(&conversation("-100")).await.unwrap().is_some(),
            "the failed callback undid nothing"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_a_second_pending_binding_cannot_silently_take_the_conversation_over() {
    let fake = room();
    let bed = TestBed::new(&[fake.clone()]).await;
    let first = pending(&bed.handle, "/plugins/codex@1", "-100").await;
    let second = pending(&bed.handle, "/plugins/other@1", "-100").await;
    let msg = card(&fake, &first.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    status_becomes(&bed, &first.id, Status::Approved).await;

    let msg = card(&fake, &second.id).await;
    let outcome = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    let err = outcome.resolution.unwrap().unwrap_err();
    assert!(err.to_string().contains("now bound to `codex`"), "{err}");
    let owner = bed.handle.binding_for(&conversation("-100")).await.unwrap().unwrap();
    assert_eq!(owner.plugin.root, "/plugins/codex@1", "the first owner keeps the conversation");
    assert_eq!(bed.store.approval(&second.id).await.unwrap().unwrap().status, Status::Pending);
}

/// Holds the first commit that `what` picks until the test lets go, so the test can change the
/// conversation between the engine's look at it and the engine's write.
struct HoldFirst {
    what: fn(&Commit) -> bool,
    arrived: AtomicBool,
    open: watch::Sender<bool>,
}

#[async_trait]
impl StoreHook for HoldFirst {
    async fn on_commit(&self, c: &Commit) -> Result<Option<Box<dyn std::any::Any + Send>>, StoreError> {
        if (self.what)(c) && !self.arrived.swap(true, Ordering::SeqCst) {
            let _ = self.open.subscribe().wait_for(|open| *open).await;
        }
        Ok(None)
    }
}

async fn held_bed(fake: &FakeChannel, what: fn(&Commit) -> bool) -> (TestBed, Arc<HookedStore<HoldFirst>>) {
    let hook = HoldFirst { what, arrived: AtomicBool::new(false), open: watch::channel(false).0 };
    let store = Arc::new(HookedStore::new(Arc::new(MemoryStore::new()), hook));
    (TestBed::with(store.clone(), test_config(), &[fake.clone()]).await, store)
}

async fn until_held(store: &HookedStore<HoldFirst>) {
    until("the held write reaches the store", || async { store.hook.arrived.load(Ordering::SeqCst) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_7_a_refresh_that_raced_a_detach_does_not_bring_the_binding_back() {
    let fake = room();
    // A refresh writes the binding and nothing else; binding and detaching also audit.
    let (bed, store) = held_bed(&fake, |c| !c.bindings.is_empty() && c.audit.is_empty()).await;
    let a = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;

    let handle = bed.handle.clone();
    let refresh =
        tokio::spawn(async move { handle.request_binding(request("/p@1", "-100"), "plugin:codex").await });
    until_held(&store).await;
    assert!(
        bed.handle.detach_binding(&conversation("-100"), None, &Actor::console("admin"), true).await.unwrap()
    );
    store.hook.open.send_replace(true);

    let outcome = refresh.await.unwrap().unwrap();
    assert!(
        matches!(outcome, BindingOutcome::Pending(_)),
        "after a detach, binding again needs approval: {outcome:?}"
    );
    assert_eq!(bed.handle.binding_for(&conversation("-100")).await.unwrap(), None, "the detach stands");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_an_approval_checked_before_another_install_bound_the_conversation_cannot_take_it() {
    let fake = room();
    // The first decision that binds waits at the store, after its check that the conversation
    // is free.
    let (bed, store) = held_bed(&fake, |c| !c.bindings.is_empty() && c.approval.is_some()).await;
    let first = pending(&bed.handle, "/plugins/codex@1", "-100").await;
    let second = pending(&bed.handle, "/plugins/other@1", "-100").await;
    let (first_card, second_card) = (card(&fake, &first.id).await, card(&fake, &second.id).await);
    let (clicker, handle) = (fake.clone(), bed.handle.clone());
    let late = tokio::spawn(async move {
        clicker.click(&handle, first_card.id, Decision::AllowOnce, "42").await.resolution.unwrap()
    });
    until_held(&store).await;
    fake.click(&bed.handle, second_card.id, Decision::AllowOnce, "42").await;
    status_becomes(&bed, &second.id, Status::Approved).await;
    store.hook.open.send_replace(true);

    let late = late.await.unwrap();
    assert!(late.as_ref().is_err_and(|e| e.to_string().contains("now bound to")), "{late:?}");
    let owner = bed.handle.binding_for(&conversation("-100")).await.unwrap().unwrap();
    assert_eq!(owner.plugin.root, "/plugins/other@1", "the install bound first keeps the conversation");
    assert_eq!(bed.store.approval(&first.id).await.unwrap().unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_4_a_grant_bind_that_raced_another_install_does_not_take_its_conversation() {
    let fake = room();
    // A bind by a grant writes the binding with its audit and no approval.
    let (bed, store) =
        held_bed(&fake, |c| !c.bindings.is_empty() && c.approval.is_none() && !c.audit.is_empty()).await;
    let trusted = pending(&bed.handle, "/p@1", "-100").await;
    let msg = card(&fake, &trusted.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowAlways, "42").await;
    let other = pending(&bed.handle, "/other@1", "-300").await;

    let handle = bed.handle.clone();
    let by_grant =
        tokio::spawn(async move { handle.request_binding(request("/p@1", "-300"), "plugin:codex").await });
    until_held(&store).await;
    let msg = card(&fake, &other.id).await;
    fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    status_becomes(&bed, &other.id, Status::Approved).await;
    store.hook.open.send_replace(true);

    let outcome = by_grant.await.unwrap();
    assert!(matches!(outcome, Err(EngineError::ConversationBound { .. })), "{outcome:?}");
    let owner = bed.handle.binding_for(&conversation("-300")).await.unwrap().unwrap();
    assert_eq!(owner.plugin.root, "/other@1", "the install bound first keeps the conversation");
}
