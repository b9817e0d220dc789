//! Records that sit beside approvals: ledger entries (DM-9), grants (DM-10), bindings (BD-6),
//! audit entries (DM-11) and events (API-4).

use serde::{Deserialize, Serialize};

use super::{AccountKey, Actor, Channel, Conversation, Kind, PluginRef, Surface};
use crate::{
    clock::Timestamp,
    id::{ApprovalId, BindingId, EntryId, GrantId},
};

/// Finalization state of a delivered card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryState {
    /// Live card.
    Delivered,
    /// Final action applied.
    Finalized,
    /// Last attempt failed; will retry.
    FinalizeFailed,
    /// Gave up after 24 h, or the native ref no longer decodes (CAP-1).
    Abandoned,
}

/// Which final action was applied (CAP-3), recorded for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FinalActionKind {
    /// Edited in place.
    Update,
    /// Deleted.
    Delete,
    /// Controls stripped.
    ClearActions,
    /// Left as is.
    Leave,
}

/// One delivered card in the ledger (DM-9). Unique on (approval, channel, account, target_key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Entry id.
    pub entry_id: EntryId,
    /// The approval shown.
    pub approval_id: ApprovalId,
    /// Platform.
    pub channel: Channel,
    /// Account that delivered it.
    pub account: String,
    /// Where it is shown.
    pub surface: Surface,
    /// Stable key of the target (`user:42`, `conv:-100…#7`).
    pub target_key: String,
    /// The channel's own message reference, versioned JSON `{"v":N,…}`.
    pub native_ref: serde_json::Value,
    /// Interaction anchor (Matrix reaction target), versioned JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<serde_json::Value>,
    /// Finalization state.
    pub state: EntryState,
    /// Applied final action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_action: Option<FinalActionKind>,
    /// Finalization attempts so far.
    pub attempts: u32,
    /// Last finalization error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Earliest time of the next finalization attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// Delivery time.
    pub delivered_at: Timestamp,
}

impl Entry {
    /// The account that owns the card.
    pub fn account_key(&self) -> AccountKey {
        AccountKey::new(self.channel, self.account.clone())
    }

    /// True while the card may still need a final action.
    pub fn needs_finalizing(&self) -> bool {
        matches!(self.state, EntryState::Delivered | EntryState::FinalizeFailed)
    }
}

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantSource {
    /// An allow-always decision.
    AllowAlways,
    /// An `[[allow]]` config entry.
    Config,
}

/// What a grant matches (PO-3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum GrantMatcher {
    /// Byte-equal argv and equal executable, cwd, host and environment (PO-3). An absent field
    /// matches only a request where it is absent too.
    ExactArgv {
        /// The full original argv.
        argv: Vec<String>,
        /// Resolved executable; `None` matches only requests that name none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        executable: Option<String>,
        /// Working directory; `None` matches only requests that name none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        /// Host name (grants stored before it was recorded match only an empty host).
        #[serde(default)]
        host: String,
        /// The request's `env_digest`; `None` matches only requests with no environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env_digest: Option<String>,
    },
    /// Absolute executable of the unwrapped command and positional globs, on one host.
    Pattern {
        /// Absolute path; never a wrapper, shell, privilege changer or inline interpreter (PO-5).
        executable: String,
        /// One glob per argument; `*` within an argument, trailing `**` for the rest.
        args: Vec<String>,
        /// Host name (grants stored before it was recorded match only an empty host).
        #[serde(default)]
        host: String,
    },
    /// A plugin install on one channel account (BD-4).
    BindingPlugin {
        /// Install root.
        plugin_root: String,
        /// Platform.
        channel: Channel,
        /// Account.
        account: String,
    },
}

/// Extra limits on a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GrantConstraints {
    /// Only for this agent. With `session_key` set, `None` means "only requests with no agent".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Only for this session (and exactly this agent, see `agent_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    /// Not after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A standing permission (DM-10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant id.
    pub id: GrantId,
    /// Exec or binding.
    pub kind: Kind,
    /// What it matches.
    pub matcher: GrantMatcher,
    /// Extra limits.
    #[serde(default)]
    pub constraints: GrantConstraints,
    /// Origin of the grant.
    pub source: GrantSource,
    /// The approval whose allow-always created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
    /// Creator principal.
    pub created_by: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
    /// Matches so far.
    pub use_count: u64,
    /// Revocation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    /// Revoker principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// A conversation owned by a plugin install (BD-3, BD-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Binding {
    /// Binding id.
    pub id: BindingId,
    /// Digest of the conversation ([`Conversation::binding_key`]).
    pub key: String,
    /// Owner.
    pub plugin: PluginRef,
    /// The bound conversation.
    pub conversation: Conversation,
    /// Bind time.
    pub bound_at: Timestamp,
    /// What the plugin does there.
    pub summary: String,
    /// How to detach.
    pub detach_hint: String,
    /// The approval that created it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
}

