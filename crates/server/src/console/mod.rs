//! The web console (CH-WEB-1..4): server-rendered pages, a token login that sets an HttpOnly
//! SameSite=Strict cookie, and a little JavaScript that follows `/v1/events` and swaps page
//! fragments. Decisions go through the same `/v1/…/resolve` endpoint as the API, with a CSRF
//! header, so the console has no decision path of its own.
//!
//! Every asset is embedded and the CSP allows nothing else: no CDN, no inline script or style.

mod admin;
mod detail;
mod history;
mod queue;
mod render;
mod session;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
pub(crate) use render::esc;
pub(crate) use session::{Session, Sessions, csrf_ok, session_of};

use crate::AppState;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages a logged-in user can reach, in navigation order.
const NAV: [(&str, &str); 5] = [
    ("/", "Pending"),
    ("/history", "History"),
    ("/grants", "Grants"),
    ("/audit", "Audit"),
    ("/accounts", "Accounts"),
];

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(queue::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/a/{id}", get(detail::page))
        .route("/history", get(history::page))
        .route("/grants", get(admin::grants_page))
        .route("/audit", get(admin::audit_page))
        .route("/accounts", get(admin::accounts_page))
        .route("/fragments/queue", get(queue::fragment))
        .route("/fragments/a/{id}", get(detail::fragment))
        .route("/assets/console.js", get(|| asset("text/javascript", include_str!("console.js"))))
        .route("/assets/console.css", get(|| asset("text/css", include_str!("console.css"))))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
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

impl Page {
    /// A whole page: `path` is the navigation entry it belongs to.
    fn render(&self, status: StatusCode, path: &str, title: &str, body: &str) -> Response {
        html(status, layout(title, Some((&self.session, path)), body))
    }
}

/// ` data-since="N"` for a live section: the newest event's seq, read *before* the section's
/// content. The page's event stream resumes from there, so a change made between reading the
/// content and connecting the stream still arrives. Empty when the store cannot say; the stream
/// then starts from the newest event at connect time.
async fn live_since(state: &AppState) -> String {
    state.engine.latest_event_seq().await.map(|seq| format!(" data-since=\"{seq}\"")).unwrap_or_default()
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

/// The page frame. The navigation wraps rather than scrolls, so every link stays reachable on a
/// phone.
fn layout(title: &str, session: Option<(&Session, &str)>, body: &str) -> String {
    let mut nav = String::new();
    if let Some((s, current)) = session {
        nav.push_str("<nav aria-label=\"Console\"><ul>");
        for (href, label) in NAV {
            let here = if href == current { " aria-current=\"page\"" } else { "" };
            nav.push_str(&format!("<li><a href=\"{href}\"{here}>{label}</a></li>"));
        }
        nav.push_str(&format!(
            "</ul><form method=\"post\" action=\"/logout\"><button id=\"logout\" class=\"quiet\">Log out \
             <span class=\"who\">{}</span></button></form></nav>",
            esc(&s.principal.name)
        ));
    }
    let csrf = session.map(|(s, _)| s.csrf.as_str()).unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <meta name=\"csrf\" content=\"{csrf}\"><title>{} · assent</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"><script src=\"/assets/console.js\" defer></script>\
         </head><body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header class=\"top\"><a class=\"brand\" href=\"/\">assent</a>{nav}</header>\
         <main id=\"main\">{body}</main></body></html>",
        esc(title)
    )
}

/// A whole console page saying its list could not be read: never an empty list that looks like
/// "no approvals".
fn unavailable_page(page: &Page, path: &str, title: &str, e: &dyn std::fmt::Display) -> Response {
    let body = format!("<h1>{}</h1>{}", esc(title), unavailable(e));
    page.render(StatusCode::SERVICE_UNAVAILABLE, path, title, &body)
}

fn unavailable(e: &dyn std::fmt::Display) -> String {
    tracing::error!(error = %e, "console could not read the store");
    "<p class=\"error\" id=\"store-error\">The store is unavailable right now, so this list cannot be shown. \
     Nothing was changed; reload in a moment, and see the server log.</p>"
        .to_owned()
}

/// A link to the next (older) page of a listing, keeping the current filters.
fn older_link(base: &str, params: &[(&str, String)], cursor: &str) -> String {
    let mut query: Vec<String> =
        params.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", url_encode(v))).collect();
    query.push(format!("before={}", url_encode(cursor)));
    format!(
        "<nav class=\"pager\" aria-label=\"Pages\"><a id=\"older\" href=\"{base}?{}\">Older →</a></nav>",
        esc(&query.join("&"))
    )
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::{Page, Session, unavailable_page};

    #[tokio::test]
    async fn a_store_failure_is_a_503_page_that_says_so_never_an_empty_list() {
        let session = Session::for_test(crate::auth::admin("kim"));
        let response = unavailable_page(&Page { session }, "/history", "History", &"disk I/O error");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("<h1>History</h1>"), "the page keeps its title: {body}");
        assert!(body.contains("id=\"store-error\""), "{body}");
        assert!(!body.contains("disk I/O error"), "the store's error stays in the log: {body}");
    }

    #[test]
    fn filters_survive_into_the_older_link() {
        let link = super::older_link("/history", &[("q", "a b&c".into()), ("kind", String::new())], "1-x");
        assert!(link.contains("href=\"/history?q=a%20b%26c&amp;before=1-x\""), "{link}");
    }

    /// The colour pairs the stylesheet puts text on, in both schemes, meet WCAG AA (4.5:1).
    #[test]
    fn console_colours_meet_aa_contrast_in_both_schemes() {
        let css = include_str!("console.css");
        let dark_at = css.find("@media (prefers-color-scheme: dark)").unwrap();
        let light = variables(&css[..dark_at]);
        let mut dark = light.clone();
        dark.extend(variables(&css[dark_at..]));
        let pairs = [
            ("text", "bg"),
            ("text", "surface"),
            ("muted", "bg"),
            ("muted", "surface"),
            ("muted", "code-bg"),
            ("link", "bg"),
            ("link", "surface"),
            ("top-text", "top-bg"),
            ("top-link", "top-bg"),
            ("on-button", "allow"),
            ("on-button", "always"),
            ("on-button", "deny"),
            ("ok-text", "ok-bg"),
            ("bad-text", "bad-bg"),
            ("off-text", "off-bg"),
            ("wait-text", "wait-bg"),
            ("info-text", "info-bg"),
            ("warn-text", "warn-bg"),
            ("crit-text", "crit-bg"),
            ("mark-text", "mark-bg"),
            ("ok-text", "surface"),
            ("bad-text", "surface"),
            ("wait-text", "bg"),
            ("off-text", "surface"),
        ];
        for (scheme, vars) in [("light", &light), ("dark", &dark)] {
            for (fg, bg) in pairs {
                let ratio = contrast(&vars[fg], &vars[bg]);
                assert!(ratio >= 4.5, "{scheme}: --{fg} on --{bg} is {ratio:.2}:1");
            }
        }
    }

    /// `--name: #rrggbb;` declarations in a piece of the stylesheet.
    fn variables(css: &str) -> std::collections::HashMap<String, String> {
        css.split(';')
            .filter_map(|decl| {
                let (name, value) = decl.trim().rsplit_once("--")?.1.split_once(':')?;
                let value = value.trim();
                (value.starts_with('#') && value.len() == 7)
                    .then(|| (name.trim().to_owned(), value.to_owned()))
            })
            .collect()
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
                if c <= 0.039_28 { c / 12.92 } else { ((c + 0.055) / 1.055).powf(2.4) }
            };
            0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }
}
