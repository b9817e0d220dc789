//! Engine errors. Expected refusals of interactions are [`Rejection`]s; these are for requests
//! that cannot be accepted and for infrastructure failures.

use assent_core::{
    lifecycle::{Rejection, RequesterError},
    model::ValidationError,
    policy::{ScopeError, TimeoutOutOfRange},
    store::StoreError,
};

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A request field is invalid (`invalid_request`).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// DM-7 (`timeout_out_of_range`).
    #[error(transparent)]
    TimeoutOutOfRange(#[from] TimeoutOutOfRange),
    /// LC-2 (`idempotency_conflict`).
    #[error("this idempotency key was used for a different request in the last 24 hours")]
    IdempotencyConflict,
    /// No such approval, grant or binding (`not_found`).
    #[error("not found")]
    NotFound,
    /// Cancel or consume refused.
    #[error(transparent)]
    Requester(#[from] RequesterError),
    /// An interaction was refused.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// A grant scope is not allowed (`grant_scope_not_allowed`).
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// BD-1 (`conversation_bound`).
    #[error("this conversation is bound to plugin `{owner}`; detach it first")]
    ConversationBound {
        /// The owning plugin id.
        owner: String,
    },
    /// BD-1 (`conversation_owned_by_core`).
    #[error("assent itself routes approvals into this conversation, so no plugin can bind it")]
    ConversationOwnedByCore,
    /// The store failed (`store_unavailable`); integrations treat this as deny (PO-8).
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::IdempotencyConflict => EngineError::IdempotencyConflict,
            other => EngineError::Store(other),
        }
    }
}

/// Why `resolve` failed: a rejection to show quietly, or a store failure (nothing recorded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// Refused (LC-17).
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Store failure: the decision was not recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The requested grant scope cannot be created (`grant_scope_not_allowed`); nothing was
    /// recorded.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A binding approval cannot be approved: another install bound the conversation since it
    /// was requested (`conversation_bound`). Nothing was recorded; detach the owner first.
    #[error("this conversation is now bound to `{owner}`; detach it before approving another plugin")]
    ConversationBound {
        /// The owning plugin id.
        owner: String,
    },
}
