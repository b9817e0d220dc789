//! The routing planner (RT-1..RT-9): which accounts handle an approval, where each delivers, and
//! what the routed-elsewhere notice says. Pure: the engine feeds it config and the session registry.

mod approvers;

use std::collections::BTreeSet;

use regex::Regex;
use serde::{Deserialize, Serialize};

pub use self::approvers::{InvalidApprover, normalize_approver, normalize_approvers};
use crate::model::{AccountKey, Channel, Kind, Origin, Surface};

/// `approvals.enabled` (RT-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enablement {
    /// Active iff approvers are set.
    #[default]
    Auto,
    /// Active; empty approvers is a `doctor` FAIL (and still routes nowhere).
    On,
    /// No deliveries, no approval interactions.
    Off,
}

/// `approvals.target` (RT-5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetMode {
    /// Approver DMs (default).
    #[default]
    Dm,
    /// The origin conversation.
    Channel,
    /// Both.
    Both,
}

/// A `session_filter` entry (RT-3): a substring, or a regex when it starts with `^`.
#[derive(Debug, Clone)]
pub enum SessionFilter {
    /// Substring match.
    Contains(String),
    /// Anchored regex.
    Regex(Regex),
}

impl SessionFilter {
    /// Parses one entry; regexes are at most 256 characters.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('^') {
            return Ok(Self::Contains(s.to_owned()));
        }
        if s.chars().count() > 256 {
            return Err("session_filter regexes are at most 256 characters".to_owned());
        }
        Regex::new(s).map(Self::Regex).map_err(|e| format!("session_filter `{s}` is not a valid regex: {e}"))
    }

    fn matches(&self, session: &str) -> bool {
        // Inputs are capped at 512 bytes so a hostile session key cannot make matching slow.
        let capped = session.get(..session.len().min(512)).unwrap_or(session);
        match self {
            Self::Contains(s) => capped.contains(s.as_str()),
            Self::Regex(r) => r.is_match(capped),
        }
    }
}

/// One account's routing settings, as its availability seam reports them.
#[derive(Debug, Clone)]
pub struct AccountRouting {
    /// The account.
    pub key: AccountKey,
    /// RT-1.
    pub enabled: Enablement,
    /// Normalized approvers (RT-2).
    pub approvers: Vec<String>,
    /// Kinds this account handles.
    pub kinds: Vec<Kind>,
    /// RT-5.
    pub target: TargetMode,
    /// Exact agent ids (RT-3).
    pub agent_filter: Vec<String>,
    /// RT-3.
    pub session_filter: Vec<SessionFilter>,
    /// RT-4 (c) tie-breaker.
    pub default: bool,
    /// RT-9: count same-platform DMs as "elsewhere".
    pub notify_origin_when_dm_only: bool,
}

impl AccountRouting {
    /// Defaults: auto, all kinds, DM target, no filters.
    pub fn new(key: AccountKey, approvers: Vec<String>) -> Self {
        Self {
            key,
            enabled: Enablement::Auto,
            approvers,
            kinds: Kind::ALL.to_vec(),
            target: TargetMode::Dm,
            agent_filter: Vec::new(),
            session_filter: Vec::new(),
            default: false,
            notify_origin_when_dm_only: false,
        }
    }

    /// RT-1: active iff not off and approvers are non-empty.
    pub fn is_active(&self) -> bool {
        self.enabled != Enablement::Off && !self.approvers.is_empty()
    }

    /// Approvers for a kind: empty when the account does not handle it.
    pub fn approvers_for(&self, kind: Kind) -> &[String] {
        if self.kinds.contains(&kind) { &self.approvers } else { &[] }
    }

    /// True if `user_id` may decide `kind` here (IX-4). Fails closed on an empty list.
    pub fn is_approver(&self, kind: Kind, user_id: &str) -> bool {
        self.is_active() && self.approvers_for(kind).iter().any(|a| a == user_id)
    }

    /// RT-3: all set filters pass.
    pub fn filters_pass(&self, agent: Option<&str>, session: Option<&str>) -> bool {
        let agent_ok =
            self.agent_filter.is_empty() || agent.is_some_and(|a| self.agent_filter.iter().any(|f| f == a));
        let session_ok = self.session_filter.is_empty()
            || session.is_some_and(|s| self.session_filter.iter().any(|f| f.matches(s)));
        agent_ok && session_ok
    }

