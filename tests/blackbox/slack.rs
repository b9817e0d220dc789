//! The real binary with a Slack app on the fake Slack, in Socket Mode and in HTTP mode: cards in
//! DMs and in a channel, clicks, `/approve` and typed `approve`, quorum, expiry, a restart while
//! pending, signatures, a 20,000-character command and injected faults.

use assent_fake_slack::{APP_TOKEN, BOT_TOKEN, FakeSlack, Fault, SIGNING_SECRET, SentMessage};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use crate::harness::{Server, eventually, exec};

const KIM: &str = "U0KIM00001";
const LEE: &str = "U0LEE00001";
const EVE: &str = "U0EVE00001";
const NOBODY: &str = "U0NOBODY01";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Socket,
    Http,
}

/// The fake Slack, on a runtime of its own (the tests are synchronous).
struct Slack {
    fake: FakeSlack,
    _runtime: tokio::runtime::Runtime,
}

/// A free loopback port, for a server whose Request URL must be known before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Slack {
    fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fake = runtime.block_on(FakeSlack::start());
        for (id, name) in [(KIM, "kim"), (LEE, "lee"), (EVE, "eve")] {
            fake.person(id, name);
        }
        Self { fake, _runtime: runtime }
    }

    /// `[channels.slack.accounts.main]` on this fake in `mode`, plus `extra` TOML before it.
    fn config(&self, mode: Mode, approvals: &str, extra: &str) -> String {
        let secret = match mode {
            Mode::Socket => "app_token_env = \"ASSENT_TEST_SLACK_APP\"",
            Mode::Http => "signing_secret_env = \"ASSENT_TEST_SLACK_SECRET\"",
        };
        format!(
            "{extra}\n[channels.slack.accounts.main]\nbot_token_env = \"ASSENT_TEST_SLACK_BOT\"\n{secret}\napi_url = \"{}\"\napprovals = {{ {approvals} }}\n",
            self.fake.api_url()
        )
    }

    /// The card of `reference` in `channel`, once it satisfies `ready`.
    fn card(&self, channel: &str, reference: &str, ready: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let marker = format!("Ref {reference}");
        eventually("the Slack card", || {
            self.fake
                .bot_messages(channel)
                .into_iter()
                .find(|m| m.ephemeral_to.is_none() && m.shown.contains(&marker) && ready(m))
        })
    }

    /// The card of `reference` in `user`'s DM.
    fn dm_card(&self, user: &str, reference: &str, ready: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let dm = eventually("the DM", || self.fake.dm_of(user));
        self.card(&dm, reference, ready)
    }

    /// Clicks the button labelled `label` on `card` as `user`, and checks it was acknowledged.
    fn click(&self, user: &str, card: &SentMessage, label: &str) {
        let label = card.buttons.iter().find(|(l, _, _)| l.starts_with(label)).unwrap().0.clone();
        let delivery = self.fake.click(user, &card.channel, &card.ts, &label);
        let d =
            eventually("the ack", || self.fake.delivery(&delivery).filter(|d| d.acked.is_some() || d.failed));
        assert!(!d.failed, "acknowledged within 3 s: {d:?}");
    }

    /// What `user` was shown privately in `channel`.
    fn ephemerals(&self, channel: &str, user: &str) -> Vec<SentMessage> {
        self.fake
            .bot_messages(channel)
            .into_iter()
            .filter(|m| m.ephemeral_to.as_deref() == Some(user))
            .collect()
    }
}

const ENV: [(&str, &str); 3] = [
    ("ASSENT_TEST_SLACK_BOT", BOT_TOKEN),
    ("ASSENT_TEST_SLACK_APP", APP_TOKEN),
    ("ASSENT_TEST_SLACK_SECRET", SIGNING_SECRET),
];

/// A server with the app attached: its socket connected, or the fake pointed at its hook.
fn serve(sl: &Slack, mode: Mode, approvals: &str, extra: &str) -> Server {
    let config = sl.config(mode, approvals, extra);
    let before = sl.fake.sockets().1;
    let server = match mode {
        Mode::Socket => Server::with_config_env(&config, &ENV),
        Mode::Http => {
            let port = free_port();
            let server = Server::with_config_env_on(&config, &ENV, &format!("127.0.0.1:{port}"));
            sl.fake.set_request_url(&format!("http://127.0.0.1:{port}/hooks/slack/main"));
            server
        }
    };
    connected(sl, &server, mode, before);
    server
}

/// Waits until `server` has the account and, in Socket Mode, a connection newer than the
/// `before`th: Slack delivers over Socket Mode only to a connected app.
fn connected(sl: &Slack, server: &Server, mode: Mode, before: usize) {
    server.attached("slack/main");
    if mode == Mode::Socket {
        eventually("the Socket Mode connection", || {
            let (live, opened, _) = sl.fake.sockets();
            (live > 0 && opened > before).then_some(())
        });
    }
}

fn has_buttons(m: &SentMessage) -> bool {
    !m.buttons.is_empty()
}

