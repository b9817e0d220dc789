//! The web console in a real headless Chromium (CH-WEB-1..4): log in with a token, watch a card
//! appear live, approve it, see it leave the queue; a decision made through the API removes the
//! controls from an open detail page. Every page is photographed at desktop and phone widths, in
//! both colour schemes, under target/tmp/console/.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    harness::{Server, exec},
    webdriver::Browser,
};

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console").join(name)
}

#[test]
fn ch_web_login_live_queue_approve_and_decisions_elsewhere() {
    let server = Server::start();
    let browser = Browser::start();

    // CH-WEB-2: the console asks for a token first.
    browser.goto(&format!("{}/", server.url));
    browser.wait_for("#token");
    assert!(browser.url().ends_with("/login"), "redirected to the login page");
    browser.type_into("#token", "wrong-token");
    browser.click("#login button");
    browser.wait_for_text("#error", "Unknown token");
    browser.type_into("#token", &server.admin_token());
    browser.click("#login button");
    browser.wait_for("#empty");

    // CH-WEB-4: a new request shows up without a reload.
    let out = server.run(&["request", "exec", "--no-wait", "--", "terraform", "apply", "-auto-approve"]);
    assert!(out.status.success(), "{}", crate::harness::describe(&out));
    browser.wait_for_text(".queue .item a", "terraform apply -auto-approve");
    browser.screenshot(&artifact("queue.png"));

    // CH-WEB-3: the detail page shows the command and the controls; approving records it.
    browser.click(".queue .item a");
    assert_eq!(browser.text("#command"), "terraform apply -auto-approve");
    browser.wait_for("#countdown");
    browser.screenshot(&artifact("detail.png"));
    browser.click("button[data-decision='allow-once']");
    browser.wait_gone("#decide");
    browser.wait_for_text("#status", "Approved once by console:admin");
    browser.goto(&format!("{}/", server.url));
    browser.wait_for("#empty");

    // A decision made through the API removes the controls of an open detail page.
    let out =
        server.run(&["request", "exec", "--no-wait", "--json", "--", "kubectl", "delete", "ns", "prod"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = a["id"].as_str().unwrap();
    browser.goto(&format!("{}/a/{id}", server.url));
    browser.wait_for("button[data-decision='deny']");
    // Let the page's event stream connect before deciding elsewhere.
    browser.wait_for("body[data-live='connected']");
    let decided = Instant::now();
    assert_eq!(server.decide(id, "deny").0, 200);
    browser.wait_gone("#decide");
    eprintln!("controls removed {} ms after the API decision", decided.elapsed().as_millis());
    browser.wait_for_text("#status", "Denied by token:admin");
    browser.screenshot(&artifact("decided-elsewhere.png"));

    // Allow always with a narrower scope, then revoke the grant from the grants page.
    let out = server.run(&["request", "exec", "--no-wait", "--json", "--", "npm", "publish"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    browser.goto(&format!("{}/a/{}", server.url, a["id"].as_str().unwrap()));
    browser.click("#scope option:nth-child(2)");
    browser.click("button[data-decision='allow-always']");
    browser.wait_gone("#decide");
    let (_, grants) = server.call("GET", "/v1/grants", None);
    assert!(grants["items"][0]["expires_at"].is_number(), "the chosen 8 h scope: {grants}");
    browser.goto(&format!("{}/grants", server.url));
    browser.wait_for_text("#grants code", "npm publish");
    browser.click("#grants button[data-grant]");
    browser.wait_gone("#grants button[data-grant]");
    let (_, grants) = server.call("GET", "/v1/grants", None);
    assert_eq!(grants["items"].as_array().map(Vec::len), Some(0), "revoked: {grants}");
    eprintln!("screenshots in {}", artifact("").display());
}

/// CH-WEB-4: a request made after the queue was read but before its event stream connected still
/// shows up, because the stream resumes from the seq the page was rendered at. The stream is held
/// back in the browser until then. (Found by CI: the stream used to start at "now", so a request made in
/// that window never appeared.)
#[test]
fn ch_web_4_a_request_made_while_the_page_connects_still_appears() {
    let server = Server::start();
    let browser = Browser::start();
    log_in(&browser, &server);
    browser.hold_requests("*/v1/events*");
    browser.goto(&format!("{}/", server.url));
    browser.wait_for("#empty");
    let out = server.run(&["request", "exec", "--no-wait", "--", "terraform", "apply"]);
    assert!(out.status.success(), "{}", crate::harness::describe(&out));
    assert!(browser.find("body[data-live='connected']").is_none(), "the stream was held back");
    browser.release_requests();
    browser.wait_for("body[data-live='connected']");
    browser.wait_for_text(".queue .item a", "terraform apply");
}

/// A console left open across a server restart says that its live updates are lost while the
/// server is down, then sends the user to log in again: sessions do not survive a restart.
#[test]
fn ch_web_4_a_console_open_across_a_restart_says_so_and_asks_to_log_in_again() {
    let mut server = Server::start();
    let browser = Browser::start();
    log_in(&browser, &server);
    browser.goto(&format!("{}/", server.url));
    browser.wait_for("body[data-live='connected']");
    server.kill();
    browser.wait_for_text("#live-lost", "Live updates lost");
    let _server = server.restart();
    // The browser's own retry, then the console's, each about 3 s apart.
    browser.wait_for_up_to("#token", Duration::from_secs(30));
    assert!(browser.url().ends_with("/login"), "{}", browser.url());
}

/// CH-WEB-4: each event re-reads the page's section, and the answers can arrive in any order; an
/// answer older than the one on the page is dropped. Here the page's re-read of a pending approval
/// is answered ("pending", with the controls) only after the approval was denied elsewhere and the
/// page showed it. (The late answer used to win and bring back the controls of a decided request.)
#[test]
fn ch_web_4_a_late_answer_never_paints_an_older_state_over_a_newer_one() {
    let server = Server::start();
    let browser = Browser::start();
    log_in(&browser, &server);
    let out =
        server.run(&["request", "exec", "--no-wait", "--json", "--", "kubectl", "delete", "ns", "prod"]);
    let a: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = a["id"].as_str().unwrap();
    browser.goto(&format!("{}/a/{id}", server.url));
    browser.wait_for("body[data-live='connected']");
    browser.script(HOLD_THE_NEXT_ANSWER);
    browser.wait_for_script("the held re-read to be answered", "return window.heldAnswer === true;");
    assert_eq!(server.decide(id, "deny").0, 200);
    browser.wait_for_text("#status", "Denied by token:admin");
    browser.script("window.releaseHeldAnswer();");
    browser.wait_for_script("the held answer to land", "return window.heldAnswerLanded === true;");
    assert!(browser.find("#decide").is_none(), "the late answer brought the controls back");
    assert!(browser.text("#status").contains("Denied by token:admin"), "{}", browser.text("#status"));
}

/// Starts a re-read of the detail page's live section. Once the server has answered, the answer
/// is held in the page until `releaseHeldAnswer()`.
const HOLD_THE_NEXT_ANSWER: &str = r#"
const real = window.fetch;
window.fetch = async (url, init) => {
  window.fetch = real;
  const answer = await real(url, init);
  const body = await answer.text();
  const held = new Promise((release) => { window.releaseHeldAnswer = release; });
  window.heldAnswer = true;
  await held;
  return new Response(body, { status: answer.status, headers: answer.headers });
};
refresh(document.getElementById("detail")).then(() => { window.heldAnswerLanded = true; });
"#;

/// Logs `browser` in with the server's admin token.
fn log_in(browser: &Browser, server: &Server) {
    browser.goto(&format!("{}/login", server.url));
    browser.type_into("#token", &server.admin_token());
    browser.click("#login button");
    browser.wait_for("header nav");
}

/// What the screenshot test looks at: every kind of approval, pending and decided, and a grant.
struct Seeded {
    /// A command hiding a right-to-left override.
    disguised: String,
    /// A critical plugin action that needs two approvals.
    critical: String,
    binding: String,
    denied: String,
}

fn seed(server: &Server) -> Seeded {
    let mut body = exec(&["cp", "invoice\u{202E}fdp.exe", "/srv/www/downloads/"]);
    body["agent_id"] = json!("claude-code");
    body["session_key"] = json!("session-7f3a");
    let (disguised, _) = server.create(body);
    let plugin = json!({ "kind": "plugin", "agent_id": "release-agent", "plugin": {
        "plugin_id": "deploybot", "title": "Deploy web to production", "severity": "critical",
        "description": "Rolls out build 8812 to all 12 production hosts", "tool_name": "deploy" } });
    let (critical, _) = server.create(plugin);
    let (status, answer) = server.call("POST", "/v1/bindings", Some(json!({
        "plugin": { "id": "standup-bot", "name": "Standup bot", "root": "/opt/plugins/standup" },
        "conversation": { "channel": "telegram", "account": "main", "conversation": "-1001234", "thread": "42" },
        "summary": "Runs the daily standup in this group", "detach_hint": "/standup stop",
        "requested_by": "telegram:1001"
    })));
    assert_eq!(status, 201, "{answer}");
    let binding = answer["approval"]["id"].as_str().unwrap().to_owned();
    let mut long =
        exec(&["terraform", "apply", "-auto-approve", "-var", "region=eu-west-1", "-var-file=prod.tfvars"]);
    long["agent_id"] = json!("claude-code");
    let (approved, _) = server.create(long);
    assert_eq!(server.decide(&approved, "allow-once").0, 200);
    let (always, _) = server.create(exec(&["npm", "publish", "--access", "public"]));
    assert_eq!(server.decide(&always, "allow-always").0, 200);
    let (denied, _) = server.create(exec(&["rm", "-rf", "/var/lib/postgresql"]));
    let (_, a) = server.call("GET", &format!("/v1/approvals/{denied}"), None);
    let (status, _) = server.call(
        "POST",
        &format!("/v1/approvals/{denied}/resolve"),
        Some(json!({ "kind": a["kind"], "decision": "deny", "reason": "not on the production database" })),
    );
    assert_eq!(status, 200);
    Seeded { disguised, critical, binding, denied }
}

const PHONE: u32 = 390;
const DESKTOP: u32 = 1280;

fn server_with_quorum() -> Server {
    Server::with_config("[[policy]]\nname = \"two\"\nmatch = { kind = \"plugin\" }\nquorum = 2\n")
}

#[test]
fn ch_web_every_page_is_photographed_at_desktop_and_phone_widths_without_sideways_scrolling() {
    let server = server_with_quorum();
    let seeded = seed(&server);
    let browser = Browser::start();
    let pages: Vec<(&str, String, &str)> = vec![
        ("queue", "/".to_owned(), ".queue .item"),
        ("detail-disguised", format!("/a/{}", seeded.disguised), "#suspicious"),
        ("detail-critical", format!("/a/{}", seeded.critical), "#quorum"),
        ("detail-binding", format!("/a/{}", seeded.binding), "#decide"),
        ("detail-denied", format!("/a/{}", seeded.denied), "#status"),
        ("history", "/history".to_owned(), "#history"),
        ("history-filtered", "/history?status=denied&q=postgresql".to_owned(), "#history"),
        ("audit", "/audit".to_owned(), "#audit"),
        ("grants", "/grants".to_owned(), "#grants button[data-grant]"),
        ("accounts", "/accounts".to_owned(), "#accounts"),
    ];
    for (scheme, widths) in [("light", &[DESKTOP, PHONE][..]), ("dark", &[DESKTOP, PHONE][..])] {
        browser.color_scheme(scheme);
        for &width in widths {
            browser.viewport(width, 900, width == PHONE);
            browser.goto(&format!("{}/login", server.url));
            browser.wait_for("#token");
            shoot(&browser, &format!("{scheme}-{width}/login.png"), width);
            log_in(&browser, &server);
            for (name, path, ready) in &pages {
                browser.goto(&format!("{}{path}", server.url));
                browser.wait_for(ready);
                shoot(&browser, &format!("{scheme}-{width}/{name}.png"), width);
            }
            browser.click("#logout");
            browser.wait_for("#token");
        }
    }
    eprintln!("screenshots in {}", artifact("").display());
}

/// Saves a screenshot after checking the page fits `width` with no sideways scrolling.
fn shoot(browser: &Browser, name: &str, width: u32) {
    let layout = browser.script(
        "return { inner: window.innerWidth, scroll: document.documentElement.scrollWidth, url: location.pathname };",
    );
    assert_eq!(layout["inner"], json!(width), "the emulated width: {layout}");
    assert!(layout["scroll"].as_u64() <= layout["inner"].as_u64(), "{name} scrolls sideways: {layout}");
    browser.screenshot(&artifact(name));
}

#[test]
fn ch_web_the_detail_page_makes_a_disguised_or_critical_request_obvious() {
    let server = server_with_quorum();
    let seeded = seed(&server);
    let browser = Browser::start();
    log_in(&browser, &server);

    browser.goto(&format!("{}/a/{}", server.url, seeded.disguised));
    let warning = browser.text("#suspicious");
    assert!(warning.contains("U+202E (changes text direction)"), "{warning}");
    assert_eq!(browser.text("#command mark.escaped"), "\\u{202E}");
    let title = browser.text("#title");
    assert_eq!(title, "Run a command", "no repeated \"Approval needed\"");
    let fields = browser.text("dl.fields");
    for expected in ["claude-code", "session-7f3a", "token:admin"] {
        assert!(fields.contains(expected), "{expected} in {fields}");
    }

    browser.goto(&format!("{}/a/{}", server.url, seeded.critical));
    assert_eq!(browser.text(".detail-head .sev-critical"), "Critical");
    browser.wait_for_text("#quorum", "0 of 2 approvals");

    browser.goto(&format!("{}/a/{}", server.url, seeded.binding));
    let fields = browser.text("dl.fields");
    for expected in ["telegram:1001", "-1001234", "42", "/standup stop"] {
        assert!(fields.contains(expected), "{expected} in {fields}");
    }

    browser.goto(&format!("{}/a/{}", server.url, seeded.denied));
    browser.wait_gone("#decide");
    let status = browser.text("#status");
    assert!(status.starts_with("Denied by token:admin: not on the production database"), "{status}");
    assert_eq!(browser.text(".detail-head .status-denied"), "Denied");

    // The queue says what each item is, who asked and how long is left.
    browser.goto(&format!("{}/", server.url));
    let item = browser.text(&format!(".queue .item[data-id='{}']", seeded.critical));
    for expected in [
        "Plugin action",
        "Critical",
        "Deploy web to production",
        "release-agent",
        "Expires in",
        "0 of 2 approvals",
    ] {
        assert!(item.contains(expected), "{expected} in {item}");
    }
}

#[test]
fn ch_web_history_filters_searches_and_pages() {
    let server = Server::start();
    // 60 decided: every sixth denied (10), so exactly one page (50) approved.
    for i in 0..60 {
        let (id, _) = server.create(exec(&["echo", &format!("job-{i}")]));
        assert_eq!(server.decide(&id, if i % 6 == 0 { "deny" } else { "allow-once" }).0, 200);
    }
    let browser = Browser::start();
    log_in(&browser, &server);
    browser.goto(&format!("{}/history", server.url));
    browser.wait_for("#history");
    let rows = |b: &Browser| b.script("return document.querySelectorAll('#history tbody tr').length;");
    assert_eq!(rows(&browser), json!(50), "one page");
    assert!(browser.text("#history tbody tr").contains("job-59"), "newest first");
    browser.click("#older");
    browser.wait_for("#history");
    assert_eq!(rows(&browser), json!(10), "the rest");
    assert!(browser.find("#older").is_none());

    // A page that is exactly full offers no "Older" leading nowhere.
    browser.goto(&format!("{}/history?status=approved", server.url));
    browser.wait_for("#history");
    assert_eq!(rows(&browser), json!(50), "every approved one");
    assert!(browser.find("#older").is_none(), "nothing older is approved");

    browser.goto(&format!("{}/history", server.url));
    browser.click("#f-status option[value='denied']");
    browser.type_into("#f-q", "job-1");
    browser.click(".filters button");
    browser.wait_for("#history");
    let shown = browser.text("#history tbody");
    assert_eq!(rows(&browser), json!(2), "job-12 and job-18: {shown}");
    assert!(shown.contains("job-18") && shown.contains("job-12") && shown.contains("Denied"), "{shown}");
    assert!(browser.url().contains("status=denied"), "filters are in the URL: {}", browser.url());

    // A hand-edited link says what is wrong with it instead of showing something else.
    for (path, named) in [
        ("/history?before=yesterday", "before=yesterday"),
        ("/history?status=maybe", "status=maybe"),
        ("/history?status=pending", "Pending page"),
        ("/history?kind=shell", "kind=shell"),
        ("/audit?before=abc", "before=abc"),
    ] {
        browser.goto(&format!("{}{path}", server.url));
        let error = browser.text("#filter-error");
        assert!(error.contains(named), "{path}: {error}");
        assert!(browser.find("#history, #audit").is_none(), "{path} shows no list");
    }

    // The audit log narrows to one approval, with times, actor and decision.
    let (_, first) = server.call("GET", "/v1/approvals?status=denied&limit=1", None);
    let reference = first["items"][0]["ref"].as_str().unwrap().to_owned();
    browser.goto(&format!("{}/audit?approval={reference}", server.url));
    let audit = browser.text("#audit tbody");
    for expected in ["requested", "decided", "token:admin", "deny"] {
        assert!(audit.contains(expected), "{expected} in {audit}");
    }
    assert!(!audit.contains("redacted"), "a requester is no secret: {audit}");
    assert!(browser.find("#audit tbody tr time[datetime]").is_some(), "each row has its time");
    assert_eq!(
        browser.script("return document.querySelectorAll('#audit tbody tr').length;"),
        json!(2),
        "{audit}"
    );
}

#[test]
fn ch_web_the_phone_layout_reaches_every_navigation_link() {
    let server = Server::start();
    let browser = Browser::start();
    browser.viewport(PHONE, 844, true);
    log_in(&browser, &server);
    let links: Value = browser.script(
        "return [...document.querySelectorAll('header nav a, #logout')].map(e => { \
           const r = e.getBoundingClientRect(); \
           return { href: e.getAttribute('href'), left: r.left, right: r.right, top: r.top, \
                    bottom: r.bottom, hit: document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2) === e \
                      || e.contains(document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2)) }; });",
    );
    let links = links.as_array().unwrap();
    assert_eq!(links.len(), 6, "five pages and log out: {links:?}");
    for l in links {
        let inside = l["left"].as_f64() >= Some(0.0)
            && l["right"].as_f64() <= Some(f64::from(PHONE))
            && l["bottom"].as_f64() <= Some(844.0);
        assert!(inside && l["hit"] == true, "reachable on a phone: {l}");
    }
    for path in ["/history", "/grants", "/audit", "/accounts", "/"] {
        browser.click(&format!("header nav a[href='{path}']"));
        browser.wait_for(&format!("header nav a[href='{path}'][aria-current='page']"));
        assert!(browser.url().ends_with(path), "{} for {path}", browser.url());
    }
    browser.click("#logout");
    browser.wait_for("#token");
}
