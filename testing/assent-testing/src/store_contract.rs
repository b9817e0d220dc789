//! The store contract (ST-1). Every [`Store`] runs these through [`store_contract_tests!`](crate::store_contract_tests):
//! idempotent create, CAS, no re-tag, vote CAS, consume-once, ledger uniqueness, outbox claim,
//! gap-free seq and all-or-nothing commits.

#![allow(clippy::unwrap_used)] // Contract cases are tests: a failed step must fail loudly.

use std::{sync::Arc, time::Duration};

use assent_core::{
    id::{ApprovalId, EntryId},
    lifecycle::{VoteOutcome, apply_vote, consume},
    model::{
        AccountKey, Action, Actor, Approval, AuditEntry, AuditType, Channel, Decision, Entry, EntryState,
        Event, EventType, PendingFacts, Status, Surface, Vote,
    },
    store::{
        ApprovalFilter, ApprovalWrite, AuditFilter, CallbackJob, CallbackState, CallbackTarget,
        CallbackWrite, Commit, EntryWrite, IdempotencyRecord, Store, StoreError,
    },
};

mod grants;

pub use self::grants::{
    binding, grant, st_1_binding_writes_expect_what_they_found,
    st_1_grant_uses_add_up_and_never_outlive_a_revocation,
};
use crate::{T0, samples::kim};

/// Generates one `#[tokio::test]` per contract case for the store made by `$factory`, an async
/// expression yielding `Arc<dyn Store>`. The calling crate needs `tokio` as a dev-dependency.
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:expr) => {
        $crate::__store_contract_cases!($factory;
            st_1_idempotent_create, st_1_cas_update, st_1_no_re_tag, st_1_vote_cas, st_1_consume_once,
            st_1_ledger_uniqueness, st_1_outbox_claim, st_1_gap_free_seq, st_1_commit_is_all_or_nothing,
            st_1_queries, st_1_listing_pages_reach_the_oldest, st_1_approvals_are_found_by_id_prefix,
            st_1_pending_facts_agree_with_the_approvals, st_1_side_by_side_commits_all_land,
            st_1_grant_uses_add_up_and_never_outlive_a_revocation, st_1_binding_writes_expect_what_they_found,
            st_6_retention_keeps_pending_and_unfinished_work);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_cases {
    ($factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::__private::Store> = $factory.await;
                $crate::store_contract::$name(store).await;
            }
        )*
    };
}

/// A pending exec approval with id `bits`, created at `T0`, expiring after a minute.
pub fn sample(bits: u128) -> Approval {
    let mut a = crate::samples::approval(crate::samples::exec_action(&["ls", "-l"]), 2);
    a.id = ApprovalId::from_bits(bits);
    a.expires_at = T0 + Duration::from_secs(60);
    a.allowed_decisions = vec![Decision::AllowOnce, Decision::Deny];
    (a.agent_id, a.session_key) = (None, None);
    a
}

fn insert(a: &Approval) -> Commit {
    Commit {
        approval: Some(ApprovalWrite::Insert { approval: a.clone(), idempotency: None }),
        ..Commit::default()
    }
}

fn update(next: &Approval, expected: u64) -> Commit {
    Commit {
        approval: Some(ApprovalWrite::Update { approval: next.clone(), expected_version: expected }),
        ..Commit::default()
    }
}

/// A delivered card of `approval` with id `bits`, waiting for its final action.
pub fn entry(approval: &ApprovalId, bits: u128, target: &str) -> Entry {
    Entry {
        entry_id: EntryId::from_bits(bits),
        approval_id: approval.clone(),
        channel: Channel::Telegram,
        account: "main".into(),
        surface: Surface::ApproverDm,
        target_key: target.into(),
        native_ref: serde_json::json!({ "v": 1, "data": { "message_id": bits as u64 } }),
        anchor: None,
        state: EntryState::Delivered,
        final_action: None,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        delivered_at: T0,
    }
}

fn ev(a: &Approval) -> Event {
    Event {
        seq: 0,
        kind: EventType::Requested,
        at: T0,
        approval_kind: Some(a.kind()),
        approval_id: Some(a.id.clone()),
        data: serde_json::Value::Null,
    }
}

