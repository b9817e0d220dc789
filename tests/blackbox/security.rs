//! Regression tests for the holes found by attacking the binary (issue 9). Each test is named
//! after its finding and failed on the code before the fix.

use serde_json::{Value, json};

use crate::harness::{Server, describe};

/// A token of each role, configured in assent.toml.
pub(crate) struct Roles {
    pub(crate) request: String,
    pub(crate) request2: String,
    pub(crate) approve: String,
    pub(crate) admin: String,
    pub(crate) metrics: String,
}

/// A server whose `[[tokens]]` hold one token per role, plus `extra` config.
pub(crate) fn server_with_roles(extra: &str) -> (Server, Roles) {
    let setup = Server::start();
    let mut config = String::new();
    let mut token = |name: &str, scope: &str| {
        let out = setup.run(&["--json", "token", "new", "--name", name, "--scope", scope]);
        assert!(out.status.success(), "{}", describe(&out));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        config.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nscopes = [\"{scope}\"]\n\n",
            v["sha256"].as_str().unwrap()
        ));
        v["token"].as_str().unwrap().to_owned()
    };
    let roles = Roles {
        request: token("req", "request"),
        request2: token("req2", "request"),
        approve: token("app", "approve"),
        admin: token("adm", "admin"),
        metrics: token("met", "metrics"),
    };
    drop(setup);
    config.push_str(extra);
    (Server::with_config(&config), roles)
}

/// Creates an exec approval for `argv` as `token` and returns its view.
pub(crate) fn create_exec(server: &Server, token: &str, argv: &[&str]) -> Value {
    let body = json!({ "kind": "exec", "exec": { "argv": argv, "host": "h1" } });
    let (status, view) = server.call_as(Some(token), "POST", "/v1/approvals", Some(body));
    assert_eq!(status, 201, "{view}");
    view
}

fn resolve(server: &Server, token: &str, id: &str, decision: &str) -> (u16, Value) {
    let body = json!({ "kind": "exec", "decision": decision });
    server.call_as(Some(token), "POST", &format!("/v1/approvals/{id}/resolve"), Some(body))
}

fn has_raw_controls(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n' || matches!(c, '\u{202e}' | '\u{200b}'))
}

#[test]
fn finding_7_grant_listings_escape_terminal_and_display_controls() {
    let (server, roles) = server_with_roles("");
    let argv = ["echo", "\u{1b}[2J", "gnp.\u{202e}exe", "a\u{200b}b"];
    let a = create_exec(&server, &roles.request, &argv);
    let (status, body) = resolve(&server, &roles.approve, a["id"].as_str().unwrap(), "allow-always");
    assert_eq!(status, 200, "{body}");

    let (status, grants) = server.call_as(Some(&roles.approve), "GET", "/v1/grants", None);
    assert_eq!(status, 200, "{grants}");
    let subject = grants["items"][0]["subject"].as_str().unwrap();
    assert!(!has_raw_controls(subject), "API subject is raw: {subject:?}");
    assert!(subject.contains("\\u{202E}") || subject.contains("\\u{202e}"), "escaped visibly: {subject:?}");
    assert!(grants["items"][0]["scope"].as_str().unwrap().contains("host: h1"), "{grants}");

    let out = server.run(&["--token", &roles.approve, "grants", "list"]);
    assert!(out.status.success(), "{}", describe(&out));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(!has_raw_controls(&printed), "the CLI printed raw controls: {printed:?}");
}

#[test]
fn finding_4_a_metrics_token_cannot_detach_bindings() {
    let (server, roles) = server_with_roles("");
    let path = "/v1/bindings?channel=telegram&conversation=-100&plugin_root=/p@1";
    for (who, token) in [("metrics", &roles.metrics), ("approve", &roles.approve)] {
        let (status, body) = server.call_as(Some(token), "DELETE", path, None);
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden")), "{who}: {body}");
    }
    let (status, body) = server.call_as(Some(&roles.request), "DELETE", path, None);
    assert_eq!((status, body["removed"].as_bool()), (200, Some(false)), "{body}");
}

#[test]
fn finding_9_smuggled_env_and_nul_bytes_are_refused_with_the_field_named() {
    let (server, roles) = server_with_roles("");
    let cases = [
        ("env.A", json!({ "argv": ["make"], "env": { "A": "1\nLD_PRELOAD=/x" } })),
        ("env.A=B", json!({ "argv": ["make"], "env": { "A=B": "1" } })),
        ("env.A\\0", json!({ "argv": ["make"], "env": { "A\u{0}": "1" } })),
        ("cwd", json!({ "argv": ["make"], "cwd": "/tmp\u{0}x" })),
        ("host", json!({ "argv": ["make"], "host": "h\u{0}" })),
    ];
    for (field, exec) in cases {
        let body = json!({ "kind": "exec", "exec": exec });
        let (status, reply) = server.call_as(Some(&roles.request), "POST", "/v1/approvals", Some(body));
        assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_request")), "{reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(field), "names {field}: {reply}");
    }
    for (field, extra) in [("agent_id", "a\u{0}"), ("session_key", "s\u{0}")] {
        let body = json!({ "kind": "exec", "exec": { "argv": ["make"] }, field: extra });
        let (status, reply) = server.call_as(Some(&roles.request), "POST", "/v1/approvals", Some(body));
        assert_eq!(status, 400, "{field}: {reply}");
    }
    let (_, list) = server.call_as(Some(&roles.approve), "GET", "/v1/approvals", None);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "nothing stored: {list}");
}

