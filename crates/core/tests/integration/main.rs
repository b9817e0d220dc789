//! Integration tests of assent-core, named after the spec requirements they check.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
mod cards;
mod lifecycle;
mod policy;
mod routing;
mod serde_types;

use std::time::Duration;

use assent_core::{clock::Timestamp, id::ApprovalId, model::*};

pub(crate) const T0: Timestamp = Timestamp(1_767_225_600_000);

pub(crate) fn exec_action(argv: &[&str]) -> Action {
    let req = ExecRequest {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        host: "build-1".into(),
        ..Default::default()
    };
    Action::Exec(req.into_action().unwrap())
}

pub(crate) fn plugin_action() -> Action {
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

pub(crate) fn binding_action() -> Action {
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

/// A pending approval of `action` with quorum `required`.
pub(crate) fn approval(action: Action, required: u8) -> Approval {
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

pub(crate) fn kim() -> Actor {
    Actor::platform(Channel::Telegram, "42", "@kim", Surface::ApproverDm)
}

pub(crate) fn bob() -> Actor {
    Actor::platform(Channel::Discord, "111111111111111111", "@bob", Surface::ApproverDm)
}