fn final_card(m: &SentMessage) -> bool {
    m.buttons.is_empty() && m.edits > 0
}

fn from_channel(argv: &[&str], channel: &str) -> Value {
    let mut body = exec(argv);
    body["origin"] = json!({ "channel": "slack", "account": "main", "conversation": channel });
    body
}

#[test]
fn ch_sl_allow_once_always_and_deny_in_socket_mode_and_http_mode() {
    for mode in [Mode::Socket, Mode::Http] {
        let sl = Slack::start();
        let server = serve(&sl, mode, &format!("approvers = [\"{KIM}\"]"), "");
        for (label, argv, status, shown) in [
            ("Allow once", ["make", "once"], "approved", "Approved once by"),
            ("Always allow", ["make", "always"], "approved", "Always allowed by"),
            ("Deny", ["make", "never"], "denied", "Denied by"),
        ] {
            let (id, reference) = server.create(exec(&argv));
            let card = sl.dm_card(KIM, &reference, has_buttons);
            sl.click(KIM, &card, label);
            assert_eq!(server.decided(&id)["status"], status, "{mode:?}");
            let done = sl.dm_card(KIM, &reference, final_card);
            assert!(done.shown.contains(shown), "{mode:?}: {}", done.shown);
        }
        assert_eq!(sl.fake.failed_deliveries(), 0, "{mode:?}");
        let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
        for secret in [BOT_TOKEN, APP_TOKEN, SIGNING_SECRET] {
            assert!(!log.contains(secret), "{mode:?}: a secret reached the log");
        }
    }
}

#[test]
fn ch_sl_4_a_non_approvers_click_gets_an_ephemeral_refusal_and_is_audited() {
    let sl = Slack::start();
    let channel = sl.fake.channel();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\"], target = \"channel\""), "");
    let (id, reference) = server.create(from_channel(&["rm", "-rf", "/srv"], &channel));
    let card = sl.card(&channel, &reference, has_buttons);
    sl.click(EVE, &card, "Allow once");
    let refusal = eventually("the refusal", || sl.ephemerals(&channel, EVE).into_iter().next());
    assert_eq!(refusal.text, "You can't decide this approval.");
    eventually("the refusal is audited", || {
        let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
        let items = audit["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|e| e["type"] == "interaction-rejected").then_some(())
    });
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending");
}

/// `X-Slack-Signature` for `body` at `timestamp`, with `secret`.
fn sign(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let bytes = mac.finalize().into_bytes();
    format!("v0={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

#[test]
fn ch_sl_2_a_forged_or_stale_signature_gets_401_and_decides_nothing() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Http, &format!("approvers = [\"{KIM}\"]"), "");
    let (id, reference) = server.create(exec(&["deploy"]));
    let card = sl.dm_card(KIM, &reference, has_buttons);
    let token = card.buttons[0].2.clone();
    let payload = json!({ "type": "block_actions", "team": { "id": "T0FAKETEAM" }, "api_app_id": "A0FAKEAPP01",
        "user": { "id": KIM }, "container": { "channel_id": card.channel, "message_ts": card.ts },
        "actions": [{ "action_id": "assent.decide.allow-once", "value": token }] });
    let body = format!(
        "payload={}",
        url::form_urlencoded::byte_serialize(payload.to_string().as_bytes()).collect::<String>()
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let stale = (now - 600).to_string();
    let now = now.to_string();
    let hook = format!("{}/hooks/slack/main", server.url);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for (timestamp, signature, why) in [
        (now.as_str(), sign("not-the-secret", &now, &body), "forged"),
        (stale.as_str(), sign(SIGNING_SECRET, &stale, &body), "stale"),
    ] {
        let answer = agent
            .post(&hook)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-slack-request-timestamp", timestamp)
            .header("x-slack-signature", &signature)
            .send(body.as_str())
            .unwrap();
        assert_eq!(answer.status().as_u16(), 401, "{why}");
    }
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending", "nothing decided by a forged or replayed click");
    sl.click(KIM, &card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
}

#[test]
fn ch_sl_quorum_two_needs_both_approvers_and_the_card_shows_progress() {
    let sl = Slack::start();
    let policy = "[[policy]]\nname = \"two\"\nmatch = { kind = \"exec\" }\nquorum = 2\n";
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\", \"{LEE}\"]"), policy);
    let (id, reference) = server.create(exec(&["deploy", "--prod"]));
    let kim = sl.dm_card(KIM, &reference, has_buttons);
    sl.click(KIM, &kim, "Allow once");
    let lee = sl.dm_card(LEE, &reference, |m| m.shown.contains("Approvals 1/2") && has_buttons(m));
    sl.click(LEE, &lee, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    for user in [KIM, LEE] {
        sl.dm_card(user, &reference, |m| final_card(m) && m.shown.contains("Approved once"));
    }
}

#[test]
fn ch_sl_6_expiry_updates_the_card() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\"]"), "");
    let mut body = exec(&["sleep", "1"]);
    body["timeout"] = json!(10); // The shortest an exec approval may wait.
    let (id, reference) = server.create(body);
    sl.dm_card(KIM, &reference, has_buttons);
    assert_eq!(server.decided(&id)["status"], "expired");
    let done = sl.dm_card(KIM, &reference, final_card);
    assert!(done.shown.to_lowercase().contains("expired"), "{}", done.shown);
}

