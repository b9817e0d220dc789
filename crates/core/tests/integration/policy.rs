use std::time::Duration;

use assent_core::{id::GrantId, model::*, policy::*};

use assent_testing::samples::{exact, grant};

use crate::{T0, approval, binding_action, exec_action, kim, plugin_action};

fn req(action: Action) -> NewApproval {
    NewApproval::new(action, "token:ci")
}

fn rule(name: &str, matcher: RuleMatch) -> PolicyRule {
    PolicyRule { name: name.into(), matcher, ..PolicyRule::implicit() }
}

#[test]
fn po_1_first_matching_rule_wins_then_the_implicit_one() {
    let policy = Policy {
        rules: vec![
            PolicyRule {
                quorum: 2,
                ..rule("deploys", RuleMatch { executable: Some("deploy".into()), ..Default::default() })
            },
            rule("execs", RuleMatch { kind: Some(Kind::Exec), ..Default::default() }),
        ],
        ..Policy::default()
    };
    let e = policy.evaluate(&req(exec_action(&["deploy", "--prod"])), &[], T0).unwrap();
    assert_eq!((e.rule.as_str(), e.quorum), ("deploys", 2));
    assert_eq!(policy.evaluate(&req(exec_action(&["ls"])), &[], T0).unwrap().rule, "execs");
    let implicit = policy.evaluate(&req(plugin_action()), &[], T0).unwrap();
    assert_eq!((implicit.rule.as_str(), implicit.quorum), ("default", 1));
    assert_eq!(implicit.on_timeout, TimeoutAction::Deny);
}

#[test]
fn po_2_grants_skip_the_human_unless_ask_is_always() {
    let g = grant(Kind::Exec, exact(&["ls", "-l"]));
    let policy = Policy::default();
    assert_eq!(
        policy.evaluate(&req(exec_action(&["ls", "-l"])), std::slice::from_ref(&g), T0).unwrap().auto_approve,
        Some(g.id.clone())
    );
    let always = Policy {
        rules: vec![PolicyRule { ask: Ask::Always, ..rule("strict", RuleMatch::default()) }],
        ..Policy::default()
    };
    let e = always.evaluate(&req(exec_action(&["ls", "-l"])), &[g], T0).unwrap();
    assert_eq!(e.auto_approve, None);
    assert!(!e.allowed_decisions.contains(&Decision::AllowAlways), "ask = always hides allow-always");
}

#[test]
fn po_2_config_allow_entries_count_as_grants() {
    let mut g = grant(Kind::Exec, exact(&["uptime"]));
    g.source = GrantSource::Config;
    let policy = Policy { allow: vec![g.clone()], ..Policy::default() };
    assert_eq!(policy.evaluate(&req(exec_action(&["uptime"])), &[], T0).unwrap().auto_approve, Some(g.id));
}

fn input<'a>(action: &'a Action) -> MatchInput<'a> {
    MatchInput { action, agent_id: Some("claude"), session_key: Some("s1"), now: T0 }
}

#[test]
fn po_3_exact_argv_is_byte_equal_and_checks_recorded_cwd() {
    let g = grant(Kind::Exec, exact(&["python3", "safe.py"]));
    assert!(grant_matches(&g, &input(&exec_action(&["python3", "safe.py"]))));
    assert!(!grant_matches(&g, &input(&exec_action(&["python3", "evil.py"]))));
    assert!(!grant_matches(&g, &input(&exec_action(&["python3", "safe.py", "--all"]))));
    let mut with_cwd = g.clone();
    with_cwd.matcher = GrantMatcher::ExactArgv {
        argv: vec!["make".into()],
        executable: None,
        cwd: Some("/srv".into()),
        host: "build-1".into(),
        env_digest: None,
    };
    assert!(!grant_matches(&with_cwd, &input(&exec_action(&["make"]))), "cwd recorded but not sent");
}

