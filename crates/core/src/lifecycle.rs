//! The approval state machine (LC-4..LC-11, LC-16, LC-17) as pure functions.
//!
//! Each function takes the current record and returns the next one with `version + 1`; the store
//! commits it only if the stored version is still the one read (compare-and-set, LC-4). A writer
//! that loses the race reads again and gets a typed [`Rejection`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    clock::{Timestamp, format_duration},
    model::{Actor, Approval, Decision, Mode, Reason, Status, TimeoutAction, Vote},
};

/// A terminal outcome named in `AlreadyResolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResolvedOutcome {
    /// Approved once.
    ApprovedOnce,
    /// Approved always.
    ApprovedAlways,
    /// Denied.
    Denied,
    /// Cancelled.
    Cancelled,
}

/// Expected refusals of an interaction (LC-17). Each channel turns them into its own quiet reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Rejection {
    /// No such approval, or a token of another kind.
    #[error("This approval no longer exists.")]
    NotFound,
    /// Somebody else already decided.
    #[error("{}", already_text(*outcome, by.as_ref()))]
    AlreadyResolved {
        /// The recorded winner.
        by: Option<Actor>,
        /// What they decided.
        outcome: ResolvedOutcome,
    },
    /// The deadline passed.
    #[error("This approval timed out.")]
    Expired,
    /// The actor may not decide this approval.
    #[error("You can't decide this approval.")]
    Unauthorized,
    /// The decision is not offered.
    #[error("That option isn't available here.")]
    DecisionNotAllowed,
    /// A typed ref matches more than one pending approval (IX-5); never lists candidates.
    #[error("More than one pending approval starts with that; type more characters.")]
    AmbiguousRef,
    /// Too many failed attempts (IX-7).
    #[error("Too many attempts. Try again in {} minutes.", retry_after.as_secs().div_ceil(60))]
    Throttled {
        /// When to try again.
        retry_after: Duration,
    },
}

impl Rejection {
    /// Every [`Rejection::code`], in declaration order.
    pub const CODES: [&'static str; 7] = [
        "not_found",
        "already_resolved",
        "expired",
        "unauthorized",
        "decision_not_allowed",
        "ambiguous_ref",
        "throttled",
    ];

    /// The stable code of this rejection (its serde tag; metrics labels).
    pub fn code(&self) -> &'static str {
        Self::CODES[self.code_index()]
    }

    /// The position of [`Rejection::code`] in [`Rejection::CODES`].
    pub fn code_index(&self) -> usize {
        match self {
            Rejection::NotFound => 0,
            Rejection::AlreadyResolved { .. } => 1,
            Rejection::Expired => 2,
            Rejection::Unauthorized => 3,
            Rejection::DecisionNotAllowed => 4,
            Rejection::AmbiguousRef => 5,
            Rejection::Throttled { .. } => 6,
        }
    }
}

fn already_text(outcome: ResolvedOutcome, by: Option<&Actor>) -> String {
    let who = by.map(|a| a.display_handle()).unwrap_or_default();
    match outcome {
        ResolvedOutcome::ApprovedOnce => format!("Already approved once by {who}."),
        ResolvedOutcome::ApprovedAlways => format!("Already always allowed by {who}."),
        ResolvedOutcome::Denied => format!("Already denied by {who}."),
        ResolvedOutcome::Cancelled => "Already cancelled.".to_owned(),
    }
}

impl Actor {
    /// The short handle in rejection texts: "@kim", "console:kim", "token:ci".
    pub fn display_handle(&self) -> String {
        match self.channel {
            Some(crate::model::Channel::Console) | None => self.principal.clone(),
            Some(_) => self.display.clone(),
        }
    }
}

/// The rejection a late answer gets for a terminal record (LC-5).
pub fn rejection_for_terminal(a: &Approval) -> Rejection {
    match (a.status, a.mode) {
        (Status::Approved, Some(Mode::Always)) => {
            Rejection::AlreadyResolved { by: a.decided_by.clone(), outcome: ResolvedOutcome::ApprovedAlways }
        }
        (Status::Approved, _) => {
            Rejection::AlreadyResolved { by: a.decided_by.clone(), outcome: ResolvedOutcome::ApprovedOnce }
        }
        (Status::Denied, _) => {
            Rejection::AlreadyResolved { by: a.decided_by.clone(), outcome: ResolvedOutcome::Denied }
        }
        (Status::Cancelled, _) => {
            Rejection::AlreadyResolved { by: a.decided_by.clone(), outcome: ResolvedOutcome::Cancelled }
        }
        (Status::Expired | Status::Pending, _) => Rejection::Expired,
    }
}

