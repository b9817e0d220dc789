//! Console sessions (CH-WEB-2): a token login that sets an HttpOnly SameSite=Strict cookie,
//! the first-run one-time link, and the CSRF check for writes made through the cookie.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use axum::{
    Form,
    extract::{ConnectInfo, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{esc, html, layout};
use crate::{
    AppState,
    auth::{Principal, Scope, new_token},
};

const COOKIE: &str = "assent_session";
/// CH-WEB-2: sessions last 12 hours.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The first-run login link is valid this long, once.
const LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// A logged-in console user.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) principal: Principal,
    pub(super) csrf: String,
    pub(super) expires: Instant,
}

/// Console sessions (in memory: a restart asks people to log in again) and the one-time link.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    link: Mutex<Option<(String, Principal, Instant)>>,
}

impl Session {
    #[cfg(test)]
    pub(super) fn for_test(principal: Principal) -> Self {
        Self { principal, csrf: "c".to_owned(), expires: Instant::now() }
    }
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

#[derive(Debug, Default, Deserialize)]
pub(super) struct LoginQuery {
    code: Option<String>,
}

pub(super) async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
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
        "<div class=\"login\"><h1>Log in to assent</h1>{error}<form method=\"post\" action=\"/login\" id=\"login\">\
         <label for=\"token\">API token</label>\
         <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required \
         aria-describedby=\"token-hint\">\
         <p class=\"hint\" id=\"token-hint\">A token with the <code>approve</code> or <code>admin</code> scope. \
         On the server's machine, <code>cat ~/.local/share/assent/admin.token</code> shows the first-run \
         admin token, and <code>assent serve</code> prints a one-time login link.</p>\
         <button type=\"submit\" class=\"primary\">Log in</button></form></div>"
    );
    html(status, layout("Log in", None, &body))
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    token: String,
}

pub(super) async fn login(
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

pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie_value(&headers) {
        state.sessions.close(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, HeaderValue::from_static("assent_session=; Max-Age=0; Path=/"));
    r
}
