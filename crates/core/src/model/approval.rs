//! The approval record (DM-1) and the request that creates it.

use serde::{Deserialize, Serialize};

use super::{
    Actor, BindingAction, Decision, ExecAction, Kind, Mode, Origin, PluginAction, Reason, Status, Surface,
};
use crate::{
    clock::Timestamp,
    id::{ApprovalId, GrantId},
    policy::GrantScope,
};

/// What is being approved. The tag is the approval's kind: explicit, never read from the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Run a command.
    Exec(ExecAction),
    /// A plugin action.
    Plugin(PluginAction),
    /// Bind a conversation.
    Binding(BindingAction),
}

impl Action {
    /// The kind of this action.
    pub fn kind(&self) -> Kind {
        match self {
            Action::Exec(_) => Kind::Exec,
            Action::Plugin(_) => Kind::Plugin,
            Action::Binding(_) => Kind::Binding,
        }
    }
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Requester {
    /// `token:ci`, `console:kim`, `plugin:<id>`.
    pub principal: String,
}

/// What a timeout does (LC-9). Deny unless a rule opts into the unsafe fallback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeoutAction {
    /// Expire and deny.
    #[default]
    Deny,
    /// Approve once on timeout (never for no-route or bindings).
    ApproveUnsafe,
}

/// One approver's vote (DM-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// Who voted.
    pub actor: Actor,
    /// What they chose.
    pub decision: Decision,
    /// When.
    pub at: Timestamp,
}

impl Vote {
    /// Shortcut for the voter's principal.
    pub fn principal(&self) -> &str {
        &self.actor.principal
    }

    /// Shortcut for the surface the vote came from.
    pub fn surface(&self) -> Surface {
        self.actor.surface
    }
}

/// Quorum: how many distinct approvers must allow, fixed at creation (LC-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quorum {
    /// 1..=9.
    pub required: u8,
    /// Allow votes so far (a deny ends the approval instead of being stored here).
    pub votes: Vec<Vote>,
}

/// A durable approval record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Server-generated id.
    pub id: ApprovalId,
    /// What is being approved; its tag is the kind.
    pub action: Action,
    /// Lifecycle status.
    pub status: Status,
    /// Set when approved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Set when terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Creation time.
    pub created_at: Timestamp,
    /// `created_at + timeout`.
    pub expires_at: Timestamp,
    /// Set when terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<Timestamp>,
    /// Always contains allow-once and deny (DM-6).
    pub allowed_decisions: Vec<Decision>,
    /// Scope an allow-always creates, if offered (PO-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_scope: Option<GrantScope>,
    /// Quorum and votes.
    pub quorum: Quorum,
    /// Who asked.
    pub requester: Requester,
    /// Where the action started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// Agent id, ≤ 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Session key, ≤ 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Client idempotency key, ≤ 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Callback URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
    /// The deciding actor (last vote for a quorum, the canceller, none for expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<Actor>,
    /// Redacted deny reason, ≤ 200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_reason: Option<String>,
    /// Set once by consume (LC-11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<Timestamp>,
    /// The grant that auto-approved it, or that allow-always created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<GrantId>,
    /// What a timeout does.
    #[serde(default)]
    pub on_timeout: TimeoutAction,
    /// Whether the requester may vote on it.
    #[serde(default)]
    pub prevent_self_approval: bool,
    /// Name of the policy rule that applied.
    pub policy_rule: String,
    /// Compare-and-set token, +1 per write.
    pub version: u64,
}

impl Approval {
    /// The kind.
    pub fn kind(&self) -> Kind {
        self.action.kind()
    }

    /// The first eight characters of the id.
    pub fn short_ref(&self) -> &str {
        self.id.short_ref()
    }

    /// Timeout chosen at creation.
    pub fn timeout(&self) -> std::time::Duration {
        self.created_at.until(self.expires_at)
    }

    /// Exec details, if an exec approval.
    pub fn exec(&self) -> Option<&ExecAction> {
        match &self.action {
            Action::Exec(e) => Some(e),
            _ => None,
        }
    }

    /// Binding details, if a binding approval.
    pub fn binding(&self) -> Option<&BindingAction> {
        match &self.action {
            Action::Binding(b) => Some(b),
            _ => None,
        }
    }
}

/// A validated creation request, before policy and ids are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApproval {
    /// What to approve.
    pub action: Action,
    /// Requested timeout; `None` takes the policy default.
    pub timeout: Option<std::time::Duration>,
    /// Who asks.
    pub requester: Requester,
    /// Where it started.
    pub origin: Option<Origin>,
    /// Agent id.
    pub agent_id: Option<String>,
    /// Session key.
    pub session_key: Option<String>,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Callback URL.
    pub callback: Option<String>,
}