/// What a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// A non-final vote (quorum not reached): the new record.
    Recorded(Approval),
    /// The vote decided: the new terminal record.
    Decided(Approval),
    /// The same actor repeated the same answer: nothing changes (LC-5, IX-9).
    Idempotent,
}

fn approve_counts(v: Decision, d: Decision) -> bool {
    v.is_allow() && d.is_allow()
}

/// Applies one vote (LC-4..LC-6, LC-8). `reason` is the already-redacted deny reason.
pub fn apply_vote(
    a: &Approval,
    actor: &Actor,
    decision: Decision,
    reason: Option<String>,
    now: Timestamp,
) -> Result<VoteOutcome, Rejection> {
    if a.status.is_terminal() {
        let winner = a.decided_by.as_ref().is_some_and(|w| w.principal == actor.principal);
        let same = match (a.status, a.mode) {
            (Status::Approved, Some(Mode::Always)) => decision == Decision::AllowAlways,
            (Status::Approved, _) => decision == Decision::AllowOnce,
            (Status::Denied, _) => decision == Decision::Deny,
            _ => false,
        };
        return if winner && same { Ok(VoteOutcome::Idempotent) } else { Err(rejection_for_terminal(a)) };
    }
    if now >= a.expires_at {
        return Err(Rejection::Expired);
    }
    if !a.allowed_decisions.contains(&decision) {
        return Err(Rejection::DecisionNotAllowed);
    }
    if a.prevent_self_approval && actor.principal == a.requester.principal {
        return Err(Rejection::Unauthorized);
    }
    let mut next = a.clone();
    next.version += 1;
    if decision == Decision::Deny {
        let vetoed = a.quorum.votes.iter().any(|v| v.decision.is_allow());
        finish(
            &mut next,
            Status::Denied,
            if vetoed { Reason::Veto } else { Reason::Human },
            Some(actor),
            now,
        );
        next.deny_reason = reason.map(|r| r.chars().take(200).collect());
        return Ok(VoteOutcome::Decided(next));
    }
    if a.quorum.votes.iter().any(|v| v.principal() == actor.principal && approve_counts(v.decision, decision))
    {
        return Ok(VoteOutcome::Idempotent);
    }
    next.quorum.votes.push(Vote { actor: actor.clone(), decision, at: now });
    if next.quorum.votes.len() < usize::from(a.quorum.required) {
        return Ok(VoteOutcome::Recorded(next));
    }
    let all_always = next.quorum.votes.iter().all(|v| v.decision == Decision::AllowAlways);
    finish(&mut next, Status::Approved, Reason::Human, Some(actor), now);
    next.mode = Some(if all_always { Mode::Always } else { Mode::Once });
    Ok(VoteOutcome::Decided(next))
}

fn finish(a: &mut Approval, status: Status, reason: Reason, by: Option<&Actor>, now: Timestamp) {
    a.status = status;
    a.reason = Some(reason);
    a.decided_by = by.cloned();
    a.decided_at = Some(now);
}

/// Approves by a grant match at creation (LC-1).
pub fn approve_by_grant(a: &Approval, now: Timestamp) -> Approval {
    let mut next = a.clone();
    finish(&mut next, Status::Approved, Reason::Grant, None, now);
    next.mode = Some(Mode::Once);
    next
}

/// Why an approval expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryCause {
    /// The deadline passed (LC-8).
    Timeout,
    /// No approver could be reached (LC-7).
    NoRoute,
}

