//! The redaction corpus (PO-9; issue 9, finding 6 and 12) on every surface that shows request
//! text: the API view and list, the console page, the event stream, the audit log, grants and
//! bindings. The corpus is `crates/core/tests/data/redaction.tsv`; each row holds one secret.

use std::{
    io::{Read, Write},
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    harness::Server,
    security::{Roles, console_cookie, server_with_roles},
};

/// (input, expected display) rows that hide something.
fn secret_rows() -> Vec<(String, String)> {
    include_str!("../../crates/core/tests/data/redaction.tsv")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(i, e)| (i.replace("\\n", "\n"), e.replace("\\n", "\n")))
        .filter(|(i, e)| i != e)
        .collect()
}

/// The hidden value: what the expected display dropped from the input.
fn secret_of(input: &str, expected: &str) -> String {
    let prefix = input.chars().zip(expected.chars()).take_while(|(a, b)| a == b).count();
    let suffix = input.chars().rev().zip(expected.chars().rev()).take_while(|(a, b)| a == b).count();
    let chars: Vec<char> = input.chars().collect();
    let end = chars.len().saturating_sub(suffix).max(prefix);
    chars[prefix..end].iter().collect()
}

/// Splits like a POSIX shell does for single- and double-quoted words (enough for the corpus).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Everything the event stream sends within a second, read raw.
fn event_stream(server: &Server, token: &str) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let request = format!(
        "GET /v1/events?since=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let (mut out, mut buf, start) = (Vec::new(), [0u8; 8192], Instant::now());
    while start.elapsed() < Duration::from_secs(1) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get(server: &Server, token: &str, path: &str) -> String {
    let (status, body) = server.call_as(Some(token), "GET", path, None);
    assert_eq!(status, 200, "{path}: {body}");
    body.to_string()
}

#[test]
fn po_9_the_redaction_corpus_holds_on_every_surface() {
    let (server, roles) = server_with_roles("");
    let Roles { request, approve, admin, .. } = &roles;
    let rows = secret_rows();
    assert!(rows.len() >= 35, "{} secret rows", rows.len());
    let cookie = console_cookie(&server, approve);
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut surfaces: Vec<(String, String)> = Vec::new();
    for (n, (input, _)) in rows.iter().enumerate() {
        let exec = json!({ "argv": shell_words(input), "host": "h1" });
        let (status, a) = server.call_as(
            Some(request),
            "POST",
            "/v1/approvals",
            Some(json!({ "kind": "exec", "exec": exec })),
        );
        assert_eq!(status, 201, "{input}: {a}");
        let id = a["id"].as_str().unwrap();
        surfaces.push((format!("create answer {n}"), a.to_string()));
        surfaces.push((format!("view {n}"), get(&server, approve, &format!("/v1/approvals/{id}"))));
        let page = raw_head_and_body(
            &server,
            &format!("GET /a/{id} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"),
        );
        surfaces.push((format!("console page {n}"), page));
        let body = json!({ "kind": "exec", "decision": "allow-always" });
        let (status, r) =
            server.call_as(Some(approve), "POST", &format!("/v1/approvals/{id}/resolve"), Some(body));
        assert_eq!(status, 200, "{r}");

        let binding = json!({
            "plugin": { "id": "p", "name": "Plugin", "root": format!("/opt/p/{n}") },
            "conversation": { "channel": "telegram", "account": "main", "conversation": format!("-{n}") },
            "summary": input.chars().take(280).collect::<String>(),
        });
        let (status, b) = server.call_as(Some(request), "POST", "/v1/bindings", Some(binding));
        assert_eq!(status, 201, "{b}");
        let (_, r) = server.call_as(
            Some(approve),
            "POST",
            &format!("/v1/approvals/{}/resolve", b["approval"]["id"].as_str().unwrap()),
            Some(json!({ "kind": "binding", "decision": "allow-once" })),
        );
        assert_eq!(r["status"], "approved", "{r}");
        let query = format!("channel=telegram&account=main&conversation=-{n}");
        surfaces.push((format!("binding {n}"), get(&server, approve, &format!("/v1/bindings?{query}"))));
    }
    surfaces.push(("list".into(), get(&server, approve, "/v1/approvals?limit=500")));
    surfaces.push(("grants".into(), get(&server, approve, "/v1/grants")));
    surfaces.push(("audit".into(), get(&server, admin, "/v1/audit?limit=1000")));
    surfaces.push(("events".into(), event_stream(&server, approve)));

    let mut leaks = Vec::new();
    for (input, expected) in &rows {
        let secret = secret_of(input, expected);
        assert!(secret.len() >= 4, "row {input:?} hides {secret:?}");
        for (surface, text) in &surfaces {
            if text.contains(&secret) {
                leaks.push(format!("{secret:?} from {input:?} shows in {surface}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
}

/// One raw request; the whole answer.
fn raw_head_and_body(server: &Server, request: &str) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{}", raw_head_prefix(&out));
    out
}

fn raw_head_prefix(answer: &str) -> &str {
    answer.split("\r\n\r\n").next().unwrap_or_default()
}

#[test]
fn corpus_helpers_find_the_secret_and_split_like_a_shell() {
    assert_eq!(secret_of("a --password S3cr -h", "a --password ‹redacted› -h"), "S3cr");
    assert_eq!(shell_words("app --k 'a b' \"c d\" e"), ["app", "--k", "a b", "c d", "e"]);
}
