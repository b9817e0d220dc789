//! [`MemoryStore`]: the reference [`Store`], in memory. Used by tests, benchmarks and as the model
//! every durable backend must match (`store_contract_tests!`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use async_trait::async_trait;

use crate::{
    clock::Timestamp,
    id::{ApprovalId, EntryId, GrantId},
    model::{AccountKey, Approval, AuditEntry, Binding, Channel, Entry, Event, Grant, Kind, Origin, Status},
    store::{
        ApprovalFilter, ApprovalWrite, AuditFilter, BINDING_MOVED, BindingWrite, CONVERSATION_BOUND,
        CallbackJob, CallbackState, CallbackWrite, Commit, Committed, EntryWrite, GRANT_ALREADY_REVOKED,
        GRANT_NOT_ACTIVE, GrantWrite, IDEMPOTENCY_WINDOW, Store, StoreError,
    },
};

/// `(approval, channel, account, target_key)`: the ledger's unique key (DM-9).
type LedgerKey = (ApprovalId, Channel, String, String);

fn ledger_key(e: &Entry) -> LedgerKey {
    (e.approval_id.clone(), e.channel, e.account.clone(), e.target_key.clone())
}

#[derive(Debug, Default, Clone)]
struct Inner {
    approvals: HashMap<ApprovalId, Approval>,
    /// Pending approvals by deadline: the sweeper's index (LC-8).
    deadlines: BTreeSet<(Timestamp, ApprovalId)>,
    idempotency: HashMap<(String, String), (String, ApprovalId, Timestamp)>,
    entries: BTreeMap<EntryId, Entry>,
    entries_by_approval: HashMap<ApprovalId, Vec<EntryId>>,
    ledger_keys: HashSet<LedgerKey>,
    /// Entries that still need a final action (LC-12's persisted queue).
    unfinalized: BTreeSet<EntryId>,
    /// The part of `unfinalized` whose approval is terminal: what the finalizer may act on.
    /// Kept apart so a pass costs what is due, not every card of every pending approval.
    finalizable: BTreeSet<EntryId>,
    grants: BTreeMap<GrantId, Grant>,
    bindings: HashMap<String, Binding>,
    audit: Vec<AuditEntry>,
    events: Vec<Arc<Event>>,
    callbacks: BTreeMap<String, CallbackJob>,
    pending_callbacks: BTreeSet<String>,
    notice_keys: HashSet<String>,
    sessions: HashMap<String, Origin>,
    audit_seq: u64,
    event_seq: u64,
}

/// An in-memory [`Store`]. Commits are atomic: they are applied to a copy of the touched state
/// only after every check passed.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Unavailable("memory store lock poisoned".to_owned()))
    }
}

