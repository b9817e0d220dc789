//! The `Store` seam (ST-1): everything durable goes through one atomic [`Commit`], so a store
//! backend implements one write path with compare-and-set and a few reads.
//!
//! [`MemoryStore`](crate::memory::MemoryStore) is the reference implementation; SQLite and
//! PostgreSQL live in `assent-store`. All pass `store_contract_tests!` in `assent-testing`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    clock::Timestamp,
    id::{ApprovalId, BindingId, EntryId, GrantId},
    model::{
        AccountKey, Approval, AuditEntry, Binding, Entry, Event, Grant, Kind, Origin, PendingFacts, Status,
    },
};

/// How long an idempotency key is remembered (LC-2).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Store failures. `Conflict` is the normal outcome of a lost compare-and-set race.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A compare-and-set or uniqueness check failed; nothing was written.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Same idempotency key and payload within 24 h: the existing approval (LC-2).
    #[error("idempotent replay of {0}")]
    IdempotentReplay(ApprovalId),
    /// Same idempotency key, different payload (LC-2).
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The backend is down; integrations treat this as deny (PO-8).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Idempotency record written with a new approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Requester principal.
    pub principal: String,
    /// Client key.
    pub key: String,
    /// Payload digest.
    pub digest: String,
}

/// Approval write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalWrite {
    /// A new approval.
    Insert {
        /// The record.
        approval: Approval,
        /// LC-2.
        idempotency: Option<IdempotencyRecord>,
    },
    /// `UPDATE … WHERE id = $1 AND version = $2` (ST-4); the record carries `version + 1`.
    /// Terminal records also require the stored status to be pending.
    Update {
        /// The new record.
        approval: Approval,
        /// The version that was read.
        expected_version: u64,
    },
}

/// Ledger write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryWrite {
    /// New entry; unique on (approval, channel, account, target_key).
    Insert(Entry),
    /// Replace by `entry_id`.
    Update(Entry),
}

/// Grant write. After its insert a grant changes only by these narrow writes, never by writing
/// back a copy read earlier: such a copy could undo a revocation that happened in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantWrite {
    /// New grant.
    Insert(Box<Grant>),
    /// One match: counts a use and stamps its time. The grant must exist and be unrevoked, or the
    /// commit is a conflict, so a hit that raced a revocation approves nothing (fail closed).
    Use {
        /// The grant that matched.
        id: GrantId,
        /// When.
        at: Timestamp,
    },
    /// Revokes a grant. If it is missing or already revoked, the commit is a conflict.
    Revoke {
        /// The grant.
        id: GrantId,
        /// When.
        at: Timestamp,
        /// Who revoked it.
        by: String,
    },
}

/// The conflict of a [`GrantWrite::Use`] whose grant is gone or revoked.
pub const GRANT_NOT_ACTIVE: &str = "grant not active";
/// The conflict of a [`GrantWrite::Revoke`] whose grant is gone or already revoked.
pub const GRANT_ALREADY_REVOKED: &str = "grant already revoked";

/// Binding write. Each says what it expects to find, and the commit is a conflict when the
/// conversation has moved on since the engine looked (BD-1, BD-7): a late write never takes a
/// conversation from another install, brings back a detached binding, or detaches a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindingWrite {
    /// A new binding (approved, or matched by a grant). The conversation must be free or held
    /// by the same install root, or the commit is a [`CONVERSATION_BOUND`] conflict.
    Bind(Box<Binding>),
    /// New details (summary, detach hint) of the binding that holds the conversation. The same
    /// binding (by id) must still hold it, or the commit is a [`BINDING_MOVED`] conflict.
    Refresh(Box<Binding>),
    /// Detaches binding `id` from conversation `key`. It must still hold it, or the commit is a
    /// [`BINDING_MOVED`] conflict.
    Remove {
        /// The conversation's binding key.
        key: String,
        /// The binding the caller checked.
        id: BindingId,
    },
}

/// The conflict of a [`BindingWrite::Bind`] whose conversation another install holds.
pub const CONVERSATION_BOUND: &str = "conversation bound to another install";
/// The conflict of a [`BindingWrite::Refresh`] or [`BindingWrite::Remove`] whose binding no
/// longer holds its conversation.
pub const BINDING_MOVED: &str = "binding moved";

