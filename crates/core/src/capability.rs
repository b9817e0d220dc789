//! The channel contract (CAP-1..CAP-5): one typed trait per channel, split into the seams
//! availability, presentation, transport, interactions and observe, then erased to
//! [`DynApprovalCapability`] so the engine keeps one kind of object per account.

use std::{any::Any, future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    card::CardView,
    id::ApprovalId,
    model::{AccountKey, Actor, Approval, Kind, Origin},
    routing::{AccountRouting, PlannedTarget},
};

/// How an error should be retried (after matrix-sdk's `RetryKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// 429, 5xx, network: retry, honouring the platform's hint.
    Transient {
        /// The platform's retry-after, if it gave one.
        retry_after: Option<Duration>,
    },
    /// 400, 401, 403, 404, "cannot message user": do not retry.
    Permanent,
}

/// Errors of a channel classify themselves; only transient ones are retried.
pub trait ClassifyError {
    /// Transient or permanent.
    fn retry_kind(&self) -> RetryKind;
}

/// Whether an account takes part in an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handle {
    /// Plan deliveries for it.
    Yes,
    /// Skip, with a reason for diagnostics.
    Skip(String),
}

/// A config key an operator must set, shown by `doctor` (CLI-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHint {
    /// Exact key, e.g. `channels.telegram.accounts.main.approvals.approvers`.
    pub key: String,
    /// Example value.
    pub example: String,
    /// Why it is needed.
    pub why: String,
}

/// Availability seam: gates and planner input.
pub trait Availability: Send + Sync {
    /// Credentials present and the account enabled.
    fn is_configured(&self) -> bool;
    /// Routing settings (approvers, target, kinds, filters).
    fn routing(&self) -> AccountRouting;
    /// Per-approval veto, e.g. a plugin the account must not see.
    fn should_handle(&self, _approval: &Approval) -> Handle {
        Handle::Yes
    }
    /// Approvers for a kind.
    fn approvers(&self, kind: Kind) -> Vec<String> {
        self.routing().approvers_for(kind).to_vec()
    }
    /// Keys `doctor` should point at when this account cannot approve `kind`.
    fn setup_hints(&self, _kind: Kind) -> Vec<SetupHint> {
        Vec::new()
    }
}

/// What happens to a delivered card after the terminal commit (CAP-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinalAction<P> {
    /// Edit the card to this payload.
    Update(P),
    /// Delete it (falls back to an update on failure).
    Delete,
    /// Strip controls only.
    ClearActions,
    /// Leave it.
    Leave,
}

/// A planned target the channel has resolved (DM channel looked up, for example).
#[derive(Debug, Clone)]
pub struct Prepared<P> {
    /// What was planned.
    pub planned: PlannedTarget,
    /// Identity of the real destination: two plans with one key deliver once (RT-8 layer 4).
    pub dedupe_key: String,
    /// The channel's own resolved target.
    pub native: P,
}

/// Result of `prepare`.
#[derive(Debug, Clone)]
pub enum PrepareOutcome<P> {
    /// Deliver here.
    Ready(Prepared<P>),
    /// Do not deliver, with a reason.
    Skip(String),
}

/// Interactions seam (optional): anchors and control stripping.
#[async_trait]
pub trait Interactions<C: ApprovalCapability + ?Sized>: Send + Sync {
    /// Starts listening on a delivered card; returns an anchor to persist (Matrix reactions).
    async fn bind(&self, entry: &C::Entry) -> Result<Option<C::Anchor>, C::Error>;
    /// Stops listening.
    async fn unbind(&self, anchor: &C::Anchor) -> Result<(), C::Error>;
    /// Removes controls from a card.
    async fn clear_actions(&self, entry: &C::Entry) -> Result<(), C::Error>;
    /// Called at stop for entries without anchors (stop-vs-bind race, CAP-9).
    async fn cancel_delivered(&self, entry: &C::Entry) -> Result<(), C::Error>;
}

