//! Grant matching (PO-3) and honest grant creation (PO-5, PO-6, PO-7, BD-4).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::unwrap::{basename, never_grantable, shell_script, unwrap_command};
use crate::{
    clock::{Timestamp, format_duration},
    id::GrantId,
    model::{Action, Actor, Approval, ExecAction, Grant, GrantConstraints, GrantMatcher, GrantSource, Kind},
};

/// What an allow-always creates (PO-7). Serialized into the approval so the card and the grant
/// always agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantScope {
    /// The matcher family.
    pub base: ScopeBase,
    /// Limited to the request's agent and session.
    #[serde(default)]
    pub session: bool,
    /// Limited in time, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

/// Matcher family of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ScopeBase {
    /// The exact argv.
    ExactArgv,
    /// A pattern chosen explicitly in the console, API or CLI.
    Pattern {
        /// Argument globs after the executable.
        args: Vec<String>,
    },
    /// The plugin root on this channel account (bindings).
    BindingAccount,
}

/// Shortest and longest time-limited grant (PO-3).
pub const TTL_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(90 * 24 * 3600));

impl GrantScope {
    /// Exact argv, no limits: the default scope.
    pub fn exact() -> Self {
        Self { base: ScopeBase::ExactArgv, session: false, ttl_secs: None }
    }

    /// The short scope text on the allow-always control and the resolved card (PO-7).
    pub fn label(&self) -> String {
        let mut s = match &self.base {
            ScopeBase::ExactArgv => "this exact command".to_owned(),
            ScopeBase::Pattern { args } => format!("commands matching `{}`", args.join(" ")),
            ScopeBase::BindingAccount => "this plugin on this account".to_owned(),
        };
        self.push_limits(&mut s);
        s
    }

    /// Everything the grant will compare, in words, for the card and the grant listings (PO-7).
    pub fn describe(&self) -> String {
        let mut s = match &self.base {
            ScopeBase::ExactArgv => {
                "the same arguments, program, directory, host and environment values".to_owned()
            }
            ScopeBase::Pattern { args } => {
                format!("the same program on the same host, with arguments matching `{}`", args.join(" "))
            }
            ScopeBase::BindingAccount => "the same plugin install on the same account".to_owned(),
        };
        self.push_limits(&mut s);
        s
    }

    fn push_limits(&self, s: &mut String) {
        if self.session {
            s.push_str(" in this session");
        }
        if let Some(ttl) = self.ttl_secs {
            s.push_str(&format!(" for {}", format_duration(Duration::from_secs(ttl))));
        }
    }

    /// Whether this scope can be honoured for `approval` (PO-3): its base fits the kind, a
    /// session scope has a session to pin, a time limit is within [`TTL_BOUNDS`].
    pub fn check(&self, approval: &Approval) -> Result<(), ScopeError> {
        let kind = approval.kind();
        let fits = matches!(
            (kind, &self.base),
            (Kind::Exec, ScopeBase::ExactArgv | ScopeBase::Pattern { .. })
                | (Kind::Binding, ScopeBase::BindingAccount)
        );
        if kind == Kind::Plugin {
            return Err(ScopeError::KindNotGrantable(kind));
        }
        if !fits {
            return Err(ScopeError::WrongKind { scope: self.base.name(), kind });
        }
        if self.session && approval.session_key.is_none() {
            return Err(ScopeError::NoSession);
        }
        if let Some(ttl) = self.ttl_secs {
            let (min, max) = TTL_BOUNDS;
            if ttl < min.as_secs() || ttl > max.as_secs() {
                return Err(ScopeError::TtlOutOfRange(ttl));
            }
        }
        Ok(())
    }
}

impl ScopeBase {
    /// The name used in config and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ScopeBase::ExactArgv => "exact-argv",
            ScopeBase::Pattern { .. } => "pattern",
            ScopeBase::BindingAccount => "binding-account",
        }
    }
}

/// Everything a grant match needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct MatchInput<'a> {
    /// The action.
    pub action: &'a Action,
    /// Agent id.
    pub agent_id: Option<&'a str>,
    /// Session key.
    pub session_key: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

/// `*` within one argument (any characters), everything else literal.
fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(pos) => rest = &rest[pos + mid.len()..],
            None => return false,
        }
    }
    true
}

