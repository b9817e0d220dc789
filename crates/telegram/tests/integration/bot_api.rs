//! The Telegram channel against the fake Bot API server: the channel contract (CAP-11) and the
//! Telegram behaviours (CH-TG-*), through the same teloxide client production uses.

use std::{sync::Arc, time::Duration};

use assent_core::model::{AuditType, Decision, Status};
use assent_fake_telegram::Fault;
use assent_testing::{channel_contract_tests, exec_request};

use crate::harness::{APPROVER, Rig, TelegramHarness};

channel_contract_tests!(async {
    Arc::new(TelegramHarness::start().await) as Arc<dyn assent_testing::channel_contract::ChannelHarness>
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_3_each_press_is_answered_exactly_once_with_the_precheck_text() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.card(&a.id).await;
    let allow = rig.token(&card, Decision::AllowOnce);
    let query = rig.fake.press(APPROVER, APPROVER, card.id, &allow);
    let answers = rig.answers(&query).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0].text.as_deref(), Some("Recording: allow once"));
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    // The card ends without a keyboard, and shows who decided.
    rig.until("the card is final", || {
        let m = rig.fake.bot_messages(APPROVER).remove(0);
        m.buttons.iter().all(Vec::is_empty) && m.text.contains("Approved once by")
    })
    .await;
    assert_eq!(rig.fake.answers(&query).len(), 1, "answered once, never twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_3_a_press_on_a_message_too_old_to_be_included_decides_by_its_token() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.card(&a.id).await;
    let deny = rig.token(&card, Decision::Deny);
    let query = rig.fake.press_without_message(APPROVER, APPROVER, card.id, &deny);
    assert_eq!(rig.answers(&query).await[0].text.as_deref(), Some("Recording: deny"));
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Denied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_4_an_approver_who_never_started_the_bot_is_a_visible_permanent_failure() {
    let rig = Rig::start(&[]).await; // Nobody has started the bot.
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let failure = rig.audit_of(&a.id, AuditType::DeliveryFailed).await;
    let details = failure.details.to_string();
    assert!(details.contains("can't initiate conversation"), "{details}");
    assert!(details.contains("ask them to send /start to the bot"), "{details}");
    assert!(details.contains("permanent"), "{details}");
    assert!(!details.contains(assent_fake_telegram::TOKEN), "the token never reaches the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_6_a_429_is_waited_out_and_the_card_is_delivered_once() {
    let rig = Rig::start(&[APPROVER]).await;
    rig.fake.fail_next("sendMessage", Fault::TooManyRequests { retry_after: 1 });
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    rig.card(&a.id).await;
    assert_eq!(rig.fake.bot_messages(APPROVER).len(), 1, "delivered once");
    assert_eq!(rig.fake.calls("sendMessage"), 2, "refused once, then sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_6_a_dropped_connection_or_a_5xx_ends_delivered_never_duplicated() {
    for fault in [Fault::ServerError(502), Fault::Drop] {
        let rig = Rig::start(&[APPROVER]).await;
        rig.fake.fail_next("sendMessage", fault);
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        rig.card(&a.id).await;
        assert_eq!(rig.fake.bot_messages(APPROVER).len(), 1, "{fault:?}: delivered once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_5_typed_approve_is_answered_in_place_and_other_bots_commands_are_ignored() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    rig.card(&a.id).await;
    rig.fake.type_text(APPROVER, APPROVER, None, &format!("/approve@someotherbot {} deny", a.short_ref()));
    rig.fake.type_text(
        APPROVER,
        APPROVER,
        None,
        &format!("/approve@assent_test_bot {} allow-once", a.short_ref()),
    );
    assert_eq!(rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap().status, Status::Approved);
    let answer = format!("Recorded: allow once for {}.", a.short_ref());
    rig.until("the command is answered", || rig.fake.bot_messages(APPROVER).iter().any(|m| m.text == answer))
        .await;
    let commands = rig.fake.commands();
    assert_eq!(commands[0]["command"], "approve", "{commands}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_2_full_command_sends_the_whole_text_privately_to_the_presser() {
    let rig = Rig::start(&[APPROVER]).await;
    let long = "y".repeat(3000);
    let a = rig.bed.handle.create(exec_request(&["echo", &long, &long])).await.unwrap();
    let card = rig.card(&a.id).await;
    assert!(card.text.contains("Showing "), "{}", card.text);
    let full = card.buttons[0].iter().find(|(label, _)| label == "Full command").unwrap().1.clone();
    let query = rig.fake.press(APPROVER, APPROVER, card.id, &full);
    assert_eq!(
        rig.answers(&query).await[0].text.as_deref(),
        Some("Sending you the full command in a private chat.")
    );
    rig.until("the full text arrives", || {
        let sent: String = rig.fake.bot_messages(APPROVER).iter().skip(1).map(|m| m.text.clone()).collect();
        sent.matches('y').count() >= 6000
    })
    .await;
    assert_eq!(
        rig.bed.store.approval(&a.id).await.unwrap().unwrap().status,
        Status::Pending,
        "nothing decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_3_a_slow_or_failing_answer_never_keeps_the_press_from_deciding() {
    for fault in [Fault::Slow(Duration::from_secs(5)), Fault::TooManyRequests { retry_after: 3 }, Fault::Drop]
    {
        let rig = Rig::start(&[APPROVER]).await;
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.card(&a.id).await;
        rig.fake.fail_next("answerCallbackQuery", fault);
        rig.fake.press(APPROVER, APPROVER, card.id, &rig.token(&card, Decision::AllowOnce));
        let decided = rig.bed.handle.wait(&a.id, Duration::from_secs(30)).await.unwrap();
        assert_eq!(decided.status, Status::Approved, "{fault:?}");
        assert_eq!(rig.fake.calls("answerCallbackQuery"), 1, "{fault:?}: answered once, not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_6_cards_to_one_chat_are_paced_so_telegram_never_refuses_them() {
    let rig = Rig::start(&[APPROVER]).await;
    let mut refs = Vec::new();
    // Eight at once: sent unpaced, the seventh would be refused (six in any five seconds).
    for n in 0..8 {
        refs.push(rig.bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap().id);
    }
    for id in &refs {
        rig.card(id).await;
    }
    assert_eq!(rig.fake.calls("sendMessage"), 8, "no send was refused with 429: they were paced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_7_an_edit_that_changes_nothing_counts_as_done() {
    use assent_core::capability::{ApprovalCapability, Transport};
    use assent_telegram::{TelegramCard, TelegramEntry};
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["ls"])).await.unwrap();
    let card = rig.card(&a.id).await;
    let entry = TelegramEntry { chat_id: APPROVER, message_id: i32::try_from(card.id).unwrap() };
    let same = TelegramCard { html: card.html.clone(), buttons: card.buttons.concat() };
    rig.channel().transport().update(&entry, &same).await.unwrap();
    let refused = rig.fake.calls("editMessageText");
    assert_eq!(refused, 1, "Telegram said \"message is not modified\", and that is success");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_tg_4_a_card_for_a_topic_that_is_gone_goes_to_the_group() {
    use assent_core::{
        capability::{ApprovalCapability, PrepareOutcome, Transport},
        model::Surface,
        routing::{PlannedTarget, Preference, TargetAddr},
    };
    let rig = Rig::start(&[APPROVER]).await;
    let forum = rig.fake.group("Ops", true);
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = assent_telegram::render(&assent_testing::samples::view(&a, &rig.channel().account())).unwrap();
    let target = PlannedTarget {
        account: rig.channel().account(),
        to: TargetAddr::Conversation { conversation: forum.to_string(), thread: Some("424242".to_owned()) },
        surface: Surface::Origin,
        preference: Preference::Preferred,
        buttons: true,
    };
    let PrepareOutcome::Ready(prepared) = rig.channel().transport().prepare(&target).await.unwrap() else {
        panic!("prepared")
    };
    rig.channel().transport().deliver(&prepared, &card).await.unwrap();
    let sent = rig.fake.bot_messages(forum);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].thread, None, "after \"message thread not found\", the group itself");
}
