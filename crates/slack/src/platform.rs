//! [`SlackPlatform`]: how Slack registers with assent: the keys of
//! `[channels.slack.accounts.<id>]`, the `doctor` probe, and how an account starts.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    model::Channel,
    routing::AccountRouting,
};
use assent_platform::{AccountAvailability, AccountSetup, Hook, Inbound, Platform, secret};
use serde::Deserialize;
use serde_json::Value;

use crate::{Shared, SlackAccount, SlackChannel, error::scrub, web::DEFAULT_API_URL};

/// The Slack platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlackPlatform;

impl SlackPlatform {
    /// The availability of a Slack account whose routing settings are made in code (tests,
    /// embedding) rather than read from `[channels.slack.accounts.<id>]`.
    pub fn availability(routing: AccountRouting) -> AccountAvailability {
        let table = format!("channels.slack.accounts.{}", routing.key.account);
        AccountAvailability::new(routing, table, SlackPlatform.approver_example())
    }
}

/// `[channels.slack.accounts.<id>]`, without the shared `approvals`, `owners` and `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackKeys {
    bot_token: Option<String>,
    bot_token_env: Option<String>,
    bot_token_file: Option<String>,
    /// Selects Socket Mode.
    app_token: Option<String>,
    app_token_env: Option<String>,
    app_token_file: Option<String>,
    /// Selects HTTP mode at `/hooks/slack/<id>`.
    signing_secret: Option<String>,
    signing_secret_env: Option<String>,
    signing_secret_file: Option<String>,
    api_url: Option<String>,
}

fn check_prefix(
    setup: &AccountSetup<'_>,
    key: &str,
    value: &str,
    prefix: &str,
    where_: &str,
) -> Result<(), String> {
    if value.starts_with(prefix) && !value.chars().any(char::is_whitespace) {
        return Ok(());
    }
    Err(format!("{} is not a {prefix}… token ({where_}; the value is not shown)", setup.key(key)))
}

impl Platform for SlackPlatform {
    type Keys = SlackKeys;
    type Account = SlackAccount;

    fn channel(&self) -> Channel {
        Channel::Slack
    }

    fn approver_example(&self) -> &'static str {
        "U0123ABCDEF"
    }

    fn account(&self, keys: SlackKeys, setup: &AccountSetup<'_>) -> Result<SlackAccount, String> {
        let bot_token = setup.required_secret(
            "bot_token",
            keys.bot_token.as_deref(),
            keys.bot_token_env.as_deref(),
            keys.bot_token_file.as_deref(),
        )?;
        let bot_where = "OAuth & Permissions → Bot User OAuth Token";
        check_prefix(setup, "bot_token", &bot_token, "xoxb-", bot_where)?;
        let app_token = secret(
            &setup.key("app_token"),
            keys.app_token.as_deref(),
            keys.app_token_env.as_deref(),
            keys.app_token_file.as_deref(),
        )?;
        if let Some(t) = &app_token {
            let app_where = "Basic Information → App-Level Tokens, with connections:write";
            check_prefix(setup, "app_token", t, "xapp-", app_where)?;
        }
        let signing_secret = secret(
            &setup.key("signing_secret"),
            keys.signing_secret.as_deref(),
            keys.signing_secret_env.as_deref(),
            keys.signing_secret_file.as_deref(),
        )?;
        if signing_secret.as_deref().is_some_and(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return Err(format!(
                "{} is empty or has spaces (Basic Information → App Credentials → Signing Secret)",
                setup.key("signing_secret")
            ));
        }
        if app_token.is_none() && signing_secret.is_none() {
            return Err(format!(
                "{}: set app_token (Socket Mode, no public URL needed) or signing_secret (HTTP mode at /hooks/slack/{})",
                setup.table, setup.id
            ));
        }
        let api_url = keys.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        let parsed = url::Url::parse(&api_url)
            .map_err(|e| format!("{} = \"{api_url}\": {e}", setup.key("api_url")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{} = \"{api_url}\" must be an http(s) URL", setup.key("api_url")));
        }
        Ok(SlackAccount { id: setup.id.to_owned(), bot_token, app_token, signing_secret, api_url })
    }

    fn identity(&self, account: &SlackAccount) -> String {
        format!("Slack app via {} ({})", account.api_url, account.mode())
    }

    fn probe(&self, account: &SlackAccount, availability: &AccountAvailability) -> Result<String, String> {
        probe(account, &availability.settings().approvers)
    }

    fn hook(
        &self,
        account: &SlackAccount,
        availability: &AccountAvailability,
        inbound: Inbound,
    ) -> Option<Arc<dyn Hook>> {
        let secret = account.signing_secret.as_ref()?;
        let shared = Arc::new(Shared::new(account, availability.clone(), inbound).ok()?);
        // The workspace and app are learned now, so the first click waits for nothing.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let learning = shared.clone();
            runtime.spawn(async move {
                if let Err(e) = learning.identity().await {
                    tracing::warn!(account = %learning.key, error = %e, "cannot learn the Slack app's identity yet");
                }
            });
        }
        Some(Arc::new(crate::endpoint::SlackHook::new(shared, secret)))
    }

    async fn connect(
        &self,
        account: SlackAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Arc<dyn DynApprovalCapability>, String> {
        let channel =
            SlackChannel::connect(account, availability, inbound).await.map_err(|e| e.to_string())?;
        Ok(channel.erase())
    }
}