/// Where a callback goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CallbackTarget {
    /// A webhook URL (signed, API-5).
    Url {
        /// The URL.
        url: String,
    },
    /// In-process handlers of one plugin install (BD-8).
    Plugin {
        /// Plugin id.
        id: String,
        /// Install root.
        root: String,
    },
}

/// State of a callback job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackState {
    /// Waiting to be sent.
    Pending,
    /// Delivered.
    Done,
    /// Gave up after 8 attempts (audited).
    Failed,
}

/// A callback outbox row (LC-14), written in the terminal transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackJob {
    /// `<approval id>:<event>`; also the idempotency key sent with it.
    pub key: String,
    /// The approval.
    pub approval_id: ApprovalId,
    /// `on_resolved` or `binding.resolved`.
    pub event: String,
    /// Destination.
    pub target: CallbackTarget,
    /// Body.
    pub payload: serde_json::Value,
    /// Attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (also the claim lease while in flight).
    pub next_attempt_at: Timestamp,
    /// State.
    pub state: CallbackState,
    /// Last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Callback write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackWrite {
    /// New job; unique on key.
    Insert(CallbackJob),
    /// Replace by key.
    Update(CallbackJob),
}

/// One atomic write. Audit entries and events get their `seq` here, gap-free (LC-15).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commit {
    /// The approval, with CAS.
    pub approval: Option<ApprovalWrite>,
    /// Ledger.
    pub entries: Vec<EntryWrite>,
    /// Grants.
    pub grants: Vec<GrantWrite>,
    /// Bindings.
    pub bindings: Vec<BindingWrite>,
    /// Audit drafts (seq ignored).
    pub audit: Vec<AuditEntry>,
    /// Event drafts (seq ignored).
    pub events: Vec<Event>,
    /// Callback outbox.
    pub callbacks: Vec<CallbackWrite>,
    /// RT-8 layer 6: a unique notice key; a duplicate makes the commit conflict.
    pub notice_key: Option<String>,
    /// RT-6: the session registry's last origin.
    pub session_origin: Option<(String, Origin)>,
}

/// What a commit assigned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Events with their seq, to publish after commit. Shared, not copied: the engine hands
    /// each one to every live subscriber, and an in-memory store keeps the same one.
    pub events: Vec<Arc<Event>>,
}

impl Committed {
    /// The answer to a commit that assigned these events.
    pub fn new(events: Vec<Event>) -> Self {
        Self { events: events.into_iter().map(Arc::new).collect() }
    }
}

/// Filter for approval listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Status.
    pub status: Option<Status>,
    /// Kind.
    pub kind: Option<Kind>,
    /// Requester principal (a `request` token sees only its own).
    pub requester: Option<String>,
    /// Created at or after.
    pub since: Option<Timestamp>,
    /// Keyset cursor: only approvals strictly older than this `(created_at, id)`, so a long
    /// listing can be walked page by page, oldest included.
    pub before: Option<(Timestamp, ApprovalId)>,
    /// At most this many, newest first.
    pub limit: usize,
    /// Only ids starting with this (a ref, lower case).
    pub id_prefix: Option<String>,
}

/// Filter for audit listings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// One approval.
    pub approval_id: Option<ApprovalId>,
    /// After this seq.
    pub after_seq: u64,
    /// When set: only entries below this seq, newest first, so a page can walk back from the
    /// newest (`u64::MAX` for the first page).
    pub before_seq: Option<u64>,
    /// At most this many, oldest first (newest first with `before_seq`).
    pub limit: usize,
}

/// ST-8: a feed of "something was committed up to this seq" signals from every process sharing
/// the store. Signals may be lost or repeated: readers catch up with `events_since` anyway.
pub type CommitFeed = std::pin::Pin<Box<dyn futures::Stream<Item = u64> + Send>>;

/// ST-7: an account lease held by this process. Dropping it releases the lease.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Completes when the lease is lost (its database session died). Never completes for a
    /// store that only one process uses.
    async fn lost(&self);
}

/// The lease of a store that only one process can open: always granted, never lost.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoleLease;

