//! Policy (PO-1..PO-13): which rule applies, whether a human is needed, which decisions and which
//! grant scope are offered, and how long to wait.

mod grants;
pub mod unwrap;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use self::grants::{
    GrantScope, MatchInput, ScopeBase, ScopeError, TTL_BOUNDS, grant_for, grant_matches, grant_scope_text,
    grant_subject,
};
use crate::{
    clock::Timestamp,
    id::GrantId,
    model::{Action, Decision, Grant, Kind, NewApproval, TimeoutAction},
    text::Redactor,
};

/// Whether a rule always asks, or lets grants through (PO-2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ask {
    /// Ask unless an active grant or `[[allow]]` entry matches.
    #[default]
    UnlessGranted,
    /// Always ask; ignore grants and hide allow-always.
    Always,
}

/// One entry of `grant_scope` (PO-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeOption {
    /// `exact-argv`.
    ExactArgv,
    /// `pattern` (console, API and CLI only).
    Pattern,
    /// `session`.
    Session,
    /// `ttl:8h`.
    Ttl(Duration),
}

impl ScopeOption {
    /// Parses `exact-argv`, `pattern`, `session` or `ttl:<duration>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "exact-argv" => Ok(Self::ExactArgv),
            "pattern" => Ok(Self::Pattern),
            "session" => Ok(Self::Session),
            _ => match s.strip_prefix("ttl:") {
                Some(d) => {
                    let ttl = crate::clock::parse_duration(d).map_err(|e| e.to_string())?;
                    let (min, max) = TTL_BOUNDS;
                    if ttl < min || ttl > max {
                        return Err(format!("`{s}`: a grant's ttl must be between 1m and 90d"));
                    }
                    Ok(Self::Ttl(ttl))
                }
                None => Err(format!(
                    "`{s}` is not a grant scope: use \"exact-argv\", \"pattern\", \"session\" or \"ttl:8h\""
                )),
            },
        }
    }
}

/// Which requests a rule applies to. Every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleMatch {
    /// Kind.
    pub kind: Option<Kind>,
    /// Exact agent id.
    pub agent: Option<String>,
    /// Exact session key.
    pub session: Option<String>,
    /// Absolute executable (exec) or its basename.
    pub executable: Option<String>,
    /// Plugin id (plugin and binding kinds).
    pub plugin: Option<String>,
}

/// One `[[policy]]` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    /// Rule name, recorded on each approval.
    pub name: String,
    /// Selector.
    pub matcher: RuleMatch,
    /// PO-2.
    pub ask: Ask,
    /// Approvals needed, 1..=9.
    pub quorum: u8,
    /// Default timeout for matching requests.
    pub timeout: Option<Duration>,
    /// Whether allow-always may be offered.
    pub allow_always: bool,
    /// Scopes an allow-always may create.
    pub grant_scope: Vec<ScopeOption>,
    /// LC-9.
    pub on_timeout: TimeoutAction,
    /// LC-6: the requester's own vote is refused.
    pub prevent_self_approval: bool,
}

impl PolicyRule {
    /// The implicit last rule (PO-1).
    pub fn implicit() -> Self {
        Self {
            name: "default".to_owned(),
            matcher: RuleMatch::default(),
            ask: Ask::UnlessGranted,
            quorum: 1,
            timeout: None,
            allow_always: true,
            grant_scope: vec![ScopeOption::ExactArgv],
            on_timeout: TimeoutAction::Deny,
            prevent_self_approval: false,
        }
    }

    fn matches(&self, req: &NewApproval) -> bool {
        let m = &self.matcher;
        let kind_ok = m.kind.is_none_or(|k| k == req.action.kind());
        let agent_ok = m.agent.as_ref().is_none_or(|a| req.agent_id.as_ref() == Some(a));
        let session_ok = m.session.as_ref().is_none_or(|s| req.session_key.as_ref() == Some(s));
        let exe_ok = m.executable.as_ref().is_none_or(|want| match &req.action {
            Action::Exec(e) => {
                let names = [e.executable.as_deref(), e.argv.first().map(String::as_str)];
                names.into_iter().flatten().any(|n| n == want || unwrap::basename(n) == want)
            }
            _ => false,
        });
        let plugin_ok = m.plugin.as_ref().is_none_or(|p| match &req.action {
            Action::Plugin(a) => &a.plugin_id == p,
            Action::Binding(b) => &b.plugin.id == p,
            Action::Exec(_) => false,
        });
        kind_ok && agent_ok && session_ok && exe_ok && plugin_ok
    }

    /// The scope the allow-always button offers (exact argv, narrowed by session/ttl options).
    fn offered_scope(&self, kind: Kind) -> GrantScope {
        let base = if kind == Kind::Binding { ScopeBase::BindingAccount } else { ScopeBase::ExactArgv };
        let mut scope = GrantScope { base, session: false, ttl_secs: None };
        for opt in &self.grant_scope {
            match opt {
                ScopeOption::Session => scope.session = true,
                ScopeOption::Ttl(d) => scope.ttl_secs = Some(d.as_secs()),
                ScopeOption::ExactArgv | ScopeOption::Pattern => {}
            }
        }
        scope
    }

    /// Whether an explicit scope chosen in the console, API or CLI may be created for `approval`
    /// (PO-3, PO-7): it must be honourable for the approval, use a base the rule lists, and be
    /// at least as narrow as the scope the rule offers (its session and time limits kept).
    pub fn allows_scope(
        &self,
        scope: &GrantScope,
        approval: &crate::model::Approval,
    ) -> Result<(), ScopeError> {
        scope.check(approval)?;
        if matches!(scope.base, ScopeBase::Pattern { .. })
            && !self.grant_scope.contains(&ScopeOption::Pattern)
        {
            return Err(ScopeError::NotAllowed("pattern".to_owned()));
        }
        let offered = self.offered_scope(approval.kind());
        if offered.session && !scope.session {
            return Err(ScopeError::Wider("this session"));
        }
        if let Some(max) = offered.ttl_secs
            && scope.ttl_secs.is_none_or(|t| t > max)
        {
            return Err(ScopeError::Wider("the rule's time limit"));
        }
        Ok(())
    }
}

