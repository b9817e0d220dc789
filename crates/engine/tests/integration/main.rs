//! Integration tests of assent-engine with MemoryStore and FakeChannel, named after the spec
//! requirements they check.

// Tests fail loudly on purpose, and `&[fake.clone()]` reads better than `slice::from_ref`.
#![allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)]
mod bindings;
mod capability;
mod card_edits;
mod contracts;
mod grants;
mod interactions;
mod lifecycle;
mod properties;
mod routing;

use std::{sync::Arc, time::Duration};

use assent_core::{
    id::ApprovalId,
    model::{AuditEntry, AuditType, Channel, Status},
    store::{AuditFilter, Store},
};
use assent_testing::{FakeChannel, FakeMessage, TestBed, eventually};

/// A Telegram-like fake with approvers 42 and 43.
pub(crate) fn telegram() -> FakeChannel {
    FakeChannel::new(Channel::Telegram, "main", &["42", "43"])
}

/// Waits for the first card of `id` on `fake`.
pub(crate) async fn card(fake: &FakeChannel, id: &ApprovalId) -> FakeMessage {
    let mut found = None;
    eventually("a card to be delivered", &mut || {
        found = fake.messages_for(id).into_iter().next();
        found.is_some()
    })
    .await;
    found.unwrap_or_else(|| unreachable!())
}

/// Waits until every card of `id` on `fake` is final (no buttons left, or deleted).
pub(crate) async fn finalized(fake: &FakeChannel, id: &ApprovalId) -> Vec<FakeMessage> {
    eventually("the cards to be finalized", &mut || {
        let ms = fake.messages_for(id);
        !ms.is_empty() && ms.iter().all(|m| m.deleted || m.payload.outcome.is_some())
    })
    .await;
    fake.messages_for(id)
}

pub(crate) async fn audit_of(store: &Arc<dyn Store>, id: &ApprovalId) -> Vec<AuditEntry> {
    store
        .audit(&AuditFilter { approval_id: Some(id.clone()), limit: 1000, ..AuditFilter::default() })
        .await
        .unwrap()
}

pub(crate) async fn audit_types(store: &Arc<dyn Store>, id: &ApprovalId) -> Vec<AuditType> {
    audit_of(store, id).await.into_iter().map(|a| a.kind).collect()
}

/// Polls the store until the approval reaches `status`.
pub(crate) async fn status_becomes(bed: &TestBed, id: &ApprovalId, status: Status) {
    for _ in 0..2000 {
        if bed.store.approval(id).await.unwrap().is_some_and(|a| a.status == status) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{id} never became {status:?}");
}

/// Polls an async condition (bounded, real time).
pub(crate) async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..2000 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}
