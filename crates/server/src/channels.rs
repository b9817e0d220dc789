//! Chat accounts from `[channels.<platform>.accounts.<id>]`: parsed strictly, then started in
//! the background (a platform that is down must not stop the gateway) and run while this
//! replica holds each account's lease (ST-7).

// A build without any channel feature has no account to start: its start path is dead code.
#![cfg_attr(
    not(feature = "matrix"),
    allow(dead_code, unreachable_code, unused_mut, unused_variables, clippy::never_loop)
)]

use std::{path::Path, time::Duration};

use assent_engine::EngineHandle;

use crate::config::{ConfigError, LoadedConfig};

/// Platforms this build can run, each behind the cargo feature of its name.
pub(crate) const COMPILED: &[&str] = &[
    #[cfg(feature = "matrix")]
    "matrix",
];

/// A configured account that this build cannot start is an error, not a silently missing route.
pub(crate) fn refuse_uncompiled(config: &LoadedConfig) -> Result<(), ConfigError> {
    match config.config.channels.keys().find(|name| !COMPILED.contains(&name.as_str())) {
        None => Ok(()),
        Some(name) => Err(ConfigError {
            file: config.file(),
            line: config.channel_line(name),
            message: format!(
                "[channels.{name}]: this assent was built without the `{name}` channel; rebuild with \
                 `--features {name}` or remove the section"
            ),
        }),
    }
}

/// Parses every configured account; errors name the key.
pub(crate) fn parse(config: &LoadedConfig, data_dir: &Path) -> Result<Vec<Account>, ConfigError> {
    #[cfg(feature = "matrix")]
    let matrix = matrix::parse(config, data_dir)?.into_iter().map(Account::Matrix);
    #[cfg(not(feature = "matrix"))]
    let matrix = {
        let _ = (config, data_dir);
        std::iter::empty()
    };
    Ok(matrix.collect())
}

/// What `assent doctor` shows of a configured account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// `matrix/main`.
    pub key: String,
    /// The config table, `channels.matrix.accounts.main`.
    pub table: String,
    /// Number of approvers.
    pub approvers: usize,
    /// Who the bot is.
    pub identity: String,
    probe: Probe,
}

/// What `doctor` may ask the platform without acting as the bot (no login, no device).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Matrix { homeserver: String, user_id: String, approvers: Vec<String>, store_dir: std::path::PathBuf },
}

impl AccountSummary {
    /// Asks the platform whether the account can run: the server answers, and a saved login is
    /// still accepted. `Ok` says what was found, `Err` what is wrong and how to fix it.
    pub fn probe(&self) -> Result<String, String> {
        match &self.probe {
            Probe::Matrix { homeserver, user_id, approvers, store_dir } => {
                probe_matrix(homeserver, user_id, approvers, store_dir)
            }
        }
    }
}