/// Timeout bounds of one kind (DM-7): min, default, max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutBounds {
    /// Lower bound.
    pub min: Duration,
    /// Default.
    pub default: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl TimeoutBounds {
    /// The spec's bounds for a kind.
    pub fn for_kind(kind: Kind) -> Self {
        let (min, default, max) = match kind {
            Kind::Exec => (10, 30 * 60, 24 * 3600),
            Kind::Plugin => (10, 2 * 60, 10 * 60),
            Kind::Binding => (30, 10 * 60, 24 * 3600),
        };
        Self {
            min: Duration::from_secs(min),
            default: Duration::from_secs(default),
            max: Duration::from_secs(max),
        }
    }
}

/// A requested timeout outside the kind's bounds; never clamped (DM-7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeout {requested:?} is out of range for {kind} approvals ({min:?} to {max:?})")]
pub struct TimeoutOutOfRange {
    /// Kind.
    pub kind: Kind,
    /// What was asked.
    pub requested: Duration,
    /// Lower bound.
    pub min: Duration,
    /// Upper bound.
    pub max: Duration,
}

/// The outcome of evaluating policy for a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Name of the applied rule.
    pub rule: String,
    /// A grant that approves the request without a human.
    pub auto_approve: Option<GrantId>,
    /// Decisions offered (DM-6).
    pub allowed_decisions: Vec<Decision>,
    /// Scope of the allow-always control, if offered.
    pub grant_scope: Option<GrantScope>,
    /// Quorum.
    pub quorum: u8,
    /// Chosen timeout.
    pub timeout: Duration,
    /// LC-9.
    pub on_timeout: TimeoutAction,
    /// LC-6.
    pub prevent_self_approval: bool,
}

/// The whole policy: rules in file order, config grants and redaction.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `[[policy]]` rules in file order.
    pub rules: Vec<PolicyRule>,
    /// `[[allow]]` entries as grants with `source = config`.
    pub allow: Vec<Grant>,
    /// Display redaction.
    pub redactor: Redactor,
    /// Per-kind timeout bounds (config may move default and max inside the spec bounds).
    pub timeouts: Option<[TimeoutBounds; 3]>,
}

impl Policy {
    /// The first matching rule, else the implicit one (PO-1).
    pub fn rule_for(&self, req: &NewApproval) -> PolicyRule {
        self.rules.iter().find(|r| r.matches(req)).cloned().unwrap_or_else(PolicyRule::implicit)
    }

    /// Finds a rule by name (used when resolving with an explicit scope).
    pub fn rule_named(&self, name: &str) -> PolicyRule {
        self.rules.iter().find(|r| r.name == name).cloned().unwrap_or_else(PolicyRule::implicit)
    }

    /// Timeout bounds for a kind.
    pub fn bounds(&self, kind: Kind) -> TimeoutBounds {
        let idx = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.timeouts.map_or_else(|| TimeoutBounds::for_kind(kind), |t| t[idx])
    }

    /// Evaluates a request against rules and grants (`grants` are the stored active grants; the
    /// config `[[allow]]` entries are added here). No request field can pre-approve (PO-13).
    pub fn evaluate(
        &self,
        req: &NewApproval,
        grants: &[Grant],
        now: Timestamp,
    ) -> Result<Evaluation, TimeoutOutOfRange> {
        let rule = self.rule_for(req);
        let kind = req.action.kind();
        let bounds = self.bounds(kind);
        let timeout = match req.timeout {
            Some(t) if t < bounds.min || t > bounds.max => {
                return Err(TimeoutOutOfRange { kind, requested: t, min: bounds.min, max: bounds.max });
            }
            Some(t) => t,
            None => rule.timeout.unwrap_or(bounds.default).clamp(bounds.min, bounds.max),
        };
        let session = req.effective_session_key();
        let input = MatchInput {
            action: &req.action,
            agent_id: req.agent_id.as_deref(),
            session_key: session.as_deref(),
            now,
        };
        let auto_approve = match rule.ask {
            Ask::Always => None,
            Ask::UnlessGranted => {
                self.allow.iter().chain(grants).find(|g| grant_matches(g, &input)).map(|g| g.id.clone())
            }
        };
        let declared_ok = match &req.action {
            Action::Plugin(p) => {
                p.allowed_decisions.as_ref().is_none_or(|d| d.contains(&Decision::AllowAlways))
            }
            _ => true,
        };
        // Plugin actions have no grant type, and a session scope without a session would match
        // every session: either way allow-always would be a lie (DM-6, PO-3, PO-5).
        let offered = rule.offered_scope(kind);
        let honest = kind != Kind::Plugin && (!offered.session || session.is_some());
        let always = rule.ask == Ask::UnlessGranted && rule.allow_always && declared_ok && honest;
        let allowed_decisions = if always {
            vec![Decision::AllowOnce, Decision::AllowAlways, Decision::Deny]
        } else {
            vec![Decision::AllowOnce, Decision::Deny]
        };
        Ok(Evaluation {
            auto_approve,
            grant_scope: always.then_some(offered),
            allowed_decisions,
            quorum: rule.quorum.clamp(1, 9),
            timeout,
            on_timeout: if kind == Kind::Binding { TimeoutAction::Deny } else { rule.on_timeout },
            prevent_self_approval: rule.prevent_self_approval,
            rule: rule.name,
        })
    }
}
