//! Store contract cases for grants and bindings (PO-12, BD-1, BD-7): writes that say what they
//! expect to find, so a late one never undoes a revocation or moves a conversation.

use std::{sync::Arc, time::Duration};

use assent_core::{
    id::{BindingId, GrantId},
    model::{AuditEntry, AuditType, Binding, Channel, Conversation, Grant, Kind, PluginRef},
    store::{
        AuditFilter, BINDING_MOVED, BindingWrite, CONVERSATION_BOUND, Commit, GRANT_ALREADY_REVOKED,
        GRANT_NOT_ACTIVE, GrantWrite, Store, StoreError,
    },
};

use crate::{T0, samples};

/// A stored exec grant for `make test`, never used.
pub fn grant(bits: u128) -> Grant {
    Grant { id: GrantId::from_bits(bits), ..samples::grant(Kind::Exec, samples::exact(&["make", "test"])) }
}

/// PO-12: a grant changes only by narrow writes, never by a copy read earlier. Uses add up, a
/// revocation stands, and a use of a revoked or unknown grant is a conflict that writes nothing,
/// so a hit that raced a revocation approves nothing.
pub async fn st_1_grant_uses_add_up_and_never_outlive_a_revocation(store: Arc<dyn Store>) {
    let g = grant(80);
    let write = |w: GrantWrite| Commit { grants: vec![w], ..Commit::default() };
    let (used, revoked) = (T0 + Duration::from_secs(2), T0 + Duration::from_secs(3));
    store.commit(write(GrantWrite::Insert(Box::new(g.clone()))), T0).await.unwrap();
    for at in [T0 + Duration::from_secs(1), used] {
        store.commit(write(GrantWrite::Use { id: g.id.clone(), at }), at).await.unwrap();
    }
    let active = store.active_grants(Kind::Exec).await.unwrap();
    assert_eq!(active.iter().map(|g| (g.use_count, g.last_used_at)).collect::<Vec<_>>(), [(2, Some(used))]);

    let revoke = GrantWrite::Revoke { id: g.id.clone(), at: revoked, by: "console:admin".into() };
    store.commit(write(revoke.clone()), revoked).await.unwrap();
    let again = store.commit(write(revoke), revoked).await;
    assert!(matches!(again, Err(StoreError::Conflict(GRANT_ALREADY_REVOKED))), "{again:?}");
    for id in [g.id.clone(), GrantId::from_bits(81)] {
        let mut late = write(GrantWrite::Use { id, at: revoked });
        late.audit.push(AuditEntry::new(AuditType::GrantUsed, revoked));
        let late = store.commit(late, revoked).await;
        assert!(matches!(late, Err(StoreError::Conflict(GRANT_NOT_ACTIVE))), "{late:?}");
    }
    assert!(store.audit(&AuditFilter::default()).await.unwrap().is_empty(), "a refused use writes nothing");
    assert!(store.active_grants(Kind::Exec).await.unwrap().is_empty());
    let stored = store.grant(&g.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.use_count, stored.revoked_at, stored.revoked_by.as_deref()),
        (2, Some(revoked), Some("console:admin"))
    );
    assert_eq!(store.grants().await.unwrap(), [stored]);
}

/// Binding `bits` of install `root` on Telegram conversation -100.
pub fn binding(bits: u128, root: &str) -> Binding {
    let conversation = Conversation {
        channel: Channel::Telegram,
        account: "main".into(),
        conversation: "-100".into(),
        parent: None,
        thread: None,
    };
    Binding {
        id: BindingId::from_bits(bits),
        key: conversation.binding_key(),
        plugin: PluginRef { id: "codex".into(), name: "Codex".into(), root: root.into() },
        conversation,
        bound_at: T0,
        summary: "Answer build questions".into(),
        detach_hint: "/detach".into(),
        approval_id: None,
    }
}

/// BD-1, BD-7: a binding write names what it expects to find. A bind never takes a
/// conversation another install holds; a refresh or a detach of a binding that no longer holds
/// its conversation is a conflict, so a late one cannot bring a detached binding back or
/// detach a newer one.
pub async fn st_1_binding_writes_expect_what_they_found(store: Arc<dyn Store>) {
    let write = |w: BindingWrite| Commit { bindings: vec![w], ..Commit::default() };
    let refused = async |w: BindingWrite, conflict: &'static str| {
        let refused = store.commit(write(w), T0).await;
        assert!(matches!(refused, Err(StoreError::Conflict(c)) if c == conflict), "{refused:?}");
    };
    let (first, other) = (binding(1, "/plugins/codex@1"), binding(2, "/plugins/other@1"));
    let key = first.key.clone();
    store.commit(write(BindingWrite::Bind(Box::new(first.clone()))), T0).await.unwrap();
    refused(BindingWrite::Bind(Box::new(other.clone())), CONVERSATION_BOUND).await;
    assert_eq!(store.binding(&key).await.unwrap().as_ref(), Some(&first));

    // The same install may be bound again (a new approval); the old binding is then gone.
    let again = Binding { summary: "Again".into(), ..binding(3, "/plugins/codex@1") };
    store.commit(write(BindingWrite::Bind(Box::new(again.clone()))), T0).await.unwrap();
    refused(BindingWrite::Refresh(Box::new(first.clone())), BINDING_MOVED).await;
    refused(BindingWrite::Remove { key: key.clone(), id: first.id.clone() }, BINDING_MOVED).await;
    let refreshed = Binding { summary: "Refreshed".into(), ..again.clone() };
    store.commit(write(BindingWrite::Refresh(Box::new(refreshed.clone()))), T0).await.unwrap();
    assert_eq!(store.binding(&key).await.unwrap(), Some(refreshed));

    store.commit(write(BindingWrite::Remove { key: key.clone(), id: again.id.clone() }), T0).await.unwrap();
    refused(BindingWrite::Refresh(Box::new(again.clone())), BINDING_MOVED).await;
    refused(BindingWrite::Remove { key: key.clone(), id: again.id.clone() }, BINDING_MOVED).await;
    assert_eq!(store.binding(&key).await.unwrap(), None, "nothing brings a detached binding back");
    store.commit(write(BindingWrite::Bind(Box::new(other.clone()))), T0).await.unwrap();
    assert_eq!(store.binding(&key).await.unwrap(), Some(other), "a free conversation takes any install");
}