#[async_trait]
impl Lease for SoleLease {
    async fn lost(&self) {
        std::future::pending::<()>().await;
    }
}

/// The durable store (ST-1). Implementations are `Send + Sync` and safe for concurrent use.
#[async_trait]
pub trait Store: Send + Sync {
    /// ST-8: commits made by any process on this store, or `None` when this process is the
    /// only one that can write it (SQLite, memory).
    async fn commit_feed(&self) -> Result<Option<CommitFeed>, StoreError> {
        Ok(None)
    }

    /// ST-7: takes the lease on `account` if no other process holds it. A store only one
    /// process can open always grants it.
    async fn try_lease(&self, _account: &AccountKey) -> Result<Option<Box<dyn Lease>>, StoreError> {
        Ok(Some(Box::new(SoleLease)))
    }

    /// Applies `commit` atomically, or nothing.
    async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError>;
    /// One approval.
    async fn approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError>;
    /// All pending approvals (the console's queue).
    async fn pending(&self) -> Result<Vec<Approval>, StoreError>;
    /// What the start-up index keeps of every pending approval (LC-13). A store that keeps
    /// approvals encoded should decode only the facts (NF-4: 100k of them at start).
    async fn pending_facts(&self) -> Result<Vec<PendingFacts>, StoreError> {
        Ok(self.pending().await?.iter().map(PendingFacts::of).collect())
    }
    /// Pending approvals with `expires_at <= now`, oldest deadline first.
    async fn due_for_expiry(&self, now: Timestamp, limit: usize) -> Result<Vec<Approval>, StoreError>;
    /// Listing.
    async fn approvals(&self, filter: &ApprovalFilter) -> Result<Vec<Approval>, StoreError>;
    /// Entries of one approval.
    async fn entries(&self, id: &ApprovalId) -> Result<Vec<Entry>, StoreError>;
    /// One entry.
    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError>;
    /// Entries of one account that still need work (re-bind at start, CAP-8).
    async fn open_entries(&self, account: &AccountKey) -> Result<Vec<Entry>, StoreError>;
    /// Entries of all pending approvals, in one read (start-up index, NF-4).
    async fn entries_of_pending(&self) -> Result<Vec<Entry>, StoreError>;
    /// Entries of terminal approvals that need finalizing and are due (LC-12).
    async fn finalize_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Entry>, StoreError>;
    /// Grants of a kind that are not revoked.
    async fn active_grants(&self, kind: Kind) -> Result<Vec<Grant>, StoreError>;
    /// All grants, newest first.
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;
    /// One grant.
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError>;
    /// A binding by conversation key (BD-6).
    async fn binding(&self, key: &str) -> Result<Option<Binding>, StoreError>;
    /// Events after `seq`, oldest first.
    async fn events_since(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError>;
    /// The seq of the newest event ever committed (0 before the first); retention does not
    /// lower it. Where a new subscriber without a cursor starts.
    async fn latest_event_seq(&self) -> Result<u64, StoreError>;
    /// Whether the store takes reads and writes now (`/v1/ready`). By default, whether a read
    /// answers; a store that writes through a part of its own (a thread, a task) also checks
    /// that part is alive.
    async fn ready(&self) -> Result<(), StoreError> {
        self.latest_event_seq().await.map(|_| ())
    }
    /// Audit listing.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
    /// Session registry (RT-6).
    async fn session_origin(&self, session_key: &str) -> Result<Option<Origin>, StoreError>;
    /// Claims due pending callback jobs, pushing their `next_attempt_at` to `now + lease` so
    /// another dispatcher (or replica) skips them while in flight.
    async fn claim_callbacks(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<CallbackJob>, StoreError>;
    /// One callback job.
    async fn callback(&self, key: &str) -> Result<Option<CallbackJob>, StoreError>;
    /// Retention (ST-6): deletes terminal approvals created before `before` whose cards are all
    /// final (with their ledger entries, finished callbacks and notice keys), and audit entries,
    /// events and idempotency keys older than `before`. Pending approvals, grants and bindings
    /// are kept. Returns how many approvals were deleted. Sequence numbers keep counting.
    async fn purge(&self, before: Timestamp) -> Result<u64, StoreError>;
}
