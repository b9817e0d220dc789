//! The web console (CH-WEB-1..4): server-rendered pages, a token login that sets an HttpOnly
//! SameSite=Strict cookie, and a little JavaScript that follows `/v1/events` and swaps page
//! fragments. Decisions go through the same `/v1/…/resolve` endpoint as the API, with a CSRF
//! header, so the console has no decision path of its own.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, Instant},
};

use assent_core::{
    model::{Approval, Decision, Status},
    store::{ApprovalFilter, AuditFilter},
};
use axum::{
    Form, Router,
    extract::{ConnectInfo, Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::{
    AppState,
    auth::{Principal, Scope, new_token},
    grants::grant_views,
    views::{ApprovalView, narrower_scopes},
};

const COOKIE: &str = "assent_session";
/// CH-WEB-2: sessions last 12 hours.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The first-run login link is valid this long, once.
const LINK_TTL: Duration = Duration::from_secs(15 * 60);
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A logged-in console user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    csrf: String,
    expires: Instant,
}

/// Console sessions (in memory: a restart asks people to log in again) and the one-time link.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    link: Mutex<Option<(String, Principal, Instant)>>,
}

impl Sessions {
    fn open(&self, principal: Principal) -> Option<String> {
        let id = new_token().ok()?;
        let csrf = new_token().ok()?;
        let mut map = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, s| s.expires > Instant::now());
        map.insert(id.clone(), Session { principal, csrf, expires: Instant::now() + SESSION_TTL });
        Some(id)
    }

    fn get(&self, id: &str) -> Option<Session> {
        let map = self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Ends the sessions whose principal `keep` refuses (their token was revoked).
    pub(crate) fn retain(&self, keep: impl Fn(&Principal) -> bool) {
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, s| keep(&s.principal));
    }

    fn close(&self, id: &str) {
        self.by_id.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// CLI-8: a one-time login link for `principal`, printed by `assent serve` on first run.
    pub(crate) fn one_time_link(&self, principal: Principal) -> Option<String> {
        let code = new_token().ok()?;
        *self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((code.clone(), principal, Instant::now() + LINK_TTL));
        Some(code)
    }

    fn redeem(&self, code: &str) -> Option<Principal> {
        let mut link = self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let valid = link.as_ref().is_some_and(|(c, _, exp)| {
            bool::from(c.as_bytes().ct_eq(code.as_bytes())) && *exp > Instant::now()
        });
        if valid { link.take().map(|(_, p, _)| p) } else { None }
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(queue_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/a/{id}", get(detail_page))
        .route("/history", get(history_page))
        .route("/grants", get(grants_page))
        .route("/audit", get(audit_page))
        .route("/accounts", get(accounts_page))
        .route("/fragments/queue", get(queue_fragment))
        .route("/fragments/a/{id}", get(detail_fragment))
        .route("/assets/console.js", get(|| asset("text/javascript", include_str!("console/console.js"))))
        .route("/assets/console.css", get(|| asset("text/css", include_str!("console/console.css"))))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE}=")).map(str::to_owned))
    })
}

/// The console session of a request, if its cookie is valid.
pub(crate) fn session_of(parts: &Parts, state: &AppState) -> Option<Session> {
    cookie_value(&parts.headers).and_then(|id| state.sessions.get(&id))
}

/// CH-WEB-2: a write through the cookie needs the session's CSRF header (the caller has checked
/// the origin already).
pub(crate) fn csrf_ok(parts: &Parts, session: &Session) -> bool {
    parts
        .headers
        .get("x-assent-csrf")
        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(session.csrf.as_bytes())))
}

/// A page for a logged-in user, or a redirect to the login page.
struct Page {
    session: Session,
}

impl axum::extract::FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match session_of(parts, state) {
            Some(session) => Ok(Page { session }),
            None => Err(Redirect::to("/login").into_response()),
        }
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, Html(body)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn layout(title: &str, session: Option<&Session>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(s) = session {
        nav = format!(
            "<nav><a href=\"/\">Pending</a><a href=\"/history\">History</a><a href=\"/grants\">Grants</a>\
             <a href=\"/audit\">Audit</a><a href=\"/accounts\">Accounts</a>\
             <form method=\"post\" action=\"/logout\"><button id=\"logout\">Log out {}</button></form></nav>",
            esc(&s.principal.name)
        );
    }
    let csrf = session.map(|s| s.csrf.as_str()).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf\" content=\"{csrf}\"><title>{} · assent</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"><script src=\"/assets/console.js\" defer></script>\
         </head><body><header><strong>assent</strong>{nav}</header><main>{body}</main></body></html>",
        esc(title)
    )
}

