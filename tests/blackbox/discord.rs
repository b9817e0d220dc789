//! The real binary with a Discord account on the fake Discord: cards in DMs and in a guild
//! channel, clicks, `/approve`, quorum, expiry, a restart while pending, HTTP interactions and
//! injected faults.

use assent_fake_discord::{FakeDiscord, Fault, SentMessage, TOKEN};
use serde_json::{Value, json};

use crate::harness::{Server, eventually, exec};

const KIM: u64 = 222_222_222_222_222_222;
const LEE: u64 = 333_333_333_333_333_333;
const EVE: u64 = 666_666_666_666_666_666;
const NOBODY: u64 = 777_777_777_777_777_777;

/// The fake Discord, on a runtime of its own (the tests are synchronous).
struct Discord {
    fake: FakeDiscord,
    _runtime: tokio::runtime::Runtime,
}

impl Discord {
    fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fake = runtime.block_on(FakeDiscord::start());
        for (id, name) in [(KIM, "kim"), (LEE, "lee"), (EVE, "eve")] {
            fake.person(id, name);
        }
        Self { fake, _runtime: runtime }
    }

    /// `[channels.discord.accounts.main]` on this fake, plus `keys` in the table and `extra` TOML.
    fn config(&self, approvals: &str, keys: &str, extra: &str) -> String {
        format!(
            "{extra}\n[channels.discord.accounts.main]\ntoken_env = \"ASSENT_TEST_DISCORD_TOKEN\"\napi_url = \"{}\"\n{keys}\napprovals = {{ {approvals} }}\n",
            self.fake.api_url()
        )
    }

    /// The card of `reference` in `channel`, once it satisfies `ready`.
    fn card(&self, channel: u64, reference: &str, ready: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let marker = format!("Ref {reference}");
        eventually("the Discord card", || {
            self.fake.bot_messages(channel).into_iter().find(|m| m.text().contains(&marker) && ready(m))
        })
    }

    /// The card of `reference` in `user`'s DM.
    fn dm_card(&self, user: u64, reference: &str, ready: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let dm = eventually("the DM channel", || self.fake.dm_of(user));
        self.card(dm, reference, ready)
    }

    /// Clicks the button labelled `label` on `card` as `user`; the interaction id, once acked.
    fn click(&self, user: u64, card: &SentMessage, label: &str) -> u64 {
        let id = card.buttons.iter().find(|(l, _)| l.starts_with(label)).unwrap().1.clone();
        let interaction = self.fake.click(user, card.id, &id);
        let record = eventually("the deferred update", || {
            self.fake.interaction(interaction).filter(|i| i.ack.is_some() || i.failed)
        });
        assert_eq!(record.ack, Some(6), "deferred update first: {record:?}");
        interaction
    }
}

/// A server with the account attached and its gateway connected.
fn serve(dc: &Discord, approvals: &str, keys: &str, extra: &str) -> Server {
    let before = dc.fake.gateway_sessions().1;
    let config = dc.config(approvals, keys, extra);
    let server = Server::with_config_env(&config, &[("ASSENT_TEST_DISCORD_TOKEN", TOKEN)]);
    connected(dc, &server, before);
    server
}

/// Waits until `server` has the account and a gateway session newer than the `before`th:
/// Discord delivers clicks only to a connected bot.
fn connected(dc: &Discord, server: &Server, before: usize) {
    server.attached("discord/main");
    eventually("the gateway session", || {
        let (live, identifies, _) = dc.fake.gateway_sessions();
        (live && identifies > before).then_some(())
    });
}

fn from_channel(argv: &[&str], channel: u64) -> Value {
    let mut body = exec(argv);
    body["origin"] = json!({ "channel": "discord", "account": "main", "conversation": channel.to_string() });
    body
}

fn final_card(m: &SentMessage) -> bool {
    m.buttons.is_empty()
}

#[test]
fn ch_dc_allow_once_always_and_deny_from_a_dm() {
    let dc = Discord::start();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\"]"), "", "");
    for (label, argv, status, shown) in [
        ("Allow once", ["make", "once"], "approved", "Approved once by"),
        ("Always allow", ["make", "always"], "approved", "Always allowed by"),
        ("Deny", ["make", "never"], "denied", "Denied by"),
    ] {
        let (id, reference) = server.create(exec(&argv));
        let card = dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
        dc.click(KIM, &card, label);
        assert_eq!(server.decided(&id)["status"], status);
        let done = dc.dm_card(KIM, &reference, final_card);
        assert!(done.text().contains(shown), "{}", done.text());
    }
    assert_eq!(dc.fake.failed_interactions(), 0);
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(TOKEN), "the bot token never reaches the log");
}

