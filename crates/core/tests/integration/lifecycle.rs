use std::time::Duration;

use assent_core::{lifecycle::*, model::*};

use crate::{T0, approval, bob, exec_action, kim};

fn decided(o: VoteOutcome) -> Approval {
    match o {
        VoteOutcome::Decided(a) => a,
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn lc_4_first_answer_wins_and_others_get_typed_rejections() {
    let a = approval(exec_action(&["ls"]), 1);
    let won = decided(apply_vote(&a, &kim(), Decision::AllowOnce, None, T0).unwrap());
    assert_eq!(won.status, Status::Approved);
    assert_eq!(won.version, a.version + 1);
    let late = apply_vote(&won, &bob(), Decision::Deny, None, T0).unwrap_err();
    assert_eq!(late, Rejection::AlreadyResolved { by: Some(kim()), outcome: ResolvedOutcome::ApprovedOnce });
    assert_eq!(late.to_string(), "Already approved once by @kim.");
}

#[test]
fn lc_5_winner_repeating_is_idempotent_and_nothing_is_re_tagged() {
    let a = approval(exec_action(&["ls"]), 1);
    let won = decided(apply_vote(&a, &kim(), Decision::Deny, Some("too broad".into()), T0).unwrap());
    assert_eq!(apply_vote(&won, &kim(), Decision::Deny, None, T0).unwrap(), VoteOutcome::Idempotent);
    let other = apply_vote(&won, &kim(), Decision::AllowOnce, None, T0).unwrap_err();
    assert!(matches!(other, Rejection::AlreadyResolved { outcome: ResolvedOutcome::Denied, .. }));
    assert_eq!(other.to_string(), "Already denied by @kim.");
}

#[test]
fn lc_6_quorum_counts_distinct_principals_and_any_deny_vetoes() {
    let a = approval(exec_action(&["deploy"]), 2);
    let VoteOutcome::Recorded(one) = apply_vote(&a, &kim(), Decision::AllowAlways, None, T0).unwrap() else {
        panic!()
    };
    assert_eq!(one.status, Status::Pending);
    assert_eq!(one.quorum.votes.len(), 1);
    assert_eq!(
        apply_vote(&one, &kim(), Decision::AllowOnce, None, T0).unwrap(),
        VoteOutcome::Idempotent,
        "repeat approve"
    );
    let two = decided(apply_vote(&one, &bob(), Decision::AllowOnce, None, T0).unwrap());
    assert_eq!(
        (two.status, two.mode),
        (Status::Approved, Some(Mode::Once)),
        "always only if every vote chose it"
    );
    let veto = decided(apply_vote(&one, &bob(), Decision::Deny, None, T0).unwrap());
    assert_eq!((veto.status, veto.reason), (Status::Denied, Some(Reason::Veto)));
    let plain = decided(apply_vote(&a, &bob(), Decision::Deny, None, T0).unwrap());
    assert_eq!(plain.reason, Some(Reason::Human));
}

#[test]
fn lc_6_all_always_votes_make_mode_always() {
    let a = approval(exec_action(&["deploy"]), 2);
    let VoteOutcome::Recorded(one) = apply_vote(&a, &kim(), Decision::AllowAlways, None, T0).unwrap() else {
        panic!()
    };
    let two = decided(apply_vote(&one, &bob(), Decision::AllowAlways, None, T0).unwrap());
    assert_eq!(two.mode, Some(Mode::Always));
}

#[test]
fn lc_6_prevent_self_approval_refuses_the_requester() {
    let mut a = approval(exec_action(&["deploy"]), 1);
    a.prevent_self_approval = true;
    a.requester.principal = kim().principal;
    assert_eq!(apply_vote(&a, &kim(), Decision::AllowOnce, None, T0), Err(Rejection::Unauthorized));
    assert!(apply_vote(&a, &bob(), Decision::AllowOnce, None, T0).is_ok());
}

#[test]
fn lc_8_decisions_at_or_after_the_deadline_are_expired() {
    let a = approval(exec_action(&["ls"]), 1);
    assert_eq!(apply_vote(&a, &kim(), Decision::AllowOnce, None, a.expires_at), Err(Rejection::Expired));
    assert!(expire(&a, ExpiryCause::Timeout, a.expires_at - Duration::from_millis(1)).is_none(), "not due");
    let e = expire(&a, ExpiryCause::Timeout, a.expires_at).unwrap();
    assert_eq!((e.status, e.reason), (Status::Expired, Some(Reason::Timeout)));
    assert_eq!(apply_vote(&e, &kim(), Decision::AllowOnce, None, a.expires_at), Err(Rejection::Expired));
}

#[test]
fn lc_9_unsafe_fallback_approves_timeouts_only_never_no_route_or_bindings() {
    let mut a = approval(exec_action(&["ls"]), 1);
    a.on_timeout = TimeoutAction::ApproveUnsafe;
    let t = expire(&a, ExpiryCause::Timeout, a.expires_at).unwrap();
    assert_eq!(
        (t.status, t.mode, t.reason),
        (Status::Approved, Some(Mode::Once), Some(Reason::TimeoutFallback))
    );
    let n = expire(&a, ExpiryCause::NoRoute, T0).unwrap();
    assert_eq!((n.status, n.reason), (Status::Expired, Some(Reason::NoRoute)));
    let mut b = approval(crate::binding_action(), 1);
    b.on_timeout = TimeoutAction::ApproveUnsafe;
    assert_eq!(expire(&b, ExpiryCause::Timeout, b.expires_at).unwrap().status, Status::Expired);
}

#[test]
fn lc_10_cancel_is_for_the_requester_or_an_admin() {
    let a = approval(exec_action(&["ls"]), 1);
    assert_eq!(cancel(&a, &kim(), false, T0), Err(RequesterError::Forbidden));
    let own = cancel(&a, &Actor::token("ci"), false, T0).unwrap();
    assert_eq!((own.status, own.reason), (Status::Cancelled, Some(Reason::Requester)));
    let admin = cancel(&a, &Actor::console("root"), true, T0).unwrap();
    assert_eq!(admin.reason, Some(Reason::Admin));
    assert!(matches!(cancel(&own, &Actor::token("ci"), false, T0), Err(RequesterError::Rejected(_))));
}

#[test]
fn lc_11_consume_once_by_the_requester_on_approved_only() {
    let a = approval(exec_action(&["ls"]), 1);
    assert_eq!(consume(&a, "token:ci", T0), Err(RequesterError::NotApproved("pending")));
    let ok = decided(apply_vote(&a, &kim(), Decision::AllowOnce, None, T0).unwrap());
    assert_eq!(consume(&ok, "token:other", T0), Err(RequesterError::Forbidden));
    let used = consume(&ok, "token:ci", T0).unwrap();
    assert_eq!(used.consumed_at, Some(T0));
    assert_eq!(consume(&used, "token:ci", T0), Err(RequesterError::AlreadyConsumed));
}

#[test]
fn lc_16_requester_outcomes_texts_and_exit_codes() {
    let a = approval(exec_action(&["ls"]), 1);
    let ok = decided(apply_vote(&a, &kim(), Decision::AllowOnce, None, T0).unwrap());
    let o = requester_outcome(&ok);
    assert_eq!(
        (o.outcome.as_str(), o.text.as_str(), o.exit_code),
        ("allow", "approved once by @kim (Telegram)", 0)
    );
    let no = decided(apply_vote(&a, &kim(), Decision::Deny, Some("too broad".into()), T0).unwrap());
    let o = requester_outcome(&no);
    assert_eq!(
        (o.outcome.as_str(), o.text.as_str(), o.exit_code),
        ("deny", "denied by @kim (Telegram): too broad", 1)
    );
    let t = requester_outcome(&expire(&a, ExpiryCause::Timeout, a.expires_at).unwrap());
    assert_eq!((t.text.as_str(), t.exit_code), ("expired: nobody answered within 30m", 2));
    let n = requester_outcome(&expire(&a, ExpiryCause::NoRoute, T0).unwrap());
    assert_eq!((n.text.as_str(), n.exit_code), ("expired: no approval route; run `assent doctor`", 2));
    let c = requester_outcome(&cancel(&a, &Actor::token("ci"), false, T0).unwrap());
    assert_eq!((c.outcome.as_str(), c.exit_code), ("deny", 3));
}

#[test]
fn lc_17_rejection_texts_match_ix_12() {
    assert_eq!(Rejection::NotFound.to_string(), "This approval no longer exists.");
    assert_eq!(Rejection::Expired.to_string(), "This approval timed out.");
    assert_eq!(Rejection::Unauthorized.to_string(), "You can't decide this approval.");
    assert_eq!(Rejection::DecisionNotAllowed.to_string(), "That option isn't available here.");
    assert_eq!(
        Rejection::Throttled { retry_after: Duration::from_secs(600) }.to_string(),
        "Too many attempts. Try again in 10 minutes."
    );
    let cancelled = Rejection::AlreadyResolved { by: None, outcome: ResolvedOutcome::Cancelled };
    assert_eq!(cancelled.to_string(), "Already cancelled.");
}

#[test]
fn dm_5_terminal_fields_never_change() {
    let a = approval(exec_action(&["ls"]), 1);
    let ok = decided(apply_vote(&a, &kim(), Decision::AllowOnce, None, T0).unwrap());
    for attempt in [Decision::Deny, Decision::AllowAlways] {
        assert!(apply_vote(&ok, &bob(), attempt, None, T0).is_err());
    }
    assert!(expire(&ok, ExpiryCause::Timeout, ok.expires_at).is_none());
    assert!(cancel(&ok, &Actor::token("ci"), true, T0).is_err());
}

#[test]
fn dm_6_decisions_outside_the_allowed_set_are_refused() {
    let mut a = approval(exec_action(&["ls"]), 1);
    a.allowed_decisions = vec![Decision::AllowOnce, Decision::Deny];
    assert_eq!(apply_vote(&a, &kim(), Decision::AllowAlways, None, T0), Err(Rejection::DecisionNotAllowed));
}

#[test]
fn dm_8_votes_record_actor_decision_and_time() {
    let a = approval(exec_action(&["ls"]), 2);
    let VoteOutcome::Recorded(one) = apply_vote(&a, &kim(), Decision::AllowOnce, None, T0).unwrap() else {
        panic!()
    };
    let v = &one.quorum.votes[0];
    assert_eq!(
        (v.principal(), v.decision, v.surface(), v.at),
        ("telegram:42", Decision::AllowOnce, Surface::ApproverDm, T0)
    );
}

#[test]
fn ix_12_deny_reason_is_capped_at_200_characters() {
    let a = approval(exec_action(&["ls"]), 1);
    let d = decided(apply_vote(&a, &kim(), Decision::Deny, Some("x".repeat(500)), T0).unwrap());
    assert_eq!(d.deny_reason.unwrap().chars().count(), 200);
}