#[derive(Debug, Default, Deserialize)]
struct LoginQuery {
    code: Option<String>,
}

async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(code) = q.code {
        return match state.sessions.redeem(&code) {
            Some(p) => start_session(&state, p),
            None => login_form(StatusCode::UNAUTHORIZED, "That login link was already used or has expired."),
        };
    }
    login_form(StatusCode::OK, "")
}

fn login_form(status: StatusCode, error: &str) -> Response {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" id=\"error\">{}</p>", esc(error))
    };
    let body = format!(
        "<h1>Log in</h1>{error}<form method=\"post\" action=\"/login\" id=\"login\">\
         <label>API token with the <code>approve</code> or <code>admin</code> scope\
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">On the server's machine, <code>cat ~/.local/share/assent/admin.token</code> \
         shows the first-run admin token.</p>"
    );
    html(status, layout("Log in", None, &body))
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<LoginForm>,
) -> Response {
    match state.authenticate(form.token.trim()) {
        Some(p) if p.has(Scope::Approve) => start_session(&state, p),
        Some(_) => login_form(
            StatusCode::FORBIDDEN,
            "That token cannot approve; the console needs `approve` or `admin`.",
        ),
        // Only unknown tokens are throttled (NF-12): a correct one always logs in.
        None => {
            if let Err(secs) = state.auth_failures.check(peer.ip()) {
                let text = format!("Too many failed logins from this address; try again in {secs} s.");
                return login_form(StatusCode::TOO_MANY_REQUESTS, &text);
            }
            state.auth_failures.fail(peer.ip());
            login_form(StatusCode::UNAUTHORIZED, "Unknown token.")
        }
    }
}

fn start_session(state: &AppState, principal: Principal) -> Response {
    let Some(id) = state.sessions.open(principal) else {
        return login_form(StatusCode::SERVICE_UNAVAILABLE, "Could not create a session; try again.");
    };
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers) {
        state.sessions.close(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("assent_session=; Max-Age=0; Path=/"));
    r
}

/// How many pending approvals the queue shows at once.
const QUEUE_MAX: usize = 500;

/// The queue: every pending approval, soonest deadline first, so the oldest are never hidden
/// behind newer ones (issue 9, finding 14), and how many did not fit.
async fn pending(state: &AppState) -> Result<(Vec<Approval>, usize), assent_core::store::StoreError> {
    let mut all = state.engine.store().pending().await?;
    all.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then_with(|| a.id.cmp(&b.id)));
    let more = all.len().saturating_sub(QUEUE_MAX);
    all.truncate(QUEUE_MAX);
    Ok((all, more))
}

/// Shown instead of a list the store could not give: never an empty list that looks like "no
/// approvals".
/// A whole console page saying its list could not be read.
fn unavailable_page(title: &str, page: &Page, e: &dyn std::fmt::Display) -> Response {
    html(StatusCode::SERVICE_UNAVAILABLE, layout(title, Some(&page.session), &unavailable(e)))
}

fn unavailable(e: &dyn std::fmt::Display) -> String {
    tracing::error!(error = %e, "console could not read the store");
    "<p class=\"error\" id=\"store-error\">The store is unavailable right now, so this list cannot be shown. \
     Nothing was changed; reload in a moment, and see the server log.</p>"
        .to_owned()
}