#[test]
fn finding_11_callback_urls_with_crlf_are_refused() {
    let (server, roles) = server_with_roles("");
    let body = json!({
        "kind": "exec",
        "exec": { "argv": ["make"] },
        "callback": "http://127.0.0.1:9/cb\r\n2026-01-01T00:00:00Z INFO approved by admin",
    });
    let (status, reply) = server.call_as(Some(&roles.request), "POST", "/v1/approvals", Some(body));
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("invalid_request")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("callback"), "{reply}");
}

#[cfg(unix)]
#[test]
fn finding_10_the_data_dir_and_database_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (server, roles) = server_with_roles("");
    create_exec(&server, &roles.request, &["deploy", "--password", "hunter2"]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = server.data_dir();
    assert_eq!(mode(&data), 0o700, "data dir");
    let mut checked = 0;
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path) & 0o077, 0, "{} is readable by others", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "the database, its WAL and the key files were checked");
}

#[test]
fn finding_15_a_request_token_cannot_tell_others_approvals_from_unknown_refs() {
    let (server, roles) = server_with_roles("");
    let theirs = create_exec(&server, &roles.request, &["make", "deploy"]);
    let id = theirs["id"].as_str().unwrap();
    let unknown = if id.starts_with("zzzzzzzz") { "yyyyyyyy" } else { "zzzzzzzz" };
    let answer = |reference: &str| {
        let (status, body) =
            server.call_as(Some(&roles.request2), "GET", &format!("/v1/approvals/{reference}"), None);
        let message = body["error"]["message"].as_str().unwrap_or_default().replace(reference, "<ref>");
        (status, body["error"]["code"].clone(), message)
    };
    assert_eq!(answer(&id[..8]), answer(unknown), "another token's approval by prefix");
    assert_eq!(answer(id).0, 404);
    assert_eq!(answer(id).2, answer(unknown).2, "another token's approval by full id");
    let (status, _) =
        server.call_as(Some(&roles.request), "GET", &format!("/v1/approvals/{}", &id[..8]), None);
    assert_eq!(status, 200, "the owner still finds it");
}

/// Sends one raw HTTP/1.1 request and returns the status line and headers.
pub(crate) fn raw_head(server: &Server, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).split("\r\n\r\n").next().unwrap_or_default().to_owned()
}

