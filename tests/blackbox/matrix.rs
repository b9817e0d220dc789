//! The combined binary with a Matrix account configured: it starts the account against a real
//! Synapse (every TLS stack linked in, one crypto provider chosen) and reports it ready.

use crate::harness::{Server, eventually};
use assent_testing::synapse::{MatrixUser, SynapseServer};

/// `[channels.matrix.accounts.main]` for `bot` on `hs`, with `approver`.
fn matrix_config(hs: &SynapseServer, bot: &MatrixUser, approver: &MatrixUser) -> String {
    format!(
        "[channels.matrix.accounts.main]\nhomeserver = \"{}\"\nuser_id = \"{}\"\npassword_env = \"ASSENT_TEST_MATRIX_PASSWORD\"\n\
         approvals = {{ approvers = [\"{}\"] }}\n",
        hs.url(),
        bot.user_id,
        approver.user_id
    )
}

fn serve(config: &str, bot: &MatrixUser) -> Server {
    let server = Server::with_config_env(config, &[("ASSENT_TEST_MATRIX_PASSWORD", &bot.password)]);
    wait_until_attached(&server);
    server
}

fn wait_until_attached(server: &Server) {
    let ready = eventually("the Matrix account to attach", || {
        let (_, ready) = server.call_as(None, "GET", "/v1/ready", None);
        let attached =
            ready["accounts"].as_array().is_some_and(|a| a.iter().any(|x| x["account"] == "matrix/main"));
        attached.then_some(ready)
    });
    assert_eq!(ready["accounts"][0]["active"], true, "{ready}");
}

/// `assent doctor` with `config`; its standard output.
fn doctor(server: &Server, config: &str, bot: &MatrixUser) -> String {
    let path = server.dir.path().join("doctor.toml");
    std::fs::write(&path, config).unwrap();
    let mut cli = server.cli();
    cli.args(["doctor", "--config"]).arg(&path).env("ASSENT_TEST_MATRIX_PASSWORD", &bot.password);
    String::from_utf8_lossy(&cli.output().unwrap().stdout).into_owned()
}

/// The bot's saved login: (access token, device id).
fn saved_login(server: &Server) -> (String, String) {
    let path = server.data_dir().join("matrix/main/session.json");
    let session: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (session["access_token"].as_str().unwrap().to_owned(), session["device_id"].as_str().unwrap().to_owned())
}

#[test]
fn serve_starts_a_configured_matrix_account() {
    let hs = SynapseServer::shared();
    let (bot, kim) = (hs.register("bot"), hs.register("kim"));
    let config = matrix_config(hs, &bot, &kim);
    let server = serve(&config, &bot);
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(&bot.password), "the password never reaches the log");
    // doctor asks the homeserver about the saved login, without logging in itself.
    let stdout = doctor(&server, &config, &bot);
    let line = format!("OK   matrix/main login — logged in as {} (device ", bot.user_id);
    assert!(stdout.contains(&line), "{stdout}");
    // A typo in an approver's id is caught before any card fails.
    let stdout = doctor(&server, &config.replace(&kim.user_id, "@nobody-here:localhost"), &bot);
    assert!(
        stdout.contains("FAIL matrix/main login — approver @nobody-here:localhost does not exist"),
        "{stdout}"
    );
}

#[test]
fn a_bot_device_logged_out_elsewhere_is_reported_by_doctor_and_replaced_at_restart() {
    let hs = SynapseServer::shared();
    let (bot, kim) = (hs.register("bot"), hs.register("kim"));
    let config = matrix_config(hs, &bot, &kim);
    let server = serve(&config, &bot);
    let (token, old_device) = saved_login(&server);
    // Someone logs the bot's device out from another client.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let out = agent
        .post(format!("{}/_matrix/client/v3/logout", hs.url()))
        .header("Authorization", format!("Bearer {token}"))
        .send_json(serde_json::json!({}))
        .unwrap();
    assert_eq!(out.status().as_u16(), 200);

    let stdout = doctor(&server, &config, &bot);
    assert!(
        stdout.contains("FAIL matrix/main login — ")
            && stdout.contains("refused the saved login (401 M_UNKNOWN_TOKEN): the device was logged out; restart assent serve"),
        "{stdout}"
    );
    let server = server.restart();
    wait_until_attached(&server);
    let (_, new_device) = saved_login(&server);
    assert_ne!(new_device, old_device, "a new device");
    let kept = std::fs::read_dir(server.data_dir().join("matrix"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().starts_with("main.revoked-"));
    assert!(kept, "the old device's store is kept aside");
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("the homeserver refused the saved Matrix login; logging in as a new device"),
        "{log}"
    );
    let stdout = doctor(&server, &config, &bot);
    assert!(stdout.contains(&format!("(device {new_device})")), "{stdout}");
}

#[test]
fn doctor_names_the_key_of_a_matrix_account_without_approvers() {
    let dir = crate::harness::TempDir::new("doctor");
    let config = dir.path().join("assent.toml");
    std::fs::write(
        &config,
        "[channels.matrix.accounts.main]\nhomeserver = \"http://127.0.0.1:9\"\nuser_id = \"@bot:localhost\"\n\
         password_env = \"ASSENT_TEST_MATRIX_PASSWORD\"\n",
    )
    .unwrap();
    let doctor = |json: bool| {
        let mut cli = std::process::Command::new(crate::harness::ASSENT);
        cli.arg("doctor").args(json.then_some("--json")).arg("--config").arg(&config);
        cli.env("ASSENT_DATA_DIR", dir.path().join("data"))
            .env("ASSENT_URL", "http://127.0.0.1:9")
            .env("ASSENT_TEST_MATRIX_PASSWORD", "secret-value-123");
        cli.output().unwrap()
    };
    let out = doctor(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL matrix/main — nobody can approve on matrix/main: set \
             `channels.matrix.accounts.main.approvals.approvers`, e.g. `[\"@kim:example.org\"]`"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL matrix/main login — cannot reach http://127.0.0.1:9"),
        "the homeserver is asked: {stdout}"
    );
    assert!(!stdout.contains("secret-value-123"), "secrets never shown: {stdout}");

    // CLI-5: `--json` carries the same hint, with the exact key to set.
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&doctor(true).stdout).unwrap();
    let account = checks.iter().find(|c| c["subject"] == "matrix/main").unwrap();
    assert_eq!(account["status"], "FAIL", "{account}");
    assert_eq!(account["keys"], serde_json::json!(["channels.matrix.accounts.main.approvals.approvers"]));
    assert!(account["message"].as_str().unwrap().contains("e.g. `[\"@kim:example.org\"]`"), "{account}");
}