    fn eligible(&self, req: &RouteRequest<'_>) -> bool {
        self.is_active()
            && !self.approvers_for(req.kind).is_empty()
            && self.filters_pass(req.agent_id, req.session_key)
    }
}

/// What the planner needs to know about an approval.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Kind.
    pub kind: Kind,
    /// Agent id.
    pub agent_id: Option<&'a str>,
    /// Session key.
    pub session_key: Option<&'a str>,
    /// The resolved origin (RT-6); for bindings, the bound conversation.
    pub origin: Option<&'a Origin>,
    /// The account the session registry last saw this session on, per platform (RT-4 b).
    pub session_accounts: &'a [AccountKey],
}

/// RT-6: request origin A and registry origin B; both present and different → no origin.
pub fn resolve_origin(request: Option<&Origin>, registry: Option<&Origin>) -> Option<Origin> {
    match (request, registry) {
        (Some(a), Some(b)) if a != b => None,
        (Some(a), _) => Some(a.clone()),
        (None, b) => b.cloned(),
    }
}

/// Result of account selection (RT-4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// At most one account per platform.
    pub chosen: Vec<AccountKey>,
    /// Platforms where several accounts could deliver and none was chosen (audited).
    pub ambiguous: Vec<Channel>,
}

/// RT-4: one account per platform.
pub fn select_accounts(req: &RouteRequest<'_>, accounts: &[AccountRouting]) -> Selection {
    let platforms: BTreeSet<Channel> = accounts.iter().map(|a| a.key.channel).collect();
    let mut sel = Selection::default();
    for platform in platforms {
        let on_platform = || accounts.iter().filter(move |a| a.key.channel == platform);
        let pick = if let Some(origin) = req.origin.filter(|o| o.channel == platform) {
            on_platform().find(|a| a.key.account == origin.account && a.eligible(req))
        } else if let Some(held) = req.session_accounts.iter().find(|k| k.channel == platform) {
            on_platform().find(|a| &a.key == held && a.eligible(req))
        } else {
            let eligible: Vec<&AccountRouting> = on_platform().filter(|a| a.eligible(req)).collect();
            match eligible.as_slice() {
                [only] => Some(*only),
                [] => None,
                many => {
                    let defaults: Vec<_> = many.iter().filter(|a| a.default).collect();
                    if let [d] = defaults.as_slice() {
                        Some(**d)
                    } else {
                        sel.ambiguous.push(platform);
                        None
                    }
                }
            }
        };
        if let Some(a) = pick {
            sel.chosen.push(a.key.clone());
        }
    }
    sel
}

/// Where a planned card goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TargetAddr {
    /// A user's direct messages; the channel maps it to a DM conversation.
    User {
        /// Platform user id.
        user_id: String,
    },
    /// A conversation, optionally a thread in it.
    Conversation {
        /// Conversation id.
        conversation: String,
        /// Thread id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<String>,
    },
}

impl TargetAddr {
    /// Stable key used for ledger uniqueness (DM-9).
    pub fn key(&self) -> String {
        match self {
            Self::User { user_id } => format!("user:{user_id}"),
            Self::Conversation { conversation, thread: Some(t) } => format!("conv:{conversation}#{t}"),
            Self::Conversation { conversation, thread: None } => format!("conv:{conversation}"),
        }
    }
}

/// Whether a target was the account's choice or a stand-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preference {
    /// Configured target.
    Preferred,
    /// `target = "channel"` without an origin falls back to DMs.
    Fallback,
}

/// One planned delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlannedTarget {
    /// Delivering account.
    pub account: AccountKey,
    /// Destination.
    pub to: TargetAddr,
    /// Surface it counts as.
    pub surface: Surface,
    /// RT-5.
    pub preference: Preference,
    /// Whether the card carries controls (forward targets without approvers get none).
    pub buttons: bool,
}

/// A `[[forward]]` entry (RT-7) for a channel account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Delivering account.
    pub account: AccountKey,
    /// Conversation.
    pub to: String,
    /// Thread.
    pub thread: Option<String>,
    /// Kinds forwarded.
    pub kinds: Vec<Kind>,
    /// `buttons = "off"` forces no controls.
    pub buttons: bool,
}