#[test]
fn ch_sl_a_click_after_a_restart_while_pending_still_decides() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\"]"), "");
    let (id, reference) = server.create(exec(&["systemctl", "restart", "web"]));
    let card = sl.dm_card(KIM, &reference, has_buttons);
    server.card_recorded(&id, "Slack (main)");
    let before = sl.fake.sockets().1;
    let server = server.restart();
    connected(&sl, &server, Mode::Socket, before);
    sl.click(KIM, &card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    let dm = sl.fake.dm_of(KIM).unwrap();
    let copies = sl.fake.bot_messages(&dm).iter().filter(|m| m.shown.contains(&reference)).count();
    assert_eq!(copies, 1, "no second card");
}

#[test]
fn ch_sl_3_a_20000_character_command_posts_and_finalizes_without_invalid_blocks() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\"]"), "");
    let chunk = "x&<".repeat(1300);
    let argv: Vec<&str> = std::iter::once("echo").chain(std::iter::repeat_n(chunk.as_str(), 5)).collect();
    let (id, reference) = server.create(exec(&argv));
    let card = sl.dm_card(KIM, &reference, has_buttons);
    assert!(card.shown.contains("Showing "), "the notice says it was cut");
    sl.click(KIM, &card, "Full command");
    let dm = card.channel.clone();
    let pieces = eventually("the full command", || {
        let shown = sl.ephemerals(&dm, KIM);
        (shown.len() >= 10).then_some(shown)
    });
    assert!(pieces.iter().all(|p| p.text.starts_with("```")));
    sl.click(KIM, &card, "Deny");
    assert_eq!(server.decided(&id)["status"], "denied");
    sl.dm_card(KIM, &reference, final_card);
}

#[test]
fn ch_sl_7_the_slash_command_and_a_typed_approve_decide() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\"]"), "");
    let (id, reference) = server.create(exec(&["ls"]));
    let card = sl.dm_card(KIM, &reference, has_buttons);
    sl.fake.slash(KIM, &card.channel, &format!("{reference} deny"));
    assert_eq!(server.decided(&id)["status"], "denied");
    let answer = eventually("the answer", || sl.ephemerals(&card.channel, KIM).into_iter().next());
    assert!(answer.text.starts_with("Recorded"), "{answer:?}");
    let (id, reference) = server.create(exec(&["pwd"]));
    sl.dm_card(KIM, &reference, has_buttons);
    sl.fake.type_text(KIM, &card.channel, &format!("approve {reference} allow-once"), None);
    assert_eq!(server.decided(&id)["status"], "approved");
}

#[test]
fn ch_sl_8_each_injected_fault_ends_delivered_once_or_visibly_failed() {
    let sl = Slack::start();
    let server = serve(&sl, Mode::Socket, &format!("approvers = [\"{KIM}\", \"{NOBODY}\"]"), "");
    for fault in [
        Fault::TooManyRequests { retry_after: 1 },
        Fault::ServerError(502),
        Fault::Drop,
        Fault::Slow(std::time::Duration::from_secs(1)),
    ] {
        sl.fake.fail_next("chat.postMessage", fault);
        let (id, reference) = server.create(exec(&["deploy", &format!("{fault:?}")]));
        sl.dm_card(KIM, &reference, |_| true);
        // NOBODY is no member of the workspace: opening the DM fails, visibly and for good.
        let failed = eventually("the failed delivery is audited", || {
            let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
            let items = audit["items"].as_array().cloned().unwrap_or_default();
            items.into_iter().find(|e| e["type"] == "delivery-failed")
        });
        assert!(failed.to_string().contains("user_not_found"), "{failed}");
        let dm = sl.fake.dm_of(KIM).unwrap();
        let copies = sl.fake.bot_messages(&dm).iter().filter(|m| m.shown.contains(&reference)).count();
        assert_eq!(copies, 1, "{fault:?}: delivered once, never twice");
    }
}

#[test]
fn ch_sl_doctor_checks_the_tokens_and_approvers_without_showing_them() {
    let sl = Slack::start();
    let dir = crate::harness::TempDir::new("sl-doctor");
    let path = dir.path().join("assent.toml");
    std::fs::write(&path, sl.config(Mode::Socket, &format!("approvers = [\"{KIM}\", \"{NOBODY}\"]"), ""))
        .unwrap();
    let out = std::process::Command::new(crate::harness::ASSENT)
        .args(["doctor", "--config"])
        .arg(&path)
        .env("ASSENT_DATA_DIR", dir.path().join("data"))
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .envs(ENV)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("approver {NOBODY}")) && stdout.contains("user_not_found"), "{stdout}");
    for secret in [BOT_TOKEN, APP_TOKEN] {
        assert!(!stdout.contains(secret), "a token was shown: {stdout}");
    }
}
