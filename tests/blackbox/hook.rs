//! `assent hook claude-code` with realistic Claude Code payloads (CLI-6): decisions come back
//! in the host's format, and anything odd is a deny (fail closed).

use std::process::Stdio;

use serde_json::{Value, json};

use crate::harness::{Server, describe, feed, lossy_proxy};

fn spawn_hook(server: &Server, payload: &[u8]) -> std::thread::JoinHandle<std::process::Output> {
    spawn_hook_at(server, &server.url, payload)
}

/// The hook, talking to the server at `url` (the server itself, or a proxy to it).
fn spawn_hook_at(
    server: &Server,
    url: &str,
    payload: &[u8],
) -> std::thread::JoinHandle<std::process::Output> {
    let child = server
        .cli()
        .env("ASSENT_URL", url)
        .args(["hook", "claude-code", "--timeout", "30s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let payload = payload.to_vec();
    std::thread::spawn(move || feed(child, &payload))
}

fn answer(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(out)))
}

#[test]
fn cli_6_pre_tool_use_bash_becomes_an_exec_approval_and_allow_comes_back() {
    let server = Server::start();
    let payload = json!({
        "session_id": "9f1c2d7e-5b8a-4c3e-a1f0-3d2b6e8c9a71",
        "transcript_path": "/home/kim/.claude/projects/-home-kim-shop/9f1c2d7e.jsonl",
        "cwd": "/home/kim/shop",
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": { "command": "git push --force origin main", "description": "Force-push main" },
        "tool_use_id": "toolu_01XyZ"
    });
    let hook = spawn_hook(&server, payload.to_string().as_bytes());
    let a = server.one_pending();
    assert_eq!(a["kind"], "exec");
    assert!(a["text"].as_str().unwrap().contains("git push --force origin main"), "{a}");
    assert!(a["fields"].to_string().contains("/home/kim/shop"), "cwd is shown: {a}");
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = answer(&hook.join().unwrap());
    assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PreToolUse");
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "allow", "{out}");
}

/// The server records the hook's request but its answer is lost (a restart): the hook asks
/// again with the same idempotency key and still brings the decision back; one approval only.
#[test]
fn cli_6_a_lost_answer_is_asked_again_and_the_decision_still_comes_back() {
    let server = Server::start();
    let proxy = lossy_proxy(&server.url);
    let payload = json!({
        "session_id": "9f1c2d7e-5b8a-4c3e-a1f0-3d2b6e8c9a71",
        "cwd": "/home/kim/shop",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": { "command": "terraform apply" },
        "tool_use_id": "toolu_01Lost"
    });
    let hook = spawn_hook_at(&server, &proxy, payload.to_string().as_bytes());
    let a = server.one_pending();
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "allow-once").0, 200);
    let out = hook.join().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("asking again"), "{}", describe(&out));
    let out = answer(&out);
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "allow", "{out}");
    let (_, all) = server.call("GET", "/v1/approvals", None);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "one approval, not two: {all}");
}

#[test]
fn cli_6_permission_request_for_another_tool_is_a_plugin_approval_and_deny_comes_back() {
    let server = Server::start();
    let payload = json!({
        "session_id": "9f1c2d7e-5b8a-4c3e-a1f0-3d2b6e8c9a71",
        "transcript_path": "/home/kim/.claude/projects/-home-kim-shop/9f1c2d7e.jsonl",
        "cwd": "/home/kim/shop",
        "permission_mode": "default",
        "hook_event_name": "PermissionRequest",
        "tool_name": "Write",
        "tool_input": { "file_path": "/home/kim/shop/.env", "content": "STRIPE_KEY=sk_live_51Habcdefghijklmnopqrstuv" }
    });
    let hook = spawn_hook(&server, payload.to_string().as_bytes());
    let a = server.one_pending();
    assert_eq!(a["kind"], "plugin");
    assert_eq!(a["title"].as_str().map(|t| t.contains("Use Write")), Some(true), "{a}");
    assert!(
        !a.to_string().contains("sk_live_51Habcdefghijklmnopqrstuv"),
        "the input summary is redacted: {a}"
    );
    let (status, body) = server.decide(a["id"].as_str().unwrap(), "deny");
    assert_eq!(status, 200, "{body}");
    let out = answer(&hook.join().unwrap());
    let decision = &out["hookSpecificOutput"]["decision"];
    assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PermissionRequest");
    assert_eq!(decision["behavior"], "deny", "{out}");
    assert!(decision["message"].as_str().unwrap().contains("denied"), "{out}");
}

