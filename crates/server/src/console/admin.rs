//! The audit log, the standing grants and the accounts: the pages an operator checks rather
//! than acts from.

use std::fmt::Write as _;

use assent_core::{
    model::AuditEntry,
    store::AuditFilter,
    text::{Redactor, sanitize},
};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;
use serde_json::Value;

use super::{
    Page, older_link,
    render::{esc, time},
    unavailable_page,
};
use crate::{AppState, approvals::resolve_ref, auth::Scope, grants::grant_views, views::redact_json};

/// Audit rows on one page.
const AUDIT_PAGE: usize = 100;

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    approval: String,
    /// The seq of the last entry of the previous page; text, so that a bad one gets this page's
    /// own error instead of the framework's plain-text 400.
    #[serde(default)]
    before: String,
}

pub(super) async fn audit_page(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<AuditQuery>,
) -> Response {
    if !page.session.principal.has(Scope::Admin) {
        let body = "<h1>Audit</h1><p>The audit log needs an admin token.</p>";
        return page.render(StatusCode::FORBIDDEN, "/audit", "Audit", body);
    }
    let mut body = format!(
        "<h1>Audit</h1><form class=\"filters\" method=\"get\" action=\"/audit\" role=\"search\">\
         <div class=\"filter grow\"><label for=\"f-approval\">Approval ref</label>\
         <input id=\"f-approval\" name=\"approval\" value=\"{}\" placeholder=\"e.g. 3f9c2a1b\"></div>\
         <button type=\"submit\" class=\"primary\">Filter</button></form>",
        esc(&q.approval)
    );
    let before = match q.before.trim() {
        "" => u64::MAX,
        b => match b.parse() {
            Ok(seq) => seq,
            Err(_) => {
                let _ = write!(
                    body,
                    "<p class=\"error\" id=\"filter-error\">`before={}` is not a position in the audit \
                     log; it comes from an Older link. <a href=\"/audit\">Show the newest</a>.</p>",
                    esc(b)
                );
                return page.render(StatusCode::BAD_REQUEST, "/audit", "Audit", &body);
            }
        },
    };
    let reference = q.approval.trim();
    let approval_id = if reference.is_empty() {
        None
    } else {
        match resolve_ref(&state, reference).await {
            Ok(id) => Some(id),
            Err(e) => {
                let _ = write!(body, "<p class=\"error\" id=\"filter-error\">{}</p>", esc(&e.message));
                return page.render(StatusCode::NOT_FOUND, "/audit", "Audit", &body);
            }
        }
    };
    let filter = AuditFilter {
        approval_id,
        before_seq: Some(before),
        // One more than shown: "Older" is offered only when there is something older.
        limit: AUDIT_PAGE + 1,
        ..AuditFilter::default()
    };
    let mut entries = match state.engine.store().audit(&filter).await {
        Ok(entries) => entries,
        Err(e) => return unavailable_page(&page, "/audit", "Audit", &e),
    };
    let older = entries.len() > AUDIT_PAGE;
    entries.truncate(AUDIT_PAGE);
    body.push_str(
        "<table class=\"list\" id=\"audit\"><thead><tr><th scope=\"col\">When</th><th scope=\"col\">What</th>\
         <th scope=\"col\">Approval</th><th scope=\"col\">Who</th><th scope=\"col\">Decision</th>\
         <th scope=\"col\">Details</th></tr></thead><tbody>",
    );
    for e in &mut entries {
        body.push_str(&audit_row(&state.redactor, e));
    }
    body.push_str("</tbody></table>");
    if older && let Some(last) = entries.last() {
        body.push_str(&older_link("/audit", &[("approval", q.approval.clone())], &last.seq.to_string()));
    }
    page.render(StatusCode::OK, "/audit", "Audit", &body)
}

fn audit_row(redactor: &Redactor, e: &mut AuditEntry) -> String {
    let what = serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(|s| s.replace('-', " ")))
        .unwrap_or_default();
    let approval = e
        .approval_id
        .as_ref()
        .map(|i| format!("<a href=\"/a/{i}\"><code>{}</code></a>", &i.as_str()[..8]))
        .unwrap_or_else(|| "—".to_owned());
    // A request has no actor: its requester is in the details, read before redaction (a
    // principal like `token:ci` looks like a secret to the patterns, and is none).
    let who = match (&e.actor, e.details.get("requester").and_then(Value::as_str)) {
        (Some(actor), _) => esc(&actor.who()),
        (None, Some(requester)) => esc(&sanitize(requester, false)),
        (None, None) => "—".to_owned(),
    };
    redact_json(redactor, &mut e.details);
    format!(
        "<tr><td data-label=\"When\">{}</td><td data-label=\"What\">{}</td><td data-label=\"Approval\">{approval}</td>\
         <td data-label=\"Who\">{who}</td><td data-label=\"Decision\">{}</td><td data-label=\"Details\">{}</td></tr>",
        time(e.at),
        esc(&what),
        decision(&e.details),
        details(e),
    )
}

/// The decision a vote or a decision recorded, in words.
fn decision(d: &Value) -> String {
    let text = match (d.get("status").and_then(Value::as_str), d.get("mode").and_then(Value::as_str)) {
        (Some("approved"), Some("always")) => "allow always",
        (Some("approved"), _) => "allow once",
        (Some("pending"), _) => "allow (vote)",
        (Some("denied"), _) => "deny",
        _ => return "—".to_owned(),
    };
    format!(
        "<span class=\"decision decision-{}\">{text}</span>",
        if text == "deny" { "deny" } else { "allow" }
    )
}