/// LC-2: same key and payload → the existing approval; different payload → conflict; after 24 h
/// the key is free again.
pub async fn st_1_idempotent_create(store: Arc<dyn Store>) {
    let rec = |digest: &str| IdempotencyRecord {
        principal: "token:ci".into(),
        key: "k1".into(),
        digest: digest.into(),
    };
    let a = sample(1);
    let first = Commit {
        approval: Some(ApprovalWrite::Insert { approval: a.clone(), idempotency: Some(rec("d1")) }),
        ..Commit::default()
    };
    store.commit(first, T0).await.unwrap();
    let b = sample(2);
    let same = Commit {
        approval: Some(ApprovalWrite::Insert { approval: b.clone(), idempotency: Some(rec("d1")) }),
        ..Commit::default()
    };
    assert_eq!(store.commit(same.clone(), T0).await, Err(StoreError::IdempotentReplay(a.id.clone())));
    let other = Commit {
        approval: Some(ApprovalWrite::Insert { approval: b.clone(), idempotency: Some(rec("d2")) }),
        ..Commit::default()
    };
    assert_eq!(store.commit(other, T0).await, Err(StoreError::IdempotencyConflict));
    assert!(store.approval(&b.id).await.unwrap().is_none(), "a refused create stores nothing");
    let later = T0 + Duration::from_secs(24 * 3600 + 1);
    store.commit(same, later).await.unwrap();
    assert!(store.approval(&b.id).await.unwrap().is_some());
}

/// ST-4: an update succeeds only against the version that was read.
pub async fn st_1_cas_update(store: Arc<dyn Store>) {
    let a = sample(10);
    store.commit(insert(&a), T0).await.unwrap();
    let mut next = a.clone();
    next.version = 2;
    next.agent_id = Some("x".into());
    assert_eq!(store.commit(update(&next, 7), T0).await, Err(StoreError::Conflict("approval version")));
    store.commit(update(&next, 1), T0).await.unwrap();
    assert_eq!(store.approval(&a.id).await.unwrap().unwrap().version, 2);
    assert!(store.commit(update(&next, 1), T0).await.is_err(), "stale version");
}