/// Logs in to the console with `token` and returns the session cookie.
pub(crate) fn console_cookie(server: &Server, token: &str) -> String {
    let body = format!("token={token}");
    let addr = server.url.trim_start_matches("http://");
    let head = raw_head(
        server,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let cookie =
        head.lines().find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")));
    cookie.unwrap_or_else(|| panic!("no session cookie: {head}")).split(';').next().unwrap().to_owned()
}

#[test]
fn finding_8_the_event_stream_refuses_cookies_from_another_origin() {
    let (server, roles) = server_with_roles("");
    let cookie = console_cookie(&server, &roles.approve);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let port = addr.rsplit(':').next().unwrap();
    let ws = |origin: &str| {
        raw_head(
            &server,
            &format!(
                "GET /v1/events/ws HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        )
    };
    let sse = |origin: &str| {
        raw_head(
            &server,
            &format!(
                "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nOrigin: {origin}\r\nAccept: text/event-stream\r\n\r\n"
            ),
        )
    };
    assert!(ws(&format!("http://{addr}")).starts_with("HTTP/1.1 101"), "the console itself connects");
    for evil in [
        "http://evil.example".to_owned(),
        format!("http://localhost:{}", port.parse::<u16>().unwrap() + 1),
        format!("https://{addr}"),
    ] {
        let head = ws(&evil);
        assert!(head.starts_with("HTTP/1.1 403"), "WebSocket from {evil}: {head}");
        let head = sse(&evil);
        assert!(head.starts_with("HTTP/1.1 403"), "SSE from {evil}: {head}");
    }
    let rebound = raw_head(
        &server,
        &format!("GET /v1/events HTTP/1.1\r\nHost: evil.example:{port}\r\nCookie: {cookie}\r\n\r\n"),
    );
    assert!(rebound.starts_with("HTTP/1.1 403"), "finding 17, DNS rebinding: {rebound}");
}

#[test]
fn finding_14_the_oldest_approvals_can_be_listed_page_by_page() {
    let (server, roles) = server_with_roles("");
    let mut created: Vec<String> = (0..5)
        .map(|i| {
            create_exec(&server, &roles.request, &["echo", &i.to_string()])["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut seen = Vec::new();
    let mut path = "/v1/approvals?status=pending&limit=2".to_owned();
    for _ in 0..10 {
        let (status, page) = server.call_as(Some(&roles.approve), "GET", &path, None);
        assert_eq!(status, 200, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/approvals?status=pending&limit=2&before={next}"),
            None => break,
        }
    }
    created.reverse();
    assert_eq!(seen, created, "every approval once, newest first, the oldest included");
    let (status, body) = server.call_as(Some(&roles.approve), "GET", "/v1/approvals?before=nonsense", None);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_request")), "{body}");
}

#[test]
fn finding_16_event_cursors_past_the_end_or_malformed_are_refused() {
    let (server, roles) = server_with_roles("");
    create_exec(&server, &roles.request, &["echo", "one"]);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let token = &roles.approve;
    let ahead = raw_head(
        &server,
        &format!(
            "GET /v1/events?since=999999 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ),
    );
    assert!(ahead.starts_with("HTTP/1.1 400"), "a cursor past the end: {ahead}");
    let bad = raw_head(
        &server,
        &format!(
            "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nLast-Event-ID: x7\r\n\r\n"
        ),
    );
    assert!(bad.starts_with("HTTP/1.1 400"), "a malformed Last-Event-ID: {bad}");
    let ok = raw_head(
        &server,
        &format!("GET /v1/events?since=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"),
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn finding_17_a_repeated_deny_with_a_new_reason_is_not_silently_dropped() {
    let (server, roles) = server_with_roles("");
    let id = create_exec(&server, &roles.request, &["rm", "-rf", "/srv"])["id"].as_str().unwrap().to_owned();
    let deny = |reason: &str| {
        let body = json!({ "kind": "exec", "decision": "deny", "reason": reason });
        server.call_as(Some(&roles.approve), "POST", &format!("/v1/approvals/{id}/resolve"), Some(body))
    };
    assert_eq!(deny("wrong host").0, 200);
    assert_eq!(deny("wrong host").0, 200, "a retry stays idempotent");
    let (status, body) = deny("and it is Friday");
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("already_recorded")), "{body}");
}

#[test]
fn finding_17_openapi_lists_events_websocket_and_metrics() {
    let server = Server::start();
    let (status, doc) = server.call("GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    for path in ["/v1/events", "/v1/events/ws", "/metrics", "/v1/openapi.json"] {
        assert!(doc["paths"].get(path).is_some(), "{path} is missing from openapi.json");
    }
}

#[cfg(unix)]
#[test]
fn finding_17_a_token_removed_from_the_config_stops_working_after_sighup() {
    let (server, roles) = server_with_roles("");
    let config = server.dir.path().join("assent.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let (status, _) = server.call_as(Some(&roles.request2), "GET", "/v1/approvals", None);
    assert_eq!(status, 200);
    let without: String = text
        .split("\n\n")
        .filter(|entry| !entry.contains("name = \"req2\""))
        .collect::<Vec<_>>()
        .join("\n\n");
    std::fs::write(&config, without).unwrap();
    server.hangup();
    crate::harness::eventually("the revoked token to be refused", || {
        let (status, _) = server.call_as(Some(&roles.request2), "GET", "/v1/approvals", None);
        (status == 401).then_some(())
    });
    let (status, _) = server.call_as(Some(&roles.request), "GET", "/v1/approvals", None);
    assert_eq!(status, 200, "the other tokens still work");
}

#[test]
fn finding_13_a_forbidden_scope_is_grant_scope_not_allowed() {
    let (server, roles) = server_with_roles("");
    let id = create_exec(&server, &roles.request, &["make", "install"])["id"].as_str().unwrap().to_owned();
    for scope in [
        json!({ "base": { "type": "pattern", "args": ["**"] } }),
        json!({ "base": { "type": "binding-account" } }),
        json!({ "base": { "type": "exact-argv" }, "session": true }),
        json!({ "base": { "type": "exact-argv" }, "ttl-secs": 0 }),
    ] {
        let body = json!({ "kind": "exec", "decision": "allow-always", "grant_scope": scope });
        let (status, reply) =
            server.call_as(Some(&roles.approve), "POST", &format!("/v1/approvals/{id}/resolve"), Some(body));
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (422, Some("grant_scope_not_allowed")),
            "{scope}: {reply}"
        );
    }
    let (_, view) = server.call_as(Some(&roles.approve), "GET", &format!("/v1/approvals/{id}"), None);
    assert_eq!(view["status"], "pending", "nothing was recorded");
}

#[test]
fn finding_1_assent_request_sends_the_resolved_executable() {
    let (server, roles) = server_with_roles("");
    let out = server.run(&[
        "--token",
        &roles.request,
        "--json",
        "request",
        "exec",
        "--no-wait",
        "--",
        "sh",
        "-c",
        "true",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields = view["fields"].as_array().unwrap();
    let exe =
        fields.iter().find(|f| f["label"] == "Executable").unwrap_or_else(|| panic!("no executable: {view}"));
    assert!(exe["value"].as_str().unwrap().ends_with("/sh"), "{exe}");
}
