//! One approval: everything it asks, hidden characters flagged, the decision controls while it
//! is pending, and the outcome in the past tense once decided.

use std::fmt::Write as _;

use assent_core::{
    card::{CardContext, CardView},
    model::{Action, Approval, Decision, Status},
};
use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};

use super::{
    Page, html,
    render::{
        command, esc, escaped_warning, heading, hidden_badge, kind_badge, quorum, raw_text, severity_badge,
        status_badge, time,
    },
};
use crate::{
    AppState,
    views::{ApprovalView, console_account, narrower_scopes},
};

fn detail_html(state: &AppState, a: &Approval) -> String {
    let now = state.engine.now();
    let v = ApprovalView::new(a, &state.keyring, &state.redactor, now);
    let account = console_account();
    let ctx = CardContext {
        account: &account,
        now,
        keyring: &state.keyring,
        redactor: &state.redactor,
        public_url: None,
    };
    let card = CardView::build(a, &ctx, false);
    let mut out = format!(
        "<div class=\"detail-head\"><span class=\"badges\">{}{}{}{}</span><h1 id=\"title\">{}</h1>\
         <p class=\"status status-{}\" id=\"status\">{}</p></div>",
        kind_badge(v.kind),
        severity_badge(a),
        hidden_badge(a),
        status_badge(a),
        esc(&heading(a, &state.redactor)),
        status_class(a.status),
        status_line(&v),
    );
    out.push_str(&escaped_warning(raw_text(a)));
    for (i, block) in card.blocks.iter().enumerate() {
        let shown = block.text.fit(usize::MAX).shown;
        let id = if i == 0 { " id=\"command\"" } else { "" };
        let body = if block.code {
            format!("<pre class=\"command\"{id}>{}</pre>", command(&shown))
        } else {
            format!("<p class=\"prose\"{id}>{}</p>", esc(&shown))
        };
        let _ = write!(out, "<section class=\"block\"><h2>{}</h2>{body}", block.label);
        if block.text.hidden > 0 {
            let _ = write!(
                out,
                "<p class=\"hint\">{} value{} that looked like secrets {} hidden.</p>",
                block.text.hidden,
                if block.text.hidden == 1 { "" } else { "s" },
                if block.text.hidden == 1 { "is" } else { "are" }
            );
        }
        out.push_str("</section>");
    }
    out.push_str(&fields(state, a, &v));
    if v.status == Status::Pending {
        out.push_str(&decision_form(a, &v));
    }
    out
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Denied => "denied",
        Status::Expired | Status::Cancelled => "expired",
    }
}

/// While pending, what it waits for; once decided, what happened, in the past tense.
fn status_line(v: &ApprovalView) -> String {
    match v.status {
        Status::Pending => format!(
            "Waiting for a decision · expires in <span data-expires=\"{}\" id=\"countdown\"></span>",
            v.expires_at.as_millis()
        ),
        _ => {
            let mut text = v.outcome.text.clone();
            if let Some(first) = text.get(..1) {
                text.replace_range(..1, &first.to_uppercase());
            }
            let when = v.decided_at.map(|t| format!(" · {}", time(t))).unwrap_or_default();
            format!("{}{when}", esc(&text))
        }
    }
}

