//! The queue: every pending approval, soonest deadline first, each readable at a glance.

use std::fmt::Write as _;

use assent_core::model::Approval;
use axum::{extract::State, http::StatusCode, response::Response};

use super::{
    Page, html,
    render::{critical, esc, heading, hidden_badge, kind_badge, preview, quorum, severity_badge},
    unavailable,
};
use crate::{AppState, views::ApprovalView};

/// How many pending approvals the queue shows at once.
const QUEUE_MAX: usize = 500;

/// Every pending approval, soonest deadline first, so the oldest are never hidden behind newer
/// ones (issue 9, finding 14), and how many did not fit.
async fn pending(state: &AppState) -> Result<(Vec<Approval>, usize), assent_core::store::StoreError> {
    let mut all = state.engine.store().pending().await?;
    all.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
    let more = all.len().saturating_sub(QUEUE_MAX);
    all.truncate(QUEUE_MAX);
    Ok((all, more))
}

fn queue_html(state: &AppState, (items, more): &(Vec<Approval>, usize)) -> String {
    if items.is_empty() {
        return "<p class=\"empty\" id=\"empty\">Nothing is waiting for a decision. New requests appear here \
                as they arrive.</p>"
            .to_owned();
    }
    let mut out = String::from("<ul class=\"queue\">");
    for a in items {
        out.push_str(&item(state, a));
    }
    out.push_str("</ul>");
    if *more > 0 {
        let _ = write!(
            out,
            "<p class=\"more\" id=\"more\">{more} more pending approvals expire later; they move up as these \
             are decided or expire. <code>assent approvals list</code> pages through all of them.</p>"
        );
    }
    out
}

fn item(state: &AppState, a: &Approval) -> String {
    let v = ApprovalView::new(a, &state.keyring, &state.redactor, state.engine.now());
    // A critical action, or text hiding characters, is set apart.
    let hidden = hidden_badge(a);
    let agent = a
        .agent_id
        .as_deref()
        .map(|x| format!("<span>Agent <b>{}</b></span>", esc(&state.redactor.redact(x).text)))
        .unwrap_or_default();
    format!(
        "<li class=\"item{alarm}\" data-id=\"{id}\"><a href=\"/a/{id}\">\
         <span class=\"badges\">{kind}{severity}{hidden}</span>\
         <span class=\"title\">{title}</span>\
         <code class=\"text\">{text}</code>\
         <span class=\"meta\">{agent}<span>From <b>{requester}</b></span>\
         <span class=\"expires\">Expires in <span data-expires=\"{exp}\"></span></span>{quorum}\
         <span class=\"ref\">Ref {reference}</span></span></a></li>",
        id = v.id,
        kind = kind_badge(v.kind),
        severity = severity_badge(a),
        alarm = if critical(a) || !hidden.is_empty() { " alarming" } else { "" },
        title = esc(&heading(a, &state.redactor)),
        text = esc(&preview(&v.text, 160)),
        requester = esc(&v.requester),
        exp = v.expires_at.as_millis(),
        quorum = quorum(v.votes, v.required),
        reference = v.reference,
    )
}

pub(super) async fn page(State(state): State<AppState>, page: Page) -> Response {
    let since = super::live_since(&state).await;
    let list = match pending(&state).await {
        Ok(items) => queue_html(&state, &items),
        Err(e) => unavailable(&e),
    };
    let body = format!(
        "<h1>Pending</h1><p class=\"lede\">Requests waiting for a decision, the soonest to expire first.</p>\
         <section id=\"queue\" data-live=\"queue\"{since} aria-live=\"polite\">{list}</section>"
    );
    page.render(StatusCode::OK, "/", "Pending", &body)
}

pub(super) async fn fragment(State(state): State<AppState>, _page: Page) -> Response {
    match pending(&state).await {
        Ok(items) => html(StatusCode::OK, queue_html(&state, &items)),
        Err(e) => html(StatusCode::SERVICE_UNAVAILABLE, unavailable(&e)),
    }
}
