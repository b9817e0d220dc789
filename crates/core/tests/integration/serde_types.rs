//! Snapshots of every serde type that reaches disk or the wire (NF-14).

use std::time::Duration;

use assent_core::{
    id::{BindingId, EntryId, GrantId},
    lifecycle::{Rejection, ResolvedOutcome, requester_outcome},
    model::*,
    policy::{GrantScope, ScopeBase},
    routing::{PlannedTarget, Preference, TargetAddr},
    store::{CallbackJob, CallbackState, CallbackTarget},
};

use crate::{T0, approval, binding_action, exec_action, kim, plugin_action};

#[test]
fn dm_1_approval_records_of_each_kind() {
    let mut exec = approval(exec_action(&["deploy", "--prod"]), 2);
    exec.origin = Some(Origin {
        channel: Channel::Telegram,
        account: "main".into(),
        conversation: "-100".into(),
        parent: None,
        thread: Some("7".into()),
    });
    exec.grant_scope = Some(GrantScope { base: ScopeBase::ExactArgv, session: true, ttl_secs: Some(3600) });
    insta::assert_json_snapshot!("approval_exec", exec);
    insta::assert_json_snapshot!("approval_plugin", approval(plugin_action(), 1));
    insta::assert_json_snapshot!("approval_binding", approval(binding_action(), 1));
    let round: Approval = serde_json::from_value(serde_json::to_value(&exec).unwrap()).unwrap();
    assert_eq!(round, exec);
}

#[test]
fn dm_9_entry() {
    let e = Entry {
        entry_id: EntryId::from_bits(5),
        approval_id: approval(exec_action(&["ls"]), 1).id,
        channel: Channel::Telegram,
        account: "main".into(),
        surface: Surface::ApproverDm,
        target_key: "user:42".into(),
        native_ref: serde_json::json!({ "v": 1, "data": { "chat_id": 42, "message_id": 7 } }),
        anchor: None,
        state: EntryState::FinalizeFailed,
        final_action: None,
        attempts: 2,
        last_error: Some("HTTP 502".into()),
        next_attempt_at: Some(T0 + Duration::from_secs(4)),
        delivered_at: T0,
    };
    insta::assert_json_snapshot!("entry", e);
}

#[test]
fn dm_10_grants_and_bindings() {
    let g = Grant {
        id: GrantId::from_bits(9),
        kind: Kind::Exec,
        matcher: GrantMatcher::Pattern {
            executable: "/usr/bin/git".into(),
            args: vec!["pull".into(), "**".into()],
            host: "build-1".into(),
        },
        constraints: GrantConstraints {
            agent_id: Some("claude".into()),
            session_key: None,
            expires_at: Some(T0),
        },
        source: GrantSource::AllowAlways,
        approval_id: None,
        created_by: "console:kim".into(),
        created_at: T0,
        last_used_at: None,
        use_count: 3,
        revoked_at: None,
        revoked_by: None,
    };
    insta::assert_json_snapshot!("grant", g);
    let Action::Binding(b) = binding_action() else { unreachable!() };
    let binding = Binding {
        id: BindingId::from_bits(11),
        key: b.conversation.binding_key(),
        plugin: b.plugin.clone(),
        conversation: b.conversation.clone(),
        bound_at: T0,
        summary: b.summary.clone(),
        detach_hint: b.detach_hint.clone(),
        approval_id: None,
    };
    insta::assert_json_snapshot!("binding", binding);
}

#[test]
fn dm_11_audit_entries_and_events() {
    let a = approval(exec_action(&["ls"]), 1);
    let mut audit = AuditEntry::new(AuditType::InteractionRejected, T0)
        .approval(&a.id)
        .actor(&kim())
        .account(AccountKey::new(Channel::Telegram, "main"))
        .details(serde_json::json!({ "rejection": Rejection::Unauthorized }));
    audit.seq = 17;
    insta::assert_json_snapshot!("audit_entry", audit);
    let event = Event {
        seq: 18,
        kind: EventType::Approved,
        at: T0,
        approval_kind: Some(Kind::Exec),
        approval_id: Some(a.id.clone()),
        data: serde_json::json!({ "ref": a.short_ref() }),
    };
    insta::assert_json_snapshot!("event", event);
}

#[test]
fn lc_14_callback_jobs_and_wire_enums() {
    let a = approval(exec_action(&["ls"]), 1);
    let job = CallbackJob {
        key: format!("{}:on_resolved", a.id),
        approval_id: a.id.clone(),
        event: "on_resolved".into(),
        target: CallbackTarget::Url { url: "https://hooks.example.org/assent".into() },
        payload: serde_json::json!({ "status": "approved" }),
        attempts: 1,
        next_attempt_at: T0,
        state: CallbackState::Pending,
        last_error: None,
    };
    insta::assert_json_snapshot!("callback_job", job);
    let rejections = vec![
        Rejection::NotFound,
        Rejection::AlreadyResolved { by: Some(kim()), outcome: ResolvedOutcome::ApprovedAlways },
        Rejection::Expired,
        Rejection::Unauthorized,
        Rejection::DecisionNotAllowed,
        Rejection::AmbiguousRef,
        Rejection::Throttled { retry_after: Duration::from_secs(600) },
    ];
    insta::assert_json_snapshot!("rejections", rejections);
    insta::assert_json_snapshot!("requester_outcome", requester_outcome(&a));
    let target = PlannedTarget {
        account: AccountKey::new(Channel::Discord, "main"),
        to: TargetAddr::Conversation { conversation: "123".into(), thread: Some("456".into()) },
        surface: Surface::Origin,
        preference: Preference::Fallback,
        buttons: true,
    };
    insta::assert_json_snapshot!("planned_target", target);
}

#[test]
fn lc_17_rejection_codes_are_their_serde_tags() {
    let all = [
        Rejection::NotFound,
        Rejection::AlreadyResolved { by: None, outcome: ResolvedOutcome::Denied },
        Rejection::Expired,
        Rejection::Unauthorized,
        Rejection::DecisionNotAllowed,
        Rejection::AmbiguousRef,
        Rejection::Throttled { retry_after: Duration::from_secs(60) },
    ];
    assert_eq!(all.len(), Rejection::CODES.len());
    for (i, r) in all.iter().enumerate() {
        assert_eq!(serde_json::to_value(r).unwrap()["code"], r.code(), "{r:?}");
        assert_eq!(r.code_index(), i);
    }
}
