//! The in-memory pending index and recent-outcome cache behind `precheck` (IX-3): everything an
//! interaction needs before its ack, with no I/O.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    time::Duration,
};

use assent_core::{
    clock::Timestamp,
    id::ApprovalId,
    lifecycle::{Rejection, rejection_for_terminal},
    model::{AccountKey, Actor, Approval, Decision, Kind, PendingFacts, Status},
};

const RECENT_TTL: Duration = Duration::from_secs(24 * 3600);
const RECENT_MAX: usize = 100_000;

/// What precheck needs to know about a pending approval.
#[derive(Debug, Clone)]
pub(crate) struct PendingSummary {
    pub(crate) kind: Kind,
    pub(crate) expires_at: Timestamp,
    pub(crate) allowed: Vec<Decision>,
    pub(crate) voters: Vec<(String, Decision)>,
    pub(crate) requester: String,
    pub(crate) prevent_self: bool,
    /// Accounts chosen by the planner or holding an entry (IX-4).
    pub(crate) handled_by: Vec<AccountKey>,
    /// BD-2: `(channel account, user id)` of a binding's requester.
    pub(crate) binding_requester: Option<(AccountKey, String)>,
}

impl PendingSummary {
    fn of(facts: PendingFacts, handled_by: Vec<AccountKey>) -> Self {
        Self {
            kind: facts.kind,
            expires_at: facts.expires_at,
            allowed: facts.allowed,
            voters: facts.voters,
            requester: facts.requester,
            prevent_self: facts.prevent_self,
            handled_by,
            binding_requester: facts.binding_requester,
        }
    }
}

/// A terminal outcome remembered for quiet late-click answers.
#[derive(Debug, Clone)]
struct Recent {
    kind: Kind,
    rejection: Rejection,
    winner: Option<(String, Decision)>,
}

/// Result of looking up an id for precheck.
pub(crate) enum Lookup<'a> {
    Pending(&'a PendingSummary),
    Terminal { kind: Kind, rejection: Rejection, winner: Option<(String, Decision)> },
    Unknown,
}

/// Why a typed ref could not be resolved.
pub(crate) enum RefMiss {
    NotFound,
    Ambiguous,
}

#[derive(Debug, Default)]
pub(crate) struct PendingIndex {
    pending: HashMap<ApprovalId, PendingSummary>,
    by_id: BTreeSet<ApprovalId>,
    recent: HashMap<ApprovalId, Recent>,
    recent_order: VecDeque<(Timestamp, ApprovalId)>,
}

fn winner_decision(a: &Approval) -> Option<(String, Decision)> {
    let by = a.decided_by.as_ref()?;
    let d = match (a.status, a.mode) {
        (Status::Approved, Some(assent_core::model::Mode::Always)) => Decision::AllowAlways,
        (Status::Approved, _) => Decision::AllowOnce,
        (Status::Denied, _) => Decision::Deny,
        _ => return None,
    };
    Some((by.principal.clone(), d))
}

impl PendingIndex {
    /// The index of the store's pending approvals at start-up (LC-13), built in bulk: one hash
    /// table sized up front, and the ordered ids sorted once rather than inserted one by one
    /// (NF-4, 100k pending). `handled` holds the accounts with a card of each approval.
    pub(crate) fn load(
        pending: Vec<PendingFacts>,
        mut handled: HashMap<ApprovalId, Vec<AccountKey>>,
    ) -> Self {
        let mut index = Self::default();
        index.pending.reserve(pending.len());
        for facts in pending {
            let handled_by = handled.remove(&facts.id).unwrap_or_default();
            let id = facts.id.clone();
            index.pending.insert(id, PendingSummary::of(facts, handled_by));
        }
        index.by_id = index.pending.keys().cloned().collect();
        index
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn upsert(&mut self, a: &Approval, handled_by: Vec<AccountKey>) {
        if a.status.is_terminal() {
            self.finish(a, a.decided_at.unwrap_or(a.created_at));
            return;
        }
        self.by_id.insert(a.id.clone());
        self.pending.insert(a.id.clone(), PendingSummary::of(PendingFacts::of(a), handled_by));
    }

    /// Updates votes after a non-final vote, keeping the routing facts.
    pub(crate) fn record_vote(&mut self, a: &Approval) {
        if let Some(s) = self.pending.get_mut(&a.id) {
            s.voters = a.quorum.votes.iter().map(|v| (v.actor.principal.clone(), v.decision)).collect();
        }
    }

    pub(crate) fn add_handler(&mut self, id: &ApprovalId, account: &AccountKey) {
        if let Some(s) = self.pending.get_mut(id)
            && !s.handled_by.contains(account)
        {
            s.handled_by.push(account.clone());
        }
    }

    pub(crate) fn finish(&mut self, a: &Approval, now: Timestamp) {
        self.pending.remove(&a.id);
        self.by_id.remove(&a.id);
        let recent =
            Recent { kind: a.kind(), rejection: rejection_for_terminal(a), winner: winner_decision(a) };
        self.recent.insert(a.id.clone(), recent);
        self.recent_order.push_back((now, a.id.clone()));
        while let Some((at, id)) = self.recent_order.front() {
            let too_old = at.until(now) > RECENT_TTL;
            if !too_old && self.recent_order.len() <= RECENT_MAX {
                break;
            }
            self.recent.remove(id);
            self.recent_order.pop_front();
        }
    }

    pub(crate) fn lookup(&self, id: &ApprovalId) -> Lookup<'_> {
        if let Some(p) = self.pending.get(id) {
            return Lookup::Pending(p);
        }
        match self.recent.get(id) {
            Some(r) => {
                Lookup::Terminal { kind: r.kind, rejection: r.rejection.clone(), winner: r.winner.clone() }
            }
            None => Lookup::Unknown,
        }
    }

    pub(crate) fn pending_ids(&self) -> Vec<ApprovalId> {
        self.by_id.iter().cloned().collect()
    }

    /// IX-5 / API-2: a full id or a unique prefix among pending approvals (handled by `account`
    /// when given).
    pub(crate) fn resolve_prefix(
        &self,
        prefix: &str,
        account: Option<&AccountKey>,
    ) -> Result<ApprovalId, RefMiss> {
        let mut found = None;
        let start = ApprovalId::from_bits(0);
        let candidates = self.by_id.range(start..).skip_while(|id| id.as_str() < prefix);
        for id in candidates.take_while(|id| id.as_str().starts_with(prefix)) {
            let handled =
                account.is_none_or(|acc| self.pending.get(id).is_some_and(|s| s.handled_by.contains(acc)));
            if handled {
                if found.is_some() {
                    return Err(RefMiss::Ambiguous);
                }
                found = Some(id.clone());
            }
        }
        found.ok_or(RefMiss::NotFound)
    }
}

/// Precheck of a decision against a summary (IX-2): deadline, kind, authorization, allowed set.
pub(crate) fn check_pending(
    s: &PendingSummary,
    kind: Kind,
    decision: Decision,
    actor: &Actor,
    now: Timestamp,
) -> Result<bool, Rejection> {
    if s.kind != kind {
        return Err(Rejection::NotFound);
    }
    if now >= s.expires_at {
        return Err(Rejection::Expired);
    }
    if !s.allowed.contains(&decision) {
        return Err(Rejection::DecisionNotAllowed);
    }
    if s.prevent_self && s.requester == actor.principal {
        return Err(Rejection::Unauthorized);
    }
    let repeat = s.voters.iter().any(|(p, d)| *p == actor.principal && d.is_allow() && decision.is_allow());
    Ok(repeat)
}
