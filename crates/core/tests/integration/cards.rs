use std::time::Duration;

use assent_core::{
    card::*,
    model::*,
    text::Redactor,
    token::{Keyring, TokenKey},
};

use assent_testing::samples::{self, vote};

use crate::{T0, approval, binding_action, exec_action, kim, plugin_action};

fn ctx<'a>(
    account: &'a AccountKey,
    keyring: &'a Keyring,
    redactor: &'a Redactor,
    public_url: Option<&'a str>,
) -> CardContext<'a> {
    CardContext { account, now: T0 + Duration::from_secs(79), keyring, redactor, public_url }
}

fn build(a: &Approval) -> CardView {
    samples::view(a, &AccountKey::new(Channel::Telegram, "main"))
}

#[test]
fn cap_2_card_snapshots_for_every_kind_and_phase() {
    for (kind, action) in samples::kinds() {
        for (phase, a) in samples::phases(action) {
            let view = build(&a);
            assert_eq!(view, build(&a), "render input is deterministic");
            insta::assert_json_snapshot!(format!("card_{kind}_{phase}"), view);
        }
    }
}

#[test]
fn ch_card_1_titles_buttons_and_final_texts() {
    let exec = build(&approval(exec_action(&["ls"]), 1));
    assert_eq!(exec.title, "Approval needed: run a command");
    assert_eq!(
        exec.controls.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(),
        ["Allow once", "Always allow: this exact command", "Deny"]
    );
    assert_eq!(exec.footer, "Ref 014d2pf2 · expires in 28m 41s");
    let plugin = build(&approval(plugin_action(), 1));
    assert_eq!(plugin.title, "Approval needed: Close 14 tickets");
    assert_eq!(plugin.severity, Some(Severity::Critical));
    let binding = build(&approval(binding_action(), 1));
    assert_eq!(binding.title, "Approval needed: let Codex take this conversation");
    assert_eq!(
        binding.controls.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(),
        ["Allow here", "Allow on this account", "Deny"]
    );
    let progress = build(&vote(&approval(exec_action(&["ls"]), 2), &kim(), Decision::AllowOnce, None));
    assert!(progress.footer.ends_with("Approvals 1/2"), "{}", progress.footer);
    assert_eq!(progress.controls.len(), 3, "controls kept while votes are pending");
    let denied = build(&vote(&approval(exec_action(&["ls"]), 1), &kim(), Decision::Deny, Some("too broad")));
    assert_eq!(denied.outcome.as_deref(), Some("Denied by @kim (Telegram): too broad"));
    assert!(denied.controls.is_empty());
}

#[test]
fn ch_card_1_sh_c_gets_a_script_block_and_fields_are_named() {
    let mut a = approval(exec_action(&["sh", "-c", "make && make install"]), 1);
    if let Action::Exec(e) = &mut a.action {
        e.cwd = Some("/srv/app".into());
        e.env_keys = vec!["PATH".into(), "TOKEN".into()];
    }
    let v = build(&a);
    assert_eq!(v.blocks.iter().map(|b| b.label).collect::<Vec<_>>(), ["Command", "Script"]);
    assert_eq!(v.blocks[1].text.full, "make && make install");
    let labels: Vec<_> = v.fields.iter().map(|f| f.label).collect();
    assert_eq!(labels, ["Agent", "Session", "Host", "Directory", "Env keys"]);
    assert_eq!(v.fields.last().unwrap().value, "PATH, TOKEN", "names only");
}

#[test]
fn po_9_cards_are_redacted_and_count_hidden_values() {
    let v = build(&approval(
        exec_action(&["curl", "-H", "Authorization: Bearer abcdefghijklmnop", "https://x"]),
        1,
    ));
    assert!(!v.blocks[0].text.full.contains("abcdefghijklmnop"));
    assert_eq!(v.hidden_secrets, 1);
}

#[test]
fn po_10_requester_text_is_sanitized_and_mentions_neutralized() {
    let mut p = approval(plugin_action(), 1);
    if let Action::Plugin(x) = &mut p.action {
        x.title = "Ping @everyone\u{202E}now".into();
    }
    let v = build(&p);
    assert!(v.title.contains("\\u{202E}"), "{}", v.title);
    assert!(!v.title.contains("@everyone"));
}

#[test]
fn po_11_cut_cards_say_so_and_stay_honest() {
    let long: String = "x".repeat(2500);
    let a = approval(exec_action(&["echo", &long, &long]), 1);
    let account = AccountKey::new(Channel::Telegram, "main");
    let keyring = Keyring::new(TokenKey::new([42; 32]), vec![]);
    let redactor = Redactor::default();
    let plain = ctx(&account, &keyring, &redactor, None);
    let view = CardView::build(&a, &plain, true);
    let private = view.fit(3000, true);
    assert_eq!(private.text.notice.as_deref(), Some("Showing 3,000 of 5,006 characters"));
    assert_eq!(private.controls.last().unwrap().label, "Full command");
    let deny_only = view.fit(3000, false);
    assert_eq!(deny_only.controls.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["Deny"]);
    assert!(deny_only.note.unwrap().contains("server.public_url"));
    let linked = ctx(&account, &keyring, &redactor, Some("https://approve.example.org/"));
    let view = CardView::build(&a, &linked, true);
    let with_link = view.fit(3000, false);
    assert_eq!(with_link.controls.len(), 3);
    assert_eq!(with_link.note.unwrap(), format!("Full text: https://approve.example.org/a/{}", a.id));
}

#[test]
fn ch_card_2_every_control_carries_a_verifiable_token_for_its_account() {
    let a = approval(exec_action(&["ls"]), 1);
    let account = AccountKey::new(Channel::Telegram, "main");
    let keyring = Keyring::new(TokenKey::new([42; 32]), vec![]);
    for c in build(&a).controls {
        let t = keyring.verify(&c.token, &account).unwrap();
        assert_eq!(t.id, a.id);
        assert_eq!(t.action, assent_core::token::TokenAction::Decide(c.decision.unwrap()));
    }
}