/// LC-4/LC-5: a terminal status is never re-tagged, even with the right version.
pub async fn st_1_no_re_tag(store: Arc<dyn Store>) {
    let a = sample(20);
    store.commit(insert(&a), T0).await.unwrap();
    let mut denied = a.clone();
    denied.status = Status::Denied;
    denied.version = 2;
    store.commit(update(&denied, 1), T0).await.unwrap();
    let mut approved = denied.clone();
    approved.status = Status::Approved;
    approved.version = 3;
    assert!(matches!(store.commit(update(&approved, 2), T0).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.approval(&a.id).await.unwrap().unwrap().status, Status::Denied);
}

/// LC-6: two votes built from the same version race; exactly one is stored.
pub async fn st_1_vote_cas(store: Arc<dyn Store>) {
    let a = sample(30);
    store.commit(insert(&a), T0).await.unwrap();
    let bob = Actor::platform(Channel::Telegram, "43", "@bob", Surface::ApproverDm);
    let mut handles = Vec::new();
    for actor in [kim(), bob] {
        let VoteOutcome::Recorded(next) = apply_vote(&a, &actor, Decision::AllowOnce, None, T0).unwrap()
        else {
            panic!("quorum 2")
        };
        let store = store.clone();
        handles.push(tokio::spawn(async move { store.commit(update(&next, 1), T0).await.is_ok() }));
    }
    let mut wins = 0;
    for h in handles {
        wins += usize::from(h.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(store.approval(&a.id).await.unwrap().unwrap().quorum.votes.len(), 1);
}

/// LC-11: consume sets `consumed_at` once; a second consume from the same read conflicts.
pub async fn st_1_consume_once(store: Arc<dyn Store>) {
    let mut a = sample(40);
    a.status = Status::Approved;
    store.commit(insert(&a), T0).await.unwrap();
    let next = consume(&a, "token:ci", T0).unwrap();
    store.commit(update(&next, a.version), T0).await.unwrap();
    assert!(store.commit(update(&next, a.version), T0).await.is_err());
    assert_eq!(store.approval(&a.id).await.unwrap().unwrap().consumed_at, Some(T0));
}

/// DM-9: one entry per (approval, channel, account, target_key).
pub async fn st_1_ledger_uniqueness(store: Arc<dyn Store>) {
    let a = sample(50);
    store.commit(insert(&a), T0).await.unwrap();
    let c = |e: Entry| Commit { entries: vec![EntryWrite::Insert(e)], ..Commit::default() };
    store.commit(c(entry(&a.id, 51, "user:1")), T0).await.unwrap();
    assert!(matches!(store.commit(c(entry(&a.id, 52, "user:1")), T0).await, Err(StoreError::Conflict(_))));
    store.commit(c(entry(&a.id, 53, "user:2")), T0).await.unwrap();
    assert_eq!(store.entries(&a.id).await.unwrap().len(), 2);
}

/// A pending `on_resolved` callback of `approval`, due at [`T0`].
pub fn callback_job(approval: &ApprovalId) -> CallbackJob {
    CallbackJob {
        key: format!("{approval}:on_resolved"),
        approval_id: approval.clone(),
        event: "on_resolved".into(),
        target: CallbackTarget::Url { url: "https://example.org/cb".into() },
        payload: serde_json::json!({ "ok": true }),
        attempts: 0,
        next_attempt_at: T0,
        state: CallbackState::Pending,
        last_error: None,
    }
}

/// LC-14 / ST-8: a claimed job is leased; done jobs are never claimed again.
pub async fn st_1_outbox_claim(store: Arc<dyn Store>) {
    let a = sample(60);
    let job = callback_job(&a.id);
    let mut commit = insert(&a);
    commit.callbacks.push(CallbackWrite::Insert(job.clone()));
    store.commit(commit, T0).await.unwrap();
    let lease = Duration::from_secs(60);
    let claimed = store.claim_callbacks(T0, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.claim_callbacks(T0, lease, 10).await.unwrap().is_empty(), "leased");
    let again = store.claim_callbacks(T0 + lease, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1, "lease expired: at-least-once");
    let mut done = again[0].clone();
    done.state = CallbackState::Done;
    store
        .commit(Commit { callbacks: vec![CallbackWrite::Update(done)], ..Commit::default() }, T0)
        .await
        .unwrap();
    assert!(store.claim_callbacks(T0 + lease * 10, lease, 10).await.unwrap().is_empty());
    let dup = Commit { callbacks: vec![CallbackWrite::Insert(job)], ..Commit::default() };
    assert!(store.commit(dup, T0).await.is_err(), "keys are unique");
}

/// LC-15: concurrent commits number events 1..=N without gaps; resume reads the rest.
pub async fn st_1_gap_free_seq(store: Arc<dyn Store>) {
    let mut handles = Vec::new();
    for i in 0..40u128 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let a = sample(1000 + i);
            let mut c = insert(&a);
            c.events.push(ev(&a));
            c.events.push(ev(&a));
            c.audit.push(AuditEntry::new(AuditType::Requested, T0).approval(&a.id));
            store.commit(c, T0).await.unwrap();
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let all = store.events_since(0, 1000).await.unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<u64>>());
    let tail = store.events_since(75, 1000).await.unwrap();
    assert_eq!(tail.first().map(|e| e.seq), Some(76));
    assert_eq!(store.latest_event_seq().await.unwrap(), 80);
    let audit = store.audit(&AuditFilter { limit: 1000, ..AuditFilter::default() }).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.seq).collect::<Vec<_>>(), (1..=40).collect::<Vec<u64>>());
    // The console's pages walk back from the newest.
    let newest = AuditFilter { before_seq: Some(u64::MAX), limit: 3, ..AuditFilter::default() };
    let page = store.audit(&newest).await.unwrap();
    assert_eq!(page.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![40, 39, 38]);
    let older = AuditFilter { before_seq: Some(38), limit: 2, ..AuditFilter::default() };
    let page = store.audit(&older).await.unwrap();
    assert_eq!(page.iter().map(|a| a.seq).collect::<Vec<_>>(), vec![37, 36]);
}

