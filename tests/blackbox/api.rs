//! The HTTP API's guard rails: authentication, scopes, malformed and oversized input (API-1,
//! API-3). Every refused request must leave the store unchanged.

use serde_json::json;

use crate::harness::{Server, describe};

fn exec_body() -> serde_json::Value {
    json!({ "kind": "exec", "exec": { "argv": ["ls", "-la"] } })
}

fn count(server: &Server) -> usize {
    let (_, body) = server.call("GET", "/v1/approvals", None);
    body["items"].as_array().map_or(0, Vec::len)
}

#[test]
fn api_1_missing_and_unknown_tokens_are_unauthenticated() {
    let server = Server::start();
    let (status, body) = server.call_as(None, "POST", "/v1/approvals", Some(exec_body()));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let (status, body) = server.call_as(Some("not-a-token"), "POST", "/v1/approvals", Some(exec_body()));
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    assert_eq!(count(&server), 0, "nothing stored");
}

#[test]
fn api_3_malformed_bodies_name_what_is_wrong_and_store_nothing() {
    let server = Server::start();
    let (status, body) = server.post_raw("/v1/approvals", "application/json", b"{\"kind\": \"exec\", ");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, body) =
        server.call("POST", "/v1/approvals", Some(json!({ "kind": "exec", "exec": { "argv": [] } })));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("argv"), "names the field: {body}");
    let (status, body) =
        server.call("POST", "/v1/approvals", Some(json!({ "kind": "launch", "exec": { "argv": ["ls"] } })));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "unknown kind: {body}"
    );
    let (status, body) = server.call(
        "POST",
        "/v1/approvals",
        Some(json!({ "kind": "exec", "exec": { "argv": ["ls"] }, "colour": 1 })),
    );
    assert_eq!(status, 400, "unknown field: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("colour"), "{body}");
    let (status, body) = server.call(
        "POST",
        "/v1/approvals",
        Some(json!({ "kind": "exec", "exec": { "argv": ["ls"] }, "timeout": 3 })),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("timeout_out_of_range")), "{body}");
    assert_eq!(count(&server), 0, "nothing stored");
}

#[test]
fn api_3_oversized_bodies_are_payload_too_large() {
    let server = Server::start();
    let big = json!({ "kind": "exec", "exec": { "argv": ["echo", "x".repeat(70 * 1024)] } });
    let (status, body) = server.post_raw("/v1/approvals", "application/json", big.to_string().as_bytes());
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("payload_too_large")), "{body}");
    assert_eq!(count(&server), 0, "nothing stored");
}

#[test]
fn api_1_a_request_token_sees_only_its_own_approvals_and_cannot_decide() {
    let token = "request-token-for-tests-0123456789";
    let hash = {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let config = format!("[[tokens]]\nname = \"ci\"\nsha256 = \"{hash}\"\nscopes = [\"request\"]\n");
    let server = Server::with_config(&config);
    // No configured token can approve, so the first-run admin token stays (issue 14, item 1).
    assert!(server.data_dir().join("admin.token").exists(), "nobody is locked out");
    let (status, mine) = server.call_as(Some(token), "POST", "/v1/approvals", Some(exec_body()));
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["requester"], "token:ci");
    let id = mine["id"].as_str().unwrap();
    let (status, body) = server.call_as(
        Some(token),
        "POST",
        &format!("/v1/approvals/{id}/resolve"),
        Some(json!({ "kind": "exec", "decision": "allow-once" })),
    );
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
    let (status, list) = server.call_as(Some(token), "GET", "/v1/approvals", None);
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (status, body) = server.call_as(Some(token), "GET", "/v1/audit", None);
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{body}");
}

#[test]
fn api_health_ready_and_metrics() {
    let server = Server::start();
    let (status, body) = server.call_as(None, "GET", "/v1/health", None);
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = server.call_as(None, "GET", "/v1/ready", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store"], true);
    assert_eq!(body["console_is_route"], true, "the embedded default routes to the console");
    for argv in [["ls"], ["pwd"]] {
        let out = server.run(&["request", "exec", "--no-wait", "--", argv[0]]);
        assert!(out.status.success(), "{}", describe(&out));
    }
    // One decision, and one that comes too late (IX-8): both are counted.
    let id = server.pending().pop().unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(server.decide(&id, "deny").0, 200);
    assert_eq!(server.decide(&id, "allow-once").0, 409);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text =
        agent.get(format!("{}/metrics", server.url)).call().unwrap().body_mut().read_to_string().unwrap();
    for metric in [
        "assent_pending 1",
        "assent_requests_total 2",
        "assent_finalize_backlog 0",
        "assent_callback_failures_total 0",
        "assent_interactions_total{result=\"accepted\"} 1",
        "assent_interactions_total{result=\"already_resolved\"} 1",
        "assent_interactions_total{result=\"unauthorized\"} 0",
    ] {
        assert!(text.contains(metric), "{metric} in {text}");
    }
    let (status, doc) = server.call_as(None, "GET", "/v1/openapi.json", None);
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
}

/// Reads SSE frames from `/v1/events` until `n` events arrived; returns their (id, type).
fn read_events(url: &str, token: &str, last_event_id: Option<u64>, n: usize) -> Vec<(u64, String)> {
    use std::io::BufRead;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = agent.get(format!("{url}/v1/events")).header("authorization", format!("Bearer {token}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    let response = req.call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let reader = std::io::BufReader::new(response.into_body().into_reader());
    let (mut out, mut id, mut kind) = (Vec::new(), 0, String::new());
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
            id = v.trim().parse().unwrap();
        } else if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
            kind = v.trim().to_owned();
        } else if line.is_empty() && id > 0 {
            out.push((id, std::mem::take(&mut kind)));
            id = 0;
            if out.len() == n {
                break;
            }
        }
    }
    out
}