/// Observe seam (optional): synchronous diagnostics, never fallible.
pub trait Observe: Send + Sync {
    /// A card was delivered.
    fn on_delivered(&self, _target: &PlannedTarget) {}
    /// A delivery failed.
    fn on_delivery_error(&self, _target: &PlannedTarget, _error: &str) {}
    /// A planned target was skipped as a duplicate (RT-8 layer 4).
    fn on_duplicate_skipped(&self, _target: &PlannedTarget, _dedupe_key: &str) {}
    /// Every entry of an approval on this account is final.
    fn on_finalized(&self, _approval: &ApprovalId) {}
}

/// The typed channel contract. `render`/`finish` are pure (CAP-2); the rest is platform I/O.
pub trait ApprovalCapability: Send + Sync + 'static {
    /// Rendered card.
    type Payload: Send + Sync + 'static;
    /// Resolved destination.
    type Prepared: Send + Sync + 'static;
    /// Native message reference, persisted as `{"v":ENTRY_VERSION,"data":…}`.
    type Entry: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Interaction anchor, persisted the same way.
    type Anchor: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Platform error.
    type Error: std::error::Error + ClassifyError + Send + Sync + 'static;

    /// Version written with entries; bump it when `Entry` changes shape.
    const ENTRY_VERSION: u32 = 1;

    /// The account this capability speaks for.
    fn account(&self) -> AccountKey;
    /// Availability seam.
    fn availability(&self) -> &dyn Availability;
    /// Presentation: a pending or progress card.
    fn render(&self, view: &CardView) -> Result<Self::Payload, Self::Error>;
    /// Presentation: what to do with a card once terminal.
    fn finish(&self, view: &CardView, entry: &Self::Entry) -> FinalAction<Self::Payload>;
    /// Transport: resolve a planned target.
    fn prepare(
        &self,
        target: &PlannedTarget,
    ) -> impl Future<Output = Result<PrepareOutcome<Self::Prepared>, Self::Error>> + Send;
    /// Transport: send a card; `None` when the platform kept no reference.
    fn deliver(
        &self,
        target: &Prepared<Self::Prepared>,
        payload: &Self::Payload,
    ) -> impl Future<Output = Result<Option<Self::Entry>, Self::Error>> + Send;
    /// Transport: edit a card.
    fn update(
        &self,
        entry: &Self::Entry,
        payload: &Self::Payload,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Transport: delete a card.
    fn delete(&self, entry: &Self::Entry) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Transport: a private reply to one actor (ephemeral where possible). `context` is the
    /// channel's own interaction context.
    fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Transport: post a routed-elsewhere notice into the origin (RT-9).
    fn send_notice(
        &self,
        origin: &Origin,
        text: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Interactions seam.
    fn interactions(&self) -> Option<&dyn Interactions<Self>> {
        None
    }
    /// Observe seam.
    fn observe(&self) -> Option<&dyn Observe> {
        None
    }
}

/// Errors crossing the erased boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapabilityError {
    /// The channel failed.
    #[error("{message}")]
    Channel {
        /// Display of the channel error.
        message: String,
        /// Its classification.
        retry: RetryKind,
    },
    /// A persisted entry or anchor no longer deserializes (CAP-1): abandon, never panic.
    #[error("stored {what} no longer decodes: {message}")]
    Decode {
        /// `entry` or `anchor`.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// A hook panicked (CAP-10); caught by the engine.
    #[error("channel hook panicked: {0}")]
    Panicked(String),
}

impl CapabilityError {
    /// Transient errors are retried; decode errors and panics are permanent.
    pub fn retry_kind(&self) -> RetryKind {
        match self {
            Self::Channel { retry, .. } => *retry,
            Self::Decode { .. } | Self::Panicked(_) => RetryKind::Permanent,
        }
    }

    fn channel<E: std::error::Error + ClassifyError>(e: E) -> Self {
        Self::Channel { message: e.to_string(), retry: e.retry_kind() }
    }
}

/// A type-erased payload or prepared target; only the capability that made it can read it.
pub type Erased = Box<dyn Any + Send + Sync>;

/// The erased contract the engine stores, one per account (CAP-1).
#[async_trait]
pub trait DynApprovalCapability: Send + Sync {
    /// The account.
    fn account(&self) -> AccountKey;
    /// Availability seam.
    fn availability(&self) -> &dyn Availability;
    /// Observe seam.
    fn observe(&self) -> Option<&dyn Observe>;
    /// See [`ApprovalCapability::render`].
    fn render(&self, view: &CardView) -> Result<Erased, CapabilityError>;
    /// See [`ApprovalCapability::finish`]; fails only when the entry no longer decodes.
    fn finish(
        &self,
        view: &CardView,
        entry: &serde_json::Value,
    ) -> Result<FinalAction<Erased>, CapabilityError>;
    /// See [`ApprovalCapability::prepare`].
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<Erased>, CapabilityError>;
    /// See [`ApprovalCapability::deliver`]; the entry comes back as versioned JSON.
    async fn deliver(
        &self,
        target: &Prepared<Erased>,
        payload: &Erased,
    ) -> Result<Option<serde_json::Value>, CapabilityError>;
    /// See [`ApprovalCapability::update`].
    async fn update(&self, entry: &serde_json::Value, payload: &Erased) -> Result<(), CapabilityError>;
    /// See [`ApprovalCapability::delete`].
    async fn delete(&self, entry: &serde_json::Value) -> Result<(), CapabilityError>;
    /// See [`ApprovalCapability::reply_private`].
    async fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> Result<(), CapabilityError>;
    /// See [`ApprovalCapability::send_notice`].
    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), CapabilityError>;
    /// True if the interactions seam exists.
    fn has_interactions(&self) -> bool;
    /// Interactions: bind; the anchor comes back as versioned JSON.
    async fn bind(&self, entry: &serde_json::Value) -> Result<Option<serde_json::Value>, CapabilityError>;
    /// Interactions: unbind.
    async fn unbind(&self, anchor: &serde_json::Value) -> Result<(), CapabilityError>;
    /// Interactions: clear actions.
    async fn clear_actions(&self, entry: &serde_json::Value) -> Result<(), CapabilityError>;
    /// Interactions: cancel a delivered, unbound entry.
    async fn cancel_delivered(&self, entry: &serde_json::Value) -> Result<(), CapabilityError>;
}