#[test]
fn cli_6_garbage_input_is_denied_without_asking_anyone() {
    let server = Server::start();
    let out = answer(&spawn_hook(&server, b"this is not json {").join().unwrap());
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny", "{out}");
    let out = answer(&spawn_hook(&server, br#"{"hook_event_name":"PreToolUse"}"#).join().unwrap());
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny", "no tool_name: {out}");
    assert!(server.pending().is_empty(), "nothing was asked");
}

#[test]
fn cli_6_an_unreachable_server_is_a_deny() {
    let server = Server::start();
    let child = server
        .cli()
        .env("ASSENT_URL", "http://127.0.0.1:9")
        .args(["hook", "claude-code"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let payload =
        json!({ "hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": { "command": "ls" } });
    let out = answer(&feed(child, payload.to_string().as_bytes()));
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny", "{out}");
}

/// Every approval the server has, whatever its status.
fn every_approval(server: &Server) -> Vec<Value> {
    let (status, body) = server.call("GET", "/v1/approvals", None);
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[test]
fn cli_6_malformed_or_unsupported_payloads_are_answered_at_once_without_a_card() {
    let server = Server::start();
    let out = answer(
        &spawn_hook(&server, br#"{"hook_event_name":"PreToolUse","tool_name":"Bash"}"#).join().unwrap(),
    );
    assert_eq!(out["hookSpecificOutput"]["permissionDecision"], "deny", "{out}");
    assert!(
        out["hookSpecificOutput"]["permissionDecisionReason"].as_str().unwrap().contains("tool_input"),
        "{out}"
    );
    let empty = json!({ "hook_event_name": "PermissionRequest", "tool_name": "Bash", "tool_input": { "command": " " } });
    let out = answer(&spawn_hook(&server, empty.to_string().as_bytes()).join().unwrap());
    assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PermissionRequest", "{out}");
    assert_eq!(out["hookSpecificOutput"]["decision"]["behavior"], "deny", "{out}");
    let after = json!({ "hook_event_name": "PostToolUse", "tool_name": "Bash",
        "tool_input": { "command": "ls" }, "tool_response": { "stdout": "a\nb" } });
    let out = answer(&spawn_hook(&server, after.to_string().as_bytes()).join().unwrap());
    assert!(out.get("hookSpecificOutput").is_none(), "no PreToolUse answer to a PostToolUse: {out}");
    assert!(out["systemMessage"].as_str().unwrap().contains("PostToolUse"), "{out}");
    assert!(every_approval(&server).is_empty(), "no card was made");
}

#[test]
fn cli_6_write_and_edit_cards_show_the_file_and_the_change() {
    let server = Server::start();
    let write = json!({ "hook_event_name": "PreToolUse", "cwd": "/home/kim/shop", "tool_name": "Write",
        "tool_input": { "file_path": "/home/kim/shop/.env", "content": "DEBUG=1\nPORT=8080" } });
    let hook = spawn_hook(&server, write.to_string().as_bytes());
    let a = server.one_pending();
    let text = a.to_string();
    assert!(text.contains("/home/kim/shop/.env") && text.contains("PORT=8080"), "{a}");
    assert!(!text.contains("file_path"), "not a JSON blob: {a}");
    assert!(text.contains("in /home/kim/shop"), "the working directory: {a}");
    server.decide(a["id"].as_str().unwrap(), "deny");
    answer(&hook.join().unwrap());
    let edit = json!({ "hook_event_name": "PreToolUse", "tool_name": "Edit",
        "tool_input": { "file_path": "/srv/app.py", "old_string": "debug = True", "new_string": "debug = False" } });
    let hook = spawn_hook(&server, edit.to_string().as_bytes());
    let a = server.one_pending();
    let text = a.to_string();
    assert!(
        text.contains("/srv/app.py") && text.contains("- debug = True") && text.contains("+ debug = False"),
        "{a}"
    );
    server.decide(a["id"].as_str().unwrap(), "deny");
    answer(&hook.join().unwrap());
}
