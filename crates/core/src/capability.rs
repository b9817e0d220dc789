//! The channel contract (CAP-1..CAP-5): one typed trait per channel tying together five seams,
//! availability, presentation, transport, interactions and observe; then erased to
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
    /// Skip; the reason is written to the audit log (`delivery_skipped`).
    Skip(String),
}

/// A config key an operator must set, shown by `doctor` (CLI-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupHint {
    /// Exact key, e.g. `channels.telegram.accounts.main.approvals.approvers`.
    pub key: String,
    /// Example value, as TOML.
    pub example: String,
    /// What is wrong without it, e.g. "nobody can approve exec on telegram/main".
    pub why: String,
}

impl std::fmt::Display for SetupHint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: set `{}`, e.g. `{}`", self.why, self.key, self.example)
    }
}

/// Availability seam: gates and planner input. Synchronous: the engine asks it while planning,
/// from memory.
pub trait Availability: Send + Sync {
    /// Credentials present and the account enabled.
    fn is_configured(&self) -> bool;
    /// Routing settings (approvers, target, kinds, filters).
    fn routing(&self) -> AccountRouting;
    /// Per-approval veto, e.g. a plugin the account must not see.
    fn should_handle(&self, _approval: &Approval) -> Handle {
        Handle::Yes
    }
    /// Keys `doctor` points at when this account cannot approve `kind`; empty when it can.
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
    /// Do not deliver; the reason is written to the audit log (`delivery_skipped`).
    Skip(String),
}

/// Presentation seam: pure (CAP-2). No I/O and no client, so a channel's cards are
/// snapshot-tested from a [`CardView`] alone.
pub trait Presentation<C: ApprovalCapability>: Send + Sync {
    /// A pending or progress card.
    fn render(&self, view: &CardView) -> Result<C::Payload, C::Error>;
    /// What to do with a card once its approval is terminal.
    fn finish(&self, view: &CardView, entry: &C::Entry) -> FinalAction<C::Payload>;
}

/// Transport seam: the platform I/O.
pub trait Transport<C: ApprovalCapability>: Send + Sync {
    /// Resolves a planned target (looks up or opens a DM, for example).
    fn prepare(
        &self,
        target: &PlannedTarget,
    ) -> impl Future<Output = Result<PrepareOutcome<C::Prepared>, C::Error>> + Send;
    /// Sends a card; `None` when the platform kept no reference.
    fn deliver(
        &self,
        target: &Prepared<C::Prepared>,
        payload: &C::Payload,
    ) -> impl Future<Output = Result<Option<C::Entry>, C::Error>> + Send;
    /// Edits a card.
    fn update(
        &self,
        entry: &C::Entry,
        payload: &C::Payload,
    ) -> impl Future<Output = Result<(), C::Error>> + Send;
    /// Deletes a card.
    fn delete(&self, entry: &C::Entry) -> impl Future<Output = Result<(), C::Error>> + Send;
    /// A private reply to the one actor who pressed a control (ephemeral where the platform has
    /// it): refusals and failures after the ack. `context` is what the channel passed to
    /// `assent_engine::Inbound::settle`.
    /// Platforms without private replies return `Ok(())`; the refusal is audited either way.
    fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> impl Future<Output = Result<(), C::Error>> + Send;
    /// Posts a routed-elsewhere notice into the origin (RT-9).
    fn send_notice(&self, origin: &Origin, text: &str) -> impl Future<Output = Result<(), C::Error>> + Send;
}

/// Interactions seam (optional): anchors (Matrix reactions) and control stripping.
pub trait Interactions<C: ApprovalCapability>: Send + Sync {
    /// Starts listening on a delivered card; returns an anchor to persist.
    fn bind(&self, entry: &C::Entry) -> impl Future<Output = Result<Option<C::Anchor>, C::Error>> + Send;
    /// Stops listening.
    fn unbind(&self, anchor: &C::Anchor) -> impl Future<Output = Result<(), C::Error>> + Send;
    /// Removes controls from a card.
    fn clear_actions(&self, entry: &C::Entry) -> impl Future<Output = Result<(), C::Error>> + Send;
    /// Called at stop for entries without anchors (stop-vs-bind race, CAP-9).
    fn cancel_delivered(&self, entry: &C::Entry) -> impl Future<Output = Result<(), C::Error>> + Send;
}

