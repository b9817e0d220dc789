use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, FinalAction, IntoDynCapability},
    memory::MemoryStore,
    model::*,
};
use assent_engine::{
    ConsoleRoute,
    registry::{ContextRegistry, ContextState},
};
use assent_testing::{FakeChannel, Fault, FinalMode, Op, TestBed, eventually, exec_request, test_config};

use crate::{audit_of, audit_types, card, finalized, telegram, until};

fn console_always() -> assent_engine::EngineConfig {
    let mut c = test_config();
    c.console_route = ConsoleRoute::Always;
    c
}

#[test]
fn cap_4_kinds_decisions_and_final_actions_are_closed_enums() {
    // Exhaustive matches without wildcards: adding a variant breaks this test's compilation, the
    // same way it breaks every channel codec.
    let kinds = Kind::ALL.map(|k| match k {
        Kind::Exec | Kind::Plugin | Kind::Binding => 1,
    });
    let decisions = Decision::ALL.map(|d| match d {
        Decision::AllowOnce | Decision::AllowAlways | Decision::Deny => 1,
    });
    let action: FinalAction<()> = FinalAction::Leave;
    let final_ok = match action {
        FinalAction::Update(()) | FinalAction::Delete | FinalAction::ClearActions | FinalAction::Leave => {
            true
        }
    };
    assert_eq!((kinds.len(), decisions.len(), final_ok), (3, 3, true));
}

