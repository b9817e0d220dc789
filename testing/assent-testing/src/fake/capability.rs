//! The fake as a channel: what the engine sees through [`ApprovalCapability`], with every call
//! recorded and open to the faults and delays its tests inject.

use std::sync::atomic::Ordering;

use assent_core::{
    capability::{
        ApprovalCapability, Availability, FinalAction, Handle, Interactions, Observe, PrepareOutcome,
        Prepared, Presentation, Transport,
    },
    card::CardView,
    id::ApprovalId,
    model::{AccountKey, Actor, Origin},
    routing::{AccountRouting, PlannedTarget, TargetAddr},
};

use super::{
    FakeAnchor, FakeCards, FakeChannel, FakeEntry, FakeError, FakeMessage, FakePayload, Fault, FinalMode, Op,
};

impl Availability for FakeChannel {
    fn is_configured(&self) -> bool {
        self.lock().configured
    }

    fn routing(&self) -> AccountRouting {
        self.lock().routing.clone()
    }

    fn should_handle(&self, _approval: &assent_core::model::Approval) -> Handle {
        self.lock().veto.clone().map_or(Handle::Yes, Handle::Skip)
    }
}

impl Observe for FakeChannel {
    fn on_duplicate_skipped(&self, _target: &PlannedTarget, dedupe_key: &str) {
        self.lock().duplicates.push(dedupe_key.to_owned());
    }

    fn on_delivery_error(&self, _target: &PlannedTarget, error: &str) {
        self.lock().delivery_errors.push(error.to_owned());
    }

    fn on_finalized(&self, approval: &ApprovalId) {
        self.lock().finalized.push(approval.clone());
    }
}

/// Rendering rules of the fake platform: pure and deterministic (CAP-2).
pub fn render_card(view: &CardView, budget: usize) -> FakePayload {
    let mut body = String::new();
    let mut buttons: Vec<(String, String)> =
        view.controls.iter().map(|c| (c.label.clone(), c.token.clone())).collect();
    if let Some(first) = view.blocks.first() {
        let fitted = first.text.fit(budget);
        body.push_str(&format!("{}:\n{}\n", first.label, fitted.shown));
        if let Some(n) = fitted.notice {
            body.push_str(&format!("{n}\n"));
            // The fake cannot send private text; with no console link only deny stays (PO-11).
            if view.full_text_url.is_none() {
                buttons.retain(|(label, _)| label == "Deny");
            }
        }
    }
    for b in view.blocks.iter().skip(1) {
        body.push_str(&format!("{}:\n{}\n", b.label, b.text.full));
    }
    for f in &view.fields {
        body.push_str(&format!("{}: {}\n", f.label, f.value));
    }
    FakePayload {
        approval: view.id.clone(),
        kind: view.kind,
        title: view.title.clone(),
        body,
        footer: view.footer.clone(),
        outcome: view.outcome.clone(),
        buttons,
        phase: view.phase,
    }
}

impl Presentation<FakeChannel> for FakeCards {
    fn render(&self, view: &CardView) -> Result<FakePayload, FakeError> {
        self.renders.fetch_add(1, Ordering::Relaxed);
        Ok(render_card(view, self.budget))
    }

    fn finish(&self, view: &CardView, _entry: &FakeEntry) -> FinalAction<FakePayload> {
        match self.final_mode {
            FinalMode::Update => FinalAction::Update(render_card(view, usize::MAX)),
            FinalMode::Delete => FinalAction::Delete,
            FinalMode::ClearActions => FinalAction::ClearActions,
            FinalMode::Leave => FinalAction::Leave,
        }
    }
}

impl ApprovalCapability for FakeChannel {
    type Payload = FakePayload;
    type Prepared = String;
    type Entry = FakeEntry;
    type Anchor = FakeAnchor;
    type Error = FakeError;

    fn account(&self) -> AccountKey {
        self.account.clone()
    }

    fn availability(&self) -> &dyn Availability {
        self
    }

    fn presentation(&self) -> &impl Presentation<Self> {
        &self.cards
    }

    fn transport(&self) -> &impl Transport<Self> {
        self
    }

    fn interactions(&self) -> Option<&impl Interactions<Self>> {
        self.interactions.then_some(self)
    }

