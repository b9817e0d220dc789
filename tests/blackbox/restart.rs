//! NF-7 / CLI: a requester waiting in `assent request` survives a crash and restart of the
//! server, and the decision made after the restart reaches it.

use std::process::Stdio;

use crate::harness::{Server, describe, lossy_proxy};

#[test]
fn a_waiting_requester_survives_a_server_kill_and_gets_the_later_decision() {
    let server = Server::start();
    let requester = server
        .cli()
        .args(["request", "exec", "--", "systemctl", "restart", "nginx"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = server.one_pending();
    let mut server = server;
    server.kill();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let server = server.restart();
    let after = server.one_pending();
    assert_eq!(after["id"], before["id"], "the same approval is still pending after kill -9");
    assert_eq!(server.decide(after["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

/// The server records the request and stops before its answer reaches `assent request` (the
/// proxy drops it). The requester asks again with the same idempotency key, waits on the approval
/// the server already recorded, and gets its decision; no second approval is made.
#[test]
fn a_requester_whose_answer_was_lost_asks_again_and_waits_on_the_same_approval() {
    let server = Server::start();
    let proxy = lossy_proxy(&server.url);
    let requester = server
        .cli()
        .env("ASSENT_URL", &proxy)
        .args(["request", "exec", "--", "systemctl", "restart", "nginx"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pending = server.one_pending();
    assert_eq!(server.decide(pending["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = requester.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("asking again"), "{}", describe(&out));
    let (_, all) = server.call("GET", "/v1/approvals", None);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "one approval, not two: {all}");
}