#[test]
fn po_3_pattern_matches_the_unwrapped_absolute_executable() {
    let g = grant(
        Kind::Exec,
        GrantMatcher::Pattern {
            executable: "/usr/bin/git".into(),
            args: vec!["pull".into(), "**".into()],
            host: "build-1".into(),
        },
    );
    assert!(grant_matches(&g, &input(&exec_action(&["/usr/bin/git", "pull", "--rebase"]))));
    assert!(grant_matches(&g, &input(&exec_action(&["nice", "-n", "5", "/usr/bin/git", "pull"]))));
    assert!(!grant_matches(&g, &input(&exec_action(&["/usr/bin/git", "push"]))));
    assert!(!grant_matches(&g, &input(&exec_action(&["git", "pull"]))), "relative executable is unknown");
    assert!(
        !grant_matches(&g, &input(&exec_action(&["sh", "-c", "/usr/bin/git pull"]))),
        "PO-6 scripts are opaque"
    );
}

#[test]
fn po_3_session_ttl_and_revocation_limit_grants() {
    let mut g = grant(Kind::Exec, exact(&["ls"]));
    g.constraints.session_key = Some("s1".into());
    g.constraints.agent_id = Some("claude".into());
    let a = exec_action(&["ls"]);
    assert!(grant_matches(&g, &input(&a)));
    assert!(!grant_matches(&g, &MatchInput { agent_id: Some("other"), ..input(&a) }));
    assert!(!grant_matches(&g, &MatchInput { agent_id: None, ..input(&a) }));
    assert!(!grant_matches(&g, &MatchInput { session_key: Some("s2"), ..input(&a) }));
    g.constraints.expires_at = Some(T0 + Duration::from_secs(60));
    assert!(!grant_matches(&g, &MatchInput { now: T0 + Duration::from_secs(60), ..input(&a) }));
    g.constraints.expires_at = None;
    g.revoked_at = Some(T0);
    assert!(!grant_matches(&g, &input(&a)));
}

#[test]
fn po_3_binding_grants_need_root_channel_and_account() {
    let b = binding_action();
    let Action::Binding(req) = &b else { unreachable!() };
    let good = grant(
        Kind::Binding,
        GrantMatcher::BindingPlugin {
            plugin_root: req.plugin.root.clone(),
            channel: Channel::Telegram,
            account: "main".into(),
        },
    );
    assert!(grant_matches(&good, &input(&b)));
    let mut reinstalled = good.clone();
    reinstalled.matcher = GrantMatcher::BindingPlugin {
        plugin_root: "/opt/plugins/codex@2".into(),
        channel: Channel::Telegram,
        account: "main".into(),
    };
    assert!(!grant_matches(&reinstalled, &input(&b)), "a new root is not trusted");
    let mut other_account = good;
    other_account.matcher = GrantMatcher::BindingPlugin {
        plugin_root: req.plugin.root.clone(),
        channel: Channel::Telegram,
        account: "other".into(),
    };
    assert!(!grant_matches(&other_account, &input(&b)));
}

#[test]
fn po_5_allow_always_on_a_wrapper_grants_the_exact_argv() {
    let mut a = approval(exec_action(&["sudo", "systemctl", "restart", "web"]), 1);
    a.status = Status::Approved;
    let scope =
        GrantScope { base: ScopeBase::Pattern { args: vec!["**".into()] }, session: false, ttl_secs: None };
    let g = grant_for(&a, &scope, &kim(), GrantId::from_bits(1), T0).unwrap();
    assert_eq!(g.matcher, exact(&["sudo", "systemctl", "restart", "web"]));
    let inline = approval(exec_action(&["/usr/bin/python3", "-c", "import os"]), 1);
    assert!(matches!(
        grant_for(&inline, &scope, &kim(), GrantId::from_bits(2), T0).unwrap().matcher,
        GrantMatcher::ExactArgv { .. }
    ));
}

#[test]
fn po_5_honest_pattern_grants_are_created_when_allowed() {
    let a = approval(exec_action(&["/usr/bin/git", "pull"]), 1);
    let scope = GrantScope {
        base: ScopeBase::Pattern { args: vec!["pull".into(), "**".into()] },
        session: true,
        ttl_secs: Some(3600),
    };
    let g = grant_for(&a, &scope, &kim(), GrantId::from_bits(3), T0).unwrap();
    assert_eq!(
        g.matcher,
        GrantMatcher::Pattern {
            executable: "/usr/bin/git".into(),
            args: vec!["pull".into(), "**".into()],
            host: "build-1".into(),
        }
    );
    assert_eq!(g.constraints.session_key.as_deref(), Some("agent:claude:main"));
    assert_eq!(g.constraints.expires_at, Some(T0 + Duration::from_secs(3600)));
}