fn args_match(globs: &[String], args: &[String]) -> bool {
    match globs.split_last() {
        Some((last, init)) if last == "**" => {
            args.len() >= init.len() && init.iter().zip(args).all(|(g, a)| glob_match(g, a))
        }
        _ => globs.len() == args.len() && globs.iter().zip(args).all(|(g, a)| glob_match(g, a)),
    }
}

/// The absolute executable of the unwrapped command, if known.
fn unwrapped_executable<'a>(exec: &'a ExecAction, unwrapped: &'a [String]) -> Option<&'a str> {
    let first = unwrapped.first()?;
    if first.starts_with('/') {
        Some(first)
    } else if unwrapped.len() == exec.argv.len() {
        // Nothing was unwrapped: the requester's resolved executable is argv[0].
        exec.executable.as_deref()
    } else {
        None
    }
}

/// Whether `grant` covers the request (PO-3). Revoked and expired grants never match. Every
/// field a grant records is compared exactly: a field the original request lacked matches only
/// a request that lacks it too.
pub fn grant_matches(grant: &Grant, input: &MatchInput<'_>) -> bool {
    if grant.revoked_at.is_some() || grant.constraints.expires_at.is_some_and(|t| input.now >= t) {
        return false;
    }
    let c = &grant.constraints;
    let pinned_ok = match &c.session_key {
        // A session grant pins the agent too, absent included.
        Some(s) => Some(s.as_str()) == input.session_key && c.agent_id.as_deref() == input.agent_id,
        None => c.agent_id.as_deref().is_none_or(|a| Some(a) == input.agent_id),
    };
    if !pinned_ok {
        return false;
    }
    match (&grant.matcher, input.action) {
        (GrantMatcher::ExactArgv { argv, executable, cwd, host, env_digest }, Action::Exec(e)) => {
            *argv == e.argv
                && *executable == e.executable
                && *cwd == e.cwd
                && *host == e.host
                && env_digest.as_deref() == e.significant_env_digest()
        }
        (GrantMatcher::Pattern { executable, args, host }, Action::Exec(e)) => {
            if shell_script(&e.argv).is_some() || *host != e.host {
                return false; // PO-6: scripts are opaque.
            }
            let Ok(unwrapped) = unwrap_command(&e.argv) else { return false };
            !never_grantable(unwrapped)
                && unwrapped_executable(e, unwrapped) == Some(executable.as_str())
                && args_match(args, &unwrapped[1..])
        }
        (GrantMatcher::BindingPlugin { plugin_root, channel, account }, Action::Binding(b)) => {
            *plugin_root == b.plugin.root
                && *channel == b.conversation.channel
                && *account == b.conversation.account
        }
        _ => false,
    }
}

/// Why a requested scope cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// The approval's kind has no honest grant (plugin actions).
    #[error("{0} approvals cannot be allowed always")]
    KindNotGrantable(Kind),
    /// The rule does not list this scope in `grant_scope`.
    #[error("the policy rule does not allow the `{0}` grant scope")]
    NotAllowed(String),
    /// The scope is wider than the rule's: it drops the session or time limit the rule sets.
    #[error("the policy rule requires grants limited to {0}")]
    Wider(&'static str),
    /// The scope's base does not fit the approval's kind.
    #[error("a `{scope}` grant cannot be created for a {kind} approval")]
    WrongKind {
        /// The scope base.
        scope: &'static str,
        /// The approval kind.
        kind: Kind,
    },
    /// A session scope on an approval with no session key or agent.
    #[error("this approval has no session key or agent id, so a session grant would match every session")]
    NoSession,
    /// A time limit outside 1 minute..90 days.
    #[error("ttl-secs must be between 60 and 7776000 (1 minute to 90 days), got {0}")]
    TtlOutOfRange(u64),
}

