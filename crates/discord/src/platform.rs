//! [`DiscordPlatform`]: how Discord registers with assent: the keys of
//! `[channels.discord.accounts.<id>]`, the `doctor` probe, and how an account starts.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    model::Channel,
    routing::AccountRouting,
};
use assent_platform::{AccountAvailability, AccountSetup, Hook, Inbound, Platform};
use serde::Deserialize;

use crate::{
    DiscordAccount, DiscordChannel, Shared,
    error::scrub,
    gateway::message_content,
    rest::{DEFAULT_API_URL, proxy_of},
};

/// The Discord platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscordPlatform;

impl DiscordPlatform {
    /// The availability of a Discord account whose routing settings are made in code (tests,
    /// embedding) rather than read from `[channels.discord.accounts.<id>]`.
    pub fn availability(routing: AccountRouting) -> AccountAvailability {
        let table = format!("channels.discord.accounts.{}", routing.key.account);
        AccountAvailability::new(routing, table, DiscordPlatform.approver_example())
    }
}

/// `[channels.discord.accounts.<id>]`, without the shared `approvals`, `owners` and `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordKeys {
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<String>,
    application_id: Option<String>,
    /// Enables HTTP interactions at `/hooks/discord/<id>`.
    public_key: Option<String>,
    api_url: Option<String>,
    gateway_url: Option<String>,
    #[serde(default)]
    cleanup_after_resolve: bool,
}

impl Platform for DiscordPlatform {
    type Keys = DiscordKeys;
    type Account = DiscordAccount;

    fn channel(&self) -> Channel {
        Channel::Discord
    }

    fn approver_example(&self) -> &'static str {
        "111111111111111111"
    }

    fn account(&self, keys: DiscordKeys, setup: &AccountSetup<'_>) -> Result<DiscordAccount, String> {
        let token = setup.required_secret(
            "token",
            keys.token.as_deref(),
            keys.token_env.as_deref(),
            keys.token_file.as_deref(),
        )?;
        // A bot token is three dot-separated parts; a "Bot " prefix is added by assent.
        let bare = token.strip_prefix("Bot ").unwrap_or(&token).to_owned();
        if bare.split('.').count() != 3 || bare.chars().any(char::is_whitespace) {
            return Err(format!(
                "{} is not a bot token (Developer Portal → your app → Bot → Reset Token gives one; the value is not shown)",
                setup.key("token")
            ));
        }
        let application_id = keys
            .application_id
            .map(|a| {
                a.parse::<u64>().map_err(|_| {
                    format!(
                        "{} = \"{a}\" is not an application id (a number such as 1234567890)",
                        setup.key("application_id")
                    )
                })
            })
            .transpose()?;
        if let Some(k) = &keys.public_key
            && (k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!(
                "{} must be the 64 hex digits of the portal's \"Public Key\" (General Information)",
                setup.key("public_key")
            ));
        }
        let api_url = keys.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        proxy_of(&api_url).map_err(|e| format!("{}: {e}", setup.key("api_url")))?;
        if let Some(g) = &keys.gateway_url
            && !(g.starts_with("wss://") || g.starts_with("ws://"))
        {
            return Err(format!("{} = \"{g}\" must be a ws:// or wss:// URL", setup.key("gateway_url")));
        }
        Ok(DiscordAccount {
            id: setup.id.to_owned(),
            token: bare,
            application_id,
            public_key: keys.public_key,
            api_url,
            gateway_url: keys.gateway_url,
            cleanup_after_resolve: keys.cleanup_after_resolve,
        })
    }

    fn identity(&self, account: &DiscordAccount) -> String {
        let app = account
            .application_id
            .map_or_else(|| "application from the token".to_owned(), |a| format!("application {a}"));
        let mode = if account.public_key.is_some() { "gateway + HTTP interactions" } else { "gateway" };
        format!("{app} via {} ({mode})", account.api_url)
    }

    fn probe(&self, account: &DiscordAccount, availability: &AccountAvailability) -> Result<String, String> {
        probe(account, &availability.settings().approvers)
    }

    fn hook(
        &self,
        account: &DiscordAccount,
        availability: &AccountAvailability,
        inbound: Inbound,
    ) -> Option<Arc<dyn Hook>> {
        let key = account.public_key.as_ref()?;
        let shared = Shared::new(account, availability.clone(), inbound).ok()?;
        Some(Arc::new(crate::endpoint::DiscordHook::new(Arc::new(shared), key)))
    }

    async fn connect(
        &self,
        account: DiscordAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Arc<dyn DynApprovalCapability>, String> {
        let channel =
            DiscordChannel::connect(account, availability, inbound).await.map_err(|e| e.to_string())?;
        Ok(channel.erase())
    }
}

