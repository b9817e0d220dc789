use assent_core::{model::*, routing::*};

fn acct(channel: Channel, name: &str, approvers: &[&str]) -> AccountRouting {
    AccountRouting::new(AccountKey::new(channel, name), approvers.iter().map(|s| (*s).to_owned()).collect())
}

fn req<'a>(origin: Option<&'a Origin>, session_accounts: &'a [AccountKey]) -> RouteRequest<'a> {
    RouteRequest {
        kind: Kind::Exec,
        agent_id: Some("claude"),
        session_key: Some("agent:claude:main"),
        origin,
        session_accounts,
    }
}

fn origin(channel: Channel, account: &str, conversation: &str) -> Origin {
    Origin { channel, account: account.into(), conversation: conversation.into(), parent: None, thread: None }
}

#[test]
fn rt_1_enablement_needs_approvers_and_off_means_off() {
    let mut a = acct(Channel::Telegram, "main", &["1"]);
    assert!(a.is_active());
    a.enabled = Enablement::Off;
    assert!(!a.is_active());
    assert!(!a.is_approver(Kind::Exec, "1"), "off: no approval interactions");
    let empty = AccountRouting { enabled: Enablement::On, ..acct(Channel::Telegram, "main", &[]) };
    assert!(!empty.is_active(), "true + empty approvers routes nowhere");
    assert!(!empty.is_approver(Kind::Exec, ""), "fails closed");
}

#[test]
fn rt_2_approvers_per_kind_only() {
    let a = AccountRouting { kinds: vec![Kind::Plugin], ..acct(Channel::Telegram, "main", &["1"]) };
    assert!(a.is_approver(Kind::Plugin, "1"));
    assert!(!a.is_approver(Kind::Exec, "1"));
    assert!(!a.is_approver(Kind::Plugin, "2"));
}

#[test]
fn rt_3_agent_and_session_filters_must_all_pass() {
    let a = AccountRouting {
        agent_filter: vec!["claude".into()],
        session_filter: vec![
            SessionFilter::parse("^agent:claude:(main|ops)$").unwrap(),
            SessionFilter::parse("prod").unwrap(),
        ],
        ..acct(Channel::Telegram, "main", &["1"])
    };
    assert!(a.filters_pass(Some("claude"), Some("agent:claude:main")));
    assert!(a.filters_pass(Some("claude"), Some("deploy-prod-1")));
    assert!(!a.filters_pass(Some("codex"), Some("agent:claude:main")));
    assert!(!a.filters_pass(Some("claude"), Some("agent:claude:dev")));
    assert!(!a.filters_pass(Some("claude"), None));
    assert!(SessionFilter::parse(&format!("^{}", "a".repeat(300))).is_err());
    assert!(SessionFilter::parse("^(").is_err());
}

#[test]
fn rt_4_one_account_per_platform() {
    let accounts = [
        acct(Channel::Telegram, "main", &["1"]),
        acct(Channel::Telegram, "ops", &["2"]),
        acct(Channel::Discord, "main", &["111111111111111111"]),
    ];
    let o = origin(Channel::Telegram, "ops", "-100");
    let sel = select_accounts(&req(Some(&o), &[]), &accounts);
    assert_eq!(
        sel.chosen,
        [AccountKey::new(Channel::Discord, "main"), AccountKey::new(Channel::Telegram, "ops")]
    );
    let held = [AccountKey::new(Channel::Telegram, "main")];
    let sel = select_accounts(&req(None, &held), &accounts);
    assert!(sel.chosen.contains(&AccountKey::new(Channel::Telegram, "main")));
    let sel = select_accounts(&req(None, &[]), &accounts);
    assert_eq!(sel.ambiguous, [Channel::Telegram], "two eligible, no default");
    assert_eq!(sel.chosen, [AccountKey::new(Channel::Discord, "main")]);
    let mut with_default = accounts.clone();
    with_default[1].default = true;
    let sel = select_accounts(&req(None, &[]), &with_default);
    assert!(sel.chosen.contains(&AccountKey::new(Channel::Telegram, "ops")));
    assert!(sel.ambiguous.is_empty());
}

