//! The real binary with a Telegram account on the fake Bot API server: cards in a private chat
//! and a forum topic, presses, typed commands, quorum, expiry and a restart while pending.

use assent_fake_telegram::{FakeTelegram, SentMessage, TOKEN};
use serde_json::json;

use crate::harness::{Server, eventually, exec};

const KIM: i64 = 1001;
const LEE: i64 = 1002;
const EVE: i64 = 6666;

/// The fake Bot API server, on a runtime of its own (the tests are synchronous).
struct Telegram {
    fake: FakeTelegram,
    _runtime: tokio::runtime::Runtime,
}

impl Telegram {
    fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fake = runtime.block_on(FakeTelegram::start());
        for (id, name) in [(KIM, "Kim"), (LEE, "Lee"), (EVE, "Eve")] {
            fake.person(id, name, Some(&name.to_lowercase()));
            fake.start_bot(id);
        }
        Self { fake, _runtime: runtime }
    }

    /// `[channels.telegram.accounts.main]` on this fake, plus `extra` TOML.
    fn config(&self, approvals: &str, extra: &str) -> String {
        format!(
            "{extra}\n[channels.telegram.accounts.main]\ntoken_env = \"ASSENT_TEST_TELEGRAM_TOKEN\"\napi_url = \"{}\"\napprovals = {{ {approvals} }}\n",
            self.fake.url()
        )
    }

    /// The card of approval `id` in `chat`, once it satisfies `ready`.
    fn card(&self, chat: i64, reference: &str, ready: impl Fn(&SentMessage) -> bool) -> SentMessage {
        let marker = format!("Ref {reference}");
        eventually("the Telegram card", || {
            self.fake.bot_messages(chat).into_iter().find(|m| m.text.contains(&marker) && ready(m))
        })
    }

    /// Presses the button labelled `label` on `card` as `user`; the callback answer's text.
    fn press(&self, user: i64, card: &SentMessage, label: &str) -> String {
        let data = card.buttons.iter().flatten().find(|(l, _)| l.starts_with(label)).unwrap().1.clone();
        let query = self.fake.press(user, card.chat, card.id, &data);
        let answers = eventually("the callback answer", || {
            let a = self.fake.answers(&query);
            (!a.is_empty()).then_some(a)
        });
        assert_eq!(answers.len(), 1, "answered exactly once: {answers:?}");
        answers[0].text.clone().unwrap_or_default()
    }
}

/// A server with the account attached.
fn serve(tg: &Telegram, approvals: &str, extra: &str) -> Server {
    let server =
        Server::with_config_env(&tg.config(approvals, extra), &[("ASSENT_TEST_TELEGRAM_TOKEN", TOKEN)]);
    server.attached("telegram/main");
    server
}

#[test]
fn ch_tg_allow_once_always_and_deny_from_a_private_chat() {
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\"]", "");
    for (label, argv, status, mode) in [
        ("Allow once", ["make", "once"], "approved", "once"),
        ("Always allow", ["make", "always"], "approved", "always"),
        ("Deny", ["make", "never"], "denied", ""),
    ] {
        let (id, reference) = server.create(exec(&argv));
        let card = tg.card(KIM, &reference, |m| !m.buttons.is_empty());
        let answer = tg.press(KIM, &card, label);
        assert!(answer.starts_with("Recording: "), "{answer}");
        let a = server.decided(&id);
        assert_eq!(a["status"], status, "{a}");
        if !mode.is_empty() {
            assert_eq!(a["mode"], mode, "{a}");
        }
        let done = tg.card(KIM, &reference, |m| m.buttons.iter().all(Vec::is_empty));
        assert!(
            done.text.contains(if status == "denied" { "Denied by" } else { "by @kim" }),
            "{}",
            done.text
        );
    }
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(TOKEN), "the bot token never reaches the log");
}

#[test]
fn ch_tg_a_non_approvers_press_is_refused_in_the_answer_and_audited() {
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\"]", "");
    let (id, reference) = server.create(exec(&["rm", "-rf", "/srv"]));
    let card = tg.card(KIM, &reference, |m| !m.buttons.is_empty());
    let answer = tg.press(EVE, &card, "Allow once");
    assert_eq!(answer, "You can't decide this approval.");
    eventually("the refusal is audited", || {
        let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
        let items = audit["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|e| e["type"] == "interaction-rejected").then_some(())
    });
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending");
}