/// Erases a typed capability.
pub trait IntoDynCapability {
    /// Boxes `self` behind [`DynApprovalCapability`].
    fn erase(self) -> Arc<dyn DynApprovalCapability>;
}

impl<T: ApprovalCapability> IntoDynCapability for T {
    fn erase(self) -> Arc<dyn DynApprovalCapability> {
        Arc::new(Erasure(self))
    }
}

struct Erasure<C>(C);

fn encode<T: Serialize>(
    version: u32,
    value: &T,
    what: &'static str,
) -> Result<serde_json::Value, CapabilityError> {
    let data =
        serde_json::to_value(value).map_err(|e| CapabilityError::Decode { what, message: e.to_string() })?;
    Ok(serde_json::json!({ "v": version, "data": data }))
}

fn decode<T: DeserializeOwned>(
    version: u32,
    value: &serde_json::Value,
    what: &'static str,
) -> Result<T, CapabilityError> {
    let found = value.get("v").and_then(serde_json::Value::as_u64);
    if found != Some(u64::from(version)) {
        return Err(CapabilityError::Decode {
            what,
            message: format!("version {found:?}, expected {version}"),
        });
    }
    let data = value.get("data").cloned().unwrap_or(serde_json::Value::Null);
    serde_json::from_value(data).map_err(|e| CapabilityError::Decode { what, message: e.to_string() })
}