#[test]
fn po_6_shell_scripts_only_get_exact_argv_grants() {
    let a = approval(exec_action(&["sh", "-c", "git pull && make"]), 1);
    let scope =
        GrantScope { base: ScopeBase::Pattern { args: vec!["**".into()] }, session: false, ttl_secs: None };
    let g = grant_for(&a, &scope, &kim(), GrantId::from_bits(4), T0).unwrap();
    assert_eq!(g.matcher, exact(&["sh", "-c", "git pull && make"]));
}

#[test]
fn po_7_scope_labels_are_honest_and_pattern_needs_the_rule() {
    assert_eq!(GrantScope::exact().label(), "this exact command");
    let s = GrantScope { base: ScopeBase::ExactArgv, session: true, ttl_secs: Some(8 * 3600) };
    assert_eq!(s.label(), "this exact command in this session for 8h");
    let pattern =
        GrantScope { base: ScopeBase::Pattern { args: vec!["**".into()] }, session: false, ttl_secs: None };
    let a = approval(exec_action(&["/usr/bin/git", "pull"]), 1);
    assert_eq!(
        PolicyRule::implicit().allows_scope(&pattern, &a),
        Err(ScopeError::NotAllowed("pattern".into()))
    );
    let permissive = PolicyRule { grant_scope: vec![ScopeOption::Pattern], ..PolicyRule::implicit() };
    assert!(permissive.allows_scope(&pattern, &a).is_ok());
    assert!(ScopeOption::parse("ttl:30s").unwrap_err().contains("between 1m and 90d"));
    assert!(ScopeOption::parse("ttl:91d").is_err());
    assert_eq!(ScopeOption::parse("ttl:8h").unwrap(), ScopeOption::Ttl(Duration::from_secs(8 * 3600)));
    assert!(ScopeOption::parse("forever").unwrap_err().contains("exact-argv"));
}

#[test]
fn po_7_rule_scope_options_shape_the_offered_scope() {
    let policy = Policy {
        rules: vec![PolicyRule {
            grant_scope: vec![
                ScopeOption::ExactArgv,
                ScopeOption::Session,
                ScopeOption::Ttl(Duration::from_secs(3600)),
            ],
            ..rule("r", RuleMatch::default())
        }],
        ..Policy::default()
    };
    let mut in_session = req(exec_action(&["ls"]));
    in_session.session_key = Some("s1".into());
    let e = policy.evaluate(&in_session, &[], T0).unwrap();
    assert_eq!(e.grant_scope.unwrap().label(), "this exact command in this session for 1h");
    let e = policy.evaluate(&req(exec_action(&["ls"])), &[], T0).unwrap();
    assert_eq!(e.grant_scope, None, "a session scope without a session is not offered");
    assert!(!e.allowed_decisions.contains(&Decision::AllowAlways));
}

#[test]
fn po_8_no_rule_or_grant_means_a_human_is_asked() {
    let e = Policy::default().evaluate(&req(exec_action(&["rm", "-rf", "/"])), &[], T0).unwrap();
    assert!(e.auto_approve.is_none());
}

#[test]
fn po_12_grant_subjects_are_listable() {
    assert_eq!(grant_subject(&grant(Kind::Exec, exact(&["rm", "my file"]))), "rm 'my file'");
}

#[test]
fn po_13_no_request_field_can_pre_approve() {
    let mut r = req(exec_action(&["ls"]));
    r.agent_id = Some("approved".into());
    r.session_key = Some("status=approved".into());
    r.idempotency_key = Some("allow-always".into());
    r.callback = Some("https://example.org/approve".into());
    let e = Policy::default().evaluate(&r, &[], T0).unwrap();
    assert!(e.auto_approve.is_none());
}

