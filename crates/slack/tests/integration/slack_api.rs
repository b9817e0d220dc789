//! The Slack channel against the fake Slack: the channel contract (CAP-11) in both modes, and
//! the Slack behaviours (CH-SL-*), through slack-morphism's client, as in production.

use std::time::Duration;

use assent_core::{
    model::{Channel, Decision, Mode as Mode2, NewApproval, Origin, Status},
    routing::TargetMode,
};
use assent_fake_slack::{APP_ID, Fault, TEAM_ID};
use assent_testing::exec_request;
use serde_json::json;

use crate::harness::{self, APPROVER, Mode, OUTSIDER, Rig, acked, label, routing, until};

mod socket_mode {
    use assent_testing::channel_contract_tests;

    use crate::harness::{Mode, SlackHarness};

    channel_contract_tests!(async {
        std::sync::Arc::new(SlackHarness::start(Mode::Socket).await)
            as std::sync::Arc<dyn assent_testing::channel_contract::ChannelHarness>
    });
}

mod http_mode {
    use assent_testing::channel_contract_tests;

    use crate::harness::{Mode, SlackHarness};

    channel_contract_tests!(async {
        std::sync::Arc::new(SlackHarness::start(Mode::Http).await)
            as std::sync::Arc<dyn assent_testing::channel_contract::ChannelHarness>
    });
}

const WAIT: Duration = Duration::from_secs(30);

fn from_channel(channel: &str, thread: Option<&str>, argv: &[&str]) -> NewApproval {
    let mut request = exec_request(argv);
    request.origin = Some(Origin {
        channel: Channel::Slack,
        account: "main".to_owned(),
        conversation: channel.to_owned(),
        parent: None,
        thread: thread.map(str::to_owned),
    });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_4_a_click_is_acknowledged_first_then_recorded_and_the_card_loses_its_buttons() {
    for mode in [Mode::Socket, Mode::Http] {
        let rig = Rig::start(mode, &[APPROVER]).await;
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let click = rig.fake.click(APPROVER, &card.channel, &card.ts, &label(&card, Decision::AllowOnce));
        let delivery = acked(&rig.fake, &click).await;
        assert!(delivery.acked.is_some() && !delivery.failed, "{mode:?}: {delivery:?}");
        assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved);
        let done =
            until("the final card", || Some(rig.message(&card.channel, &card.ts)).filter(|m| m.edits > 0))
                .await;
        assert!(
            done.buttons.is_empty() && done.shown.contains("Approved once by"),
            "{mode:?}: {}",
            done.shown
        );
        assert!(done.blocks.iter().all(|b| b["type"] != "actions"), "{mode:?}: no actions block left");
    }
}

