//! Decided approvals, newest first: filters by status, kind and agent, a search, and pages.

use std::fmt::Write as _;

use assent_core::{
    clock::Timestamp,
    id::ApprovalId,
    model::{Approval, Kind, Status},
    store::ApprovalFilter,
};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

use super::{
    Page, older_link,
    render::{esc, heading, kind_badge, preview, status_badge, time},
    unavailable_page,
};
use crate::{AppState, views::ApprovalView};

/// Rows on one page.
const PAGE: usize = 50;
/// Approvals read from the store per round while filling a page.
const BATCH: usize = 200;
/// Most approvals one page reads before it stops and offers to look further.
const SCAN: usize = 2_000;

#[derive(Debug, Default, Deserialize)]
pub(super) struct HistoryQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    before: String,
}

impl HistoryQuery {
    fn status(&self) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(self.status.clone())).ok()
    }

    fn kind(&self) -> Option<Kind> {
        serde_json::from_value(serde_json::Value::String(self.kind.clone())).ok()
    }

    /// `<created_at ms>.<id>` of the last row of the previous page.
    fn cursor(&self) -> Option<(Timestamp, ApprovalId)> {
        let (ms, id) = self.before.split_once('.')?;
        Some((Timestamp(ms.parse().ok()?), ApprovalId::parse(id).ok()?))
    }

    /// What is wrong with a hand-edited or truncated link, rather than silently showing
    /// something other than what it asks for.
    fn problem(&self) -> Option<String> {
        if !self.status.is_empty() && !self.status().is_some_and(Status::is_terminal) {
            return Some(format!(
                "`status={}` is not an outcome: use approved, denied, expired or cancelled \
                 (pending requests are on the Pending page).",
                self.status
            ));
        }
        if !self.kind.is_empty() && self.kind().is_none() {
            return Some(format!("`kind={}` is not a kind: use exec, plugin or binding.", self.kind));
        }
        if !self.before.is_empty() && self.cursor().is_none() {
            return Some(format!(
                "`before={}` is not a position in the history; it comes from an Older link.",
                self.before
            ));
        }
        None
    }

    /// Agent and search compare against what the console shows (redacted), so a search cannot
    /// probe for a hidden secret.
    fn matches(&self, a: &Approval, v: &ApprovalView, title: &str) -> bool {
        let agent = self.agent.trim().to_lowercase();
        let q = self.q.trim().to_lowercase();
        let shown_agent = v.fields.iter().find(|f| f.label == "Agent").map(|f| f.value.to_lowercase());
        let agent_ok = agent.is_empty() || shown_agent.is_some_and(|x| x.contains(&agent));
        let q_ok = q.is_empty()
            || [title, &v.text, &v.requester, &v.reference, v.decided_by.as_deref().unwrap_or_default()]
                .iter()
                .any(|s| s.to_lowercase().contains(&q));
        a.status.is_terminal() && agent_ok && q_ok
    }
}

/// One page of matching rows, the cursor for the next, and whether the scan limit cut it short.
struct Found {
    rows: Vec<(Approval, ApprovalView, String)>,
    next: Option<String>,
    cut: bool,
}

async fn find(state: &AppState, q: &HistoryQuery) -> Result<Found, assent_core::store::StoreError> {
    let mut found = Found { rows: Vec::new(), next: None, cut: false };
    let mut cursor = q.cursor();
    let mut scanned = 0;
    loop {
        let filter = ApprovalFilter {
            status: q.status(),
            kind: q.kind(),
            before: cursor.clone(),
            limit: BATCH,
            ..ApprovalFilter::default()
        };
        let batch = state.engine.store().approvals(&filter).await?;
        let full_batch = batch.len() == BATCH;
        // Once the page is full, the rest of the batch only says whether an older page would
        // show anything, so "Older" is not offered for an empty page.
        let mut older_match = false;
        for a in batch {
            let v = ApprovalView::new(&a, &state.keyring, &state.redactor, state.engine.now());
            let title = heading(&a, &state.redactor);
            if found.rows.len() == PAGE {
                if q.matches(&a, &v, &title) {
                    older_match = true;
                    break;
                }
                continue;
            }
            scanned += 1;
            cursor = Some((a.created_at, a.id.clone()));
            if q.matches(&a, &v, &title) {
                found.rows.push((a, v, title));
            }
        }
        let more = older_match || full_batch;
        if !more {
            return Ok(found);
        }
        if found.rows.len() == PAGE || scanned >= SCAN {
            found.cut = found.rows.len() < PAGE;
            found.next = cursor.map(|(t, id)| format!("{}.{id}", t.as_millis()));
            return Ok(found);
        }
    }
}