fn queue_html(state: &AppState, (items, more): &(Vec<Approval>, usize)) -> String {
    if items.is_empty() {
        return "<p class=\"empty\" id=\"empty\">Nothing is waiting for a decision.</p>".to_owned();
    }
    let mut out = String::from("<ul class=\"queue\">");
    for a in items {
        let v = ApprovalView::new(a, &state.keyring, &state.redactor, state.engine.now());
        let _ = write!(
            out,
            "<li class=\"item\" data-id=\"{id}\"><a href=\"/a/{id}\"><span class=\"kind\">{kind}</span> \
             <span class=\"title\">{title}</span> <code class=\"text\">{text}</code></a> \
             <span class=\"meta\">{reference} · <span data-expires=\"{exp}\"></span>{quorum}</span></li>",
            id = v.id,
            kind = v.kind.as_str(),
            title = esc(&v.title),
            text = esc(&first_line(&v.text)),
            reference = v.reference,
            exp = v.expires_at.as_millis(),
            quorum = if v.required > 1 { format!(" · {}/{}", v.votes, v.required) } else { String::new() },
        );
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

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > 120 {
        format!("{}…", line.chars().take(120).collect::<String>())
    } else {
        line.to_owned()
    }
}

async fn queue_page(State(state): State<AppState>, page: Page) -> Response {
    let list = match pending(&state).await {
        Ok(items) => queue_html(&state, &items),
        Err(e) => unavailable(&e),
    };
    let body = format!("<h1>Pending</h1><section id=\"queue\" data-live=\"queue\">{list}</section>");
    html(StatusCode::OK, layout("Pending", Some(&page.session), &body))
}

async fn queue_fragment(State(state): State<AppState>, _page: Page) -> Response {
    match pending(&state).await {
        Ok(items) => html(StatusCode::OK, queue_html(&state, &items)),
        Err(e) => html(StatusCode::SERVICE_UNAVAILABLE, unavailable(&e)),
    }
}

fn detail_html(state: &AppState, a: &Approval) -> String {
    let v = ApprovalView::new(a, &state.keyring, &state.redactor, state.engine.now());
    let mut out = format!(
        "<h1 id=\"title\">{}</h1><p class=\"status status-{status}\" id=\"status\">{}</p>\
         <pre id=\"command\">{}</pre><table class=\"fields\">",
        esc(&v.title),
        esc(&status_line(&v)),
        esc(&v.text),
        status = serde_json::to_value(v.status)
            .ok()
            .and_then(|s| s.as_str().map(str::to_owned))
            .unwrap_or_default(),
    );
    let _ = write!(
        out,
        "<tr><th>Ref</th><td>{}</td></tr><tr><th>Requested by</th><td>{}</td></tr>",
        v.reference,
        esc(&v.requester)
    );
    for f in &v.fields {
        let _ = write!(out, "<tr><th>{}</th><td>{}</td></tr>", esc(f.label), esc(&f.value));
    }
    if v.required > 1 {
        let _ = write!(out, "<tr><th>Approvals</th><td id=\"quorum\">{}/{}</td></tr>", v.votes, v.required);
    }
    out.push_str("</table>");
    if v.status == Status::Pending {
        let _ = write!(
            out,
            "<p>Expires in <span data-expires=\"{}\" id=\"countdown\"></span></p><form id=\"decide\" data-kind=\"{}\">",
            v.expires_at.as_millis(),
            v.kind.as_str()
        );
        if v.allowed_decisions.contains(&Decision::AllowAlways) {
            let scope = v.grant_scope.clone().unwrap_or_else(|| "this exact command".to_owned());
            let _ = write!(
                out,
                "<label>Allow always creates a grant for<select id=\"scope\"><option value=\"\">{}</option>",
                esc(&scope)
            );
            for narrower in narrower_scopes(a) {
                let json = serde_json::to_string(&narrower).unwrap_or_default();
                let _ = write!(out, "<option value=\"{}\">{}</option>", esc(&json), esc(&narrower.label()));
            }
            out.push_str("</select></label>");
        }
        out.push_str("<label>Reason (shown to the requester on deny)<input name=\"reason\" id=\"reason\" maxlength=\"500\"></label><div class=\"buttons\">");
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
        out.push_str("</div><p class=\"error\" id=\"decide-error\" hidden></p></form>");
    }
    out
}

fn status_line(v: &ApprovalView) -> String {
    match v.status {
        Status::Pending => "Waiting for a decision".to_owned(),
        _ => v.outcome.text.clone(),
    }
}

async fn detail(state: &AppState, id: &str) -> Option<Approval> {
    let id = state.engine.resolve_ref(id).ok()?;
    state.engine.approval(&id).await.ok().flatten()
}

async fn detail_page(State(state): State<AppState>, page: Page, Path(id): Path<String>) -> Response {
    let Some(a) = detail(&state, &id).await else {
        return html(
            StatusCode::NOT_FOUND,
            layout("Not found", Some(&page.session), "<h1>No such approval</h1>"),
        );
    };
    let body = format!(
        "<section id=\"detail\" data-live=\"detail\" data-id=\"{}\">{}</section>",
        a.id,
        detail_html(&state, &a)
    );
    html(StatusCode::OK, layout(&format!("Approval {}", a.short_ref()), Some(&page.session), &body))
}

async fn detail_fragment(State(state): State<AppState>, _page: Page, Path(id): Path<String>) -> Response {
    match detail(&state, &id).await {
        Some(a) => html(StatusCode::OK, detail_html(&state, &a)),
        None => html(StatusCode::NOT_FOUND, "<h1>No such approval</h1>".to_owned()),
    }
}

async fn history_page(State(state): State<AppState>, page: Page) -> Response {
    let filter = ApprovalFilter { limit: 200, ..ApprovalFilter::default() };
    let items = match state.engine.store().approvals(&filter).await {
        Ok(items) => items,
        Err(e) => {
            return unavailable_page("History", &page, &e);
        }
    };
    let mut body = String::from(
        "<h1>History</h1><table class=\"list\"><tr><th>Ref</th><th>Request</th><th>Outcome</th></tr>",
    );
    for a in items.iter().filter(|a| a.status.is_terminal()) {
        let v = ApprovalView::new(a, &state.keyring, &state.redactor, state.engine.now());
        let _ = write!(
            body,
            "<tr><td><a href=\"/a/{}\">{}</a></td><td>{}</td><td>{}</td></tr>",
            v.id,
            v.reference,
            esc(&v.title),
            esc(&v.outcome.text)
        );
    }
    body.push_str("</table>");
    html(StatusCode::OK, layout("History", Some(&page.session), &body))
}

async fn grants_page(State(state): State<AppState>, page: Page) -> Response {
    let grants = match state.engine.grants().await {
        Ok(g) => g,
        Err(e) => {
            return unavailable_page("Grants", &page, &e);
        }
    };
    let admin = page.session.principal.has(Scope::Admin);
    let mut body = String::from(
        "<h1>Grants</h1><table class=\"list\" id=\"grants\"><tr><th>Kind</th><th>Allows</th><th>Used</th><th></th></tr>",
    );
    for g in grant_views(&state, &grants) {
        let revoke = if admin {
            format!("<button type=\"button\" class=\"revoke\" data-grant=\"{}\">Revoke</button>", esc(&g.id))
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code><br><small>{}</small></td><td>{}</td><td>{revoke}</td></tr>",
            g.kind.as_str(),
            esc(&g.subject),
            esc(&g.scope),
            g.use_count
        );
    }
    body.push_str("</table>");
    html(StatusCode::OK, layout("Grants", Some(&page.session), &body))
}

async fn audit_page(State(state): State<AppState>, page: Page) -> Response {
    if !page.session.principal.has(Scope::Admin) {
        return html(
            StatusCode::FORBIDDEN,
            layout("Audit", Some(&page.session), "<h1>Audit</h1><p>The audit log needs an admin token.</p>"),
        );
    }
    let filter = AuditFilter { limit: 500, ..AuditFilter::default() };
    let entries = match state.engine.store().audit(&filter).await {
        Ok(entries) => entries,
        Err(e) => {
            return unavailable_page("Audit", &page, &e);
        }
    };
    let mut body = String::from(
        "<h1>Audit</h1><table class=\"list\"><tr><th>#</th><th>What</th><th>Approval</th><th>Who</th></tr>",
    );
    for e in entries.iter().rev() {
        let what =
            serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            esc(&what),
            e.approval_id
                .as_ref()
                .map(|i| format!("<a href=\"/a/{i}\">{}</a>", &i.as_str()[..8]))
                .unwrap_or_default(),
            esc(&e.actor.as_ref().map(|a| a.who()).unwrap_or_default()),
        );
    }
    body.push_str("</table>");
    html(StatusCode::OK, layout("Audit", Some(&page.session), &body))
}