/// Expires a pending approval, or applies the unsafe fallback (LC-9). `None` if not due or not
/// pending.
pub fn expire(a: &Approval, cause: ExpiryCause, now: Timestamp) -> Option<Approval> {
    if a.status.is_terminal() || (cause == ExpiryCause::Timeout && now < a.expires_at) {
        return None;
    }
    let mut next = a.clone();
    next.version += 1;
    let fallback = cause == ExpiryCause::Timeout
        && a.on_timeout == TimeoutAction::ApproveUnsafe
        && a.kind() != crate::model::Kind::Binding;
    if fallback {
        finish(&mut next, Status::Approved, Reason::TimeoutFallback, None, now);
        next.mode = Some(Mode::Once);
    } else {
        let reason = if cause == ExpiryCause::Timeout { Reason::Timeout } else { Reason::NoRoute };
        finish(&mut next, Status::Expired, reason, None, now);
    }
    Some(next)
}

/// Refusals of cancel and consume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequesterError {
    /// Only the requester (or an admin, for cancel) may do this.
    #[error("only the requester can do this")]
    Forbidden,
    /// Already terminal.
    #[error(transparent)]
    Rejected(Rejection),
    /// Consume on an approval that is not approved.
    #[error("the approval is {0}, not approved")]
    NotApproved(&'static str),
    /// Consume called twice (LC-11).
    #[error("the approval was already consumed")]
    AlreadyConsumed,
}

/// Cancels a pending approval (LC-10).
pub fn cancel(
    a: &Approval,
    actor: &Actor,
    is_admin: bool,
    now: Timestamp,
) -> Result<Approval, RequesterError> {
    let own = actor.principal == a.requester.principal;
    if !own && !is_admin {
        return Err(RequesterError::Forbidden);
    }
    if a.status.is_terminal() {
        return Err(RequesterError::Rejected(rejection_for_terminal(a)));
    }
    let mut next = a.clone();
    next.version += 1;
    finish(
        &mut next,
        Status::Cancelled,
        if own { Reason::Requester } else { Reason::Admin },
        Some(actor),
        now,
    );
    Ok(next)
}

/// Marks an approved approval consumed, once (LC-11).
pub fn consume(a: &Approval, principal: &str, now: Timestamp) -> Result<Approval, RequesterError> {
    if principal != a.requester.principal {
        return Err(RequesterError::Forbidden);
    }
    if a.status != Status::Approved {
        return Err(RequesterError::NotApproved(a.status.as_str()));
    }
    if a.consumed_at.is_some() {
        return Err(RequesterError::AlreadyConsumed);
    }
    let mut next = a.clone();
    next.version += 1;
    next.consumed_at = Some(now);
    Ok(next)
}

/// What the requester is told (LC-16).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequesterOutcome {
    /// `allow`, `deny` or `pending`.
    pub outcome: String,
    /// One line for people.
    pub text: String,
    /// CLI exit code (CLI-2).
    pub exit_code: i32,
}

/// The requester's view of a record (LC-16).
pub fn requester_outcome(a: &Approval) -> RequesterOutcome {
    let who = a.decided_by.as_ref().map(Actor::who).unwrap_or_default();
    let (outcome, text, exit_code) = match (a.status, a.reason) {
        (Status::Pending, _) => ("pending", format!("waiting for approval {}", a.short_ref()), -1),
        (Status::Approved, Some(Reason::Grant)) => ("allow", "approved by a standing grant".to_owned(), 0),
        (Status::Approved, Some(Reason::TimeoutFallback)) => (
            "allow",
            format!(
                "approved: nobody answered in {} (unsafe timeout fallback)",
                format_duration(a.timeout())
            ),
            0,
        ),
        (Status::Approved, _) => {
            let how = if a.mode == Some(Mode::Always) { "always allowed" } else { "approved once" };
            ("allow", format!("{how} by {who}"), 0)
        }
        (Status::Denied, _) => {
            let text = match &a.deny_reason {
                Some(r) => format!("denied by {who}: {r}"),
                None => format!("denied by {who}"),
            };
            ("deny", text, 1)
        }
        (Status::Expired, Some(Reason::NoRoute)) => {
            ("deny", "expired: no approval route; run `assent doctor`".to_owned(), 2)
        }
        (Status::Expired, _) => {
            ("deny", format!("expired: nobody answered within {}", format_duration(a.timeout())), 2)
        }
        (Status::Cancelled, _) => (
            "deny",
            format!("cancelled by {}", if who.is_empty() { "the requester".to_owned() } else { who }),
            3,
        ),
    };
    RequesterOutcome { outcome: outcome.to_owned(), text, exit_code }
}
