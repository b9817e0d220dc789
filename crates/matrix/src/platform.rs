//! [`MatrixPlatform`]: how Matrix registers with assent: the keys of
//! `[channels.matrix.accounts.<id>]`, the `doctor` probe, and how an account starts.

use std::{path::Path, sync::Arc, time::Duration};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    model::Channel,
    routing::AccountRouting,
};
use assent_platform::{AccountAvailability, AccountSetup, Inbound, Platform};
use serde::Deserialize;

use crate::{MatrixAccount, MatrixChannel};

/// The Matrix platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatrixPlatform;

impl MatrixPlatform {
    /// The availability of a Matrix account whose routing settings are made in code (tests,
    /// embedding) rather than read from `[channels.matrix.accounts.<id>]`.
    pub fn availability(routing: AccountRouting) -> AccountAvailability {
        let table = format!("channels.matrix.accounts.{}", routing.key.account);
        AccountAvailability::new(routing, table, MatrixPlatform.approver_example())
    }
}

/// `[channels.matrix.accounts.<id>]`, without the shared `approvals`, `owners` and `default`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixKeys {
    homeserver: String,
    user_id: String,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
    /// Where matrix-sdk keeps state and keys; default `<data dir>/matrix/<id>`.
    store_dir: Option<String>,
}

impl Platform for MatrixPlatform {
    type Keys = MatrixKeys;
    type Account = MatrixAccount;

    fn channel(&self) -> Channel {
        Channel::Matrix
    }

    fn approver_example(&self) -> &'static str {
        "@kim:example.org"
    }

    fn account(&self, keys: MatrixKeys, setup: &AccountSetup<'_>) -> Result<MatrixAccount, String> {
        let password = setup.required_secret(
            "password",
            keys.password.as_deref(),
            keys.password_env.as_deref(),
            keys.password_file.as_deref(),
        )?;
        if !keys.homeserver.starts_with("https://") && !keys.homeserver.starts_with("http://") {
            return Err(format!(
                "{} = \"{}\" is not a URL; write the homeserver's client URL, e.g. \"https://matrix.example.org\"",
                setup.key("homeserver"),
                keys.homeserver
            ));
        }
        let store_dir = keys.store_dir.map_or_else(|| setup.state_dir("matrix"), Into::into);
        Ok(MatrixAccount {
            id: setup.id.to_owned(),
            homeserver: keys.homeserver,
            user_id: keys.user_id,
            password,
            store_dir,
        })
    }

    fn identity(&self, account: &MatrixAccount) -> String {
        format!("{} on {}", account.user_id, account.homeserver)
    }

    fn probe(&self, account: &MatrixAccount, availability: &AccountAvailability) -> Result<String, String> {
        probe(account, &availability.settings().approvers)
    }

    async fn connect(
        &self,
        account: MatrixAccount,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> Result<Arc<dyn DynApprovalCapability>, String> {
        let channel =
            MatrixChannel::connect(account, availability, inbound).await.map_err(|e| e.to_string())?;
        Ok(channel.erase())
    }
}

/// Asks the homeserver whether the account can run: it answers, and a saved login is still
/// accepted. It never logs in, so it creates no device.
fn probe(account: &MatrixAccount, approvers: &[String]) -> Result<String, String> {
    let homeserver = &account.homeserver;
    let hs = Homeserver::new(homeserver);
    let (status, _) = hs.get("/_matrix/client/versions", None)?;
    if status != 200 {
        return Err(format!(
            "{homeserver} answered {status} to /_matrix/client/versions — is it the homeserver's client URL?"
        ));
    }
    let token = saved_token(&account.store_dir)?;
    let login = match &token {
        None => format!("{homeserver} answers; the first start logs in as {}", account.user_id),
        Some(token) => match hs.get("/_matrix/client/v3/account/whoami", Some(token))? {
            (200, me) => format!(
                "logged in as {} (device {})",
                me["user_id"].as_str().unwrap_or(&account.user_id),
                me["device_id"].as_str().unwrap_or("?")
            ),
            (status, body) => {
                return Err(format!(
                    "{homeserver} refused the saved login ({status} {}): the device was logged out; \
                     restart assent serve and it logs in as a new device, keeping the old store aside as \
                     {}.revoked-<time>",
                    body["errcode"].as_str().unwrap_or("no error code"),
                    account.store_dir.display()
                ));
            }
        },
    };
    // A typo in an approver's id would only show when their first card fails.
    for approver in approvers {
        if let (404, _) = hs.get(&format!("/_matrix/client/v3/profile/{approver}"), token.as_deref())? {
            return Err(format!("approver {approver} does not exist ({homeserver} knows no such user)"));
        }
    }
    Ok(login)
}

/// The access token of the login the account saved beside its store, if any.
fn saved_token(store_dir: &Path) -> Result<Option<String>, String> {
    let session = store_dir.join(crate::SESSION_FILE);
    let Ok(text) = std::fs::read_to_string(&session) else { return Ok(None) };
    let saved: matrix_sdk::authentication::matrix::MatrixSession = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a saved login: {e}", session.display()))?;
    Ok(Some(saved.tokens.access_token))
}

/// Blocking JSON calls to a homeserver's client API, 5 s each.
struct Homeserver {
    agent: ureq::Agent,
    base: String,
}

impl Homeserver {
    fn new(url: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        Self { agent, base: url.trim_end_matches('/').to_owned() }
    }

    /// Status and JSON body (`null` when there is none).
    fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, serde_json::Value), String> {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        let body = response.body_mut().read_to_string().ok().and_then(|t| serde_json::from_str(&t).ok());
        Ok((response.status().as_u16(), body.unwrap_or_default()))
    }
}