/// Builds the grant an allow-always creates. A pattern that would cover a wrapper, shell,
/// privilege changer or inline interpreter falls back to the exact argv (PO-5).
pub fn grant_for(
    approval: &Approval,
    scope: &GrantScope,
    actor: &Actor,
    id: GrantId,
    now: Timestamp,
) -> Result<Grant, ScopeError> {
    scope.check(approval)?;
    let (kind, matcher) = match (&approval.action, &scope.base) {
        (Action::Exec(e), ScopeBase::Pattern { args }) => {
            let pattern = unwrap_command(&e.argv)
                .ok()
                .filter(|u| shell_script(&e.argv).is_none() && !never_grantable(u))
                .and_then(|u| {
                    unwrapped_executable(e, u).map(|exe| GrantMatcher::Pattern {
                        executable: exe.to_owned(),
                        args: args.clone(),
                        host: e.host.clone(),
                    })
                });
            (Kind::Exec, pattern.unwrap_or_else(|| exact(e)))
        }
        (Action::Exec(e), _) => (Kind::Exec, exact(e)),
        (Action::Binding(b), _) => (
            Kind::Binding,
            GrantMatcher::BindingPlugin {
                plugin_root: b.plugin.root.clone(),
                channel: b.conversation.channel,
                account: b.conversation.account.clone(),
            },
        ),
        (Action::Plugin(_), _) => return Err(ScopeError::KindNotGrantable(Kind::Plugin)),
    };
    // `check` made sure a session scope has a session key to pin.
    let constraints = GrantConstraints {
        agent_id: scope.session.then(|| approval.agent_id.clone()).flatten(),
        session_key: scope.session.then(|| approval.session_key.clone()).flatten(),
        expires_at: scope.ttl_secs.map(|s| now + Duration::from_secs(s)),
    };
    Ok(Grant {
        id,
        kind,
        matcher,
        constraints,
        source: GrantSource::AllowAlways,
        approval_id: Some(approval.id.clone()),
        created_by: actor.principal.clone(),
        created_at: now,
        last_used_at: None,
        use_count: 0,
        revoked_at: None,
        revoked_by: None,
    })
}

fn exact(e: &ExecAction) -> GrantMatcher {
    GrantMatcher::ExactArgv {
        argv: e.argv.clone(),
        executable: e.executable.clone(),
        cwd: e.cwd.clone(),
        host: e.host.clone(),
        env_digest: e.significant_env_digest().map(str::to_owned),
    }
}

/// Display name of a grant's executable, for listings.
pub fn grant_subject(grant: &Grant) -> String {
    match &grant.matcher {
        GrantMatcher::ExactArgv { argv, .. } => {
            argv.iter().map(|a| crate::model::shell_quote(a)).collect::<Vec<_>>().join(" ")
        }
        GrantMatcher::Pattern { executable, args, .. } => {
            format!("{} {}", basename(executable), args.join(" "))
        }
        GrantMatcher::BindingPlugin { plugin_root, channel, account } => {
            format!("{plugin_root} on {channel}/{account}")
        }
    }
}

/// What a stored grant compares, in words, for listings (PO-3, PO-12).
pub fn grant_scope_text(grant: &Grant) -> String {
    let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
    let mut s = match &grant.matcher {
        GrantMatcher::ExactArgv { executable, cwd, host, env_digest, .. } => format!(
            "exact argv; executable: {}; directory: {}; host: {}; environment: {}",
            none(executable),
            none(cwd),
            if host.is_empty() { "none" } else { host },
            if env_digest.is_some() { "the same names and values" } else { "none" }
        ),
        GrantMatcher::Pattern { executable, args, host } => format!(
            "executable {executable} with arguments `{}`; host: {}",
            args.join(" "),
            if host.is_empty() { "none" } else { host }
        ),
        GrantMatcher::BindingPlugin { .. } => "this plugin install on this account".to_owned(),
    };
    let c = &grant.constraints;
    if let Some(session) = &c.session_key {
        s.push_str(&format!("; session: {session}; agent: {}", none(&c.agent_id)));
    } else if let Some(agent) = &c.agent_id {
        s.push_str(&format!("; agent: {agent}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn po_3_globs_stay_within_one_argument_and_trailing_double_star_takes_the_rest() {
        assert!(glob_match("*.py", "safe.py"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("*.py", "safe.pyc"));
        assert!(!glob_match("ab*ba", "aba"));
        let g = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(args_match(&g("build **"), &g("build --release -p x")));
        assert!(args_match(&g("build **"), &g("build")));
        assert!(!args_match(&g("build *"), &g("build a b")));
        assert!(!args_match(&g("*"), &g("a b")));
    }
}
