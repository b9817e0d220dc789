//! The web console in a real headless Chromium (CH-WEB-1..4): log in with a token, watch a card
//! appear live, approve it, see it leave the queue; a decision made through the API removes the
//! controls from an open detail page. A screenshot is kept under target/tmp/.

use std::{path::PathBuf, time::Instant};

use crate::{harness::Server, webdriver::Browser};

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console").join(name)
}

#[test]
fn ch_web_login_live_queue_approve_and_decisions_elsewhere() {
    let server = Server::start();
    let browser = Browser::start();

    // CH-WEB-2: the console asks for a token first.
    browser.goto(&format!("{}/", server.url));
    let field = browser.wait_for("#token");
    assert!(browser.url().ends_with("/login"), "redirected to the login page");
    browser.type_into(&field, "wrong-token");
    browser.click(&browser.wait_for("#login button"));
    assert!(browser.text(&browser.wait_for("#error")).contains("Unknown token"));
    browser.type_into(&browser.wait_for("#token"), &server.admin_token());
    browser.click(&browser.wait_for("#login button"));
    browser.wait_for("#empty");

    // CH-WEB-4: a new request shows up without a reload.
    let out = server.run(&["request", "exec", "--no-wait", "--", "terraform", "apply", "-auto-approve"]);
    assert!(out.status.success(), "{}", crate::harness::describe(&out));
    let item = browser.wait_for(".queue .item a");
    assert!(browser.text(&item).contains("terraform apply -auto-approve"));
    browser.screenshot(&artifact("queue.png"));

    // CH-WEB-3: the detail page shows the command and the controls; approving records it.
    browser.click(&item);
    let command = browser.wait_for("#command");
    assert_eq!(browser.text(&command), "terraform apply -auto-approve");
    browser.wait_for("#countdown");
    browser.screenshot(&artifact("detail.png"));
    browser.click(&browser.wait_for("button[data-decision='allow-once']"));
    browser.wait_gone("#decide");
    assert!(browser.text(&browser.wait_for("#status")).contains("approved once by console:admin"));
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
    assert!(browser.text(&browser.wait_for("#status")).contains("denied by token:admin"));
    browser.screenshot(&artifact("decided-elsewhere.png"));

    // Allow always with a narrower scope, then revoke the grant from the grants page.
    let out = server.run(&["request", "exec", "--no-wait", "--json", "--", "npm", "publish"]);
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    browser.goto(&format!("{}/a/{}", server.url, a["id"].as_str().unwrap()));
    browser.click(&browser.wait_for("#scope option:nth-child(2)"));
    browser.click(&browser.wait_for("button[data-decision='allow-always']"));
    browser.wait_gone("#decide");
    let (_, grants) = server.call("GET", "/v1/grants", None);
    assert!(grants["items"][0]["expires_at"].is_number(), "the chosen 8 h scope: {grants}");
    browser.goto(&format!("{}/grants", server.url));
    let revoke = browser.wait_for("#grants button[data-grant]");
    assert!(browser.text(&browser.wait_for("#grants code")).contains("npm publish"));
    browser.click(&revoke);
    browser.wait_gone("#grants button[data-grant]");
    let (_, grants) = server.call("GET", "/v1/grants", None);
    assert_eq!(grants["items"].as_array().map(Vec::len), Some(0), "revoked: {grants}");
    eprintln!("screenshots in {}", artifact("").display());
}
