//! [`TelegramPlatform`]: how Telegram registers with assent: the keys of
//! `[channels.telegram.accounts.<id>]`, the `doctor` probe, and how an account starts.

use std::{sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    model::Channel,
    routing::AccountRouting,
};
use assent_platform::{AccountAvailability, AccountSetup, Hook, Inbound, Platform};
use serde::Deserialize;

use crate::{TelegramAccount, TelegramChannel, error::scrub};

/// The public Bot API.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// The Telegram platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct TelegramPlatform;

impl TelegramPlatform {
    /// The availability of a Telegram account whose routing settings are made in code (tests,
    /// embedding) rather than read from `[channels.telegram.accounts.<id>]`.
    pub fn availability(routing: AccountRouting) -> AccountAvailability {
        let table = format!("channels.telegram.accounts.{}", routing.key.account);
        AccountAvailability::new(routing, table, TelegramPlatform.approver_example())
    }
}

/// `[channels.telegram.accounts.<id>]`, without the shared `approvals`, `owners` and `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramKeys {
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<String>,
    /// A self-hosted Bot API server; tests point it at a fake.
    api_url: Option<String>,
    /// How updates arrive.
    #[serde(default)]
    mode: Mode,
}

/// `mode`: long polling (the default) or a webhook at `/hooks/telegram/<id>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Polling,
    Webhook,
}

impl Platform for TelegramPlatform {
    type Keys = TelegramKeys;
    type Account = TelegramAccount;

    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn approver_example(&self) -> &'static str {
        "123456789"
    }

    fn account(&self, keys: TelegramKeys, setup: &AccountSetup<'_>) -> Result<TelegramAccount, String> {
        let token = setup.required_secret(
            "token",
            keys.token.as_deref(),
            keys.token_env.as_deref(),
            keys.token_file.as_deref(),
        )?;
        // "Authorizing your bot": `<bot id>:<secret>`.
        let well_formed = token.split_once(':').is_some_and(|(id, rest)| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
        });
        if !well_formed {
            return Err(format!(
                "{} is not a bot token; @BotFather's tokens look like 123456789:AA… (the value is not shown)",
                setup.key("token")
            ));
        }
        let api_url = keys.api_url.unwrap_or_else(|| DEFAULT_API_URL.to_owned());
        if url::Url::parse(&api_url).is_err() {
            return Err(format!("{} = \"{api_url}\" is not a URL", setup.key("api_url")));
        }
        let webhook = match keys.mode {
            Mode::Polling => None,
            Mode::Webhook => Some(setup.hook_url("telegram").ok_or_else(|| {
                format!(
                    "{} = \"webhook\" needs server.public_url, the https address where Telegram reaches assent \
                     (or use mode = \"polling\")",
                    setup.key("mode")
                )
            })?),
        };
        Ok(TelegramAccount {
            id: setup.id.to_owned(),
            token,
            api_url,
            webhook,
            state_dir: setup.state_dir("telegram"),
        })
    }

    fn identity(&self, account: &TelegramAccount) -> String {
        let bot_id = account.token.split(':').next().unwrap_or("?");
        format!("bot {bot_id} via {}", account.api_url)
    }

    fn probe(&self, account: &TelegramAccount, availability: &AccountAvailability) -> Result<String, String> {
        probe(account, &availability.settings().approvers)
    }

    fn hook(
        &self,
        account: &TelegramAccount,
        availability: &AccountAvailability,
        inbound: Inbound,
    ) -> Option<Arc<dyn Hook>> {
        account.webhook.as_ref()?;
        let shared = crate::Shared::new(account, availability.clone(), inbound);
        Some(Arc::new(crate::webhook::TelegramHook::new(Arc::new(shared))))
    }

    async fn connect(
        &self,
        account: TelegramAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Arc<dyn DynApprovalCapability>, String> {
        let channel =
            TelegramChannel::connect(account, availability, inbound).await.map_err(|e| e.to_string())?;
        Ok(channel.erase())
    }
}

/// `getMe` says whether the token works; `getChat` on each approver says whether they started
/// the bot (a bot cannot message anyone who has not). Nothing is sent.
fn probe(account: &TelegramAccount, approvers: &[String]) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let base = account.api_url.trim_end_matches('/');
    let call = |method: &str, query: &str| -> Result<serde_json::Value, String> {
        let url = format!("{base}/bot{}/{method}{query}", account.token);
        let mut response = agent
            .get(&url)
            .call()
            .map_err(|e| scrub(&format!("cannot reach {base}: {e}"), &account.token))?;
        response
            .body_mut()
            .read_json()
            .map_err(|e| scrub(&format!("{base} answered {method} with no JSON: {e}"), &account.token))
    };
    let me = call("getMe", "")?;
    if me["ok"] != true {
        return Err(format!(
            "{base} refused the token ({}): get a new one from @BotFather",
            me["description"].as_str().unwrap_or("no description")
        ));
    }
    let username = me["result"]["username"].as_str().unwrap_or("?").to_owned();
    for approver in approvers {
        let chat = call("getChat", &format!("?chat_id={approver}"))?;
        if chat["ok"] != true {
            return Err(format!(
                "approver {approver} has no chat with @{username} ({}): ask them to send /start to the bot",
                chat["description"].as_str().unwrap_or("no description")
            ));
        }
    }
    Ok(format!("@{username} answers; every approver has started it"))
}

#[cfg(test)]
mod tests {
    use assent_platform::{AccountSetup, Platform};

    use super::{TelegramKeys, TelegramPlatform};

    fn account(keys: serde_json::Value, public_url: Option<&str>) -> Result<crate::TelegramAccount, String> {
        let keys: TelegramKeys = serde_json::from_value(keys).unwrap();
        let setup = AccountSetup {
            id: "main",
            table: "channels.telegram.accounts.main",
            data_dir: std::path::Path::new("/tmp"),
            public_url,
        };
        TelegramPlatform.account(keys, &setup)
    }

    #[test]
    fn cfg_webhook_mode_needs_a_public_url_and_hooks_under_it() {
        let keys = serde_json::json!({ "token": "1:x", "mode": "webhook" });
        let e = account(keys.clone(), None).unwrap_err();
        assert!(e.contains("channels.telegram.accounts.main.mode") && e.contains("server.public_url"), "{e}");
        let a = account(keys, Some("https://approve.example.org/")).unwrap();
        assert_eq!(a.webhook.as_deref(), Some("https://approve.example.org/hooks/telegram/main"));
    }

    #[test]
    fn cfg_a_malformed_token_is_refused_without_being_shown() {
        let e = account(serde_json::json!({ "token": "hunter2" }), None).unwrap_err();
        assert!(e.contains("is not a bot token") && !e.contains("hunter2"), "{e}");
    }
}