/// A click missing the clicker: nothing can be recorded, so nothing is acknowledged, and Slack
/// shows the person an error instead of a silent success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_6_a_click_that_cannot_be_read_is_not_acknowledged() {
    for mode in [Mode::Socket, Mode::Http] {
        let rig = Rig::start(mode, &[APPROVER]).await;
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let token = &card.buttons[0].2;
        let payload = json!({
            "type": "block_actions", "team": { "id": TEAM_ID }, "api_app_id": APP_ID,
            "container": { "type": "message", "channel_id": card.channel, "message_ts": card.ts },
            "actions": [{ "type": "button", "action_id": "assent.decide.allow-once", "value": token }],
        });
        let delivery = rig.fake.deliver_payload("interactive", payload);
        let d = until("the delivery fails", || rig.fake.delivery(&delivery).filter(|d| d.failed)).await;
        assert!(d.acked.is_none(), "{mode:?}: {d:?}");
        assert_eq!(rig.bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_2_a_click_from_another_workspace_or_app_decides_nothing() {
    for mode in [Mode::Socket, Mode::Http] {
        let rig = Rig::start(mode, &[APPROVER]).await;
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let token = &card.buttons[0].2;
        for (team, app) in [("T0OTHERTEAM", APP_ID), (TEAM_ID, "A0OTHERAPP1")] {
            let payload = json!({
                "type": "block_actions", "team": { "id": team }, "api_app_id": app,
                "user": { "id": APPROVER, "username": "kim", "team_id": team },
                "container": { "type": "message", "channel_id": card.channel, "message_ts": card.ts },
                "actions": [{ "type": "button", "action_id": "assent.decide.allow-once", "value": token }],
            });
            let delivery = rig.fake.deliver_payload("interactive", payload);
            until("the delivery fails", || rig.fake.delivery(&delivery).filter(|d| d.failed)).await;
        }
        assert_eq!(rig.bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_5_a_request_from_a_thread_is_carded_and_answered_in_that_thread() {
    let fake = harness::fake().await;
    let channel = fake.channel();
    let mut r = routing(&[APPROVER]);
    r.target = TargetMode::Channel;
    let rig = Rig::with(fake, Mode::Socket, r).await;
    // The thread's parent: a message someone typed (it mentions nothing assent acts on).
    rig.fake.type_text(OUTSIDER, &channel, "deploying the canary", None);
    let parent = until("the parent", || rig.fake.messages(&channel).into_iter().next()).await;
    let a = rig.bed.handle.create(from_channel(&channel, Some(&parent.ts), &["deploy"])).await.unwrap();
    let card = until("the card", || harness::cards_in(&rig.fake, &channel, &a.id).pop()).await;
    assert_eq!(card.thread_ts.as_deref(), Some(parent.ts.as_str()));
    rig.fake.type_text(APPROVER, &channel, &format!("approve {} deny", a.short_ref()), Some(&parent.ts));
    assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Denied);
    let answer = until("the answer", || harness::ephemerals(&rig.fake, &channel, APPROVER).pop()).await;
    assert_eq!(answer.thread_ts.as_deref(), Some(parent.ts.as_str()), "answered in the thread");
    assert!(answer.text.starts_with("Recorded"), "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_7_the_slash_command_answers_privately_and_an_empty_one_gets_the_usage() {
    let rig = Rig::start(Mode::Http, &[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    let empty = rig.fake.slash(APPROVER, &card.channel, "");
    assert!(acked(&rig.fake, &empty).await.acked.is_some());
    let usage = until("the usage", || harness::ephemerals(&rig.fake, &card.channel, APPROVER).pop()).await;
    assert!(usage.text.contains("/approve"), "{}", usage.text);
    rig.fake.slash(APPROVER, &card.channel, &format!("{} always", a.short_ref()));
    let decided = rig.bed.handle.wait(&a.id, WAIT).await.unwrap();
    assert_eq!((decided.status, decided.mode), (Status::Approved, Some(Mode2::Always)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_8_a_429_is_waited_out_and_the_card_is_delivered_once() {
    let rig = Rig::start(Mode::Socket, &[APPROVER]).await;
    rig.fake.fail_next("chat.postMessage", Fault::TooManyRequests { retry_after: 1 });
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    assert_eq!(harness::cards_in(&rig.fake, &card.channel, &a.id).len(), 1, "delivered once");
    assert_eq!(rig.fake.calls("chat.postMessage"), 2, "refused once, then sent after Retry-After");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_8_posts_to_one_channel_are_paced_so_slack_never_refuses_them() {
    let rig = Rig::start(Mode::Socket, &[APPROVER]).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(rig.bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap().id);
    }
    for id in &ids {
        rig.dm_card(APPROVER, id).await;
    }
    assert_eq!(rig.fake.rate_limited(), 0, "six cards in one DM, paced about one a second");
    assert_eq!(rig.fake.calls("conversations.open"), 1, "the DM is opened once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_8_a_retried_event_is_handled_once() {
    for mode in [Mode::Socket, Mode::Http] {
        let rig = Rig::start(mode, &[APPROVER]).await;
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let typed =
            rig.fake.type_text(APPROVER, &card.channel, &format!("approve {} deny", a.short_ref()), None);
        assert!(acked(&rig.fake, &typed).await.acked.is_some());
        let again = rig.fake.redeliver(&typed);
        assert!(acked(&rig.fake, &again).await.acked.is_some(), "{mode:?}: a retry is acknowledged too");
        assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Denied);
        until("the answer", || harness::ephemerals(&rig.fake, &card.channel, APPROVER).pop()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let answers = harness::ephemerals(&rig.fake, &card.channel, APPROVER);
        assert_eq!(answers.len(), 1, "{mode:?}: one answer, not \"already denied\" as well: {answers:?}");
    }
}

/// CH-SL-1: Socket Mode comes back after `disconnect` and after a dropped socket; a click made
/// meanwhile waits at Slack and is decided once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_sl_1_socket_mode_reconnects_and_nothing_is_lost_or_decided_twice() {
    let rig = Rig::start(Mode::Socket, &[APPROVER]).await;
    for (n, cut) in ["disconnect", "drop"].into_iter().enumerate() {
        let a = rig.bed.handle.create(exec_request(&["deploy", cut])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let opened = rig.fake.sockets().1;
        match cut {
            "disconnect" => rig.fake.disconnect_socket(),
            _ => rig.fake.drop_socket(),
        }
        until("the socket goes", || {
            (rig.fake.sockets().0 == 0 || rig.fake.sockets().1 > opened).then_some(())
        })
        .await;
        let click = rig.fake.click(APPROVER, &card.channel, &card.ts, &label(&card, Decision::AllowOnce));
        let d = acked(&rig.fake, &click).await;
        assert!(d.acked.is_some() && !d.failed, "{cut}: {d:?}");
        assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved, "{cut}");
        let (live, total, peak) = rig.fake.sockets();
        assert_eq!((live, total, peak), (1, n + 2, 1), "{cut}: one connection at a time");
        let votes = rig.bed.store.approval(&a.id).await.unwrap().unwrap().quorum.votes.len();
        assert!(votes <= 1, "{cut}: decided once");
    }
    assert_eq!(rig.fake.failed_deliveries(), 0);
}