    fn observe(&self) -> Option<&dyn Observe> {
        Some(self)
    }
}

impl Transport<FakeChannel> for FakeChannel {
    async fn prepare(&self, target: &PlannedTarget) -> Result<PrepareOutcome<String>, FakeError> {
        self.misbehave(Op::Prepare).await?;
        if let Some(reason) = self.lock().skip.clone() {
            return Ok(PrepareOutcome::Skip(reason));
        }
        // Like Telegram: a DM's chat id equals the user id, so DM and conversation can coincide.
        let conversation = match &target.to {
            TargetAddr::User { user_id } => user_id.clone(),
            TargetAddr::Conversation { conversation, thread: Some(t) } => format!("{conversation}#{t}"),
            TargetAddr::Conversation { conversation, thread: None } => conversation.clone(),
        };
        Ok(PrepareOutcome::Ready(Prepared {
            planned: target.clone(),
            dedupe_key: conversation.clone(),
            native: conversation,
        }))
    }

    async fn deliver(
        &self,
        target: &Prepared<String>,
        payload: &FakePayload,
    ) -> Result<Option<FakeEntry>, FakeError> {
        self.misbehave(Op::Deliver).await?;
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (approval, kind) = (payload.approval.clone(), payload.kind);
        self.lock().messages.insert(
            id,
            FakeMessage {
                id,
                conversation: target.native.clone(),
                approval,
                kind,
                payload: payload.clone(),
                edits: Vec::new(),
                deleted: false,
            },
        );
        Ok(Some(FakeEntry { message_id: id, conversation: target.native.clone() }))
    }

    async fn update(&self, entry: &FakeEntry, payload: &FakePayload) -> Result<(), FakeError> {
        let _busy = self.enter(Op::Update);
        self.misbehave(Op::Update).await?;
        let mut s = self.lock();
        let Some(m) = s.messages.get_mut(&entry.message_id) else {
            return if self.lenient {
                Ok(())
            } else {
                Err(FakeError { op: Op::Update, fault: Fault::Permanent })
            };
        };
        let old = std::mem::replace(&mut m.payload, payload.clone());
        m.edits.push(old);
        Ok(())
    }

    async fn delete(&self, entry: &FakeEntry) -> Result<(), FakeError> {
        self.misbehave(Op::Delete).await?;
        let mut s = self.lock();
        let Some(m) = s.messages.get_mut(&entry.message_id) else {
            return if self.lenient {
                Ok(())
            } else {
                Err(FakeError { op: Op::Delete, fault: Fault::Permanent })
            };
        };
        m.deleted = true;
        Ok(())
    }

    async fn reply_private(
        &self,
        actor: &Actor,
        _context: &serde_json::Value,
        text: &str,
    ) -> Result<(), FakeError> {
        self.lock().private_replies.push((actor.user_id.clone(), text.to_owned()));
        Ok(())
    }

    async fn send_notice(&self, origin: &Origin, text: &str) -> Result<(), FakeError> {
        self.misbehave(Op::Notice).await?;
        self.lock().notices.push((origin.clone(), text.to_owned()));
        Ok(())
    }
}

impl Interactions<FakeChannel> for FakeChannel {
    async fn bind(&self, entry: &FakeEntry) -> Result<Option<FakeAnchor>, FakeError> {
        self.misbehave(Op::Bind).await?;
        let mut s = self.lock();
        s.anchors.insert(entry.message_id);
        Ok(Some(FakeAnchor { message_id: entry.message_id }))
    }

    async fn unbind(&self, anchor: &FakeAnchor) -> Result<(), FakeError> {
        self.lock().anchors.remove(&anchor.message_id);
        Ok(())
    }

    async fn clear_actions(&self, entry: &FakeEntry) -> Result<(), FakeError> {
        let mut s = self.lock();
        if let Some(m) = s.messages.get_mut(&entry.message_id) {
            let mut stripped = m.payload.clone();
            stripped.buttons.clear();
            let old = std::mem::replace(&mut m.payload, stripped);
            m.edits.push(old);
        }
        Ok(())
    }

    async fn cancel_delivered(&self, _entry: &FakeEntry) -> Result<(), FakeError> {
        Ok(())
    }
}