#[test]
fn ch_tg_quorum_two_needs_both_approvers_and_the_card_shows_progress() {
    let tg = Telegram::start();
    let policy = "[[policy]]\nname = \"two\"\nmatch = { kind = \"exec\" }\nquorum = 2\n";
    let server = serve(&tg, "approvers = [\"1001\", \"1002\"]", policy);
    let (id, reference) = server.create(exec(&["deploy", "--prod"]));
    let kim_card = tg.card(KIM, &reference, |m| !m.buttons.is_empty());
    tg.press(KIM, &kim_card, "Allow once");
    tg.card(LEE, &reference, |m| m.text.contains("Approvals 1/2") && !m.buttons.is_empty());
    let lee_card = tg.card(LEE, &reference, |m| !m.buttons.is_empty());
    tg.press(LEE, &lee_card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    for chat in [KIM, LEE] {
        tg.card(chat, &reference, |m| {
            m.buttons.iter().all(Vec::is_empty) && m.text.contains("Approved once")
        });
    }
}

#[test]
fn ch_tg_expiry_edits_the_card() {
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\"]", "");
    let mut body = exec(&["sleep", "1"]);
    body["timeout"] = json!(10); // The shortest an exec approval may wait.
    let (id, reference) = server.create(body);
    tg.card(KIM, &reference, |m| !m.buttons.is_empty());
    assert_eq!(server.decided(&id)["status"], "expired");
    let done = tg.card(KIM, &reference, |m| m.buttons.iter().all(Vec::is_empty));
    assert!(done.text.to_lowercase().contains("expired"), "{}", done.text);
}

#[test]
fn ch_tg_a_press_after_a_restart_while_pending_still_decides() {
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\"]", "");
    let (id, reference) = server.create(exec(&["systemctl", "restart", "web"]));
    let card = tg.card(KIM, &reference, |m| !m.buttons.is_empty());
    server.card_recorded(&id, "Telegram (main)");
    let server = server.restart();
    server.attached("telegram/main");
    assert_eq!(tg.press(KIM, &card, "Allow once"), "Recording: allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    assert_eq!(
        tg.fake.bot_messages(KIM).iter().filter(|m| m.text.contains(&reference)).count(),
        1,
        "no second card"
    );
}

#[test]
fn ch_tg_typed_approve_decides_and_is_answered_in_place() {
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\"]", "");
    let (id, reference) = server.create(exec(&["ls"]));
    tg.card(KIM, &reference, |m| !m.buttons.is_empty());
    tg.fake.type_text(KIM, KIM, None, &format!("/approve {reference} deny"));
    assert_eq!(server.decided(&id)["status"], "denied");
    eventually("the answer", || {
        tg.fake
            .bot_messages(KIM)
            .iter()
            .any(|m| m.text.contains(&reference) && m.text.starts_with("Recorded"))
            .then_some(())
    });
}