/// LC-15 under load: many commits at once, each writing audit rows, events or both, all land
/// with gap-free sequences. On PostgreSQL they run side by side on the pool's connections and
/// lock the sequence counters they need: taken in different orders, two commits would each hold
/// one and wait for the other, and PostgreSQL would abort one ("deadlock detected").
pub async fn st_1_side_by_side_commits_all_land(store: Arc<dyn Store>) {
    const TASKS: u128 = 32;
    const EACH: u128 = 90;
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                let a = sample(5000 + t * EACH + i);
                let mut c = insert(&a);
                if i % 3 != 1 {
                    c.events.push(ev(&a));
                }
                if i % 3 != 2 {
                    c.audit.push(AuditEntry::new(AuditType::Requested, T0).approval(&a.id));
                }
                store.commit(c, T0).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let commits = TASKS * EACH;
    let (events, audit) = (u64::try_from(commits * 2 / 3).unwrap(), u64::try_from(commits * 2 / 3).unwrap());
    let seqs: Vec<u64> = store.events_since(0, 10_000).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events).collect::<Vec<u64>>());
    let all = AuditFilter { limit: 10_000, ..AuditFilter::default() };
    let seqs: Vec<u64> = store.audit(&all).await.unwrap().iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (1..=audit).collect::<Vec<u64>>());
}

/// A commit that fails any check writes nothing: no events, no audit, no entries.
pub async fn st_1_commit_is_all_or_nothing(store: Arc<dyn Store>) {
    let a = sample(70);
    store.commit(insert(&a), T0).await.unwrap();
    let mut stale = update(&a, 99);
    stale.events.push(ev(&a));
    stale.audit.push(AuditEntry::new(AuditType::Vote, T0));
    stale.entries.push(EntryWrite::Insert(entry(&a.id, 71, "user:9")));
    stale.notice_key = Some("notice:x".into());
    assert!(store.commit(stale, T0).await.is_err());
    assert!(store.events_since(0, 10).await.unwrap().is_empty());
    assert!(store.audit(&AuditFilter::default()).await.unwrap().is_empty());
    assert!(store.entries(&a.id).await.unwrap().is_empty());
    let notice = Commit { notice_key: Some("notice:x".into()), ..Commit::default() };
    store.commit(notice.clone(), T0).await.unwrap();
    assert!(store.commit(notice, T0).await.is_err(), "RT-8: one notice per key");
}

/// LC-13, NF-4: the start-up index's facts, which a store may read without decoding whole
/// approvals, agree with the approvals themselves: every kind, votes, self-approval, and a
/// binding's requester with and without a platform user. Terminal approvals have none.
pub async fn st_1_pending_facts_agree_with_the_approvals(store: Arc<dyn Store>) {
    use crate::samples::{approval, binding_action, exec_action, plugin_action};
    let with_id = |mut a: Approval, bits: u128| {
        a.id = ApprovalId::from_bits(bits);
        a
    };
    let mut voted = with_id(approval(exec_action(&["deploy", "--prod"]), 2), 90);
    voted.quorum.votes.push(Vote { actor: kim(), decision: Decision::AllowAlways, at: T0 });
    voted.prevent_self_approval = true;
    let plugin = with_id(approval(plugin_action(), 1), 91);
    let bound = with_id(approval(binding_action(), 1), 92);
    let mut anonymous = with_id(approval(binding_action(), 1), 93);
    if let Action::Binding(b) = &mut anonymous.action {
        (b.requested_by, b.conversation.account) = (None, "second".into());
    }
    let expired = sample(94);
    for a in [&voted, &plugin, &bound, &anonymous, &expired] {
        store.commit(insert(a), T0).await.unwrap();
    }
    let mut gone = expired.clone();
    (gone.status, gone.version) = (Status::Expired, expired.version + 1);
    store.commit(update(&gone, expired.version), T0).await.unwrap();

    let mut facts = store.pending_facts().await.unwrap();
    facts.sort_by(|x, y| x.id.cmp(&y.id));
    let expected: Vec<_> = [&voted, &plugin, &bound, &anonymous].map(PendingFacts::of).into();
    assert_eq!(facts, expected);
    assert_eq!(facts[0].voters, vec![(kim().principal, Decision::AllowAlways)]);
    let telegram = AccountKey::new(Channel::Telegram, "main");
    assert_eq!(facts[2].binding_requester, Some((telegram, "42".to_owned())));
    assert_eq!(facts[3].binding_requester, None);
}

