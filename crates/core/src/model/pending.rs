//! The facts about a pending approval that an interaction is checked against before its ack
//! (IX-3), and a reader that takes just those from a stored approval.
//!
//! At start-up the engine indexes every pending approval (LC-13), and with 100k of them the
//! start is mostly decoding (NF-4). Decoding a whole [`Approval`] builds every string, argv and
//! environment it carries, and its internally tagged `action` is first buffered whole by serde.
//! [`PendingFacts`] reads the same JSON but keeps only what the index holds: the rest is skipped
//! without being built, and the action's `kind` is read as a plain field.

use serde::{Deserialize, Deserializer};

use super::{AccountKey, Approval, Conversation, Decision, Kind};
use crate::{clock::Timestamp, id::ApprovalId};

/// What the pending index keeps about one pending approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFacts {
    /// The approval.
    pub id: ApprovalId,
    /// Its kind.
    pub kind: Kind,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The decisions its cards offer.
    pub allowed: Vec<Decision>,
    /// Votes so far: `(principal, decision)`.
    pub voters: Vec<(String, Decision)>,
    /// The requester's principal.
    pub requester: String,
    /// Whether the requester is barred from voting on it.
    pub prevent_self: bool,
    /// BD-2: a binding's `(channel account, platform user who asked)`.
    pub binding_requester: Option<(AccountKey, String)>,
}

impl PendingFacts {
    /// The facts of an approval in memory.
    pub fn of(a: &Approval) -> Self {
        Self {
            id: a.id.clone(),
            kind: a.kind(),
            expires_at: a.expires_at,
            allowed: a.allowed_decisions.clone(),
            voters: a.quorum.votes.iter().map(|v| (v.actor.principal.clone(), v.decision)).collect(),
            requester: a.requester.principal.clone(),
            prevent_self: a.prevent_self_approval,
            binding_requester: a.binding().and_then(|b| binding_requester(&b.conversation, &b.requested_by)),
        }
    }
}

fn binding_requester(conversation: &Conversation, user: &Option<String>) -> Option<(AccountKey, String)> {
    let user = user.clone()?;
    Some((AccountKey::new(conversation.channel, conversation.account.clone()), user))
}

/// Reads an [`Approval`]'s JSON, keeping only the facts. Agrees with
/// `PendingFacts::of(&serde_json::from_str::<Approval>(json)?)` on every stored approval; the
/// store contract checks that.
impl<'de> Deserialize<'de> for PendingFacts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let a = Stored::deserialize(deserializer)?;
        let binding_requester = match (a.action.kind, &a.action.conversation) {
            (Kind::Binding, Some(conversation)) => binding_requester(conversation, &a.action.requested_by),
            _ => None,
        };
        Ok(Self {
            id: a.id,
            kind: a.action.kind,
            expires_at: a.expires_at,
            allowed: a.allowed_decisions,
            voters: a.quorum.votes.into_iter().map(|v| (v.actor.principal, v.decision)).collect(),
            requester: a.requester.principal,
            prevent_self: a.prevent_self_approval,
            binding_requester,
        })
    }
}

/// The fields of a stored approval that the facts come from; serde skips every other field.
#[derive(Deserialize)]
struct Stored {
    id: ApprovalId,
    action: StoredAction,
    expires_at: Timestamp,
    allowed_decisions: Vec<Decision>,
    quorum: StoredQuorum,
    requester: Principal,
    #[serde(default)]
    prevent_self_approval: bool,
}

/// The action's tag as a plain field, and the two fields only a binding has (no other kind may
/// give either name another shape: the contract test would catch it).
#[derive(Deserialize)]
struct StoredAction {
    kind: Kind,
    #[serde(default)]
    conversation: Option<Conversation>,
    #[serde(default)]
    requested_by: Option<String>,
}

#[derive(Deserialize)]
struct StoredQuorum {
    votes: Vec<StoredVote>,
}

#[derive(Deserialize)]
struct StoredVote {
    actor: Principal,
    decision: Decision,
}

#[derive(Deserialize)]
struct Principal {
    principal: String,
}