fn filters(q: &HistoryQuery) -> String {
    let select = |name: &str, label: &str, current: &str, options: &[(&str, &str)]| {
        let mut s = format!(
            "<div class=\"filter\"><label for=\"f-{name}\">{label}</label><select id=\"f-{name}\" name=\"{name}\">"
        );
        for (value, text) in options {
            let selected = if *value == current { " selected" } else { "" };
            let _ = write!(s, "<option value=\"{value}\"{selected}>{text}</option>");
        }
        s.push_str("</select></div>");
        s
    };
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/history\" role=\"search\">{}{}\
         <div class=\"filter\"><label for=\"f-agent\">Agent</label><input id=\"f-agent\" name=\"agent\" value=\"{}\"></div>\
         <div class=\"filter grow\"><label for=\"f-q\">Search</label><input id=\"f-q\" name=\"q\" type=\"search\" \
         value=\"{}\" placeholder=\"command, title, person or ref\"></div>\
         <button type=\"submit\" class=\"primary\">Filter</button></form>",
        select(
            "status",
            "Outcome",
            &q.status,
            &[
                ("", "Any"),
                ("approved", "Approved"),
                ("denied", "Denied"),
                ("expired", "Expired"),
                ("cancelled", "Cancelled")
            ]
        ),
        select(
            "kind",
            "Kind",
            &q.kind,
            &[("", "Any"), ("exec", "Command"), ("plugin", "Plugin action"), ("binding", "Conversation")]
        ),
        esc(&q.agent),
        esc(&q.q),
    )
}

fn row(a: &Approval, v: &ApprovalView, title: &str) -> String {
    let agent =
        v.fields.iter().find(|f| f.label == "Agent").map(|f| esc(&f.value)).unwrap_or_else(|| "—".to_owned());
    format!(
        "<tr><td data-label=\"Approval\"><span class=\"badges\">{status}{kind}</span>\
         <a href=\"/a/{id}\" class=\"title\">{title}</a><code class=\"text\">{text}</code>\
         <small class=\"ref\">Ref {reference}</small></td>\
         <td data-label=\"Agent\">{agent}</td><td data-label=\"Requested by\">{requester}</td>\
         <td data-label=\"Decided by\">{decided}</td><td data-label=\"When\">{when}</td></tr>",
        status = status_badge(a),
        kind = kind_badge(v.kind),
        id = v.id,
        title = esc(title),
        text = esc(&preview(&v.text, 120)),
        reference = v.reference,
        requester = esc(&v.requester),
        decided = v.decided_by.as_deref().map_or_else(|| "—".to_owned(), esc),
        when = time(v.decided_at.unwrap_or(v.created_at)),
    )
}

pub(super) async fn page(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let mut body = format!("<h1>History</h1>{}", filters(&q));
    if let Some(problem) = q.problem() {
        let _ = write!(
            body,
            "<p class=\"error\" id=\"filter-error\">{} <a href=\"/history\">Show the newest</a>.</p>",
            esc(&problem)
        );
        return page.render(StatusCode::BAD_REQUEST, "/history", "History", &body);
    }
    let found = match find(&state, &q).await {
        Ok(found) => found,
        Err(e) => return unavailable_page(&page, "/history", "History", &e),
    };
    if found.rows.is_empty() && !found.cut {
        let older = if q.before.is_empty() { "" } else { " older" };
        let _ = write!(body, "<p class=\"empty\" id=\"empty\">No{older} decided approvals match.</p>");
    } else {
        body.push_str(
            "<table class=\"list\" id=\"history\"><thead><tr><th scope=\"col\">Approval</th><th scope=\"col\">Agent</th>\
             <th scope=\"col\">Requested by</th><th scope=\"col\">Decided by</th><th scope=\"col\">When</th></tr></thead><tbody>",
        );
        for (a, v, title) in &found.rows {
            body.push_str(&row(a, v, title));
        }
        body.push_str("</tbody></table>");
    }
    if found.cut {
        let _ = write!(
            body,
            "<p class=\"hint\" id=\"cut\">Searched {SCAN} approvals for this page; older ones may match too.</p>"
        );
    }
    if let Some(next) = &found.next {
        let params = [
            ("status", q.status.clone()),
            ("kind", q.kind.clone()),
            ("agent", q.agent.clone()),
            ("q", q.q.clone()),
        ];
        body.push_str(&older_link("/history", &params, next));
    }
    page.render(StatusCode::OK, "/history", "History", &body)
}
