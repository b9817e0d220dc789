//! The Discord channel against the fake Discord: the channel contract (CAP-11) and the Discord
//! behaviours (CH-DC-*), through serenity's gateway client and routes, as in production.

use std::{sync::Arc, time::Duration};

use assent_core::{
    model::{Action, AuditType, Channel, Decision, NewApproval, Origin, Status},
    routing::TargetMode,
};
use assent_fake_discord::{Fault, TOKEN};
use assent_testing::{channel_contract_tests, exec_request, samples};

use crate::harness::{self, APPROVER, DiscordHarness, OUTSIDER, Rig, acked, routing, until};

channel_contract_tests!(async {
    Arc::new(DiscordHarness::start().await) as Arc<dyn assent_testing::channel_contract::ChannelHarness>
});

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_3_a_click_gets_a_deferred_update_first_then_the_card_is_final() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    let click = rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowOnce));
    let record = acked(&rig.fake, click).await;
    assert_eq!(record.ack, Some(6), "DEFERRED_UPDATE_MESSAGE");
    assert!(!record.failed);
    assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved);
    until("the card is final", || {
        let m = rig.fake.message(card.id).unwrap();
        (m.buttons.is_empty() && m.text().contains("Approved once by")).then_some(())
    })
    .await;
    let record = rig.fake.interaction(click).unwrap();
    assert!(record.followups.is_empty() && record.extra_acks == 0, "{record:?}");
    assert_eq!(rig.fake.failed_interactions(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_3_an_outsiders_click_gets_an_ephemeral_refusal_and_changes_nothing() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["rm", "-rf", "/srv"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    let click = rig.fake.click(OUTSIDER, card.id, &Rig::token(&card, Decision::AllowOnce));
    let refusal = until("the refusal", || rig.fake.interaction(click)?.followups.into_iter().next()).await;
    assert!(refusal.is_ephemeral());
    assert_eq!(refusal.content, assent_core::lifecycle::Rejection::Unauthorized.to_string());
    rig.audit_of(&a.id, AuditType::InteractionRejected).await;
    assert_eq!(rig.bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

/// A request from a guild channel, carded there (`target = "channel"`).
fn from_guild(channel: u64, argv: &[&str]) -> NewApproval {
    let mut request = exec_request(argv);
    request.origin = Some(Origin {
        channel: Channel::Discord,
        account: "main".to_owned(),
        conversation: channel.to_string(),
        parent: None,
        thread: None,
    });
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_3_in_a_guild_the_clicker_is_member_user() {
    let fake = harness::fake().await;
    let guild_channel = fake.guild_channel();
    let mut r = routing(&[APPROVER]);
    r.target = TargetMode::Channel;
    let rig = Rig::with(fake, harness::account, r).await;
    let a = rig.bed.handle.create(from_guild(guild_channel, &["deploy"])).await.unwrap();
    let card =
        until("the card in the guild channel", || harness::cards_in(&rig.fake, guild_channel, &a.id).pop())
            .await;
    // An outsider in the same channel sees the same buttons and is refused.
    let eve = rig.fake.click(OUTSIDER, card.id, &Rig::token(&card, Decision::AllowOnce));
    until("eve's refusal", || rig.fake.interaction(eve)?.followups.into_iter().next()).await;
    rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::Deny));
    let decided = rig.bed.handle.wait(&a.id, WAIT).await.unwrap();
    assert_eq!(decided.status, Status::Denied);
    assert_eq!(decided.decided_by.unwrap().user_id, APPROVER.to_string(), "read from member.user");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_4_dms_closed_is_a_visible_permanent_failure_with_a_hint() {
    let fake = harness::fake().await;
    fake.close_dms(APPROVER);
    let rig = Rig::with(fake, harness::account, routing(&[APPROVER])).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let failure = rig.audit_of(&a.id, AuditType::DeliveryFailed).await;
    let details = failure.details.to_string();
    assert!(details.contains("50007"), "{details}");
    assert!(details.contains("allow direct messages"), "{details}");
    assert!(details.contains("permanent"), "{details}");
    assert!(!details.contains(TOKEN), "the token never reaches the audit log");
    assert_eq!(rig.fake.calls("create_message"), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_4_the_dm_channel_is_opened_once_and_reused() {
    let rig = Rig::start(&[APPROVER]).await;
    for n in 0..3 {
        let a = rig.bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap();
        rig.dm_card(APPROVER, &a.id).await;
    }
    assert_eq!(rig.fake.calls("create_dm"), 1, "cached after the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_5_cleanup_after_resolve_deletes_decided_cards() {
    fn cleaning(fake: &assent_fake_discord::FakeDiscord) -> assent_discord::DiscordAccount {
        assent_discord::DiscordAccount { cleanup_after_resolve: true, ..harness::account(fake) }
    }
    let rig = Rig::with(harness::fake().await, cleaning, routing(&[APPROVER])).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::Deny));
    until("the card is deleted", || rig.fake.message(card.id).filter(|m| m.deleted)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_6_the_approve_command_is_registered_and_answered_ephemerally() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    let commands = rig.fake.commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0]["name"], "approve");
    let options: Vec<&str> =
        commands[0]["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(options, ["ref", "decision", "reason"]);
    let reference = a.short_ref();
    let run = rig.fake.slash(
        APPROVER,
        card.channel,
        "approve",
        &[("ref", reference), ("decision", "deny"), ("reason", "not on a Friday")],
    );
    let record = acked(&rig.fake, run).await;
    assert_eq!(record.ack, Some(5), "deferred, then filled in");
    let decided = rig.bed.handle.wait(&a.id, WAIT).await.unwrap();
    assert_eq!(decided.status, Status::Denied);
    let answer =
        until("the answer", || rig.fake.interaction(run)?.original.filter(|m| !m.content.is_empty())).await;
    assert!(answer.is_ephemeral(), "only the person who ran it sees the answer");
    assert_eq!(answer.content, format!("Recorded: deny for {reference}."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_6_typed_approve_in_a_server_needs_the_message_content_intent() {
    let rig = Rig::start(&[APPROVER]).await;
    assert_ne!(rig.fake.intents() & (1 << 15), 0, "granted, so asked for");
    let guild_channel = rig.fake.guild_channel();
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    rig.dm_card(APPROVER, &a.id).await;
    rig.fake.type_text(APPROVER, guild_channel, &format!("/approve {} allow-once", a.short_ref()));
    assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved);
    let answer = format!("Recorded: allow once for {}.", a.short_ref());
    until("the reply", || rig.fake.bot_messages(guild_channel).into_iter().find(|m| m.content == answer))
        .await;

    // Without the intent, the bot does not ask for it (the gateway would refuse it), and
    // server messages arrive empty; DMs still work.
    let fake = harness::fake().await;
    fake.deny_message_content();
    let rig = Rig::with(fake, harness::account, routing(&[APPROVER])).await;
    assert_eq!(rig.fake.intents() & (1 << 15), 0);
    let guild_channel = rig.fake.guild_channel();
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    rig.fake.type_text(APPROVER, guild_channel, &format!("/approve {} deny", a.short_ref()));
    rig.fake.type_text(APPROVER, card.channel, &format!("/approve {} allow-once", a.short_ref()));
    assert_eq!(
        rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status,
        Status::Approved,
        "the DM, not the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_7_a_429_is_waited_out_and_the_card_is_delivered_once() {
    let rig = Rig::start(&[APPROVER]).await;
    rig.fake.fail_next("create_message", Fault::TooManyRequests { retry_after: 0.5 });
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    assert_eq!(rig.fake.bot_messages(card.channel).len(), 1, "delivered once");
    assert_eq!(rig.fake.calls("create_message"), 2, "refused once, then sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_7_a_dropped_connection_or_a_5xx_ends_delivered_never_duplicated() {
    for fault in [Fault::ServerError(502), Fault::Drop, Fault::Slow(Duration::from_secs(2))] {
        let rig = Rig::start(&[APPROVER]).await;
        rig.fake.fail_next("create_message", fault);
        let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        assert_eq!(rig.fake.bot_messages(card.channel).len(), 1, "{fault:?}: delivered once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_7_cards_follow_the_bucket_headers_so_discord_never_refuses_them() {
    let rig = Rig::start(&[APPROVER]).await;
    let mut ids = Vec::new();
    // Eight at once: the channel's bucket allows five, then says to wait.
    for n in 0..8 {
        ids.push(rig.bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap().id);
    }
    for id in &ids {
        rig.dm_card(APPROVER, id).await;
    }
    assert_eq!(rig.fake.rate_limited(), 0, "no 429: the bucket was respected");
    assert_eq!(rig.fake.calls("create_message"), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_1_a_gateway_disconnect_resumes_and_a_click_made_meanwhile_is_decided() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    rig.fake.disconnect_gateway(Some(4000));
    let click = rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowOnce));
    assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved);
    let record = acked(&rig.fake, click).await;
    assert_eq!(record.ack, Some(6));
    let (live, identifies, resumes) = rig.fake.gateway_sessions();
    assert!(live);
    assert_eq!((identifies, resumes), (1, 1), "resumed, not identified anew, and the click came after");
    assert_eq!(rig.fake.failed_interactions(), 0, "never \"This interaction failed\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_3_a_click_too_late_for_discord_is_not_decided_and_its_clicker_is_told() {
    let rig = Rig::start(&[APPROVER]).await;
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    // The response reaches Discord after the interaction's 3 s: Discord refuses it (10062).
    rig.fake.fail_next("interaction_callback", Fault::Slow(Duration::from_millis(3500)));
    rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowOnce));
    let notice = until("the clicker is told", || {
        rig.fake.bot_messages(card.channel).into_iter().find(|m| m.content.contains("3-second limit"))
    })
    .await;
    assert!(notice.content.contains("not recorded"), "{}", notice.content);
    assert_eq!(rig.bed.store.approval(&a.id).await.unwrap().unwrap().status, Status::Pending);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_2_full_command_sends_the_whole_text_as_ephemeral_follow_ups() {
    let rig = Rig::start(&[APPROVER]).await;
    let long = "y".repeat(3000);
    let a = rig.bed.handle.create(exec_request(&["echo", &long, &long])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    assert!(card.text().contains("Showing "), "{}", card.text());
    let full = card.buttons.iter().find(|(label, _)| label == "Full command").unwrap().1.clone();
    let click = rig.fake.click(APPROVER, card.id, &full);
    let followups = until("the full text", || {
        let f = rig.fake.interaction(click)?.followups;
        (f.iter().map(|m| m.content.matches('y').count()).sum::<usize>() >= 6000).then_some(f)
    })
    .await;
    assert!(followups.iter().all(|m| m.is_ephemeral() && m.content.chars().count() <= 2000));
    assert_eq!(
        rig.bed.store.approval(&a.id).await.unwrap().unwrap().status,
        Status::Pending,
        "nothing decided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_2_a_plugin_card_pings_nobody() {
    let rig = Rig::start(&[APPROVER]).await;
    let Action::Plugin(mut p) = samples::plugin_action() else { unreachable!() };
    p.title = "@everyone deploy".to_owned();
    let a = rig.bed.handle.create(NewApproval::new(Action::Plugin(p), "token:test")).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    assert_eq!(card.allowed_mentions, Some(serde_json::json!({ "parse": [] })));
}

fn with_public_key(fake: &assent_fake_discord::FakeDiscord) -> assent_discord::DiscordAccount {
    assent_discord::DiscordAccount { public_key: Some(fake.public_key()), ..harness::account(fake) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_1_http_interactions_are_verified_answered_in_the_response_and_decided() {
    let rig = Rig::with(harness::fake().await, with_public_key, routing(&[APPROVER])).await;
    let url =
        harness::serve_endpoint(&with_public_key(&rig.fake), &rig.bed.handle, routing(&[APPROVER])).await;
    rig.fake.set_interactions_endpoint(&url);
    // Discord checks a new endpoint with a PING.
    assert_eq!(acked(&rig.fake, rig.fake.ping()).await.ack, Some(1), "PONG");
    let a = rig.bed.handle.create(exec_request(&["deploy"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &a.id).await;
    let click = rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowAlways));
    assert_eq!(acked(&rig.fake, click).await.ack, Some(6), "the deferred update is the HTTP answer");
    assert_eq!(rig.bed.handle.wait(&a.id, WAIT).await.unwrap().status, Status::Approved);
    // An outsider's refusal arrives as a follow-up once Discord has the response.
    let b = rig.bed.handle.create(exec_request(&["reboot"])).await.unwrap();
    let card = rig.dm_card(APPROVER, &b.id).await;
    let eve = rig.fake.click(OUTSIDER, card.id, &Rig::token(&card, Decision::AllowOnce));
    let refusal = until("eve's refusal", || rig.fake.interaction(eve)?.followups.into_iter().next()).await;
    assert!(refusal.is_ephemeral());
    assert!(rig.fake.endpoint_refusals().is_empty());
    assert_eq!(rig.fake.calls("interaction_callback"), 0, "answered in the HTTP response, not by REST");

    // A forged or stale signature is refused with 401, and nothing is decided.
    let token = Rig::token(&card, Decision::AllowOnce);
    let body =
        serde_json::json!({ "type": 3, "id": "1", "token": "t", "data": { "custom_id": token } }).to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let http = reqwest::Client::new();
    for (signature, timestamp) in [("00".repeat(64), now.to_string()), (String::new(), now.to_string())] {
        let answer = http
            .post(&url)
            .header("x-signature-ed25519", signature)
            .header("x-signature-timestamp", timestamp)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
    assert_eq!(rig.bed.store.approval(&b.id).await.unwrap().unwrap().status, Status::Pending);
}

#[test]
fn ch_dc_1_no_public_key_no_endpoint() {
    use assent_platform::Platform;
    let account = assent_discord::DiscordAccount::new("main", TOKEN, "http://127.0.0.1:9/api/v10");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let bed = assent_testing::TestBed::with_capabilities(
            Arc::new(assent_core::memory::MemoryStore::new()),
            assent_testing::test_config(),
            Vec::new(),
        )
        .await;
        let availability = assent_discord::DiscordPlatform::availability(routing(&[APPROVER]));
        let inbound = assent_engine::Inbound::new(bed.handle.clone(), harness::key());
        assert!(assent_discord::DiscordPlatform.hook(&account, &availability, inbound).is_none());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_3_no_click_fails_with_10k_approvals_pending() {
    let mut config = assent_testing::test_config();
    config.route_wait = WAIT;
    config.console_route = assent_engine::ConsoleRoute::Always;
    let mut r = routing(&[APPROVER]);
    r.kinds = vec![assent_core::model::Kind::Exec];
    let rig = Rig::with_config(harness::fake().await, harness::account, r, config).await;
    for _ in 0..10_000 {
        // Plugin approvals: the console's, not this account's.
        let Action::Plugin(p) = samples::plugin_action() else { unreachable!() };
        rig.bed.handle.create(NewApproval::new(Action::Plugin(p), "token:load")).await.unwrap();
    }
    for n in 0..10 {
        let a = rig.bed.handle.create(exec_request(&["echo", &n.to_string()])).await.unwrap();
        let card = rig.dm_card(APPROVER, &a.id).await;
        let click = rig.fake.click(APPROVER, card.id, &Rig::token(&card, Decision::AllowOnce));
        assert_eq!(acked(&rig.fake, click).await.ack, Some(6));
        rig.bed.handle.wait(&a.id, WAIT).await.unwrap();
    }
    assert_eq!(rig.fake.failed_interactions(), 0, "no \"This interaction failed\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_dc_the_bot_token_never_shows_in_debug_output_or_errors() {
    let rig = Rig::start(&[APPROVER]).await;
    assert!(!format!("{:?}", rig.channel).contains(TOKEN));
    assert!(!format!("{:?}", harness::account(&rig.fake)).contains(TOKEN));
    // A refused token: the connect error names the problem, not the token.
    let mut wrong = harness::account(&rig.fake);
    wrong.token = "MTA1.wrong.token-value-0123456789".to_owned();
    let availability = assent_discord::DiscordPlatform::availability(routing(&[APPROVER]));
    let e = assent_discord::DiscordChannel::connect(
        wrong,
        availability,
        assent_engine::Inbound::new(rig.bed.handle.clone(), harness::key()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("401") && !e.contains("token-value"), "{e}");
}
