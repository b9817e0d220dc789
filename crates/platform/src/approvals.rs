//! The keys every platform's account table shares: `owners`, `default` and the `approvals`
//! block (RT-1..RT-5), parsed once for all platforms.

use assent_core::{
    model::{AccountKey, Kind},
    routing::{AccountRouting, Enablement, SessionFilter, TargetMode},
};
use serde::Deserialize;
use toml::Spanned;

use crate::erased::ConfigIssue;

/// Names of the shared keys, taken out of the table before the platform sees it.
pub(crate) const SHARED_KEYS: [&str; 3] = ["owners", "default", "approvals"];

/// `owners`, `default` and `approvals` of one account table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharedKeys {
    /// Approvers when `approvals.approvers` is absent (RT-2).
    #[serde(default)]
    owners: Option<Vec<Spanned<String>>>,
    /// RT-4 (c): the account that takes requests several accounts of the platform could.
    #[serde(default)]
    default: bool,
    #[serde(default)]
    approvals: ApprovalsBlock,
}

/// `approvals = { enabled, approvers, target, kinds, agent_filter, session_filter }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalsBlock {
    #[serde(default)]
    enabled: Option<Enabled>,
    #[serde(default)]
    approvers: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    target: Option<TargetMode>,
    #[serde(default)]
    kinds: Option<Vec<Kind>>,
    #[serde(default)]
    agent_filter: Vec<String>,
    #[serde(default)]
    session_filter: Vec<Spanned<String>>,
    /// RT-9: count same-platform DMs as "elsewhere" for the origin notice.
    #[serde(default)]
    notify_origin_when_dm_only: bool,
}

/// RT-1: `"auto"`, `true` or `false`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Enabled {
    Flag(bool),
    Word(String),
}

/// How a platform names its approvers.
pub(crate) struct ApproverRule<'a> {
    pub(crate) normalize: &'a dyn Fn(&str) -> Result<String, &'static str>,
    pub(crate) example: &'static str,
}

impl SharedKeys {
    /// The account's routing settings. Every approver is normalized; one that is refused is an
    /// error at its own line, naming the key and what to write instead (RT-2).
    pub(crate) fn routing(
        self,
        key: AccountKey,
        table: &str,
        rule: &ApproverRule<'_>,
    ) -> Result<AccountRouting, ConfigIssue> {
        let a = self.approvals;
        let (name, raw) = match (a.approvers, self.owners) {
            (Some(list), _) => ("approvals.approvers", list),
            (None, Some(owners)) => ("owners", owners),
            (None, None) => ("approvals.approvers", Vec::new()),
        };
        let mut approvers: Vec<String> = Vec::new();
        for entry in raw {
            match (rule.normalize)(entry.get_ref()) {
                Ok(id) if !approvers.contains(&id) => approvers.push(id),
                Ok(_) => {}
                Err(why) => {
                    return Err(ConfigIssue::at(
                        entry.span(),
                        format!(
                            "{table}.{name}: \"{}\" is refused: {why}; write ids like \"{}\"",
                            entry.get_ref().escape_debug(),
                            rule.example
                        ),
                    ));
                }
            }
        }
        let mut routing = AccountRouting::new(key, approvers);
        routing.enabled = match a.enabled {
            None => Enablement::Auto,
            Some(Enabled::Flag(true)) => Enablement::On,
            Some(Enabled::Flag(false)) => Enablement::Off,
            Some(Enabled::Word(w)) if w == "auto" => Enablement::Auto,
            Some(Enabled::Word(w)) => {
                return Err(ConfigIssue::anywhere(format!(
                    "{table}.approvals.enabled = \"{}\": write \"auto\", true or false",
                    w.escape_debug()
                )));
            }
        };
        if let Some(kinds) = a.kinds {
            routing.kinds = kinds;
        }
        routing.target = a.target.unwrap_or_default();
        routing.agent_filter = a.agent_filter;
        for f in a.session_filter {
            let parsed = SessionFilter::parse(f.get_ref())
                .map_err(|e| ConfigIssue::at(f.span(), format!("{table}.approvals.session_filter: {e}")))?;
            routing.session_filter.push(parsed);
        }
        routing.default = self.default;
        routing.notify_origin_when_dm_only = a.notify_origin_when_dm_only;
        Ok(routing)
    }
}