/// `GET /oauth2/applications/@me` says whether the token works and whether the Message Content
/// intent is granted; `GET /users/{id}` whether each approver exists. Nothing is sent.
fn probe(account: &DiscordAccount, approvers: &[String]) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let base = account.api_url.trim_end_matches('/');
    let call = |path: &str| -> Result<(u16, serde_json::Value), String> {
        let mut response = agent
            .get(&format!("{base}{path}"))
            .header("authorization", &format!("Bot {}", account.token))
            .call()
            .map_err(|e| scrub(&format!("cannot reach {base}: {e}"), &[&account.token]))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_json().unwrap_or_default();
        Ok((status, body))
    };
    let (status, app) = call("/oauth2/applications/@me")?;
    if status == 401 {
        return Err(format!(
            "{base} refused the token (401): reset it in the Developer Portal (Bot → Reset Token)"
        ));
    }
    if status != 200 {
        return Err(format!("{base} answered {status}: {}", app["message"].as_str().unwrap_or("no message")));
    }
    let name = app["name"].as_str().unwrap_or("?").to_owned();
    if let Some(configured) = account.application_id
        && app["id"].as_str() != Some(&configured.to_string())
    {
        return Err(format!(
            "the token belongs to application {}, not application_id = {configured}",
            app["id"]
        ));
    }
    for approver in approvers {
        let (status, _) = call(&format!("/users/{approver}"))?;
        if status != 200 {
            return Err(format!(
                "approver {approver} is not a Discord user the bot can see (HTTP {status}): check the id"
            ));
        }
    }
    let typed = if message_content(app["flags"].as_u64().unwrap_or(0)) {
        "the Message Content intent is granted, so typed /approve works in servers"
    } else {
        "the Message Content intent is not granted: typed /approve works in DMs only (the /approve command works everywhere); \
         turn it on under Bot → Privileged Gateway Intents"
    };
    Ok(format!("{name} answers; {typed}"))
}

#[cfg(test)]
mod tests {
    use assent_platform::{AccountSetup, Platform};

    use super::{DiscordKeys, DiscordPlatform};

    fn account(keys: serde_json::Value) -> Result<crate::DiscordAccount, String> {
        let keys: DiscordKeys = serde_json::from_value(keys).unwrap();
        let setup = AccountSetup {
            id: "main",
            table: "channels.discord.accounts.main",
            data_dir: std::path::Path::new("/tmp"),
            public_url: None,
        };
        DiscordPlatform.account(keys, &setup)
    }

    const TOKEN: &str = "MTA1.GfAkEx.secretpart";

    #[test]
    fn cfg_a_malformed_token_is_refused_without_being_shown() {
        let e = account(serde_json::json!({ "token": "hunter2" })).unwrap_err();
        assert!(e.contains("is not a bot token") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn cfg_a_bad_public_key_or_api_url_is_named() {
        let e = account(serde_json::json!({ "token": TOKEN, "public_key": "xyz" })).unwrap_err();
        assert!(e.contains("channels.discord.accounts.main.public_key"), "{e}");
        let e = account(serde_json::json!({ "token": TOKEN, "api_url": "http://127.0.0.1:1/api/v9" }))
            .unwrap_err();
        assert!(e.contains("api_url") && e.contains("/api/v10"), "{e}");
    }

    #[test]
    fn cfg_a_bot_prefix_is_accepted_and_dropped() {
        let a = account(serde_json::json!({ "token": format!("Bot {TOKEN}") })).unwrap();
        assert_eq!(a.token, TOKEN);
        assert!(!format!("{a:?}").contains("secretpart"));
    }
}