/// RT-5: the targets of one account, deduplicated by `(account, to, thread)` (RT-8 layer 3).
pub fn plan_account(req: &RouteRequest<'_>, account: &AccountRouting) -> Vec<PlannedTarget> {
    let origin_here = req.origin.filter(|o| o.account_key() == account.key);
    let mut out: Vec<PlannedTarget> = Vec::new();
    let mut push = |to: TargetAddr, surface, preference| {
        if !out.iter().any(|t| t.to == to) {
            out.push(PlannedTarget { account: account.key.clone(), to, surface, preference, buttons: true });
        }
    };
    let wants_channel = matches!(account.target, TargetMode::Channel | TargetMode::Both);
    let wants_dm = matches!(account.target, TargetMode::Dm | TargetMode::Both);
    if let (true, Some(o)) = (wants_channel, origin_here) {
        push(
            TargetAddr::Conversation { conversation: o.conversation.clone(), thread: o.thread.clone() },
            Surface::Origin,
            Preference::Preferred,
        );
    }
    let dm_preference = match (wants_dm, wants_channel && origin_here.is_none()) {
        (true, _) => Some(Preference::Preferred),
        (false, true) => Some(Preference::Fallback),
        (false, false) => None,
    };
    if let Some(pref) = dm_preference {
        for user in account.approvers_for(req.kind) {
            push(TargetAddr::User { user_id: user.clone() }, Surface::ApproverDm, pref);
        }
    }
    out
}

/// The whole plan: selected accounts' targets plus forwards, with forwards that duplicate a native
/// target of the same account dropped (RT-7).
pub fn plan(
    req: &RouteRequest<'_>,
    accounts: &[AccountRouting],
    forwards: &[Forward],
) -> (Vec<PlannedTarget>, Selection) {
    let selection = select_accounts(req, accounts);
    let mut targets: Vec<PlannedTarget> = accounts
        .iter()
        .filter(|a| selection.chosen.contains(&a.key))
        .flat_map(|a| plan_account(req, a))
        .collect();
    for f in forwards.iter().filter(|f| f.kinds.contains(&req.kind)) {
        let to = TargetAddr::Conversation { conversation: f.to.clone(), thread: f.thread.clone() };
        if targets.iter().any(|t| t.account == f.account && t.to == to) {
            continue;
        }
        let has_approvers = accounts
            .iter()
            .any(|a| a.key == f.account && a.is_active() && !a.approvers_for(req.kind).is_empty());
        targets.push(PlannedTarget {
            account: f.account.clone(),
            to,
            surface: Surface::Forward,
            preference: Preference::Preferred,
            buttons: f.buttons && has_approvers,
        });
    }
    (targets, selection)
}

/// A successful delivery, as reported for the notice decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Platform (console for the web console).
    pub channel: Channel,
    /// Account.
    pub account: String,
    /// Surface.
    pub surface: Surface,
}

/// RT-9: the routed-elsewhere notice for the origin, if one is due.
pub fn notice_text(
    reference: &str,
    origin: &Origin,
    delivered: &[Delivered],
    notify_origin_when_dm_only: bool,
) -> Option<String> {
    let origin_got_card = delivered
        .iter()
        .any(|d| d.channel == origin.channel && d.account == origin.account && d.surface == Surface::Origin);
    if origin_got_card {
        return None;
    }
    let counts = |d: &&Delivered| notify_origin_when_dm_only || d.channel != origin.channel;
    let elsewhere: Vec<&Delivered> = delivered.iter().filter(counts).collect();
    if elsewhere.is_empty() {
        return None;
    }
    let mut labels: BTreeSet<String> = BTreeSet::new();
    for channel in elsewhere.iter().map(|d| d.channel).collect::<BTreeSet<_>>() {
        if channel == Channel::Console {
            labels.insert("the web console".to_owned());
            continue;
        }
        let all_dms =
            elsewhere.iter().filter(|d| d.channel == channel).all(|d| d.surface == Surface::ApproverDm);
        labels.insert(if all_dms { format!("{} DMs", channel.label()) } else { channel.label().to_owned() });
    }
    Some(format!("Approval {reference} is waiting in {}.", join_and(labels.into_iter().collect())))
}

/// "A", "A and B", "A, B and C".
pub fn join_and(items: Vec<String>) -> String {
    match items.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, init)) => format!("{} and {last}", init.join(", ")),
    }
}
