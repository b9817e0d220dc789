//! NF-8: concurrent resolvers, cancels and the sweeper produce exactly one terminal transition
//! and never re-tag it.

use std::{sync::Arc, time::Duration};

use assent_core::{memory::MemoryStore, model::*, policy::PolicyRule};
use assent_engine::ConsoleRoute;
use assent_testing::{TestBed, exec_request, test_config};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Actor_ {
    Vote(u8, Decision),
    Cancel,
    Sweep,
}

fn op() -> impl Strategy<Value = Actor_> {
    prop_oneof![
        4 => (0u8..4, prop_oneof![Just(Decision::AllowOnce), Just(Decision::AllowAlways), Just(Decision::Deny)])
            .prop_map(|(who, d)| Actor_::Vote(who, d)),
        1 => Just(Actor_::Cancel),
        1 => Just(Actor_::Sweep),
    ]
}

async fn run(ops: Vec<Actor_>, quorum: u8) -> (Status, usize, usize) {
    let mut config = test_config();
    config.console_route = ConsoleRoute::Always;
    config.policy.rules = vec![PolicyRule { quorum, ..PolicyRule::implicit() }];
    let bed = TestBed::with(Arc::new(MemoryStore::new()), config, &[]).await;
    let a = bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let mut tasks = Vec::new();
    for op in ops {
        let h = bed.handle.clone();
        let clock = bed.clock.clone();
        let id = a.id.clone();
        tasks.push(tokio::spawn(async move {
            match op {
                Actor_::Vote(who, decision) => {
                    let ix = assent_engine::Interaction {
                        approval: assent_engine::ApprovalRef::Id(id),
                        kind: Some(Kind::Exec),
                        decision,
                        actor: Actor::console(format!("approver{who}")),
                        authority: assent_engine::Authority::Approver,
                        reason: None,
                        grant_scope: None,
                    };
                    if let Ok(acc) = h.precheck(&ix) {
                        let _ = h.resolve(acc).await;
                    }
                }
                Actor_::Cancel => {
                    let _ = h.cancel(&id, &Actor::token("ci"), false).await;
                }
                Actor_::Sweep => {
                    clock.advance(Duration::from_secs(1800));
                    let _ = h.sweep_once().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Make sure it ends: expire whatever is still pending.
    bed.clock.advance(Duration::from_secs(3600));
    bed.handle.sweep_once().await.unwrap();
    let end = bed.store.approval(&a.id).await.unwrap().unwrap();
    let audit = crate::audit_types(&bed.store, &a.id).await;
    let terminal_audits = audit
        .iter()
        .filter(|t| matches!(t, AuditType::Decided | AuditType::Expired | AuditType::Cancelled))
        .count();
    let events = bed.handle.events_since(0, 10_000).await.unwrap();
    let terminal_events = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventType::Approved | EventType::Denied | EventType::Expired | EventType::Cancelled
            )
        })
        .count();
    bed.engine.shutdown(Duration::from_millis(10)).await;
    (end.status, terminal_audits, terminal_events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn nf_8_exactly_one_terminal_transition(ops in prop::collection::vec(op(), 1..12), quorum in 1u8..3) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (status, audits, events) = rt.block_on(run(ops, quorum));
        prop_assert!(status.is_terminal());
        prop_assert_eq!(audits, 1, "one terminal audit entry");
        prop_assert_eq!(events, 1, "one terminal event");
    }
}
