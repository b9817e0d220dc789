//! The data model (DM-1..DM-11): approvals of three kinds, votes, ledger entries, grants, bindings,
//! audit entries and events. Every type here reaches disk or the wire, so each has a serde snapshot.

mod approval;
mod binding;
mod exec;
mod pending;
mod plugin;
mod records;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use self::{
    approval::{Action, Approval, NewApproval, Quorum, Requester, TimeoutAction, Vote},
    binding::{BindingAction, BindingRequest, Conversation, PluginRef},
    exec::{ExecAction, ExecRequest, action_digest, shell_quote},
    pending::PendingFacts,
    plugin::{PluginAction, PluginRequest, Severity},
    records::{
        AuditEntry, AuditType, Binding, Entry, EntryState, Event, EventType, FinalActionKind, Grant,
        GrantConstraints, GrantMatcher, GrantSource,
    },
    validate::ValidationError,
};

/// What an approval asks for (DM-1). Closed: a new kind must be handled by every channel codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Kind {
    /// Run a shell command.
    Exec,
    /// Perform a gated plugin action.
    Plugin,
    /// Let a plugin take over a conversation.
    Binding,
}

impl Kind {
    /// All kinds, in display order.
    pub const ALL: [Kind; 3] = [Kind::Exec, Kind::Plugin, Kind::Binding];

    /// The lower-case name used in config, the API and tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Exec => "exec",
            Kind::Plugin => "plugin",
            Kind::Binding => "binding",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Decision {
    /// Allow this one request.
    AllowOnce,
    /// Allow this request and create a grant for matching ones.
    AllowAlways,
    /// Refuse.
    Deny,
}

impl Decision {
    /// Every decision, in button order.
    pub const ALL: [Decision; 3] = [Decision::AllowOnce, Decision::AllowAlways, Decision::Deny];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow-once",
            Decision::AllowAlways => "allow-always",
            Decision::Deny => "deny",
        }
    }

    /// True for both allow decisions.
    pub fn is_allow(self) -> bool {
        !matches!(self, Decision::Deny)
    }

    /// Human text: "allow once", "always allow", "deny".
    pub fn label(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow once",
            Decision::AllowAlways => "always allow",
            Decision::Deny => "deny",
        }
    }
}

/// Lifecycle status (DM-5). Terminal statuses never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    /// Waiting for a decision.
    Pending,
    /// Approved by humans, a grant or the unsafe timeout fallback.
    Approved,
    /// Denied by a human.
    Denied,
    /// Nobody answered in time, or no route existed.
    Expired,
    /// Withdrawn by the requester or an admin.
    Cancelled,
}

impl Status {
    /// True for every status but pending.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }
}

/// How an approval was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Mode {
    /// This request only.
    Once,
    /// This request and a standing grant.
    Always,
}

/// Why an approval reached its terminal status (DM-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Reason {
    /// A human decided.
    Human,
    /// A deny after at least one approve vote.
    Veto,
    /// A grant matched.
    Grant,
    /// Nobody answered before the deadline.
    Timeout,
    /// No approver could be reached.
    NoRoute,
    /// The rule's unsafe fallback approved on timeout (LC-9).
    TimeoutFallback,
    /// The requester cancelled.
    Requester,
    /// An admin cancelled.
    Admin,
}

/// A chat platform or assent's own console. Closed, like [`Kind`]: approver normalization and card
/// labels differ per platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Channel {
    /// Discord.
    Discord,
    /// Slack.
    Slack,
    /// Telegram.
    Telegram,
    /// Matrix.
    Matrix,
    /// The built-in web console.
    Console,
}

impl Channel {
    /// The chat platforms (every channel but the console).
    pub const CHAT: [Channel; 4] = [Channel::Discord, Channel::Matrix, Channel::Slack, Channel::Telegram];

    /// Lower-case config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Discord => "discord",
            Channel::Slack => "slack",
            Channel::Telegram => "telegram",
            Channel::Matrix => "matrix",
            Channel::Console => "console",
        }
    }

    /// Proper name for people: "Telegram", "the web console".
    pub fn label(self) -> &'static str {
        match self {
            Channel::Discord => "Discord",
            Channel::Slack => "Slack",
            Channel::Telegram => "Telegram",
            Channel::Matrix => "Matrix",
            Channel::Console => "the web console",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bot identity on a channel, written `telegram/main`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountKey {
    /// The platform.
    pub channel: Channel,
    /// The account id from config.
    pub account: String,
}

impl AccountKey {
    /// Builds a key.
    pub fn new(channel: Channel, account: impl Into<String>) -> Self {
        Self { channel, account: account.into() }
    }

    /// Parses `telegram/main` (the `Display` form).
    pub fn parse(s: &str) -> Option<Self> {
        let (channel, account) = s.split_once('/')?;
        let channel = match channel {
            "discord" => Channel::Discord,
            "slack" => Channel::Slack,
            "telegram" => Channel::Telegram,
            "matrix" => Channel::Matrix,
            "console" => Channel::Console,
            _ => return None,
        };
        (!account.is_empty()).then(|| Self::new(channel, account))
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel, self.account)
    }
}

/// Where a card is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Surface {
    /// The conversation the request came from.
    Origin,
    /// An approver's direct messages.
    ApproverDm,
    /// A fixed forward target (RT-7).
    Forward,
    /// The web console.
    Console,
    /// The HTTP API or the CLI.
    Api,
}

/// Where the action started (glossary: origin).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Origin {
    /// Platform of the conversation.
    pub channel: Channel,
    /// Account that saw it.
    pub account: String,
    /// Conversation id (chat, channel or room).
    pub conversation: String,
    /// Parent conversation (guild channel of a Discord thread, for example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Thread or topic inside the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl Origin {
    /// The account this origin belongs to.
    pub fn account_key(&self) -> AccountKey {
        AccountKey::new(self.channel, self.account.clone())
    }
}

/// Who decided or acted: a platform-verified user, a console user or an API token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Actor {
    /// Stable principal: `telegram:42`, `console:kim`, `token:ci`.
    pub principal: String,
    /// Platform, or `None` for an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// The platform-verified user id (or console user / token name).
    pub user_id: String,
    /// Display name for cards; never used for authorization.
    pub display: String,
    /// Where the actor acted.
    pub surface: Surface,
}

impl Actor {
    /// A platform user; the principal is `<channel>:<user_id>`.
    pub fn platform(
        channel: Channel,
        user_id: impl Into<String>,
        display: impl Into<String>,
        surface: Surface,
    ) -> Self {
        let user_id = user_id.into();
        Self {
            principal: format!("{}:{user_id}", channel.as_str()),
            channel: Some(channel),
            user_id,
            display: display.into(),
            surface,
        }
    }

    /// A console user.
    pub fn console(user: impl Into<String>) -> Self {
        let user = user.into();
        Self {
            principal: format!("console:{user}"),
            channel: Some(Channel::Console),
            display: user.clone(),
            user_id: user,
            surface: Surface::Console,
        }
    }

    /// An API token, by name.
    pub fn token(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            principal: format!("token:{name}"),
            channel: None,
            display: name.clone(),
            user_id: name,
            surface: Surface::Api,
        }
    }

    /// `{who}` on cards (CH-CARD-1): "@kim (Telegram)", "console:kim", "token:ci".
    pub fn who(&self) -> String {
        match self.channel {
            Some(Channel::Console) | None => self.principal.clone(),
            Some(platform) => format!("{} ({})", self.display, platform.label()),
        }
    }
}