#[test]
fn api_4_events_resume_after_last_event_id_without_gaps() {
    let server = Server::start();
    for cmd in ["one", "two"] {
        assert!(server.run(&["request", "exec", "--no-wait", "--", "echo", cmd]).status.success());
    }
    let a = server.pending().pop().unwrap();
    assert_eq!(server.decide(a["id"].as_str().unwrap(), "deny").0, 200);
    // From the start: every event in order, seq without gaps.
    let (url, token) = (server.url.clone(), server.admin_token());
    let all = read_events(&url, &token, Some(0), 3);
    assert_eq!(all.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3], "{all:?}");
    assert_eq!(all[0].1, "approval.requested");
    assert_eq!(all[2].1, "approval.denied");
    // Resuming after 1 replays 2 and 3, then follows live events.
    let reader = std::thread::spawn(move || read_events(&url, &token, Some(1), 3));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(server.run(&["request", "exec", "--no-wait", "--", "echo", "three"]).status.success());
    let resumed = reader.join().unwrap();
    assert_eq!(resumed.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 3, 4], "{resumed:?}");
    assert_eq!(resumed[2].1, "approval.requested", "the live event follows the replay");
}

#[test]
fn api_4_websocket_events_resume_with_since() {
    use tungstenite::client::IntoClientRequest;
    let server = Server::start();
    assert!(server.run(&["request", "exec", "--no-wait", "--", "echo", "one"]).status.success());
    let mut request = format!("{}/v1/events/ws?since=0", server.url.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", server.admin_token()).parse().unwrap());
    let (mut socket, _) = tungstenite::connect(request).unwrap();
    let mut next = || loop {
        if let tungstenite::Message::Text(t) = socket.read().unwrap() {
            return serde_json::from_str::<serde_json::Value>(&t).unwrap();
        }
    };
    let first = next();
    assert_eq!(
        (first["seq"].as_u64(), first["type"].as_str()),
        (Some(1), Some("approval.requested")),
        "{first}"
    );
    assert!(first.to_string().contains("echo one"), "redacted display text only: {first}");
    assert!(server.run(&["request", "exec", "--no-wait", "--", "echo", "two"]).status.success());
    let second = next();
    assert_eq!(second["seq"].as_u64(), Some(2), "{second}");
    let (status, body) = server.call_as(None, "GET", "/v1/events/ws", None);
    assert_eq!(status, 401, "{body}");
}

#[test]
fn bd_a_binding_is_approved_then_owned_then_detached_by_its_root() {
    let server = Server::start();
    let request = json!({
        "plugin": { "id": "standup-bot", "name": "Standup bot", "root": "/opt/plugins/standup" },
        "conversation": { "channel": "telegram", "account": "main", "conversation": "-1001234" },
        "summary": "Runs the daily standup in this group"
    });
    let (status, answer) = server.call("POST", "/v1/bindings", Some(request.clone()));
    assert_eq!((status, answer["status"].as_str()), (201, Some("pending")), "{answer}");
    let query = "channel=telegram&account=main&conversation=-1001234";
    let (status, _) = server.call("GET", &format!("/v1/bindings?{query}"), None);
    assert_eq!(status, 404, "BD-5: nothing is bound before the decision");
    assert_eq!(server.decide(answer["approval"]["id"].as_str().unwrap(), "allow-once").0, 200);
    let (status, binding) = server.call("GET", &format!("/v1/bindings?{query}"), None);
    assert_eq!(status, 200, "{binding}");
    assert_eq!(binding["plugin"]["root"], "/opt/plugins/standup");
    // BD-1: another install asking for the same conversation is told who owns it.
    let mut other = request.clone();
    other["plugin"]["root"] = json!("/opt/plugins/other");
    let (status, body) = server.call("POST", "/v1/bindings", Some(other));
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("conversation_bound")), "{body}");
    // BD-7: the owning root detaches; a second detach is a no-op.
    let detach = format!("/v1/bindings?{query}&plugin_root=/opt/plugins/standup");
    assert_eq!(server.call("DELETE", &detach, None).1["removed"], true);
    assert_eq!(server.call("DELETE", &detach, None).1["removed"], false);
    let (status, body) = server.call("POST", "/v1/bindings", Some(json!({ "plugin": {}, "summary": "" })));
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
}

#[test]
fn nf_12_finding_5_guessing_is_rate_limited_but_known_tokens_still_pass() {
    let server = Server::start();
    for _ in 0..10 {
        let (status, _) = server.call_as(Some("guess"), "GET", "/v1/approvals", None);
        assert_eq!(status, 401);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .get(format!("{}/v1/approvals", server.url))
        .header("authorization", "Bearer another-guess")
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 429, "the next guess waits out the window");
    let retry: u64 = response.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: serde_json::Value = response.body_mut().read_json().unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let (status, body) = server.call("GET", "/v1/approvals", None);
    assert_eq!(status, 200, "a legitimate client behind the same address is not locked out: {body}");
}