/// `auth.test` says whether the bot token works, `users.info` whether each approver exists,
/// and `apps.connections.open` whether the app-level token may open Socket Mode (the URL it
/// gives is never used). Nothing is sent to anyone.
fn probe(account: &SlackAccount, approvers: &[String]) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let base = account.api_url.trim_end_matches('/');
    let secrets: Vec<&str> = [Some(&account.bot_token), account.app_token.as_ref()]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let call = |method: &str, token: &str, query: &str| -> Result<Value, String> {
        let mut response = agent
            .post(&format!("{base}/{method}{query}"))
            .header("authorization", &format!("Bearer {token}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .send("")
            .map_err(|e| scrub(&format!("cannot reach {base}: {e}"), &secrets))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("{base}/{method} answered HTTP {status}"));
        }
        response.body_mut().read_json().map_err(|e| format!("{base}/{method} answered with no JSON: {e}"))
    };
    let refused = |method: &str, v: &Value| {
        let code = v["error"].as_str().unwrap_or("unknown_error");
        let e = crate::SlackError::refused(method, code);
        e.to_string()
    };
    let me = call("auth.test", &account.bot_token, "")?;
    if me["ok"] != true {
        return Err(refused("auth.test", &me));
    }
    for approver in approvers {
        let user = call("users.info", &account.bot_token, &format!("?user={approver}"))?;
        if user["ok"] != true {
            return Err(format!("approver {approver}: {}", refused("users.info", &user)));
        }
        if user["user"]["is_bot"] == true || user["user"]["deleted"] == true {
            return Err(format!(
                "approver {approver} is a bot or a deactivated member: approvers are people"
            ));
        }
    }
    let mut found = format!(
        "workspace {} answers for bot {}",
        me["team"].as_str().unwrap_or("?"),
        me["user"].as_str().unwrap_or("?")
    );
    if let Some(app_token) = &account.app_token {
        let opened = call("apps.connections.open", app_token, "")?;
        if opened["ok"] != true {
            return Err(refused("apps.connections.open", &opened));
        }
        found.push_str("; the app-level token may open Socket Mode");
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use assent_platform::{AccountSetup, Platform};

    use super::{SlackKeys, SlackPlatform};

    fn account(keys: serde_json::Value) -> Result<crate::SlackAccount, String> {
        let keys: SlackKeys = serde_json::from_value(keys).unwrap();
        let setup = AccountSetup {
            id: "main",
            table: "channels.slack.accounts.main",
            data_dir: std::path::Path::new("/tmp"),
            public_url: None,
        };
        SlackPlatform.account(keys, &setup)
    }

    #[test]
    fn cfg_a_malformed_token_is_refused_without_being_shown() {
        let e =
            account(serde_json::json!({ "bot_token": "hunter2-secret", "app_token": "xapp-1" })).unwrap_err();
        assert!(e.contains("channels.slack.accounts.main.bot_token") && !e.contains("hunter2"), "{e}");
        let e = account(serde_json::json!({ "bot_token": "xoxb-1", "app_token": "xoxb-oops-secret" }))
            .unwrap_err();
        assert!(e.contains("app_token") && e.contains("xapp-") && !e.contains("oops"), "{e}");
    }

    #[test]
    fn cfg_a_mode_is_required() {
        let e = account(serde_json::json!({ "bot_token": "xoxb-1" })).unwrap_err();
        assert!(e.contains("app_token") && e.contains("signing_secret"), "{e}");
    }

    #[test]
    fn cfg_secrets_stay_out_of_debug() {
        let a = account(
            serde_json::json!({ "bot_token": "xoxb-1-secretpart", "signing_secret": "abc123secret" }),
        )
        .unwrap();
        let shown = format!("{a:?}");
        assert!(
            !shown.contains("secretpart") && !shown.contains("abc123secret") && shown.contains("HTTP mode"),
            "{shown}"
        );
    }
}