#[test]
fn ch_dc_a_guild_channel_card_with_target_channel_and_both() {
    let dc = Discord::start();
    let channel = dc.fake.guild_channel();
    for (target, in_dm) in [("channel", false), ("both", true)] {
        let server = serve(&dc, &format!("approvers = [\"{KIM}\"], target = \"{target}\""), "", "");
        let (id, reference) = server.create(from_channel(&["deploy", target], channel));
        let card = dc.card(channel, &reference, |m| !m.buttons.is_empty());
        if in_dm {
            dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
        }
        dc.click(KIM, &card, "Allow once");
        assert_eq!(server.decided(&id)["status"], "approved", "{target}");
        dc.card(channel, &reference, final_card);
        if in_dm {
            dc.dm_card(KIM, &reference, final_card);
        }
    }
}

#[test]
fn ch_dc_a_non_approvers_click_gets_an_ephemeral_refusal_and_is_audited() {
    let dc = Discord::start();
    let channel = dc.fake.guild_channel();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\"], target = \"channel\""), "", "");
    let (id, reference) = server.create(from_channel(&["rm", "-rf", "/srv"], channel));
    let card = dc.card(channel, &reference, |m| !m.buttons.is_empty());
    let click = dc.click(EVE, &card, "Allow once");
    let refusal = eventually("the refusal", || dc.fake.interaction(click)?.followups.into_iter().next());
    assert!(refusal.is_ephemeral(), "only eve sees it");
    assert_eq!(refusal.content, "You can't decide this approval.");
    eventually("the refusal is audited", || {
        let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
        let items = audit["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|e| e["type"] == "interaction-rejected").then_some(())
    });
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending");
}

#[test]
fn ch_dc_quorum_two_needs_both_approvers_and_the_card_shows_progress() {
    let dc = Discord::start();
    let policy = "[[policy]]\nname = \"two\"\nmatch = { kind = \"exec\" }\nquorum = 2\n";
    let server = serve(&dc, &format!("approvers = [\"{KIM}\", \"{LEE}\"]"), "", policy);
    let (id, reference) = server.create(exec(&["deploy", "--prod"]));
    let kim = dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
    dc.click(KIM, &kim, "Allow once");
    let lee = dc.dm_card(LEE, &reference, |m| m.text().contains("Approvals 1/2") && !m.buttons.is_empty());
    dc.click(LEE, &lee, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    for user in [KIM, LEE] {
        dc.dm_card(user, &reference, |m| final_card(m) && m.text().contains("Approved once"));
    }
}

#[test]
fn ch_dc_expiry_edits_the_card() {
    let dc = Discord::start();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\"]"), "", "");
    let mut body = exec(&["sleep", "1"]);
    body["timeout"] = json!(10); // The shortest an exec approval may wait.
    let (id, reference) = server.create(body);
    dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
    assert_eq!(server.decided(&id)["status"], "expired");
    let done = dc.dm_card(KIM, &reference, final_card);
    assert!(done.text().to_lowercase().contains("expired"), "{}", done.text());
}

#[test]
fn ch_dc_a_click_after_a_restart_while_pending_still_decides() {
    let dc = Discord::start();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\"]"), "", "");
    let (id, reference) = server.create(exec(&["systemctl", "restart", "web"]));
    let card = dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
    server.card_recorded(&id, "Discord (main)");
    let before = dc.fake.gateway_sessions().1;
    let server = server.restart();
    connected(&dc, &server, before);
    dc.click(KIM, &card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    let dm = dc.fake.dm_of(KIM).unwrap();
    assert_eq!(
        dc.fake.bot_messages(dm).iter().filter(|m| m.text().contains(&reference)).count(),
        1,
        "no second card"
    );
}

#[test]
fn ch_dc_the_approve_command_decides_and_answers_ephemerally() {
    let dc = Discord::start();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\"]"), "", "");
    let (id, reference) = server.create(exec(&["ls"]));
    let card = dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
    let run = dc.fake.slash(KIM, card.channel, "approve", &[("ref", &reference), ("decision", "deny")]);
    assert_eq!(server.decided(&id)["status"], "denied");
    let answer =
        eventually("the answer", || dc.fake.interaction(run)?.original.filter(|m| !m.content.is_empty()));
    assert!(answer.is_ephemeral() && answer.content.starts_with("Recorded"), "{answer:?}");
}