#[test]
fn ch_tg_4_a_forum_topic_origin_gets_its_card_in_that_topic() {
    let tg = Telegram::start();
    let forum = tg.fake.group("Ops", true);
    let topic = tg.fake.topic(forum, "deploys");
    let server = serve(&tg, "approvers = [\"1001\"], target = \"channel\"", "");
    let mut body = exec(&["deploy"]);
    body["origin"] = json!({ "channel": "telegram", "account": "main", "conversation": forum.to_string(), "thread": topic.to_string() });
    let (id, reference) = server.create(body);
    let card = tg.card(forum, &reference, |m| !m.buttons.is_empty());
    assert_eq!(card.thread, Some(topic), "in the topic the request came from");
    tg.press(KIM, &card, "Allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
}

#[test]
fn ch_tg_4_doctor_says_which_approver_must_send_start_without_showing_the_token() {
    let tg = Telegram::start();
    let dir = crate::harness::TempDir::new("tg-doctor");
    let config = dir.path().join("assent.toml");
    std::fs::write(&config, tg.config("approvers = [\"1001\", \"7777\"]", "")).unwrap();
    let out = std::process::Command::new(crate::harness::ASSENT)
        .args(["doctor", "--config"])
        .arg(&config)
        .env("ASSENT_DATA_DIR", dir.path().join("data"))
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .env("ASSENT_TEST_TELEGRAM_TOKEN", TOKEN)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK   telegram/main — bot 123456789 via "), "{stdout}");
    assert!(
        stdout.contains("FAIL telegram/main login — approver 7777 has no chat with @assent_test_bot")
            && stdout.contains("ask them to send /start to the bot"),
        "{stdout}"
    );
    assert!(!stdout.contains(TOKEN) && !stdout.contains("AAHfake"), "the token is never shown: {stdout}");
}

/// A free loopback port, for a server whose `public_url` must name it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server in webhook mode, reachable by the fake at its `public_url`.
fn serve_webhook(tg: &Telegram) -> (Server, String) {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let extra = format!("[server]\npublic_url = \"{public}\"\n");
    let config =
        tg.config("approvers = [\"1001\"]", &extra).replace("api_url", "mode = \"webhook\"\napi_url");
    let env = [("ASSENT_TEST_TELEGRAM_TOKEN", TOKEN)];
    let server = Server::with_config_env_on(&config, &env, &format!("127.0.0.1:{port}"));
    server.attached("telegram/main");
    (server, format!("{public}/hooks/telegram/main"))
}

#[test]
fn ch_tg_5_webhook_mode_decides_pushed_presses_and_refuses_a_wrong_secret() {
    let tg = Telegram::start();
    let (server, hook) = serve_webhook(&tg);
    assert_eq!(
        tg.fake.webhook().as_deref(),
        Some(hook.as_str()),
        "the webhook points at this account's hook"
    );
    assert_eq!(tg.fake.calls("getUpdates"), 0, "no polling in webhook mode");
    let (id, reference) = server.create(exec(&["deploy"]));
    let card = tg.card(KIM, &reference, |m| !m.buttons.is_empty());

    // A forged update: the right shape and a real token, but not from Telegram.
    let data = card.buttons.iter().flatten().find(|(l, _)| l == "Allow once").unwrap().1.clone();
    let forged = json!({ "update_id": 1, "callback_query": {
        "id": "1", "from": { "id": KIM, "is_bot": false, "first_name": "Kim" }, "chat_instance": "1", "data": data } });
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    for secret in [None, Some("not-the-secret")] {
        let mut request = agent.post(&hook);
        if let Some(s) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        assert_eq!(request.send_json(&forged).unwrap().status().as_u16(), 401, "{secret:?}");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (_, a) = server.call("GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(a["status"], "pending", "nothing decided by a forged update");

    // Telegram's own delivery carries the secret.
    assert_eq!(tg.press(KIM, &card, "Allow once"), "Recording: allow once");
    assert_eq!(server.decided(&id)["status"], "approved");
    assert_eq!(tg.fake.pending_updates(), 0, "every update was acknowledged");

    // Back to polling: the webhook is removed.
    let server = {
        drop(server);
        Server::with_config_env(
            &tg.config("approvers = [\"1001\"]", ""),
            &[("ASSENT_TEST_TELEGRAM_TOKEN", TOKEN)],
        )
    };
    server.attached("telegram/main");
    eventually("the webhook is removed", || tg.fake.webhook().is_none().then_some(()));
}

#[test]
fn ch_tg_6_each_injected_fault_ends_delivered_once_or_visibly_failed() {
    use assent_fake_telegram::Fault;
    let tg = Telegram::start();
    let server = serve(&tg, "approvers = [\"1001\", \"7777\"]", "");
    for fault in [
        Fault::TooManyRequests { retry_after: 1 },
        Fault::ServerError(502),
        Fault::Drop,
        Fault::Slow(std::time::Duration::from_secs(1)),
    ] {
        tg.fake.fail_next("sendMessage", fault);
        let (id, reference) = server.create(exec(&["deploy", &format!("{fault:?}")]));
        tg.card(KIM, &reference, |_| true);
        // 7777 never started the bot: a permanent, visible failure, not a retry loop.
        let failed = eventually("the failed delivery is audited", || {
            let (_, audit) = server.call("GET", &format!("/v1/audit?approval={id}"), None);
            let items = audit["items"].as_array().cloned().unwrap_or_default();
            items.into_iter().find(|e| e["type"] == "delivery-failed")
        });
        assert!(failed.to_string().contains("ask them to send /start to the bot"), "{failed}");
        let copies = tg.fake.bot_messages(KIM).iter().filter(|m| m.text.contains(&reference)).count();
        assert_eq!(copies, 1, "{fault:?}: delivered once, never twice");
    }
}