/// Audit entry types (DM-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuditType {
    /// Created and pending.
    Requested,
    /// Approved by a grant.
    AutoApproved,
    /// A card was delivered.
    Delivered,
    /// A delivery failed.
    DeliveryFailed,
    /// An account or its channel declined a target, with the reason.
    DeliverySkipped,
    /// A non-final vote.
    Vote,
    /// Approved or denied by people.
    Decided,
    /// Timed out or no route.
    Expired,
    /// Cancelled.
    Cancelled,
    /// Consumed by the requester.
    Consumed,
    /// A card got its final action.
    Finalized,
    /// A card's final action failed for good.
    FinalizeFailed,
    /// A routed-elsewhere notice was posted.
    NoticeSent,
    /// A callback gave up.
    CallbackFailed,
    /// An interaction was refused.
    InteractionRejected,
    /// A grant was created.
    GrantCreated,
    /// A grant matched.
    GrantUsed,
    /// A grant was revoked.
    GrantRevoked,
    /// A binding was created.
    BindingCreated,
    /// A binding was detached.
    BindingDetached,
    /// Configuration was loaded.
    ConfigLoaded,
    /// Several accounts of one platform could deliver and none was chosen (RT-4).
    RoutingAmbiguous,
}

/// An append-only audit record (DM-11). `seq` is assigned by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Store-assigned sequence.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: AuditType,
    /// Approval concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
    /// Grant concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<GrantId>,
    /// Binding concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_id: Option<BindingId>,
    /// Who acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface: Option<Surface>,
    /// Which account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountKey>,
    /// Redacted details.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// A draft with only type and time; `seq` is filled in at commit.
    pub fn new(kind: AuditType, at: Timestamp) -> Self {
        Self {
            seq: 0,
            at,
            kind,
            approval_id: None,
            grant_id: None,
            binding_id: None,
            actor: None,
            surface: None,
            account: None,
            details: serde_json::Value::Null,
        }
    }

    /// Sets the approval.
    pub fn approval(mut self, id: &ApprovalId) -> Self {
        self.approval_id = Some(id.clone());
        self
    }

    /// Sets the actor and its surface.
    pub fn actor(mut self, actor: &Actor) -> Self {
        self.surface = Some(actor.surface);
        self.actor = Some(actor.clone());
        self
    }

    /// Sets the account.
    pub fn account(mut self, account: AccountKey) -> Self {
        self.account = Some(account);
        self
    }

    /// Sets the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Event types (API-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    /// `approval.requested`
    #[serde(rename = "approval.requested")]
    Requested,
    /// `approval.delivered`
    #[serde(rename = "approval.delivered")]
    Delivered,
    /// `approval.delivery_failed`
    #[serde(rename = "approval.delivery_failed")]
    DeliveryFailed,
    /// `approval.vote`
    #[serde(rename = "approval.vote")]
    Vote,
    /// `approval.approved`
    #[serde(rename = "approval.approved")]
    Approved,
    /// `approval.denied`
    #[serde(rename = "approval.denied")]
    Denied,
    /// `approval.expired`
    #[serde(rename = "approval.expired")]
    Expired,
    /// `approval.cancelled`
    #[serde(rename = "approval.cancelled")]
    Cancelled,
    /// `approval.consumed`
    #[serde(rename = "approval.consumed")]
    Consumed,
    /// `grant.created`
    #[serde(rename = "grant.created")]
    GrantCreated,
    /// `grant.revoked`
    #[serde(rename = "grant.revoked")]
    GrantRevoked,
    /// `binding.created`
    #[serde(rename = "binding.created")]
    BindingCreated,
    /// `binding.detached`
    #[serde(rename = "binding.detached")]
    BindingDetached,
}

/// A committed change, numbered by a store-wide gap-free `seq` (LC-15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Store-assigned sequence.
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When.
    pub at: Timestamp,
    /// Kind of the approval concerned.
    #[serde(rename = "kind", default, skip_serializing_if = "Option::is_none")]
    pub approval_kind: Option<Kind>,
    /// Approval concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<ApprovalId>,
    /// Redacted display fields; never raw argv or env.
    #[serde(default)]
    pub data: serde_json::Value,
}