#[test]
fn rt_5_targets_follow_the_target_mode() {
    let o = origin(Channel::Telegram, "main", "-100");
    let base = acct(Channel::Telegram, "main", &["1", "2"]);
    let dm = plan_account(&req(Some(&o), &[]), &base);
    assert_eq!(dm.iter().map(|t| t.to.key()).collect::<Vec<_>>(), ["user:1", "user:2"]);
    assert!(dm.iter().all(|t| t.surface == Surface::ApproverDm && t.preference == Preference::Preferred));
    let channel = AccountRouting { target: TargetMode::Channel, ..base.clone() };
    let c = plan_account(&req(Some(&o), &[]), &channel);
    assert_eq!(
        c.iter().map(|t| (t.to.key(), t.surface)).collect::<Vec<_>>(),
        [("conv:-100".to_owned(), Surface::Origin)]
    );
    let fallback = plan_account(&req(None, &[]), &channel);
    assert!(
        fallback.iter().all(|t| t.preference == Preference::Fallback && t.surface == Surface::ApproverDm)
    );
    assert_eq!(fallback.len(), 2);
    let both = AccountRouting { target: TargetMode::Both, ..base };
    assert_eq!(plan_account(&req(Some(&o), &[]), &both).len(), 3);
}

#[test]
fn rt_6_conflicting_origins_mean_no_origin() {
    let a = origin(Channel::Telegram, "main", "-100");
    let b = origin(Channel::Telegram, "main", "-200");
    assert_eq!(resolve_origin(Some(&a), Some(&b)), None);
    assert_eq!(resolve_origin(Some(&a), Some(&a)), Some(a.clone()));
    assert_eq!(resolve_origin(None, Some(&b)), Some(b.clone()));
    assert_eq!(resolve_origin(Some(&a), None), Some(a));
}

#[test]
fn rt_7_forwards_add_cards_and_drop_duplicates_of_native_targets() {
    let main = AccountRouting { target: TargetMode::Channel, ..acct(Channel::Telegram, "main", &["1"]) };
    let o = origin(Channel::Telegram, "main", "-100");
    let forwards = [
        Forward {
            account: main.key.clone(),
            to: "-100".into(),
            thread: None,
            kinds: vec![Kind::Exec],
            buttons: true,
        },
        Forward {
            account: main.key.clone(),
            to: "-999".into(),
            thread: None,
            kinds: vec![Kind::Exec],
            buttons: true,
        },
        Forward {
            account: AccountKey::new(Channel::Slack, "audit"),
            to: "C1".into(),
            thread: None,
            kinds: vec![Kind::Exec],
            buttons: true,
        },
        Forward {
            account: main.key.clone(),
            to: "-777".into(),
            thread: None,
            kinds: vec![Kind::Plugin],
            buttons: true,
        },
    ];
    let (targets, _) = plan(&req(Some(&o), &[]), &[main], &forwards);
    let keys: Vec<_> = targets.iter().map(|t| (t.to.key(), t.surface, t.buttons)).collect();
    assert_eq!(
        keys,
        [
            ("conv:-100".to_owned(), Surface::Origin, true),
            ("conv:-999".to_owned(), Surface::Forward, true),
            ("conv:C1".to_owned(), Surface::Forward, false),
        ]
    );
}

#[test]
fn rt_8_planned_targets_are_deduplicated() {
    let o = origin(Channel::Telegram, "main", "1");
    let both = AccountRouting { target: TargetMode::Both, ..acct(Channel::Telegram, "main", &["1", "1"]) };
    let targets = plan_account(&req(Some(&o), &[]), &both);
    assert_eq!(
        targets.iter().map(|t| t.to.key()).collect::<Vec<_>>(),
        ["conv:1", "user:1"],
        "layer 3 keeps distinct addresses; the channel's dedupe_key merges them (layer 4)"
    );
}

#[test]
fn rt_9_notice_text_lists_other_surfaces_once() {
    let o = origin(Channel::Telegram, "main", "-100");
    let d = |channel, account: &str, surface| Delivered { channel, account: account.into(), surface };
    let delivered = [
        d(Channel::Discord, "main", Surface::ApproverDm),
        d(Channel::Discord, "main", Surface::ApproverDm),
        d(Channel::Console, "console", Surface::Console),
        d(Channel::Slack, "main", Surface::Forward),
    ];
    assert_eq!(
        notice_text("a1b2c3d4", &o, &delivered, false).unwrap(),
        "Approval a1b2c3d4 is waiting in Discord DMs, Slack and the web console."
    );
    let at_origin =
        [d(Channel::Telegram, "main", Surface::Origin), d(Channel::Discord, "main", Surface::ApproverDm)];
    assert_eq!(notice_text("a1b2c3d4", &o, &at_origin, false), None, "origin got the card");
    let same_platform_dms = [d(Channel::Telegram, "main", Surface::ApproverDm)];
    assert_eq!(notice_text("a1b2c3d4", &o, &same_platform_dms, false), None);
    assert_eq!(
        notice_text("a1b2c3d4", &o, &same_platform_dms, true).unwrap(),
        "Approval a1b2c3d4 is waiting in Telegram DMs."
    );
    assert_eq!(join_and(vec!["A".into(), "B".into()]), "A and B");
}
