//! The platform seam is enough to add a platform: the fake channel from `assent-testing`,
//! registered as a platform the way a channel crate registers (test build only), is configured
//! in an `assent.toml` and carries an approval through the server end to end. And RT-2 through
//! the config: approvers are normalized per platform, or refused at their own line.

use std::{path::Path, sync::Arc};

use assent_core::model::{Channel, Decision};
use assent_platform::DynPlatform;
use assent_server::{ServeOptions, config::LoadedConfig, platforms};
use assent_testing::FakePlatform;
use serde_json::{Value, json};

/// A fresh directory under the target dir for one test.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir = assent_testing::process_scratch(&std::env::temp_dir(), "assent-seam").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `toml` as `<dir>/assent.toml` (with a token file beside it) and loads it.
fn config(dir: &Path, toml: &str) -> LoadedConfig {
    std::fs::write(dir.join("bot.token"), "fake-bot-token-do-not-log\n").unwrap();
    let text = toml.replace("{dir}", &dir.display().to_string());
    let path = dir.join("assent.toml");
    std::fs::write(&path, text).unwrap();
    LoadedConfig::load(&path).unwrap()
}

fn seam(channel: Channel) -> Vec<Arc<dyn DynPlatform>> {
    vec![Arc::new(FakePlatform::new(channel))]
}