/// The interactions of a channel that has none: it cannot be constructed.
#[derive(Debug, Clone, Copy)]
pub enum NoInteractions {}

impl<C: ApprovalCapability> Interactions<C> for NoInteractions {
    async fn bind(&self, _: &C::Entry) -> Result<Option<C::Anchor>, C::Error> {
        match *self {}
    }
    async fn unbind(&self, _: &C::Anchor) -> Result<(), C::Error> {
        match *self {}
    }
    async fn clear_actions(&self, _: &C::Entry) -> Result<(), C::Error> {
        match *self {}
    }
    async fn cancel_delivered(&self, _: &C::Entry) -> Result<(), C::Error> {
        match *self {}
    }
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

/// The typed channel contract: the types one channel works with, and its five seams.
///
/// One async style: every async hook is declared `-> impl Future + Send` and written as a plain
/// `async fn` by the channel. That costs a channel nothing (no macro, no allocation per call) and
/// lets the compiler check each future is `Send`. Only the erased form, which the engine keeps
/// one per account behind `dyn`, boxes its futures ([`DynApprovalCapability`]).
pub trait ApprovalCapability: Sized + Send + Sync + 'static {
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
    /// Presentation seam.
    fn presentation(&self) -> &impl Presentation<Self>;
    /// Transport seam.
    fn transport(&self) -> &impl Transport<Self>;
    /// Interactions seam, if the channel binds anchors.
    fn interactions(&self) -> Option<&impl Interactions<Self>> {
        None::<&NoInteractions>
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

/// The erased contract the engine stores, one per account (CAP-1): the same seams as
/// [`ApprovalCapability`], each behind `dyn`, with boxed futures (`async_trait`). Entries and
/// anchors cross as versioned JSON.
pub trait DynApprovalCapability: Send + Sync {
    /// The account.
    fn account(&self) -> AccountKey;
    /// Availability seam.
    fn availability(&self) -> &dyn Availability;
    /// Presentation seam.
    fn presentation(&self) -> &dyn DynPresentation;
    /// Transport seam.
    fn transport(&self) -> &dyn DynTransport;
    /// Interactions seam, if the channel has one.
    fn interactions(&self) -> Option<&dyn DynInteractions>;
    /// Observe seam.
    fn observe(&self) -> Option<&dyn Observe>;
}

/// [`Presentation`], erased.
pub trait DynPresentation: Send + Sync {
    /// See [`Presentation::render`].
    fn render(&self, view: &CardView) -> Result<Erased, CapabilityError>;
    /// See [`Presentation::finish`]; fails only when the entry no longer decodes.
    fn finish(
        &self,
        view: &CardView,
        entry: &serde_json::Value,
    ) -> Result<FinalAction<Erased>, CapabilityError>;
}

/// [`Transport`], erased.
#[async_trait]
pub trait DynTransport: Send + Sync {
    /// See [`Transport::prepare`].
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<Erased>, CapabilityError>;
    /// See [`Transport::deliver`]; the entry comes back as versioned JSON.
    async fn deliver(
        &self,
        target: &Prepared<Erased>,
        payload: &Erased,
    ) -> Result<Option<serde_json::Value>, CapabilityError>;
    /// See [`Transport::update`].
    async fn update(&self, entry: &serde_json::Value, payload: &Erased) -> Result<(), CapabilityError>;
    /// See [`Transport::delete`].
    async fn delete(&self, entry: &serde_json::Value) -> Result<(), CapabilityError>;
    /// See [`Transport::reply_private`].
    async fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> Result<(), CapabilityError>;
    /// See [`Transport::send_notice`].
    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), CapabilityError>;
}

/// [`Interactions`], erased.
#[async_trait]
pub trait DynInteractions: Send + Sync {
    /// See [`Interactions::bind`]; the anchor comes back as versioned JSON.
    async fn bind(&self, entry: &serde_json::Value) -> Result<Option<serde_json::Value>, CapabilityError>;
    /// See [`Interactions::unbind`].
    async fn unbind(&self, anchor: &serde_json::Value) -> Result<(), CapabilityError>;
    /// See [`Interactions::clear_actions`].
    async fn clear_actions(&self, entry: &serde_json::Value) -> Result<(), CapabilityError>;
    /// See [`Interactions::cancel_delivered`].
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
    // Read in place: a stored reference is decoded on every edit, bind and unbind of its card.
    let data = value.get("data").unwrap_or(&serde_json::Value::Null);
    T::deserialize(data).map_err(|e| CapabilityError::Decode { what, message: e.to_string() })
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

impl<C: ApprovalCapability> DynApprovalCapability for Erasure<C> {
    fn account(&self) -> AccountKey {
        self.0.account()
    }

