//! What the API and the console show of an approval: redacted display text, never raw argv or
//! environment values (NF-10). The requester re-checks its own command by `action_digest`.

use assent_core::{
    card::{CardContext, CardView},
    clock::Timestamp,
    lifecycle::requester_outcome,
    model::{Action, Approval, Decision, Kind, Mode, Reason, Status},
    policy::GrantScope,
    text::{Redactor, sanitize},
    token::Keyring,
};
use serde::Serialize;

/// One approval as the API returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ApprovalView {
    pub(crate) id: String,
    #[serde(rename = "ref")]
    pub(crate) reference: String,
    pub(crate) kind: Kind,
    pub(crate) status: Status,
    pub(crate) mode: Option<Mode>,
    pub(crate) reason: Option<Reason>,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) decided_at: Option<Timestamp>,
    pub(crate) title: String,
    /// The redacted command or description, in full.
    pub(crate) text: String,
    pub(crate) fields: Vec<FieldView>,
    pub(crate) allowed_decisions: Vec<Decision>,
    pub(crate) grant_scope: Option<String>,
    /// What allow-always creates by default; `grant_scope` of a resolve may narrow it.
    pub(crate) scope: Option<GrantScope>,
    pub(crate) votes: usize,
    pub(crate) required: u8,
    pub(crate) requester: String,
    pub(crate) decided_by: Option<String>,
    pub(crate) deny_reason: Option<String>,
    pub(crate) consumed_at: Option<Timestamp>,
    /// `sha256` of the exact action (exec), for `assent run`'s re-check.
    pub(crate) action_digest: Option<String>,
    /// LC-16: what the requester should do.
    pub(crate) outcome: OutcomeView,
    /// Where the card went ("Telegram (main)", "web console"), for the requester's progress line.
    pub(crate) routes: Vec<String>,
}

/// A labelled field of the card.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct FieldView {
    pub(crate) label: &'static str,
    pub(crate) value: String,
}

/// LC-16 outcome.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct OutcomeView {
    /// `pending`, `allow` or `deny`.
    pub(crate) decision: String,
    pub(crate) text: String,
    pub(crate) exit_code: i32,
}

impl ApprovalView {
    pub(crate) fn new(a: &Approval, keyring: &Keyring, redactor: &Redactor, now: Timestamp) -> Self {
        let account = console_account();
        let ctx = CardContext { account: &account, now, keyring, redactor, public_url: None };
        let card = CardView::build(a, &ctx, false);
        let text = card.blocks.first().map(|b| b.text.fit(usize::MAX).shown).unwrap_or_default();
        let outcome = requester_outcome(a);
        Self {
            id: a.id.to_string(),
            reference: a.short_ref().to_owned(),
            kind: a.kind(),
            status: a.status,
            mode: a.mode,
            reason: a.reason,
            created_at: a.created_at,
            expires_at: a.expires_at,
            decided_at: a.decided_at,
            title: card.title,
            text,
            fields: card.fields.into_iter().map(|f| FieldView { label: f.label, value: f.value }).collect(),
            allowed_decisions: a.allowed_decisions.clone(),
            grant_scope: a.grant_scope.as_ref().map(GrantScope::label),
            scope: a.grant_scope.clone(),
            votes: a.quorum.votes.len(),
            required: a.quorum.required,
            requester: a.requester.principal.clone(),
            decided_by: a.decided_by.as_ref().map(|d| d.who()),
            deny_reason: a.deny_reason.clone(),
            consumed_at: a.consumed_at,
            action_digest: match &a.action {
                Action::Exec(e) => Some(e.action_digest.clone()),
                _ => None,
            },
            outcome: OutcomeView {
                decision: outcome.outcome,
                text: outcome.text,
                exit_code: outcome.exit_code,
            },
            routes: Vec::new(),
        }
    }
}

/// Narrower alternatives to the default allow-always scope the console offers (PO-7): limited to
/// the request's session, or to 8 hours. The engine still checks each against the policy rule.
pub(crate) fn narrower_scopes(a: &Approval) -> Vec<GrantScope> {
    let Some(default) = &a.grant_scope else { return Vec::new() };
    let mut out = Vec::new();
    if a.session_key.is_some() && !default.session {
        out.push(GrantScope { session: true, ..default.clone() });
    }
    if default.ttl_secs.is_none() {
        out.push(GrantScope { ttl_secs: Some(8 * 3600), ..default.clone() });
    }
    out
}

/// Redacts and sanitizes every string inside `value`: audit details and bindings carry text that
/// plugins and requesters chose (PO-9, PO-10; issue 9, finding 12).
pub(crate) fn redact_json(redactor: &Redactor, value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => *s = sanitize(&redactor.redact(s).text, false),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_json(redactor, v)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_json(redactor, v)),
        _ => {}
    }
}

/// A binding as the API shows it: its summary, hint, plugin name and root redacted.
pub(crate) fn binding_view(redactor: &Redactor, binding: &assent_core::model::Binding) -> serde_json::Value {
    let mut value = serde_json::to_value(binding).unwrap_or_default();
    redact_json(redactor, &mut value);
    value
}

/// The console's own account key (web approvals are recorded as `console/web`).
pub(crate) fn console_account() -> assent_core::model::AccountKey {
    assent_core::model::AccountKey::new(assent_core::model::Channel::Console, "web")
}

/// A page of results.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    /// Present when more items may follow: pass it as `before` to get the next (older) page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next: Option<String>,
}

impl<T> Page<T> {
    /// A page that is the whole result.
    pub(crate) fn all(items: Vec<T>) -> Self {
        Self { items, next: None }
    }
}