/// A blocking JSON call to the server.
async fn call(base: String, token: String, method: &'static str, path: String, body: Option<Value>) -> Value {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{base}{path}");
        let auth = format!("Bearer {token}");
        let mut response = match (method, body) {
            ("POST", Some(b)) => agent.post(&url).header("Authorization", &auth).send_json(b).unwrap(),
            _ => agent.get(&url).header("Authorization", &auth).call().unwrap(),
        };
        response.body_mut().read_json::<Value>().unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_a_platform_registered_through_the_seam_carries_an_approval_through_serve() {
    let dir = scratch("serve");
    let loaded = config(
        &dir,
        "[channels.telegram.accounts.main]\ntoken_file = \"{dir}/bot.token\"\n\
         approvals = { approvers = [\"123456789\"] }\n",
    );
    let fake = FakePlatform::new(Channel::Telegram);
    let mut options = ServeOptions::new(dir.join("data"), loaded);
    options.listen = Some("127.0.0.1:0".parse().unwrap());
    options.platforms = vec![Arc::new(fake.clone())];
    let server = assent_server::start(options).await.unwrap();
    let token = std::fs::read_to_string(server.admin_token_path().unwrap()).unwrap().trim().to_owned();
    let base = format!("http://{}", server.addr());

    // The account connects in the background, under its lease.
    let engine = server.engine().clone();
    let attached = || engine.accounts().iter().any(|a| a.key.to_string() == "telegram/main" && a.active);
    assent_testing::eventually("telegram/main attaches", &mut { attached }).await;
    let channel = fake.started().pop().unwrap();

    let body = json!({ "kind": "exec", "exec": { "argv": ["deploy", "--prod"] } });
    let created = call(base.clone(), token.clone(), "POST", "/v1/approvals".to_owned(), Some(body)).await;
    let id = assent_core::id::ApprovalId::parse(created["id"].as_str().unwrap()).unwrap();
    assent_testing::eventually("the card is delivered", &mut || !channel.messages_for(&id).is_empty()).await;
    let card = channel.messages_for(&id).remove(0);
    assert_eq!(card.conversation, "123456789", "a DM to the configured approver");

    // An outsider's press is refused, and told so privately.
    let refused = channel.click(server.engine(), card.id, Decision::AllowOnce, "987654321").await;
    assert!(refused.resolution.is_none(), "{refused:?}");
    assert_eq!(channel.private_replies().len(), 1, "the refusal reaches the outsider privately");
    assert_eq!(channel.private_replies()[0].0, "987654321");

    let pressed = channel.click(server.engine(), card.id, Decision::AllowOnce, "123456789").await;
    assert!(matches!(pressed.resolution, Some(Ok(_))), "{pressed:?}");
    let shown = call(base, token, "GET", format!("/v1/approvals/{id}"), None).await;
    assert_eq!(shown["status"], "approved", "{shown}");
    server.shutdown().await;
}

#[test]
fn rt_2_a_discord_mention_is_normalized_to_the_user_id() {
    let dir = scratch("discord");
    let loaded = config(
        &dir,
        "[channels.discord.accounts.main]\ntoken_file = \"{dir}/bot.token\"\n\
         approvals = { approvers = [\"<@!111111111111111111>\", \"user:222222222222222222\"] }\n",
    );
    let accounts = platforms::accounts(&loaded, &seam(Channel::Discord), &dir).unwrap();
    let approvers = &accounts[0].availability().settings().approvers;
    assert_eq!(approvers, &["111111111111111111", "222222222222222222"]);
}

/// The error for `toml` with the fake posing as `channel`.
fn refusal(channel: Channel, toml: &str) -> String {
    let dir = scratch(channel.as_str());
    let loaded = config(&dir, toml);
    let Err(e) = platforms::accounts(&loaded, &seam(channel), &dir) else { panic!("accepted: {toml}") };
    e.to_string()
}

#[test]
fn rt_2_a_telegram_username_is_refused_at_its_line_with_what_to_write() {
    let e = refusal(
        Channel::Telegram,
        "[channels.telegram.accounts.main]\ntoken_file = \"{dir}/bot.token\"\n\n[channels.telegram.accounts.main.approvals]\n\
         approvers = [\n  \"123456789\",\n  \"@kim\",\n]\n",
    );
    assert!(e.contains("assent.toml:7: "), "the line of the entry itself: {e}");
    assert!(e.contains("channels.telegram.accounts.main.approvals.approvers"), "{e}");
    assert!(e.contains("\"@kim\" is refused") && e.contains("not @usernames"), "{e}");
    assert!(e.contains("write ids like \"123456789\""), "{e}");
}

#[test]
fn rt_2_a_matrix_wildcard_is_refused_at_its_line() {
    let e = refusal(
        Channel::Matrix,
        "[channels.matrix.accounts.main]\ntoken_file = \"{dir}/bot.token\"\n\
         approvals = { approvers = [\"@*:example.org\"] }\n",
    );
    assert!(e.contains("assent.toml:3: "), "{e}");
    assert!(e.contains("\"@*:example.org\" is refused") && e.contains("@kim:example.org"), "{e}");
}

#[test]
fn rt_2_owners_stand_in_for_approvers_only_when_approvers_is_absent() {
    let dir = scratch("owners");
    let toml = "[channels.telegram.accounts.main]\ntoken_file = \"{dir}/bot.token\"\nowners = [\"42\"]\n";
    let accounts = platforms::accounts(&config(&dir, toml), &seam(Channel::Telegram), &dir).unwrap();
    assert_eq!(accounts[0].availability().settings().approvers, ["42"]);
    let toml = format!("{toml}approvals = {{ approvers = [] }}\n");
    let accounts = platforms::accounts(&config(&dir, &toml), &seam(Channel::Telegram), &dir).unwrap();
    assert!(accounts[0].availability().settings().approvers.is_empty(), "an empty list means nobody");
}

#[test]
fn cfg_1_a_platforms_own_keys_are_strict_and_its_secrets_stay_out_of_errors() {
    let e = refusal(
        Channel::Slack,
        "[channels.slack.accounts.main]\ntoken_file = \"{dir}/bot.token\"\ncolour = \"blue\"\n",
    );
    assert!(e.contains("unknown field `colour`") && e.contains("channels.slack.accounts.main"), "{e}");
    let e = refusal(
        Channel::Slack,
        "[channels.slack.accounts.main]\ntoken = \"xoxb-secret-123\"\ntoken_env = \"X\"\n",
    );
    assert!(e.contains("give only one of") && !e.contains("xoxb-secret-123"), "{e}");
    let e = refusal(
        Channel::Slack,
        "[channels.slack.accounts.main]\napprovals = { approvers = [\"U012ABCDEF\"] }\n",
    );
    assert!(e.contains("set token, token_env or token_file"), "{e}");
    let e = refusal(
        Channel::Slack,
        "[channels.slack.accounts.main]\ntoken_file = \"{dir}/bot.token\"\napprovals = { approver = [] }\n",
    );
    assert!(e.contains("unknown field `approver`"), "{e}");
}

#[test]
fn cfg_1_a_platform_this_build_lacks_is_refused_not_ignored() {
    let dir = scratch("uncompiled");
    let loaded = config(&dir, "\n[channels.discord.accounts.main]\ntoken = \"x\"\n");
    let e = platforms::accounts(&loaded, &seam(Channel::Telegram), &dir).err().unwrap().to_string();
    assert!(e.contains("assent.toml:2: ") && e.contains("built without the `discord` channel"), "{e}");
    let loaded = config(&dir, "[channels.icq.accounts.main]\ntoken = \"x\"\n");
    let e = platforms::accounts(&loaded, &seam(Channel::Telegram), &dir).err().unwrap().to_string();
    assert!(e.contains("unknown platform"), "{e}");
}