    fn availability(&self) -> &dyn Availability {
        self.0.availability()
    }

    fn presentation(&self) -> &dyn DynPresentation {
        self
    }

    fn transport(&self) -> &dyn DynTransport {
        self
    }

    fn interactions(&self) -> Option<&dyn DynInteractions> {
        self.0.interactions().is_some().then_some(self as &dyn DynInteractions)
    }

    fn observe(&self) -> Option<&dyn Observe> {
        self.0.observe()
    }
}

impl<C: ApprovalCapability> DynPresentation for Erasure<C> {
    fn render(&self, view: &CardView) -> Result<Erased, CapabilityError> {
        let payload = self.0.presentation().render(view).map_err(CapabilityError::channel)?;
        Ok(Box::new(payload))
    }

    fn finish(
        &self,
        view: &CardView,
        entry: &serde_json::Value,
    ) -> Result<FinalAction<Erased>, CapabilityError> {
        let entry = self.entry(entry)?;
        Ok(match self.0.presentation().finish(view, &entry) {
            FinalAction::Update(p) => FinalAction::Update(Box::new(p)),
            FinalAction::Delete => FinalAction::Delete,
            FinalAction::ClearActions => FinalAction::ClearActions,
            FinalAction::Leave => FinalAction::Leave,
        })
    }
}

#[async_trait]
impl<C: ApprovalCapability> DynTransport for Erasure<C> {
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<Erased>, CapabilityError> {
        Ok(match self.0.transport().prepare(target).await.map_err(CapabilityError::channel)? {
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
        let entry = self.0.transport().deliver(typed, payload).await.map_err(CapabilityError::channel)?;
        entry.map(|e| encode(C::ENTRY_VERSION, &e, "entry")).transpose()
    }

    async fn update(&self, entry: &serde_json::Value, payload: &Erased) -> Result<(), CapabilityError> {
        let entry = self.entry(entry)?;
        let payload = downcast::<C::Payload>(payload, "payload")?;
        self.0.transport().update(&entry, payload).await.map_err(CapabilityError::channel)
    }

    async fn delete(&self, entry: &serde_json::Value) -> Result<(), CapabilityError> {
        let entry = self.entry(entry)?;
        self.0.transport().delete(&entry).await.map_err(CapabilityError::channel)
    }

    async fn reply_private(
        &self,
        actor: &Actor,
        context: &serde_json::Value,
        text: &str,
    ) -> Result<(), CapabilityError> {
        self.0.transport().reply_private(actor, context, text).await.map_err(CapabilityError::channel)
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), CapabilityError> {
        self.0.transport().send_notice(origin, text).await.map_err(CapabilityError::channel)
    }
}

/// Reached only when `interactions()` is `Some`; the `None` arms are unreachable in practice.
#[async_trait]
impl<C: ApprovalCapability> DynInteractions for Erasure<C> {
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