fn check(inner: &Inner, commit: &Commit, now: Timestamp) -> Result<(), StoreError> {
    match &commit.approval {
        Some(ApprovalWrite::Insert { approval, idempotency }) => {
            if inner.approvals.contains_key(&approval.id) {
                return Err(StoreError::Conflict("approval id exists"));
            }
            if let Some(rec) = idempotency
                && let Some((digest, existing, at)) =
                    inner.idempotency.get(&(rec.principal.clone(), rec.key.clone()))
                && *at + IDEMPOTENCY_WINDOW > now
            {
                return Err(if *digest == rec.digest {
                    StoreError::IdempotentReplay(existing.clone())
                } else {
                    StoreError::IdempotencyConflict
                });
            }
        }
        Some(ApprovalWrite::Update { approval, expected_version }) => {
            let stored = inner.approvals.get(&approval.id).ok_or(StoreError::Conflict("approval missing"))?;
            // ST-4: a terminal write also requires the stored row to be pending, so a terminal
            // status is never re-tagged.
            let re_tag = stored.status.is_terminal() && approval.status != stored.status;
            if stored.version != *expected_version || re_tag {
                return Err(StoreError::Conflict("approval version"));
            }
        }
        None => {}
    }
    for w in &commit.entries {
        if let EntryWrite::Insert(e) = w
            && (inner.ledger_keys.contains(&ledger_key(e)) || inner.entries.contains_key(&e.entry_id))
        {
            return Err(StoreError::Conflict("ledger entry exists"));
        }
    }
    for w in &commit.callbacks {
        if let CallbackWrite::Insert(j) = w
            && inner.callbacks.contains_key(&j.key)
        {
            return Err(StoreError::Conflict("callback job exists"));
        }
    }
    if let Some(k) = &commit.notice_key
        && inner.notice_keys.contains(k)
    {
        return Err(StoreError::Conflict("notice already sent"));
    }
    for w in &commit.bindings {
        let held = |key: &str| inner.bindings.get(key);
        match w {
            BindingWrite::Bind(b) if held(&b.key).is_some_and(|h| h.plugin.root != b.plugin.root) => {
                return Err(StoreError::Conflict(CONVERSATION_BOUND));
            }
            BindingWrite::Refresh(b) if held(&b.key).is_none_or(|h| h.id != b.id) => {
                return Err(StoreError::Conflict(BINDING_MOVED));
            }
            BindingWrite::Remove { key, id } if held(key).is_none_or(|h| &h.id != id) => {
                return Err(StoreError::Conflict(BINDING_MOVED));
            }
            _ => {}
        }
    }
    for w in &commit.grants {
        let unrevoked = |id: &GrantId| inner.grants.get(id).is_some_and(|g| g.revoked_at.is_none());
        match w {
            GrantWrite::Insert(g) if inner.grants.contains_key(&g.id) => {
                return Err(StoreError::Conflict("grant exists"));
            }
            GrantWrite::Use { id, .. } if !unrevoked(id) => {
                return Err(StoreError::Conflict(GRANT_NOT_ACTIVE));
            }
            GrantWrite::Revoke { id, .. } if !unrevoked(id) => {
                return Err(StoreError::Conflict(GRANT_ALREADY_REVOKED));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies a grant write that [`check`] has passed.
fn apply_grant(inner: &mut Inner, w: GrantWrite) {
    match w {
        GrantWrite::Insert(g) => {
            inner.grants.insert(g.id.clone(), *g);
        }
        GrantWrite::Use { id, at } => {
            if let Some(g) = inner.grants.get_mut(&id) {
                g.use_count += 1;
                g.last_used_at = Some(at);
            }
        }
        GrantWrite::Revoke { id, at, by } => {
            if let Some(g) = inner.grants.get_mut(&id) {
                g.revoked_at = Some(at);
                g.revoked_by = Some(by);
            }
        }
    }
}

fn apply(inner: &mut Inner, commit: Commit, now: Timestamp) -> Committed {
    match commit.approval {
        Some(ApprovalWrite::Insert { approval, idempotency }) => {
            if let Some(rec) = idempotency {
                inner.idempotency.insert((rec.principal, rec.key), (rec.digest, approval.id.clone(), now));
            }
            put_approval(inner, approval);
        }
        Some(ApprovalWrite::Update { approval, .. }) => put_approval(inner, approval),
        None => {}
    }
    for w in commit.entries {
        let (EntryWrite::Insert(e) | EntryWrite::Update(e)) = w;
        let terminal = inner.approvals.get(&e.approval_id).is_some_and(|a| a.status.is_terminal());
        if e.needs_finalizing() {
            inner.unfinalized.insert(e.entry_id.clone());
            if terminal {
                inner.finalizable.insert(e.entry_id.clone());
            }
        } else {
            inner.unfinalized.remove(&e.entry_id);
            inner.finalizable.remove(&e.entry_id);
        }
        if inner.ledger_keys.insert(ledger_key(&e)) {
            inner.entries_by_approval.entry(e.approval_id.clone()).or_default().push(e.entry_id.clone());
        }
        inner.entries.insert(e.entry_id.clone(), e);
    }
    for w in commit.grants {
        apply_grant(inner, w);
    }
    for w in commit.bindings {
        match w {
            BindingWrite::Bind(b) | BindingWrite::Refresh(b) => {
                inner.bindings.insert(b.key.clone(), *b);
            }
            BindingWrite::Remove { key, .. } => {
                inner.bindings.remove(&key);
            }
        }
    }
    for w in commit.callbacks {
        let (CallbackWrite::Insert(j) | CallbackWrite::Update(j)) = w;
        if j.state == CallbackState::Pending {
            inner.pending_callbacks.insert(j.key.clone());
        } else {
            inner.pending_callbacks.remove(&j.key);
        }
        inner.callbacks.insert(j.key.clone(), j);
    }
    if let Some(k) = commit.notice_key {
        inner.notice_keys.insert(k);
    }
    if let Some((k, o)) = commit.session_origin {
        inner.sessions.insert(k, o);
    }
    for mut a in commit.audit {
        inner.audit_seq += 1;
        a.seq = inner.audit_seq;
        inner.audit.push(a);
    }
    let mut events = Vec::with_capacity(commit.events.len());
    for mut e in commit.events {
        inner.event_seq += 1;
        e.seq = inner.event_seq;
        let e = Arc::new(e);
        inner.events.push(Arc::clone(&e));
        events.push(e);
    }
    Committed { events }
}

fn put_approval(inner: &mut Inner, approval: Approval) {
    if let Some(old) = inner.approvals.get(&approval.id) {
        inner.deadlines.remove(&(old.expires_at, old.id.clone()));
    }
    if approval.status == Status::Pending {
        inner.deadlines.insert((approval.expires_at, approval.id.clone()));
    } else {
        // Its open cards become the finalizer's work.
        let Inner { entries_by_approval, unfinalized, finalizable, .. } = inner;
        for e in entries_by_approval.get(&approval.id).into_iter().flatten() {
            if unfinalized.contains(e) {
                finalizable.insert(e.clone());
            }
        }
    }
    inner.approvals.insert(approval.id.clone(), approval);
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit(&self, commit: Commit, now: Timestamp) -> Result<Committed, StoreError> {
        let mut inner = self.lock()?;
        check(&inner, &commit, now)?;
        Ok(apply(&mut inner, commit, now))
    }

    async fn approval(&self, id: &ApprovalId) -> Result<Option<Approval>, StoreError> {
        Ok(self.lock()?.approvals.get(id).cloned())
    }

    async fn pending(&self) -> Result<Vec<Approval>, StoreError> {
        Ok(self.lock()?.approvals.values().filter(|a| a.status == Status::Pending).cloned().collect())
    }

    async fn due_for_expiry(&self, now: Timestamp, limit: usize) -> Result<Vec<Approval>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter_map(|(_, id)| inner.approvals.get(id).cloned())
            .take(limit)
            .collect())
    }

    async fn approvals(&self, f: &ApprovalFilter) -> Result<Vec<Approval>, StoreError> {
        let inner = self.lock()?;
        let mut out: Vec<Approval> = inner
            .approvals
            .values()
            .filter(|a| f.status.is_none_or(|s| s == a.status))
            .filter(|a| f.kind.is_none_or(|k| k == a.kind()))
            .filter(|a| f.requester.as_ref().is_none_or(|r| *r == a.requester.principal))
            .filter(|a| f.since.is_none_or(|t| a.created_at >= t))
            .filter(|a| f.before.as_ref().is_none_or(|(t, id)| (a.created_at, &a.id) < (*t, id)))
            .filter(|a| f.id_prefix.as_ref().is_none_or(|p| a.id.as_str().starts_with(p.as_str())))
            .cloned()
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        out.truncate(if f.limit == 0 { 100 } else { f.limit });
        Ok(out)
    }

    async fn entries(&self, id: &ApprovalId) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock()?;
        let ids = inner.entries_by_approval.get(id).map(Vec::as_slice).unwrap_or_default();
        Ok(ids.iter().filter_map(|e| inner.entries.get(e).cloned()).collect())
    }

    async fn entry(&self, id: &EntryId) -> Result<Option<Entry>, StoreError> {
        Ok(self.lock()?.entries.get(id).cloned())
    }

    async fn open_entries(&self, account: &AccountKey) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .unfinalized
            .iter()
            .filter_map(|id| inner.entries.get(id))
            .filter(|e| e.channel == account.channel && e.account == account.account)
            .cloned()
            .collect())
    }

    async fn entries_of_pending(&self) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .deadlines
            .iter()
            .flat_map(|(_, id)| inner.entries_by_approval.get(id).into_iter().flatten())
            .filter_map(|e| inner.entries.get(e).cloned())
            .collect())
    }

    async fn finalize_due(&self, now: Timestamp, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .finalizable
            .iter()
            .filter_map(|id| inner.entries.get(id))
            .filter(|e| e.next_attempt_at.is_none_or(|t| t <= now))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn active_grants(&self, kind: Kind) -> Result<Vec<Grant>, StoreError> {
        Ok(self
            .lock()?
            .grants
            .values()
            .filter(|g| g.kind == kind && g.revoked_at.is_none())
            .cloned()
            .collect())
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let mut all: Vec<Grant> = self.lock()?.grants.values().cloned().collect();
        all.sort_by_key(|g| std::cmp::Reverse(g.created_at));
        Ok(all)
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, StoreError> {
        Ok(self.lock()?.grants.get(id).cloned())
    }

    async fn binding(&self, key: &str) -> Result<Option<Binding>, StoreError> {
        Ok(self.lock()?.bindings.get(key).cloned())
    }

    async fn events_since(&self, seq: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let inner = self.lock()?;
        // Sorted by seq; retention may have removed the oldest.
        let start = inner.events.partition_point(|e| e.seq <= seq);
        Ok(inner.events[start..].iter().take(limit).map(|e| Event::clone(e)).collect())
    }

    async fn latest_event_seq(&self) -> Result<u64, StoreError> {
        Ok(self.lock()?.event_seq)
    }

    async fn audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let store = self.lock()?;
        let matching = |a: &&AuditEntry| {
            a.seq > f.after_seq
                && f.before_seq.is_none_or(|b| a.seq < b)
                && f.approval_id.as_ref().is_none_or(|id| a.approval_id.as_ref() == Some(id))
        };
        let n = if f.limit == 0 { 1000 } else { f.limit };
        Ok(if f.before_seq.is_some() {
            store.audit.iter().rev().filter(matching).take(n).cloned().collect()
        } else {
            store.audit.iter().filter(matching).take(n).cloned().collect()
        })
    }

    async fn session_origin(&self, session_key: &str) -> Result<Option<Origin>, StoreError> {
        Ok(self.lock()?.sessions.get(session_key).cloned())
    }

    async fn claim_callbacks(
        &self,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<CallbackJob>, StoreError> {
        let mut inner = self.lock()?;
        let inner = &mut *inner;
        let mut claimed = Vec::new();
        for key in &inner.pending_callbacks {
            if claimed.len() >= limit {
                break;
            }
            if let Some(job) = inner.callbacks.get_mut(key)
                && job.next_attempt_at <= now
            {
                job.next_attempt_at = now + lease;
                claimed.push(job.clone());
            }
        }
        Ok(claimed)
    }

    async fn callback(&self, key: &str) -> Result<Option<CallbackJob>, StoreError> {
        Ok(self.lock()?.callbacks.get(key).cloned())
    }

    async fn purge(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let doomed: Vec<ApprovalId> = inner
            .approvals
            .values()
            .filter(|a| a.status.is_terminal() && a.created_at < before)
            .filter(|a| {
                let ids = inner.entries_by_approval.get(&a.id).map(Vec::as_slice).unwrap_or_default();
                ids.iter().all(|e| !inner.unfinalized.contains(e))
            })
            .map(|a| a.id.clone())
            .collect();
        for id in &doomed {
            inner.approvals.remove(id);
            for e in inner.entries_by_approval.remove(id).unwrap_or_default() {
                if let Some(entry) = inner.entries.remove(&e) {
                    inner.ledger_keys.remove(&ledger_key(&entry));
                }
            }
            inner.callbacks.retain(|_, j| &j.approval_id != id || j.state == CallbackState::Pending);
            inner.notice_keys.remove(&format!("notice:{id}"));
        }
        inner.audit.retain(|a| a.at >= before);
        inner.events.retain(|e| e.at >= before);
        inner.idempotency.retain(|_, (_, _, at)| *at >= before);
        Ok(doomed.len() as u64)
    }
}
