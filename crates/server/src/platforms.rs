//! The chat platforms this build can run: one list, one `#[cfg(feature = …)]` line per channel
//! crate. `assent serve`, `assent doctor`, the configuration check and the console's accounts
//! page all read it. A platform's own code (its keys, probe and start) lives in its crate, behind
//! [`assent_platform::Platform`].

use std::{path::Path, sync::Arc};

use assent_core::model::Channel;
use assent_platform::{ConfigIssue, ConfiguredAccount, DynPlatform};
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use crate::config::{ConfigError, LoadedConfig};

/// The platforms compiled into this build.
// One statement per platform, so each can sit behind its feature; a build without any channel
// feature has an empty list.
#[allow(unused_mut, clippy::vec_init_then_push)]
pub fn compiled() -> Vec<Arc<dyn DynPlatform>> {
    let mut list: Vec<Arc<dyn DynPlatform>> = Vec::new();
    #[cfg(feature = "matrix")]
    list.push(Arc::new(assent_matrix::MatrixPlatform));
    #[cfg(feature = "telegram")]
    list.push(Arc::new(assent_telegram::TelegramPlatform));
    #[cfg(feature = "discord")]
    list.push(Arc::new(assent_discord::DiscordPlatform));
    #[cfg(feature = "slack")]
    list.push(Arc::new(assent_slack::SlackPlatform));
    list
}

/// Every account of `[channels.<platform>.accounts.<id>]`, checked by its platform. A platform
/// this build lacks is an error, not a silently missing route; errors name `file:line` and the key.
pub fn accounts(
    config: &LoadedConfig,
    platforms: &[Arc<dyn DynPlatform>],
    data_dir: &Path,
) -> Result<Vec<Box<dyn ConfiguredAccount>>, ConfigError> {
    let every: Vec<&String> = config.config.channels.keys().collect();
    accounts_of(config, platforms, data_dir, &every)
}

/// [`accounts`] of the `[channels.<name>]` sections named in `names` only (`doctor` reports
/// the platforms this build lacks on their own).
pub fn accounts_of(
    config: &LoadedConfig,
    platforms: &[Arc<dyn DynPlatform>],
    data_dir: &Path,
    names: &[&String],
) -> Result<Vec<Box<dyn ConfiguredAccount>>, ConfigError> {
    let public_url = config.config.server.public_url.as_deref();
    let server = assent_platform::ServerContext { data_dir, public_url };
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let error = |span: Option<std::ops::Range<usize>>, message: String| config.error_at(span, message);
    let document = DeTable::parse(config.source()).map_err(|e| error(e.span(), e.message().to_owned()))?;
    let mut out = Vec::new();
    let Some(channels) = document.get_ref().get("channels") else { return Ok(out) };
    for (name, section) in table(channels, "channels").map_err(|m| error(Some(channels.span()), m))? {
        let name = name.get_ref().as_ref();
        if !names.iter().any(|n| n.as_str() == name) {
            continue;
        }
        let platform = find(platforms, name).map_err(|m| error(Some(section.span()), m))?;
        let prefix = format!("channels.{name}");
        for (key, value) in table(section, &prefix).map_err(|m| error(Some(section.span()), m))? {
            if key.get_ref() != "accounts" {
                let message = format!(
                    "{prefix}: unknown key `{}`; accounts go in [{prefix}.accounts.<id>]",
                    key.get_ref()
                );
                return Err(error(Some(key.span()), message));
            }
            let list =
                table(value, &format!("{prefix}.accounts")).map_err(|m| error(Some(value.span()), m))?;
            for (id, account) in list {
                let account_table = format!("{prefix}.accounts.{}", id.get_ref());
                let span = account.span();
                let DeValue::Table(keys) = account.get_ref().clone() else {
                    return Err(error(Some(span), format!("{account_table} must be a table")));
                };
                let configured = platform
                    .clone()
                    .configure(id.get_ref(), Spanned::new(span.clone(), keys), server)
                    .map_err(|ConfigIssue { span: at, message }| error(at.or(Some(span.clone())), message))?;
                out.push(configured);
            }
        }
    }
    Ok(out)
}

/// The entries of a TOML table, or why it is not one.
fn table<'a, 'i>(
    value: &'a Spanned<DeValue<'i>>,
    name: &str,
) -> Result<
    impl Iterator<Item = (&'a Spanned<std::borrow::Cow<'i, str>>, &'a Spanned<DeValue<'i>>)> + use<'a, 'i>,
    String,
> {
    match value.get_ref() {
        DeValue::Table(t) => Ok(t.iter()),
        other => Err(format!("{name} must be a table, not a {}", other.type_str())),
    }
}

/// The compiled platform called `name`, or what to do about it.
fn find(platforms: &[Arc<dyn DynPlatform>], name: &str) -> Result<Arc<dyn DynPlatform>, String> {
    if let Some(p) = platforms.iter().find(|p| p.channel().as_str() == name) {
        return Ok(p.clone());
    }
    Err(if Channel::CHAT.iter().any(|c| c.as_str() == name) {
        format!(
            "[channels.{name}]: this assent was built without the `{name}` channel; rebuild with \
             `--features {name}` or remove the section"
        )
    } else {
        let known: Vec<&str> = Channel::CHAT.iter().map(|c| c.as_str()).collect();
        format!("[channels.{name}]: unknown platform; assent knows {}", known.join(", "))
    })
}

/// Whether `name` is a platform assent knows but this build lacks (`doctor` says OFF, not FAIL).
pub fn known_but_not_compiled(platforms: &[Arc<dyn DynPlatform>], name: &str) -> bool {
    Channel::CHAT.iter().any(|c| c.as_str() == name)
        && !platforms.iter().any(|p| p.channel().as_str() == name)
}

/// What the console's accounts page shows of a configured account.
#[derive(Debug, Clone)]
pub(crate) struct AccountRow {
    pub(crate) key: assent_core::model::AccountKey,
    pub(crate) identity: String,
    pub(crate) approvers: usize,
    /// Why somebody cannot approve there, and the key to set.
    pub(crate) hints: Vec<String>,
}

impl AccountRow {
    pub(crate) fn of(account: &dyn ConfiguredAccount) -> Self {
        let availability = account.availability();
        Self {
            key: account.key(),
            identity: account.identity(),
            approvers: availability.settings().approvers.len(),
            hints: availability.all_hints().iter().map(ToString::to_string).collect(),
        }
    }
}

/// Accounts' inbound HTTP endpoints (`/hooks/<platform>/<account>`).
pub(crate) type Hooks =
    std::collections::HashMap<assent_core::model::AccountKey, Arc<dyn assent_platform::Hook>>;

/// Starts every account (CAP-7: in the background, under its lease); what keeps them running,
/// and their hooks, which answer on every replica.
pub(crate) fn start(
    accounts: Vec<Box<dyn ConfiguredAccount>>,
    engine: &assent_engine::EngineHandle,
) -> (Vec<assent_platform::Running>, Hooks) {
    let mut hooks = Hooks::new();
    let running = accounts
        .into_iter()
        .map(|account| {
            let key = account.key();
            let started = account.start(engine);
            if let Some(hook) = started.hook {
                hooks.insert(key, hook);
            }
            started.running
        })
        .collect();
    (running, hooks)
}