#[test]
fn dm_3_plugin_fields_are_validated_with_the_field_named() {
    let Action::Plugin(good) = plugin_action() else { unreachable!() };
    assert!(good.validate().is_ok());
    let bad_id = PluginRequest { plugin_id: "Jira!".into(), ..good.clone() };
    assert_eq!(bad_id.validate().unwrap_err().field, "plugin_id");
    let long_title = PluginRequest { title: "x".repeat(81), ..good.clone() };
    assert_eq!(long_title.validate().unwrap_err().field, "title");
    let no_deny = PluginRequest { allowed_decisions: Some(vec![Decision::AllowOnce]), ..good };
    assert_eq!(no_deny.validate().unwrap_err().field, "allowed_decisions");
}

#[test]
fn dm_4_bindings_are_normalized_and_keyed_by_conversation() {
    let Action::Binding(b) = binding_action() else { unreachable!() };
    let mut messy = b.clone();
    messy.conversation.account = "  ".into();
    messy.conversation.conversation = " -1001234 ".into();
    let n = messy.validated().unwrap();
    assert_eq!(
        (n.conversation.account.as_str(), n.conversation.conversation.as_str()),
        ("default", "-1001234")
    );
    let mut other_thread = b.conversation.clone();
    other_thread.thread = Some("8".into());
    assert_ne!(b.conversation.binding_key(), other_thread.binding_key());
    let long = BindingRequest { summary: "x".repeat(281), ..b };
    assert_eq!(long.validated().unwrap_err().field, "summary");
}

#[test]
fn dm_6_allow_always_is_removed_when_no_honest_grant_exists() {
    let p = Policy::default();
    assert!(
        !p.evaluate(&req(plugin_action()), &[], T0)
            .unwrap()
            .allowed_decisions
            .contains(&Decision::AllowAlways)
    );
    let strict = Policy {
        rules: vec![PolicyRule { allow_always: false, ..rule("no-always", RuleMatch::default()) }],
        ..Policy::default()
    };
    let e = strict.evaluate(&req(exec_action(&["ls"])), &[], T0).unwrap();
    assert_eq!(e.allowed_decisions, [Decision::AllowOnce, Decision::Deny]);
    assert!(e.grant_scope.is_none());
    assert!(
        p.evaluate(&req(exec_action(&["ls"])), &[], T0)
            .unwrap()
            .allowed_decisions
            .contains(&Decision::AllowAlways)
    );
}

#[test]
fn dm_7_timeouts_default_per_kind_and_out_of_range_is_refused_not_clamped() {
    let p = Policy::default();
    assert_eq!(p.evaluate(&req(exec_action(&["ls"])), &[], T0).unwrap().timeout, Duration::from_secs(1800));
    assert_eq!(p.evaluate(&req(plugin_action()), &[], T0).unwrap().timeout, Duration::from_secs(120));
    assert_eq!(p.evaluate(&req(binding_action()), &[], T0).unwrap().timeout, Duration::from_secs(600));
    let mut short = req(exec_action(&["ls"]));
    short.timeout = Some(Duration::from_secs(5));
    let err = p.evaluate(&short, &[], T0).unwrap_err();
    assert_eq!(err.min, Duration::from_secs(10));
    let mut long = req(plugin_action());
    long.timeout = Some(Duration::from_secs(601));
    assert!(p.evaluate(&long, &[], T0).is_err());
}

#[test]
fn dm_10_grants_carry_source_creator_and_approval() {
    let mut a = approval(exec_action(&["ls"]), 1);
    a.status = Status::Approved;
    let g = grant_for(&a, &GrantScope::exact(), &kim(), GrantId::from_bits(9), T0).unwrap();
    assert_eq!(
        (g.kind, g.source, g.created_by.as_str()),
        (Kind::Exec, GrantSource::AllowAlways, "telegram:42")
    );
    assert_eq!(g.approval_id, Some(a.id.clone()));
    assert!(
        grant_for(&approval(plugin_action(), 1), &GrantScope::exact(), &kim(), GrantId::from_bits(10), T0)
            .is_err()
    );
}