fn probe_matrix(
    homeserver: &str,
    user_id: &str,
    approvers: &[String],
    store_dir: &Path,
) -> Result<String, String> {
    let hs = Homeserver::new(homeserver);
    let (status, _) = hs.get("/_matrix/client/versions", None)?;
    if status != 200 {
        return Err(format!(
            "{homeserver} answered {status} to /_matrix/client/versions — is it the homeserver's client URL?"
        ));
    }
    // `MatrixSession` is saved flat: `{user_id, device_id, access_token, refresh_token?}`.
    let session = store_dir.join("session.json");
    let token = match std::fs::read_to_string(&session) {
        Err(_) => None,
        Ok(text) => serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("{} is not a saved login: {e}", session.display()))?["access_token"]
            .as_str()
            .map(str::to_owned),
    };
    let login = match &token {
        None => format!("{homeserver} answers; the first start logs in as {user_id}"),
        Some(token) => match hs.get("/_matrix/client/v3/account/whoami", Some(token))? {
            (200, me) => format!(
                "logged in as {} (device {})",
                me["user_id"].as_str().unwrap_or(user_id),
                me["device_id"].as_str().unwrap_or("?")
            ),
            (status, body) => {
                return Err(format!(
                    "{homeserver} refused the saved login ({status} {}): the device was logged out; \
                     restart assent serve and it logs in as a new device, keeping the old store aside as \
                     {}.revoked-<time>",
                    body["errcode"].as_str().unwrap_or("no error code"),
                    store_dir.display()
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

/// The accounts `serve` would start, for `assent doctor` (CLI-5). Secrets are read, never shown.
pub fn summaries(config: &LoadedConfig, data_dir: &Path) -> Result<Vec<AccountSummary>, ConfigError> {
    Ok(parse(config, data_dir)?
        .into_iter()
        .map(|a| match a {
            #[cfg(feature = "matrix")]
            Account::Matrix(m) => AccountSummary {
                key: format!("matrix/{}", m.id),
                table: format!("channels.matrix.accounts.{}", m.id),
                approvers: m.approvers.len(),
                identity: format!("{} on {}", m.user_id, m.homeserver),
                probe: Probe::Matrix {
                    homeserver: m.homeserver.clone(),
                    user_id: m.user_id.clone(),
                    approvers: m.approvers.clone(),
                    store_dir: m.store_dir.clone(),
                },
            },
        })
        .collect())
}

/// Whether this build can run `platform`.
pub fn compiled(platform: &str) -> bool {
    COMPILED.contains(&platform)
}

/// One account ready to start.
#[derive(Debug, Clone)]
pub(crate) enum Account {
    /// A Matrix bot.
    #[cfg(feature = "matrix")]
    Matrix(assent_matrix::MatrixAccount),
}

/// Registrations of the configured accounts' contexts (CAP-6); dropping one stops its account.
pub(crate) type Registrations = Vec<Box<dyn std::any::Any + Send + Sync>>;

/// Registers every account's context and lets the engine's bootstrap (CAP-7) run it: connect in
/// the background (a platform that is down must not stop the gateway), retry with backoff, and
/// run the account while this replica holds its lease (ST-7).
pub(crate) fn start(accounts: Vec<Account>, engine: &EngineHandle) -> Registrations {
    #[cfg(feature = "matrix")]
    let matrix = assent_engine::registry::ContextRegistry::<assent_matrix::MatrixAccount>::new();
    let mut registrations: Registrations = Vec::new();
    for account in accounts {
        match account {
            #[cfg(feature = "matrix")]
            Account::Matrix(a) => {
                use assent_core::{
                    capability::IntoDynCapability,
                    model::{AccountKey, Channel},
                };
                let key = AccountKey::new(Channel::Matrix, a.id.clone());
                let engine_for_channel = engine.clone();
                engine.bootstrap(
                    matrix.clone(),
                    key.clone(),
                    move |account: assent_matrix::MatrixAccount| {
                        let engine = engine_for_channel.clone();
                        async move {
                            let id = account.id.clone();
                            let channel = assent_matrix::MatrixChannel::connect(account, engine)
                                .await
                                .map_err(|e| format!("matrix/{id}: {e} (see `assent doctor`)"))?;
                            Ok(channel.erase())
                        }
                    },
                );
                registrations.push(Box::new(matrix.register(key, a)));
            }
        }
    }
    registrations
}

#[cfg(feature = "matrix")]
mod matrix {
    use std::{collections::BTreeMap, path::Path};

    use serde::Deserialize;

    use crate::config::{ConfigError, LoadedConfig, secret};

    /// `[channels.matrix]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        #[serde(default)]
        accounts: BTreeMap<String, AccountKeys>,
    }

    /// `[channels.matrix.accounts.<id>]`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AccountKeys {
        homeserver: String,
        user_id: String,
        password: Option<String>,
        password_env: Option<String>,
        password_file: Option<String>,
        #[serde(default)]
        approvals: Approvals,
        /// Where matrix-sdk keeps state and keys; default `<data dir>/matrix/<id>`.
        store_dir: Option<String>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Approvals {
        #[serde(default)]
        approvers: Vec<String>,
        #[serde(default)]
        target: Target,
        #[serde(default)]
        notify_origin_when_dm_only: bool,
    }

    /// `approvals.target`.
    #[derive(Debug, Default, Clone, Copy, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Target {
        #[default]
        Dm,
        Channel,
        Both,
    }

    pub(super) fn parse(
        config: &LoadedConfig,
        data_dir: &Path,
    ) -> Result<Vec<assent_matrix::MatrixAccount>, ConfigError> {
        let Some(table) = config.config.channels.get("matrix") else { return Ok(Vec::new()) };
        let error = |message: String| ConfigError {
            file: config.file(),
            line: config.channel_line("matrix"),
            message,
        };
        let section: Section = toml::Value::Table(table.get_ref().clone())
            .try_into()
            .map_err(|e: toml::de::Error| error(format!("channels.matrix: {}", e.message())))?;
        let mut out = Vec::new();
        for (id, keys) in section.accounts {
            let prefix = format!("channels.matrix.accounts.{id}");
            let password = secret(
                &format!("{prefix}.password"),
                keys.password.as_deref(),
                keys.password_env.as_deref(),
                keys.password_file.as_deref(),
            )
            .map_err(error)?
            .ok_or_else(|| error(format!("{prefix}: set password, password_env or password_file")))?;
            let store_dir = keys.store_dir.map_or_else(|| data_dir.join("matrix").join(&id), Into::into);
            out.push(assent_matrix::MatrixAccount {
                id,
                homeserver: keys.homeserver,
                user_id: keys.user_id,
                password,
                approvers: keys.approvals.approvers,
                target: match keys.approvals.target {
                    Target::Dm => assent_core::routing::TargetMode::Dm,
                    Target::Channel => assent_core::routing::TargetMode::Channel,
                    Target::Both => assent_core::routing::TargetMode::Both,
                },
                notify_origin_when_dm_only: keys.approvals.notify_origin_when_dm_only,
                store_dir,
            });
        }
        Ok(out)
    }
}