/// Pending index, expiry index and finalization queue queries.
pub async fn st_1_queries(store: Arc<dyn Store>) {
    let a = sample(80);
    let mut b = sample(81);
    b.expires_at = T0 + Duration::from_secs(5);
    for x in [&a, &b] {
        store.commit(insert(x), T0).await.unwrap();
    }
    assert_eq!(store.pending().await.unwrap().len(), 2);
    let due = store.due_for_expiry(T0 + Duration::from_secs(10), 10).await.unwrap();
    assert_eq!(due.iter().map(|x| x.id.clone()).collect::<Vec<_>>(), vec![b.id.clone()]);
    store
        .commit(
            Commit { entries: vec![EntryWrite::Insert(entry(&b.id, 82, "user:1"))], ..Commit::default() },
            T0,
        )
        .await
        .unwrap();
    assert!(store.finalize_due(T0, 10).await.unwrap().is_empty(), "pending approvals are not finalized");
    assert_eq!(store.entries_of_pending().await.unwrap().len(), 1);
    let mut expired = b.clone();
    expired.status = Status::Expired;
    expired.version = 2;
    store.commit(update(&expired, 1), T0).await.unwrap();
    assert!(store.entries_of_pending().await.unwrap().is_empty(), "its approval is terminal now");
    let fin = store.finalize_due(T0, 10).await.unwrap();
    assert_eq!(fin.len(), 1);
    let mut later = fin[0].clone();
    later.next_attempt_at = Some(T0 + Duration::from_secs(30));
    store.commit(Commit { entries: vec![EntryWrite::Update(later)], ..Commit::default() }, T0).await.unwrap();
    assert!(store.finalize_due(T0, 10).await.unwrap().is_empty(), "not due yet");
    assert_eq!(store.finalize_due(T0 + Duration::from_secs(30), 10).await.unwrap().len(), 1);
    let acct = assent_core::model::AccountKey::new(Channel::Telegram, "main");
    assert_eq!(store.open_entries(&acct).await.unwrap().len(), 1);
    assert_eq!(store.pending().await.unwrap().len(), 1);
    // A card that lands after the decision is due at once; a final one never again.
    let late = entry(&b.id, 83, "user:2");
    store.commit(Commit { entries: vec![EntryWrite::Insert(late)], ..Commit::default() }, T0).await.unwrap();
    let due: Vec<_> = store.finalize_due(T0, 10).await.unwrap().into_iter().map(|e| e.entry_id).collect();
    assert_eq!(due, vec![EntryId::from_bits(83)]);
    let mut done = store.entry(&EntryId::from_bits(83)).await.unwrap().unwrap();
    done.state = EntryState::Finalized;
    store.commit(Commit { entries: vec![EntryWrite::Update(done)], ..Commit::default() }, T0).await.unwrap();
    assert!(store.finalize_due(T0, 10).await.unwrap().is_empty(), "a final card is never due");
    assert_eq!(store.finalize_due(T0 + Duration::from_secs(30), 10).await.unwrap().len(), 1);
}

