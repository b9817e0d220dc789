//! The combined binary with a Matrix account configured: it starts the account against a real
//! Synapse (every TLS stack linked in, one crypto provider chosen) and reports it ready.

use crate::harness::{Server, eventually};
use assent_testing::synapse::SynapseServer;

#[test]
fn serve_starts_a_configured_matrix_account() {
    let hs = SynapseServer::shared();
    let (bot, kim) = (hs.register("bot"), hs.register("kim"));
    let config = format!(
        "[channels.matrix.accounts.main]\nhomeserver = \"{}\"\nuser_id = \"{}\"\npassword_env = \"ASSENT_TEST_MATRIX_PASSWORD\"\n\
         approvals = {{ approvers = [\"{}\"] }}\n",
        hs.url(),
        bot.user_id,
        kim.user_id
    );
    let server = Server::with_config_env(&config, &[("ASSENT_TEST_MATRIX_PASSWORD", &bot.password)]);
    let ready = eventually("the Matrix account to attach", || {
        let (_, ready) = server.call_as(None, "GET", "/v1/ready", None);
        let attached =
            ready["accounts"].as_array().is_some_and(|a| a.iter().any(|x| x["account"] == "matrix/main"));
        attached.then_some(ready)
    });
    assert_eq!(ready["accounts"][0]["active"], true, "{ready}");
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(&bot.password), "the password never reaches the log");
    // doctor asks the homeserver about the saved login, without logging in itself.
    let doctor = |config: &str| {
        let path = server.dir.path().join("doctor.toml");
        std::fs::write(&path, config).unwrap();
        let mut cli = server.cli();
        cli.args(["doctor", "--config"]).arg(&path).env("ASSENT_TEST_MATRIX_PASSWORD", &bot.password);
        String::from_utf8_lossy(&cli.output().unwrap().stdout).into_owned()
    };
    let stdout = doctor(&config);
    let line = format!("OK   matrix/main login — logged in as {} (device ", bot.user_id);
    assert!(stdout.contains(&line), "{stdout}");
    // A typo in an approver's id is caught before any card fails.
    let stdout = doctor(&config.replace(&kim.user_id, "@nobody-here:localhost"));
    assert!(
        stdout.contains("FAIL matrix/main login — approver @nobody-here:localhost does not exist"),
        "{stdout}"
    );
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
    let out = std::process::Command::new(crate::harness::ASSENT)
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .env("ASSENT_DATA_DIR", dir.path().join("data"))
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .env("ASSENT_TEST_MATRIX_PASSWORD", "secret-value-123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "FAIL matrix/main — no approvers — set channels.matrix.accounts.main.approvals.approvers"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL matrix/main login — cannot reach http://127.0.0.1:9"),
        "the homeserver is asked: {stdout}"
    );
    assert!(!stdout.contains("secret-value-123"), "secrets never shown: {stdout}");
}
