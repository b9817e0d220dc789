//! The Synapse harness itself: a real homeserver on loopback, accounts from the shared-secret
//! admin API, and a password login like a bot account's.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

use assent_testing::synapse::SynapseServer;
use serde_json::{Value, json};

#[test]
fn synapse_registers_users_who_can_log_in() {
    let hs = SynapseServer::shared();
    assert!(hs.url().starts_with("http://127.0.0.1:"), "loopback only");
    let bot = hs.register("bot");
    let kim = hs.register("kim");
    assert_ne!(bot.user_id, kim.user_id);
    assert!(bot.user_id.ends_with(":localhost"), "{}", bot.user_id);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let login = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": bot.user_id },
        "password": bot.password,
    });
    let mut r = agent.post(format!("{}/_matrix/client/v3/login", hs.url())).send_json(&login).unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let session: Value = r.body_mut().read_json().unwrap();
    let token = session["access_token"].as_str().unwrap();
    let mut r = agent
        .get(format!("{}/_matrix/client/v3/account/whoami", hs.url()))
        .header("authorization", format!("Bearer {token}"))
        .call()
        .unwrap();
    let me: Value = r.body_mut().read_json().unwrap();
    assert_eq!(me["user_id"], bot.user_id.as_str());
}
