//! Sample approvals in every phase, for card tests: core snapshots the channel-neutral
//! [`CardView`]s, each channel snapshots what it renders from the same views (CAP-2).

use std::time::Duration;

use assent_core::{
    card::{CardContext, CardView},
    id::{ApprovalId, GrantId},
    lifecycle::{ExpiryCause, VoteOutcome, apply_vote, cancel, expire},
    model::*,
    policy::{GrantScope, ScopeBase},
    text::Redactor,
};

use crate::{T0, test_keyring};

/// An exec action for `argv` on host `build-1`.
pub fn exec_action(argv: &[&str]) -> Action {
    let req = ExecRequest {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        host: "build-1".into(),
        ..Default::default()
    };
    Action::Exec(req.into_action().unwrap_or_else(|e| panic!("sample argv invalid: {e}")))
}

/// A stored allow-always grant of `kind` matching `matcher`, made at [`T0`] and never used.
pub fn grant(kind: Kind, matcher: GrantMatcher) -> Grant {
    Grant {
        id: GrantId::from_bits(1),
        kind,
        matcher,
        constraints: GrantConstraints::default(),
        source: GrantSource::AllowAlways,
        approval_id: None,
        created_by: "telegram:42".into(),
        created_at: T0,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        revoked_by: None,
    }
}

/// An exact-argv matcher for `argv` on host `build-1`, with nothing else set.
pub fn exact(argv: &[&str]) -> GrantMatcher {
    GrantMatcher::ExactArgv {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        executable: None,
        cwd: None,
        host: "build-1".into(),
        env_digest: None,
    }
}

/// A critical plugin action ("Close 14 tickets").
pub fn plugin_action() -> Action {
    Action::Plugin(PluginRequest {
        plugin_id: "jira".into(),
        title: "Close 14 tickets".into(),
        description: "Bulk-close stale tickets in project OPS".into(),
        severity: Severity::Critical,
        tool_name: Some("bulk_close".into()),
        tool_call_id: None,
        allowed_decisions: None,
    })
}

/// A binding of a Telegram topic to the Codex plugin.
pub fn binding_action() -> Action {
    Action::Binding(BindingRequest {
        plugin: PluginRef { id: "codex".into(), name: "Codex".into(), root: "/opt/plugins/codex@1".into() },
        conversation: Conversation {
            channel: Channel::Telegram,
            account: "main".into(),
            conversation: "-1001234".into(),
            parent: None,
            thread: Some("7".into()),
        },
        summary: "Answer build questions in this topic".into(),
        detach_hint: "/detach codex".into(),
        requested_by: Some("42".into()),
    })
}

/// A pending approval of `action` with quorum `required`, created at [`T0`], 30 min to decide.
pub fn approval(action: Action, required: u8) -> Approval {
    let allowed = if action.kind() == Kind::Plugin {
        vec![Decision::AllowOnce, Decision::Deny]
    } else {
        vec![Decision::AllowOnce, Decision::AllowAlways, Decision::Deny]
    };
    Approval {
        id: ApprovalId::from_bits(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        action,
        status: Status::Pending,
        mode: None,
        reason: None,
        created_at: T0,
        expires_at: T0 + Duration::from_secs(1800),
        decided_at: None,
        allowed_decisions: allowed,
        grant_scope: None,
        quorum: Quorum { required, votes: Vec::new() },
        requester: Requester { principal: "token:ci".into() },
        origin: None,
        agent_id: Some("claude".into()),
        session_key: Some("agent:claude:main".into()),
        idempotency_key: None,
        callback: None,
        decided_by: None,
        deny_reason: None,
        consumed_at: None,
        grant_id: None,
        on_timeout: TimeoutAction::Deny,
        prevent_self_approval: false,
        policy_rule: "default".into(),
        version: 1,
    }
}

/// An approver on Telegram.
pub fn kim() -> Actor {
    Actor::platform(Channel::Telegram, "42", "@kim", Surface::ApproverDm)
}

/// An approver on Discord.
pub fn bob() -> Actor {
    Actor::platform(Channel::Discord, "111111111111111111", "@bob", Surface::ApproverDm)
}

/// `a` after `actor` voted `d`.
pub fn vote(a: &Approval, actor: &Actor, d: Decision, reason: Option<&str>) -> Approval {
    match apply_vote(a, actor, d, reason.map(str::to_owned), T0) {
        Ok(VoteOutcome::Recorded(x) | VoteOutcome::Decided(x)) => x,
        other => panic!("unexpected vote outcome: {other:?}"),
    }
}

/// Every phase of one approval of `action` (quorum 2), named: pending, progress, approved_once,
/// approved_always, denied, expired, no_route, cancelled.
pub fn phases(action: Action) -> Vec<(&'static str, Approval)> {
    let mut a = approval(action, 2);
    if a.kind() != Kind::Plugin {
        let base = if a.kind() == Kind::Binding { ScopeBase::BindingAccount } else { ScopeBase::ExactArgv };
        a.grant_scope = Some(GrantScope { base, session: true, ttl_secs: None });
    }
    let progress = vote(&a, &kim(), Decision::AllowOnce, None);
    let once = vote(&progress, &bob(), Decision::AllowOnce, None);
    let always = if a.allowed_decisions.contains(&Decision::AllowAlways) {
        vote(&vote(&a, &kim(), Decision::AllowAlways, None), &bob(), Decision::AllowAlways, None)
    } else {
        once.clone()
    };
    let denied = vote(&a, &kim(), Decision::Deny, Some("too broad"));
    let expired = expire(&a, ExpiryCause::Timeout, a.expires_at)
        .unwrap_or_else(|| panic!("a pending approval expires"));
    let no_route =
        expire(&a, ExpiryCause::NoRoute, T0).unwrap_or_else(|| panic!("a pending approval expires"));
    let cancelled = cancel(&a, &Actor::token("ci"), false, T0).unwrap_or_else(|e| panic!("{e:?}"));
    vec![
        ("pending", a),
        ("progress", progress),
        ("approved_once", once),
        ("approved_always", always),
        ("denied", denied),
        ("expired", expired),
        ("no_route", no_route),
        ("cancelled", cancelled),
    ]
}

/// The three kinds of sample action, named: exec, plugin, binding.
pub fn kinds() -> [(&'static str, Action); 3] {
    [
        ("exec", exec_action(&["deploy", "--env", "prod"])),
        ("plugin", plugin_action()),
        ("binding", binding_action()),
    ]
}

/// The card view of `a` for `account`, 79 s after [`T0`].
pub fn view(a: &Approval, account: &AccountKey) -> CardView {
    let keyring = test_keyring();
    let redactor = Redactor::default();
    let ctx = CardContext {
        account,
        now: T0 + Duration::from_secs(79),
        keyring: &keyring,
        redactor: &redactor,
        public_url: None,
    };
    CardView::build(a, &ctx, true)
}

/// Every kind in every phase as `account` renders it, named `{kind}_{phase}`.
pub fn every_card(account: &AccountKey) -> Vec<(String, CardView)> {
    kinds()
        .into_iter()
        .flat_map(|(kind, action)| {
            phases(action).into_iter().map(move |(phase, a)| (format!("{kind}_{phase}"), a))
        })
        .map(|(name, a)| (name, view(&a, account)))
        .collect()
}