/// A free loopback port, for a server whose hook URL must be known before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn ch_dc_1_http_interactions_with_good_and_forged_signatures() {
    let dc = Discord::start();
    let port = free_port();
    let keys = format!("public_key = \"{}\"", dc.fake.public_key());
    let config = dc.config(&format!("approvers = [\"{KIM}\"]"), &keys, "");
    let server = Server::with_config_env_on(
        &config,
        &[("ASSENT_TEST_DISCORD_TOKEN", TOKEN)],
        &format!("127.0.0.1:{port}"),
    );
    connected(&dc, &server, 0);
    let hook = format!("http://127.0.0.1:{port}/hooks/discord/main");
    dc.fake.set_interactions_endpoint(&hook);
    let ping = dc.fake.ping();
    let pong = eventually("PONG", || dc.fake.interaction(ping).filter(|i| i.ack.is_some()));
    assert_eq!(pong.ack, Some(1));

    let (id, reference) = server.create(exec(&["deploy"]));
    let card = dc.dm_card(KIM, &reference, |m| !m.buttons.is_empty());
    // A forged click: the right shape and a real custom id, but not signed by Discord.
    let token = card.buttons[0].1.clone();
    let forged = json!({ "id": "1", "application_id": "1", "type": 3, "token": "x", "version": 1,
        "data": { "custom_id": token, "component_type": 2 } })
    .to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let answer = agent
        .post(&hook)
        .header("X-Signature-Ed25519", "ab".repeat(64))
        .header("X-Signature-Timestamp", &now)
        .send(forged.as_str())
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending", "nothing decided by a forged click");

    dc.click(KIM, &card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    assert!(dc.fake.endpoint_refusals().is_empty(), "{:?}", dc.fake.endpoint_refusals());
}

#[test]
fn ch_dc_7_each_injected_fault_ends_delivered_once_or_visibly_failed() {
    let dc = Discord::start();
    let server = serve(&dc, &format!("approvers = [\"{KIM}\", \"{NOBODY}\"]"), "", "");
    for fault in [
        Fault::TooManyRequests { retry_after: 1.0 },
        Fault::ServerError(502),
        Fault::Drop,
        Fault::Slow(std::time::Duration::from_secs(1)),
    ] {
        dc.fake.fail_next("create_message", fault);
        let (id, reference) = server.create(exec(&["deploy", &format!("{fault:?}")]));
        dc.dm_card(KIM, &reference, |_| true);
        // NOBODY is no Discord user: opening the DM fails, visibly and for good.
        let failed = eventually("the failed delivery is audited", || {
            let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
            let items = audit["items"].as_array().cloned().unwrap_or_default();
            items.into_iter().find(|e| e["type"] == "delivery-failed")
        });
        assert!(failed.to_string().contains("50033"), "{failed}");
        let dm = dc.fake.dm_of(KIM).unwrap();
        let copies = dc.fake.bot_messages(dm).iter().filter(|m| m.text().contains(&reference)).count();
        assert_eq!(copies, 1, "{fault:?}: delivered once, never twice");
    }
}

/// `assent doctor` on `config`; its standard output.
fn doctor(dir: &crate::harness::TempDir, config: &str) -> String {
    let path = dir.path().join("assent.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(crate::harness::ASSENT)
        .args(["doctor", "--config"])
        .arg(&path)
        .env("ASSENT_DATA_DIR", dir.path().join("data"))
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .env("ASSENT_TEST_DISCORD_TOKEN", TOKEN)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ch_dc_6_doctor_says_whether_typed_approve_works_without_showing_the_token() {
    let dc = Discord::start();
    dc.fake.deny_message_content();
    let dir = crate::harness::TempDir::new("dc-doctor");
    let stdout = doctor(&dir, &dc.config(&format!("approvers = [\"{KIM}\", \"{NOBODY}\"]"), "", ""));
    assert!(stdout.contains(&format!("approver {NOBODY} is not a Discord user")), "{stdout}");
    let stdout = doctor(&dir, &dc.config(&format!("approvers = [\"{KIM}\"]"), "", ""));
    assert!(stdout.contains("the Message Content intent is not granted"), "{stdout}");
    assert!(!stdout.contains(TOKEN), "the token is never shown: {stdout}");
}