async fn accounts_page(State(state): State<AppState>, page: Page) -> Response {
    let mut body = String::from(
        "<h1>Accounts</h1><table class=\"list\"><tr><th>Account</th><th>State</th><th>Approvers</th></tr>",
    );
    let _ = write!(
        body,
        "<tr><td>web console</td><td>{}</td><td>API tokens</td></tr>",
        if state.engine.console_is_route() { "route" } else { "not a route (no approver connected)" }
    );
    let attached = state.engine.accounts();
    for a in state.configured_accounts.iter() {
        let live = attached.iter().find(|s| s.key == a.key);
        let status = match live {
            Some(s) if s.active => "connected",
            Some(_) => "connected; nobody can approve",
            None => "not connected (starting, or held by another replica)",
        };
        let _ = write!(
            body,
            "<tr><td>{}<br><small>{}</small></td><td>{status}",
            esc(&a.key.to_string()),
            esc(&a.identity)
        );
        for hint in &a.hints {
            let _ = write!(body, "<br><small class=\"hint\">{}</small>", esc(hint));
        }
        let _ = write!(body, "</td><td>{}</td></tr>", a.approvers);
    }
    body.push_str("</table>");
    html(StatusCode::OK, layout("Accounts", Some(&page.session), &body))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::{Page, Session, unavailable_page};

    #[tokio::test]
    async fn a_store_failure_is_a_503_page_that_says_so_never_an_empty_list() {
        let session = Session {
            principal: crate::auth::admin("kim"),
            csrf: "c".to_owned(),
            expires: std::time::Instant::now(),
        };
        let response = unavailable_page("History", &Page { session }, &"disk I/O error");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("History"), "the page keeps its title: {body}");
        assert!(body.contains("id=\"store-error\""), "{body}");
        assert!(!body.contains("disk I/O error"), "the store's error stays in the log: {body}");
    }
}