/// API-2: a listing is walked page by page with a `(created_at, id)` cursor, ties on one
/// millisecond included, down to the oldest approval (issue 9, finding 14).
pub async fn st_1_listing_pages_reach_the_oldest(store: Arc<dyn Store>) {
    let mut all = Vec::new();
    for bits in 0..7u128 {
        let mut a = sample(200 + bits);
        a.created_at = T0 + Duration::from_millis((bits / 2) as u64);
        store.commit(insert(&a), T0).await.unwrap();
        all.push(a.id.clone());
    }
    let mut seen = Vec::new();
    let mut filter = ApprovalFilter { limit: 3, ..ApprovalFilter::default() };
    loop {
        let page = store.approvals(&filter).await.unwrap();
        seen.extend(page.iter().map(|a| a.id.clone()));
        match page.last() {
            Some(last) if page.len() == 3 => filter.before = Some((last.created_at, last.id.clone())),
            _ => break,
        }
    }
    all.reverse();
    assert_eq!(seen, all, "newest first, each exactly once");
}

/// API-2: a ref (an id prefix) finds its approval whatever its status, and only it.
pub async fn st_1_approvals_are_found_by_id_prefix(store: Arc<dyn Store>) {
    let (a, b) = (sample(300), sample(301));
    for x in [&a, &b] {
        store.commit(insert(x), T0).await.unwrap();
    }
    let by = |prefix: &str| {
        let filter =
            ApprovalFilter { id_prefix: Some(prefix.to_owned()), limit: 5, ..ApprovalFilter::default() };
        let store = store.clone();
        async move { store.approvals(&filter).await.unwrap().into_iter().map(|x| x.id).collect::<Vec<_>>() }
    };
    assert_eq!(by(a.id.as_str()).await, std::slice::from_ref(&a.id));
    let shared: String =
        a.id.as_str()
            .chars()
            .zip(b.id.as_str().chars())
            .take_while(|(x, y)| x == y)
            .map(|(x, _)| x)
            .collect();
    assert_eq!(by(&shared).await.len(), 2, "a shared prefix matches both");
    assert!(by("zzzzzzzz").await.is_empty());
}

/// ST-6: retention deletes old terminal approvals whose cards are final, with their ledger, and
/// old audit entries and events; it keeps pending approvals, unfinished cards and recent records,
/// and sequence numbers keep counting afterwards.
pub async fn st_6_retention_keeps_pending_and_unfinished_work(store: Arc<dyn Store>) {
    let day = Duration::from_secs(86_400);
    let old = |bits: u128, status: Status| {
        let mut a = sample(bits);
        a.status = status;
        a
    };
    let done = old(900, Status::Denied);
    let unfinished = old(901, Status::Approved);
    let pending = sample(902);
    for a in [&done, &unfinished, &pending] {
        let mut c = insert(a);
        c.audit.push(AuditEntry::new(AuditType::Requested, T0).approval(&a.id));
        c.events.push(ev(a));
        store.commit(c, T0).await.unwrap();
    }
    let mut final_entry = entry(&done.id, 910, "user:1");
    final_entry.state = EntryState::Finalized;
    let open_entry = entry(&unfinished.id, 911, "user:1");
    let entries = vec![EntryWrite::Insert(final_entry), EntryWrite::Insert(open_entry)];
    store.commit(Commit { entries, ..Commit::default() }, T0).await.unwrap();
    let later = T0 + day * 91;
    let mut recent = sample(903);
    recent.created_at = later;
    recent.status = Status::Expired;
    store.commit(insert(&recent), later).await.unwrap();

    assert_eq!(store.purge(T0 + day * 90).await.unwrap(), 1);
    assert!(store.approval(&done.id).await.unwrap().is_none());
    assert!(store.entries(&done.id).await.unwrap().is_empty());
    assert!(store.approval(&unfinished.id).await.unwrap().is_some(), "its card still needs a final edit");
    assert!(store.approval(&pending.id).await.unwrap().is_some());
    assert!(store.approval(&recent.id).await.unwrap().is_some());
    assert!(store.audit(&AuditFilter::default()).await.unwrap().is_empty());
    assert!(store.events_since(0, 10).await.unwrap().is_empty());
    assert_eq!(store.latest_event_seq().await.unwrap(), 3, "purging events does not lower the newest seq");
    let mut c = Commit::default();
    c.events.push(ev(&recent));
    let committed = store.commit(c, later).await.unwrap();
    assert_eq!(committed.events[0].seq, 4, "seq keeps counting after a purge");
    assert_eq!(store.events_since(0, 10).await.unwrap().len(), 1);
}