fn fields(state: &AppState, a: &Approval, v: &ApprovalView) -> String {
    let clean = |s: &str| esc(&assent_core::text::sanitize(&state.redactor.redact(s).text, false));
    let mut rows: Vec<(&str, String)> =
        vec![("Ref", format!("<code>{}</code>", v.reference)), ("Requested by", esc(&v.requester))];
    if let Action::Binding(b) = &a.action
        && let Some(who) = &b.requested_by
    {
        rows.push(("Asked for by", clean(who)));
    }
    rows.extend(v.fields.iter().map(|f| (f.label, esc(&f.value))));
    if let Action::Binding(b) = &a.action {
        if let Some(parent) = &b.conversation.parent {
            rows.push(("Parent conversation", clean(parent)));
        }
        if let Some(thread) = &b.conversation.thread {
            rows.push(("Thread", clean(thread)));
        }
        if !b.detach_hint.is_empty() {
            rows.push(("To detach it later", clean(&b.detach_hint)));
        }
    }
    rows.push(("Requested", time(v.created_at)));
    if v.status == Status::Pending {
        rows.push(("Expires", time(v.expires_at)));
    }
    if let Some(by) = &v.decided_by {
        rows.push(("Decided by", esc(by)));
    }
    if let Some(reason) = &v.deny_reason {
        rows.push(("Reason given", esc(reason)));
    }
    if v.required > 1 {
        rows.push(("Approvals", format!("<span id=\"quorum\">{}</span>", quorum(v.votes, v.required))));
    }
    let mut out = String::from("<dl class=\"fields\">");
    for (label, value) in rows {
        let _ = write!(out, "<div><dt>{label}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>");
    out
}

fn decision_form(a: &Approval, v: &ApprovalView) -> String {
    let mut out = format!(
        "<form id=\"decide\" class=\"decide\" data-kind=\"{}\" aria-labelledby=\"decide-title\">\
         <h2 id=\"decide-title\">Your decision</h2>",
        v.kind.as_str()
    );
    if v.allowed_decisions.contains(&Decision::AllowAlways) {
        let scope = v.grant_scope.clone().unwrap_or_else(|| "this exact command".to_owned());
        let _ = write!(
            out,
            "<label for=\"scope\">“Allow always” creates a grant for</label>\
             <select id=\"scope\"><option value=\"\">{}</option>",
            esc(&scope)
        );
        for narrower in narrower_scopes(a) {
            let json = serde_json::to_string(&narrower).unwrap_or_default();
            let _ = write!(out, "<option value=\"{}\">{}</option>", esc(&json), esc(&narrower.label()));
        }
        out.push_str("</select>");
    }
    out.push_str(
        "<label for=\"reason\">Reason <span class=\"hint\">(optional; the requester sees it when you deny)</span></label>\
         <input name=\"reason\" id=\"reason\" maxlength=\"500\" autocomplete=\"off\"><div class=\"buttons\">",
    );
    for d in &v.allowed_decisions {
        let (label, class) = match d {
            Decision::AllowOnce => ("Allow once", "allow"),
            Decision::AllowAlways => ("Allow always", "always"),
            Decision::Deny => ("Deny", "deny"),
        };
        let _ = write!(
            out,
            "<button type=\"button\" class=\"{class}\" data-decision=\"{}\">{label}</button>",
            d.as_str()
        );
    }
    out.push_str("</div><p class=\"error\" id=\"decide-error\" role=\"alert\" hidden></p></form>");
    out
}

async fn detail(state: &AppState, id: &str) -> Option<Approval> {
    let id = state.engine.resolve_any_ref(id).await.ok()?;
    state.engine.approval(&id).await.ok().flatten()
}

pub(super) async fn page(State(state): State<AppState>, page: Page, Path(id): Path<String>) -> Response {
    let since = super::live_since(&state).await;
    let Some(a) = detail(&state, &id).await else {
        let body = "<h1>No such approval</h1><p>Nothing starts with that ref. <a href=\"/history\">Search the history</a>.</p>";
        return page.render(StatusCode::NOT_FOUND, "/", "Not found", body);
    };
    let body = format!(
        "<p class=\"crumbs\"><a href=\"{back}\">← {back_label}</a></p>\
         <section id=\"detail\" data-live=\"detail\" data-id=\"{}\"{since}>{}</section>",
        a.id,
        detail_html(&state, &a),
        back = if a.status == Status::Pending { "/" } else { "/history" },
        back_label = if a.status == Status::Pending { "Pending" } else { "History" },
    );
    let nav = if a.status == Status::Pending { "/" } else { "/history" };
    page.render(StatusCode::OK, nav, &format!("Approval {}", a.short_ref()), &body)
}

pub(super) async fn fragment(State(state): State<AppState>, _page: Page, Path(id): Path<String>) -> Response {
    match detail(&state, &id).await {
        Some(a) => html(StatusCode::OK, detail_html(&state, &a)),
        None => html(StatusCode::NOT_FOUND, "<h1>No such approval</h1>".to_owned()),
    }
}