/// The entry's other facts as `key: value` pairs (already redacted).
fn details(e: &AuditEntry) -> String {
    let mut parts = Vec::new();
    if let Some(account) = &e.account {
        parts.push(format!("account: {account}"));
    }
    if let Some(map) = e.details.as_object() {
        for (k, v) in map {
            // Status and mode make the decision column; "human" is every person's reason.
            if ["status", "mode", "requester"].contains(&k.as_str())
                || v.is_null()
                || (k == "reason" && v == "human")
            {
                continue;
            }
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            parts.push(format!("{}: {v}", k.replace('_', " ")));
        }
    }
    if parts.is_empty() { "—".to_owned() } else { format!("<small>{}</small>", esc(&parts.join(" · "))) }
}

pub(super) async fn grants_page(State(state): State<AppState>, page: Page) -> Response {
    let grants = match state.engine.grants().await {
        Ok(g) => g,
        Err(e) => return unavailable_page(&page, "/grants", "Grants", &e),
    };
    let admin = page.session.principal.has(Scope::Admin);
    let views = grant_views(&state, &grants);
    let mut body = String::from(
        "<h1>Grants</h1><p class=\"lede\">Standing “allow always” answers. A request that matches one is \
         approved without asking anyone.</p>",
    );
    if views.is_empty() {
        body.push_str("<p class=\"empty\" id=\"empty\">No standing grants. “Allow always” on a request creates one.</p>");
    }
    body.push_str(
        "<table class=\"list\" id=\"grants\"><thead><tr><th scope=\"col\">Allows</th><th scope=\"col\">Created by</th>\
         <th scope=\"col\">Created</th><th scope=\"col\">Expires</th><th scope=\"col\">Uses</th>\
         <th scope=\"col\">Last used</th><th scope=\"col\"><span class=\"sr\">Actions</span></th></tr></thead><tbody>",
    );
    for g in views {
        let revoke = if admin {
            format!("<button type=\"button\" class=\"revoke\" data-grant=\"{}\">Revoke</button>", esc(&g.id))
        } else {
            String::new()
        };
        let session = g
            .session_key
            .as_deref()
            .map(|s| format!("<br><small>Session {}</small>", esc(s)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td data-label=\"Allows\"><code>{}</code><br><small>{}</small>{session}</td>\
             <td data-label=\"Created by\">{}</td><td data-label=\"Created\">{}</td><td data-label=\"Expires\">{}</td>\
             <td data-label=\"Uses\">{}</td><td data-label=\"Last used\">{}</td><td>{revoke}</td></tr>",
            esc(&g.subject),
            esc(&g.scope),
            esc(&g.created_by),
            time(g.created_at),
            g.expires_at.map_or_else(|| "never".to_owned(), time),
            g.use_count,
            g.last_used_at.map_or_else(|| "never".to_owned(), time),
        );
    }
    body.push_str("</tbody></table>");
    page.render(StatusCode::OK, "/grants", "Grants", &body)
}

pub(super) async fn accounts_page(State(state): State<AppState>, page: Page) -> Response {
    let mut body = String::from(
        "<h1>Accounts</h1><p class=\"lede\">Where approval cards are sent, and who can answer them.</p>\
         <table class=\"list\" id=\"accounts\"><thead><tr><th scope=\"col\">Account</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Who can approve</th></tr></thead><tbody>",
    );
    let (console_state, console_class) = if state.engine.console_is_route() {
        ("Cards are shown here", "ok")
    } else {
        ("Not used for cards: a chat account can reach an approver", "off")
    };
    let _ = write!(
        body,
        "<tr><td data-label=\"Account\">Web console</td><td data-label=\"State\"><span class=\"state state-{console_class}\">\
         {console_state}</span></td><td data-label=\"Who can approve\">Anyone with an <code>approve</code> or \
         <code>admin</code> token</td></tr>"
    );
    let attached = state.engine.accounts();
    for a in state.configured_accounts.iter() {
        let live = attached.iter().find(|s| s.key == a.key);
        let (status, class) = match live {
            Some(s) if s.active => ("Connected; cards are sent here", "ok"),
            Some(_) => ("Connected, but nobody can approve here", "warn"),
            None => ("Not connected yet (starting, or run by another replica)", "off"),
        };
        let _ = write!(
            body,
            "<tr><td data-label=\"Account\">{}<br><small>{}</small></td><td data-label=\"State\">\
             <span class=\"state state-{class}\">{status}</span>",
            esc(&a.key.to_string()),
            esc(&a.identity)
        );
        for hint in &a.hints {
            let _ = write!(body, "<br><small class=\"hint\">{}</small>", esc(hint));
        }
        if !a.hints.is_empty() || class == "warn" {
            body.push_str(
                "<br><small class=\"hint\">Run <code>assent doctor</code> for the details.</small>",
            );
        }
        let who = match a.approvers {
            0 => "Nobody: no approvers are configured".to_owned(),
            1 => "1 approver".to_owned(),
            n => format!("{n} approvers"),
        };
        let _ = write!(body, "</td><td data-label=\"Who can approve\">{who}</td></tr>");
    }
    body.push_str("</tbody></table>");
    page.render(StatusCode::OK, "/accounts", "Accounts", &body)
}