impl NewApproval {
    /// A request with only the action and requester set.
    pub fn new(action: Action, requester: impl Into<String>) -> Self {
        Self {
            action,
            timeout: None,
            requester: Requester { principal: requester.into() },
            origin: None,
            agent_id: None,
            session_key: None,
            idempotency_key: None,
            callback: None,
        }
    }

    /// Session key with the agent fallback `agent:<id>:…` (DM-1).
    pub fn effective_session_key(&self) -> Option<String> {
        self.session_key.clone().or_else(|| self.agent_id.as_ref().map(|a| format!("agent:{a}:default")))
    }

    /// Checks the common field limits (DM-1).
    pub fn validate(&self) -> Result<(), super::ValidationError> {
        use super::validate::max_bytes;
        use super::validate::one_line;
        max_bytes("agent_id", self.agent_id.as_deref(), 128)?;
        one_line("agent_id", self.agent_id.as_deref())?;
        max_bytes("session_key", self.session_key.as_deref(), 256)?;
        one_line("session_key", self.session_key.as_deref())?;
        max_bytes("idempotency_key", self.idempotency_key.as_deref(), 128)?;
        one_line("idempotency_key", self.idempotency_key.as_deref())?;
        if let Some(url) = &self.callback
            && !callback_url_allowed(url)
        {
            return Err(super::ValidationError::new(
                "callback",
                "must be an https URL, or http to a loopback address, with no spaces or control characters (at most 2048 bytes)",
            ));
        }
        match &self.action {
            Action::Exec(_) => Ok(()),
            Action::Plugin(p) => p.validate(),
            Action::Binding(_) => Ok(()),
        }
    }

    /// Digest of everything that identifies the request, for idempotent create (LC-2).
    pub fn payload_digest(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            action: &'a Action,
            timeout_ms: Option<u128>,
            origin: &'a Option<Origin>,
            agent_id: &'a Option<String>,
            session_key: &'a Option<String>,
            callback: &'a Option<String>,
        }
        let c = Canonical {
            action: &self.action,
            timeout_ms: self.timeout.map(|t| t.as_millis()),
            origin: &self.origin,
            agent_id: &self.agent_id,
            session_key: &self.session_key,
            callback: &self.callback,
        };
        // Serializing plain data cannot fail.
        super::exec::sha256_hex(&serde_json::to_vec(&c).unwrap_or_default())
    }
}

fn callback_url_allowed(url: &str) -> bool {
    // CR/LF or spaces in a URL would forge log lines or headers (issue 9, finding 11).
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) || url.len() > 2048 {
        return false;
    }
    if url.starts_with("https://") {
        return url.len() > "https://".len();
    }
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host_only = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host_only == "localhost"
        || host_only == "::1"
        || host_only.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_1_callback_urls_are_https_or_loopback_http() {
        assert!(callback_url_allowed("https://hooks.example.org/x"));
        assert!(callback_url_allowed("http://127.0.0.1:9000/cb"));
        assert!(callback_url_allowed("http://localhost/cb"));
        assert!(callback_url_allowed("http://[::1]:80/cb"));
        assert!(!callback_url_allowed("http://example.org/cb"));
        assert!(!callback_url_allowed("http://127.0.0.1.evil.org/cb"));
        assert!(!callback_url_allowed("http://user@10.0.0.1/cb"));
        assert!(!callback_url_allowed("ftp://127.0.0.1/"));
        assert!(!callback_url_allowed("https://hooks.example.org/x\r\nFAKE log line"));
        assert!(!callback_url_allowed("https://hooks.example.org/a b"));
    }

    #[test]
    fn finding_9_identifiers_refuse_nul_and_control_characters() {
        let action = crate::model::ExecRequest { argv: vec!["ls".into()], ..Default::default() };
        let base = NewApproval::new(Action::Exec(action.into_action().unwrap()), "token:t");
        for (field, set) in [
            ("agent_id", (|r: &mut NewApproval| r.agent_id = Some("a\0b".into())) as fn(&mut NewApproval)),
            ("session_key", |r| r.session_key = Some("s\0".into())),
            ("idempotency_key", |r| r.idempotency_key = Some("k\n".into())),
        ] {
            let mut r = base.clone();
            set(&mut r);
            assert_eq!(r.validate().unwrap_err().field, field);
        }
        assert!(base.validate().is_ok());
    }
}