/// A channel's reasons for not taking an approval (`should_handle`) or a target (`prepare`) are
/// audited, never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_skip_reasons_reach_the_audit_log() {
    let vetoing =
        FakeChannel::new(Channel::Telegram, "main", &["111"]).vetoing("plugin x is not for this bot");
    let skipping = FakeChannel::new(Channel::Slack, "main", &["U0123ABCDEF"]).skipping("the DM is closed");
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[vetoing, skipping]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    until("both skips are audited", || {
        let (store, id) = (bed.store.clone(), a.id.clone());
        async move {
            audit_of(&store, &id).await.iter().filter(|e| e.kind == AuditType::DeliverySkipped).count() == 2
        }
    })
    .await;
    let skips: Vec<_> = audit_of(&bed.store, &a.id)
        .await
        .into_iter()
        .filter(|e| e.kind == AuditType::DeliverySkipped)
        .collect();
    let reason = |account: &str| {
        skips.iter().find(|e| e.account.as_ref().is_some_and(|k| k.to_string() == account)).unwrap().details
            ["reason"]
            .clone()
    };
    assert_eq!(reason("telegram/main"), "plugin x is not for this bot");
    assert_eq!(reason("slack/main"), "the DM is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_1_erased_entries_are_versioned_json() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    until("the entry is stored", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { !store.entries(&id).await.unwrap().is_empty() }
    })
    .await;
    let e = bed.store.entries(&a.id).await.unwrap().remove(0);
    assert_eq!(e.native_ref["v"], 1);
    assert!(e.native_ref["data"]["message_id"].is_u64());
    assert_eq!(e.anchor.as_ref().map(|x| x["v"].clone()), Some(serde_json::json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_3_delete_clear_and_leave_final_actions() {
    for (mode, check) in
        [(FinalMode::Delete, "deleted"), (FinalMode::ClearActions, "cleared"), (FinalMode::Leave, "left")]
    {
        let fake = telegram().final_mode(mode);
        let bed = TestBed::new(&[fake.clone()]).await;
        let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
        let msg = card(&fake, &a.id).await;
        fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
        until("both cards are recorded and finalized", || {
            let store = bed.store.clone();
            let id = a.id.clone();
            async move {
                let entries = store.entries(&id).await.unwrap();
                entries.len() == 2 && entries.iter().all(|e| e.state == EntryState::Finalized)
            }
        })
        .await;
        let m = fake.messages_for(&a.id).into_iter().find(|m| m.id == msg.id).unwrap();
        match check {
            "deleted" => assert!(m.deleted),
            "cleared" => assert!(m.payload.buttons.is_empty() && !m.deleted),
            _ => assert_eq!(m.payload, msg.payload),
        }
        until("on_finalized fired", || {
            let fake = fake.clone();
            let id = a.id.clone();
            async move { fake.finalized().contains(&id) }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_3_a_failed_delete_falls_back_to_an_update() {
    let fake = telegram().final_mode(FinalMode::Delete);
    fake.fail_always(Op::Delete, Fault::Permanent);
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    fake.click(&bed.handle, msg.id, Decision::Deny, "42").await;
    let ms = finalized(&fake, &a.id).await;
    assert!(
        ms.iter().all(|m| !m.deleted && m.payload.outcome.as_deref() == Some("Denied by @42 (Telegram)"))
    );
    let e = bed.store.entries(&a.id).await.unwrap();
    assert!(e.iter().all(|e| e.final_action == Some(FinalActionKind::Update)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_5_channels_decide_only_through_the_engine_handle() {
    // The fake holds no store: every inbound path goes precheck → resolve on EngineHandle.
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    let out = fake.react(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert_eq!(out.ack, "Recording: allow once");
    assert_eq!(out.resolution.unwrap().unwrap().approval.status, Status::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_6_leases_unregister_only_while_current() {
    let registry = ContextRegistry::<&'static str>::new();
    let key = AccountKey::new(Channel::Telegram, "main");
    let first = registry.register(key.clone(), "bot-a");
    let ContextState::Registered { generation: g1, .. } = registry.current(&key) else { panic!() };
    let second = registry.register(key.clone(), "bot-b");
    let ContextState::Registered { generation: g2, context } = registry.current(&key) else { panic!() };
    assert!(g2 > g1);
    assert_eq!(context, "bot-b");
    drop(first);
    assert!(
        matches!(registry.current(&key), ContextState::Registered { context: "bot-b", .. }),
        "a replaced lease is inert"
    );
    drop(second);
    assert_eq!(registry.current(&key), ContextState::Unregistered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_7_bootstrap_retries_and_follows_registrations() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[]).await;
    let registry = ContextRegistry::<FakeChannel>::new();
    let key = AccountKey::new(Channel::Telegram, "main");
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let f = failures.clone();
    bed.handle.bootstrap(registry.clone(), key.clone(), move |ctx: FakeChannel| {
        let f = f.clone();
        async move {
            if f.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                n.checked_sub(1)
            })
            .is_ok()
            {
                return Err("platform not reachable yet".to_owned());
            }
            Ok(ctx.erase() as Arc<dyn DynApprovalCapability>)
        }
    });
    let fake = telegram();
    let lease = registry.register(key.clone(), fake.clone());
    until("the handler starts after one retry", || {
        let h = bed.handle.clone();
        async move { h.accounts().iter().any(|a| a.key.account == "main") }
    })
    .await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    drop(lease);
    until("unregistering stops the handler", || {
        let h = bed.handle.clone();
        async move { h.accounts().is_empty() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_8_attach_delivers_pending_approvals_it_lacks_and_rebinds_anchors() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    assert_eq!(a.status, Status::Pending, "the console is a route");
    let fake = telegram();
    bed.handle.attach(fake.clone().erase()).await.unwrap();
    let msg = card(&fake, &a.id).await;
    eventually("both cards recorded and bound", &mut || fake.anchors().len() == 2).await;
    assert!(fake.anchors().contains(&msg.id));
    bed.handle.detach(&fake.key()).await.unwrap();
    assert!(fake.anchors().is_empty(), "CAP-9 unbinds");
    bed.handle.attach(fake.clone().erase()).await.unwrap();
    assert!(fake.anchors().contains(&msg.id), "CAP-8 re-binds");
    assert_eq!(fake.messages_for(&a.id).len(), 2, "no duplicate cards");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_9_a_card_bound_after_detach_is_unbound() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[]).await;
    let fake = telegram();
    fake.slow(Op::Bind, Duration::from_millis(300));
    bed.handle.attach(fake.clone().erase()).await.unwrap();
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    // The cards are on the platform but their anchors are still being bound.
    bed.handle.detach(&fake.key()).await.unwrap();
    assert_eq!(fake.anchors().len(), 0, "bind is still sleeping");
    until("both late cards bound and recorded", || {
        let (store, key) = (bed.store.clone(), fake.key());
        async move { store.open_entries(&key).await.unwrap().len() == 2 }
    })
    .await;
    eventually("CAP-9: no anchor left bound on a detached handler", &mut || fake.anchors().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_8_an_unconfigured_account_stays_idle() {
    let idle = telegram().unconfigured();
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[idle.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(idle.messages_for(&a.id).is_empty());
    assert!(bed.handle.accounts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_9_detached_cards_stay_live_for_the_next_handler() {
    let fake = telegram();
    let bed = TestBed::new(&[fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let msg = card(&fake, &a.id).await;
    bed.handle.detach(&fake.key()).await.unwrap();
    assert_eq!(bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
    bed.handle.attach(fake.clone().erase()).await.unwrap();
    let res = fake.click(&bed.handle, msg.id, Decision::AllowOnce, "42").await;
    assert_eq!(res.resolution.unwrap().unwrap().approval.status, Status::Approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_10_a_panicking_channel_does_not_stop_the_others() {
    let broken = FakeChannel::new(Channel::Discord, "main", &["111111111111111111"]);
    broken.fail_always(Op::Deliver, Fault::Panic);
    let fake = telegram();
    let bed = TestBed::new(&[broken.clone(), fake.clone()]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    until("the panic is audited as a delivery failure", || {
        let store = bed.store.clone();
        let id = a.id.clone();
        async move { audit_types(&store, &id).await.contains(&AuditType::DeliveryFailed) }
    })
    .await;
    assert!(broken.delivery_errors().iter().any(|e| e.contains("panicked")));
    let b = bed.handle.create(exec_request(&["pwd"])).await.unwrap();
    card(&fake, &b.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_7_a_stale_start_never_replaces_a_newer_handler() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[]).await;
    let registry = ContextRegistry::<(FakeChannel, u64)>::new();
    let key = AccountKey::new(Channel::Telegram, "main");
    bed.handle.bootstrap(registry.clone(), key.clone(), |(fake, delay_ms): (FakeChannel, u64)| async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        Ok(fake.erase() as Arc<dyn DynApprovalCapability>)
    });
    let old = telegram();
    let new = telegram();
    let _first = registry.register(key.clone(), (old.clone(), 400));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _second = registry.register(key.clone(), (new.clone(), 0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&new, &a.id).await;
    assert!(old.messages().is_empty(), "the stale start was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_7_a_registration_during_a_retry_pause_starts_at_once() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), console_always(), &[]).await;
    let registry = ContextRegistry::<Option<FakeChannel>>::new();
    let key = AccountKey::new(Channel::Telegram, "main");
    bed.handle.bootstrap(registry.clone(), key.clone(), |ctx: Option<FakeChannel>| async move {
        ctx.map(|fake| fake.erase() as Arc<dyn DynApprovalCapability>).ok_or_else(|| "bad token".to_owned())
    });
    let _broken = registry.register(key.clone(), None);
    tokio::time::sleep(Duration::from_millis(100)).await; // Now in its first 1 s retry pause.
    let fixed = telegram();
    let _fixed = registry.register(key.clone(), Some(fixed.clone()));
    // The retry pauses grow to 30 s: only a registration noticed at once starts within the wait.
    until("the fixed registration starts", || {
        let h = bed.handle.clone();
        async move { h.accounts().iter().any(|a| a.key.account == "main") }
    })
    .await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fixed, &a.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn st_7_a_store_of_one_process_grants_the_lease_at_once_and_stopping_detaches() {
    let bed = TestBed::with(Arc::new(MemoryStore::new()), test_config(), &[]).await;
    let fake = telegram();
    let run = bed.handle.attach_when_leased(fake.clone().erase());
    until("the account to attach", || {
        let h = bed.handle.clone();
        async move { h.accounts().len() == 1 }
    })
    .await;
    assert!(bed.handle.is_serving(&fake.key()));
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    card(&fake, &a.id).await;
    run.stop_and_wait().await;
    assert!(bed.handle.accounts().is_empty(), "detached once the run is stopped");
    assert!(!bed.handle.is_serving(&fake.key()));
}