fn downcast<'a, T: 'static>(value: &'a Erased, what: &str) -> Result<&'a T, CapabilityError> {
    value.downcast_ref::<T>().ok_or_else(|| CapabilityError::Decode {
        what: "payload",
        message: format!("{what} was made by another capability"),
    })
}

impl<C: ApprovalCapability> Erasure<C> {
    fn entry(&self, v: &serde_json::Value) -> Result<C::Entry, CapabilityError> {
        decode(C::ENTRY_VERSION, v, "entry")
    }
}

#[async_trait]
impl<C: ApprovalCapability> DynApprovalCapability for Erasure<C> {
    fn account(&self) -> AccountKey {
        self.0.account()
    }

    fn availability(&self) -> &dyn Availability {
        self.0.availability()
    }

    fn observe(&self) -> Option<&dyn Observe> {
        self.0.observe()
    }

    fn render(&self, view: &CardView) -> Result<Erased, CapabilityError> {
        self.0.render(view).map(|p| Box::new(p) as Erased).map_err(CapabilityError::channel)
    }

    fn finish(
        &self,
        view: &CardView,
        entry: &serde_json::Value,
    ) -> Result<FinalAction<Erased>, CapabilityError> {
        let entry = self.entry(entry)?;
        Ok(match self.0.finish(view, &entry) {
            FinalAction::Update(p) => FinalAction::Update(Box::new(p)),
            FinalAction::Delete => FinalAction::Delete,
            FinalAction::ClearActions => FinalAction::ClearActions,
            FinalAction::Leave => FinalAction::Leave,
        })
    }

    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<Erased>, CapabilityError> {
        Ok(match self.0.prepare(target).await.map_err(CapabilityError::channel)? {
            // The typed `Prepared` travels whole inside the box, so `deliver` gets it back as is.
            PrepareOutcome::Ready(p) => PrepareOutcome::Ready(Prepared {
                planned: p.planned.clone(),
                dedupe_key: p.dedupe_key.clone(),
                native: Box::new(p),
            }),
            PrepareOutcome::Skip(why) => PrepareOutcome::Skip(why),
        })
    }

    async fn deliver(
        &self,
        target: &Prepared<Erased>,
        payload: &Erased,
    ) -> Result<Option<serde_json::Value>, CapabilityError> {
        let typed = downcast::<Prepared<C::Prepared>>(&target.native, "prepared target")?;
        let payload = downcast::<C::Payload>(payload, "payload")?;
        let entry = self.0.deliver(typed, payload).await.map_err(CapabilityError::channel)?;
        entry.map(|e| encode(C::ENTRY_VERSION, &e, "entry")).transpose()
    }

    async fn update(&self, entry: &serde_json::Value, payload: &Erased) -> Result<(), CapabilityError> {
        let entry = self.entry(entry)?;
        let payload = downcast::<C::Payload>(payload, "payload")?;
        self.0.update(&entry, payload).await.map_err(CapabilityError::channel)
    }

    async fn delete(&self, entry: &serde_json::Value) -> Result<(), CapabilityError> {
        let entry = self.entry(entry)?;
        self.0.delete(&entry).await.map_err(CapabilityError::channel)
    }

    async fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> Result<(), CapabilityError> {
        self.0.reply_private(actor, context, text).await.map_err(CapabilityError::channel)
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), CapabilityError> {
        self.0.send_notice(origin, text).await.map_err(CapabilityError::channel)
    }

    fn has_interactions(&self) -> bool {
        self.0.interactions().is_some()
    }

    async fn bind(&self, entry: &serde_json::Value) -> Result<Option<serde_json::Value>, CapabilityError> {
        let Some(ix) = self.0.interactions() else { return Ok(None) };
        let entry = self.entry(entry)?;
        let anchor = ix.bind(&entry).await.map_err(CapabilityError::channel)?;
        anchor.map(|a| encode(C::ENTRY_VERSION, &a, "anchor")).transpose()
    }

    async fn unbind(&self, anchor: &serde_json::Value) -> Result<(), CapabilityError> {
        let Some(ix) = self.0.interactions() else { return Ok(()) };
        let anchor: C::Anchor = decode(C::ENTRY_VERSION, anchor, "anchor")?;
        ix.unbind(&anchor).await.map_err(CapabilityError::channel)
    }

    async fn clear_actions(&self, entry: &serde_json::Value) -> Result<(), CapabilityError> {
        let Some(ix) = self.0.interactions() else { return Ok(()) };
        let entry = self.entry(entry)?;
        ix.clear_actions(&entry).await.map_err(CapabilityError::channel)
    }

    async fn cancel_delivered(&self, entry: &serde_json::Value) -> Result<(), CapabilityError> {
        let Some(ix) = self.0.interactions() else { return Ok(()) };
        let entry = self.entry(entry)?;
        ix.cancel_delivered(&entry).await.map_err(CapabilityError::channel)
    }
}
